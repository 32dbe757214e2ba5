package main

import (
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// layout makes a repository with manifests/ and its own seed directory,
// examples/aad-pod-identity-blog, holding the given files.
func layout(t *testing.T, seed ...string) (repo, seedDir string) {
	t.Helper()
	root := t.TempDir()
	repo, seedDir = filepath.Join(root, "main"), filepath.Join(root, "main", "examples", "aad-pod-identity-blog")
	require.NoError(t, os.MkdirAll(filepath.Join(repo, "manifests"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(repo, "manifests", "kustomization.yaml"), nil, 0o600))
	require.NoError(t, os.MkdirAll(seedDir, 0o755))
	for _, f := range seed {
		require.NoError(t, os.WriteFile(filepath.Join(seedDir, f), nil, 0o600))
	}
	return repo, seedDir
}

func parse(t *testing.T, args ...string) Config {
	t.Helper()
	var c Config
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	c.AddFlags(fs)
	require.NoError(t, fs.Parse(args))
	return c
}

func TestConfigDefaults(t *testing.T) {
	c := parse(t, "--repo=/r")
	assert.Equal(t, filepath.Join("/r", "examples", "aad-pod-identity-blog"), c.Seed(), "the repository's own copy of the seed")
	assert.False(t, c.KeepRunning)

	c = parse(t, "--repo=/r", "--seed=/s", "--keep-running")
	assert.Equal(t, "/s", c.Seed())
	assert.True(t, c.KeepRunning)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		seed    []string
		notRepo bool
		wantMsg string
	}{
		{name: "all seed manifests present", seed: seedFiles},
		{name: "a seed manifest missing", seed: seedFiles[:3], wantMsg: "seed manifest deployment.yaml is missing"},
		{name: "no seed directory", wantMsg: "seed manifest namespace.yaml is missing"},
		{name: "not the repository", seed: seedFiles, notRepo: true, wantMsg: "is not this repository"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo, seedDir := layout(t, tc.seed...)
			if tc.seed == nil {
				require.NoError(t, os.RemoveAll(seedDir))
			}
			if tc.notRepo {
				require.NoError(t, os.RemoveAll(filepath.Join(repo, "manifests")))
			}
			c := parse(t, "--repo="+repo)
			err := c.Validate()
			if tc.wantMsg == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, fs.ErrNotExist))
			assert.Contains(t, err.Error(), tc.wantMsg)
		})
	}
}
