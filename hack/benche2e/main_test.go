package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeRepo is a directory that passes Validate's file checks.
func fakeRepo(t *testing.T) (root, webhook string) {
	t.Helper()
	root = t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "manifests"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "manifests", "kustomization.yaml"), nil, 0o600))
	webhook = filepath.Join(root, "webhook")
	require.NoError(t, os.WriteFile(webhook, nil, 0o700))
	return root, webhook
}

func TestParseConfig(t *testing.T) {
	root, webhook := fakeRepo(t)
	files := []string{"-repo", root, "-webhook", webhook}

	t.Run("defaults", func(t *testing.T) {
		cfg, err := parseConfig(files, io.Discard)
		require.NoError(t, err)
		assert.Equal(t, 500, cfg.Pods)
		assert.Equal(t, 8, cfg.Workers)
		assert.Equal(t, 1000.0, cfg.QPS)
		assert.Equal(t, "info", cfg.WebhookLogLevel)
	})
	t.Run("flags override", func(t *testing.T) {
		cfg, err := parseConfig(append(files, "-pods", "20", "-workers", "2", "-rounds", "1", "-markdown", "-webhook-log-level", "warn"), io.Discard)
		require.NoError(t, err)
		assert.Equal(t, 20, cfg.Pods)
		assert.Equal(t, 2, cfg.Workers)
		assert.Equal(t, 1, cfg.Rounds)
		assert.True(t, cfg.Markdown)
		assert.Equal(t, "warn", cfg.WebhookLogLevel)
	})

	bad := map[string][]string{
		"no pods":              {"-pods", "0"},
		"too many pods":        {"-pods", "10001"},
		"no workers":           {"-workers", "0"},
		"too many rounds":      {"-rounds", "21"},
		"negative warm-up":     {"-warmup", "-1"},
		"zero qps":             {"-qps", "0"},
		"zero paced rate":      {"-paced-rate", "0"},
		"paced past timeout":   {"-paced-pods", "1000", "-paced-rate", "1", "-phase-timeout", "1m"},
		"endless phase":        {"-phase-timeout", "31m"},
		"unknown log level":    {"-webhook-log-level", "verbose"},
		"unknown reinvocation": {"-reinvocation", "Always"},
		"missing binary":       {"-webhook", filepath.Join(root, "absent")},
		"not the repository":   {"-repo", t.TempDir()},
		"positional argument":  {"extra"},
		"unknown flag":         {"-url", "http://example.com"},
	}
	for name, args := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := parseConfig(append(append([]string{}, files...), args...), io.Discard)
			assert.Error(t, err)
		})
	}
}

func TestScaleSteps(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    []int
		wantErr bool
	}{
		"three counts":     {in: "1,1000,5000", want: []int{1, 1000, 5000}},
		"spaces":           {in: "1, 10", want: []int{1, 10}},
		"not increasing":   {in: "10,10", wantErr: true},
		"zero":             {in: "0,10", wantErr: true},
		"not a number":     {in: "1,many", wantErr: true},
		"beyond the bound": {in: "1,50000", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := scaleSteps(tc.in)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}
