package main

import (
	"flag"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// parse runs the same flag code as run.
func parse(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	cfg := defaultConfig()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.AddFlags(fs)
	require.NoError(t, fs.Parse(args))
	return cfg, cfg.Validate()
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := parse(t, "--sidecar-image=example.test/sidecar:v1")
	require.NoError(t, err)
	assert.Equal(t, 9443, cfg.Port)
	assert.True(t, cfg.RequireNamespaceOptIn)
	assert.Equal(t, "federated", cfg.DefaultTokenSource)
	rr, err := cfg.Resources()
	require.NoError(t, err)
	assert.Equal(t, "10Mi", rr.Requests.Memory().String())
	assert.Equal(t, "64Mi", rr.Limits.Memory().String())
}

func TestConfigValidate(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string // a substring of the error
	}{
		"no sidecar image":   {[]string{"--sidecar-image="}, "--sidecar-image is required"},
		"bad port":           {[]string{"--sidecar-image=x", "--port=0"}, "--port 0"},
		"bad token port":     {[]string{"--sidecar-image=x", "--token-port=70000"}, "--token-port 70000"},
		"bad pull policy":    {[]string{"--sidecar-image=x", "--sidecar-image-pull-policy=Sometimes"}, "Always, IfNotPresent or Never"},
		"bad native mode":    {[]string{"--sidecar-image=x", "--native-sidecar=maybe"}, "--native-sidecar"},
		"bad token source":   {[]string{"--sidecar-image=x", "--default-token-source=magic"}, "--default-token-source"},
		"http authority":     {[]string{"--sidecar-image=x", "--authority-host=http://login.example"}, "--authority-host"},
		"bad quantity":       {[]string{"--sidecar-image=x", "--sidecar-memory-limit=lots"}, "--sidecar-memory-limit"},
		"bad log level":      {[]string{"--sidecar-image=x", "--log-level=loud"}, "--log-level"},
		"bad live timeout":   {[]string{"--sidecar-image=x", "--live-read-timeout=0s"}, "--live-read-timeout"},
		"all errors at once": {[]string{"--port=0", "--token-port=0"}, "--token-port 0"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parse(t, tc.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestConfigResourcesEmptyLimit(t *testing.T) {
	cfg, err := parse(t, "--sidecar-image=x", "--sidecar-cpu-limit=", "--sidecar-memory-limit=")
	require.NoError(t, err)
	rr, err := cfg.Resources()
	require.NoError(t, err)
	assert.Empty(t, rr.Limits)
	assert.Contains(t, rr.Requests, corev1.ResourceCPU)
}
