package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
	"github.com/podidentity/injector/test/fakeaad"
)

func TestConfigFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want func(*Config)
	}{
		{"defaults", nil, func(*Config) {}},
		{"all flags", []string{"--config-file=/c.json", "--port=9000", "--authority-host=https://login.example/", "--ca-file=/ca.pem",
			"--imds-endpoint=http://127.0.0.1:1", "--log-level=debug", "--shutdown-timeout=2s", "--probe-timeout=300ms", "--max-resources-per-identity=8", "--max-connections=16", "--upstream-rate=2", "--upstream-burst=5"},
			func(c *Config) {
				c.ConfigFile, c.Port, c.AuthorityHost, c.CAFile = "/c.json", 9000, "https://login.example/", "/ca.pem"
				c.IMDSEndpoint, c.LogLevel, c.ShutdownTimeout, c.ProbeTimeout, c.MaxResourcesPerIdentity = "http://127.0.0.1:1", "debug", 2*time.Second, 300*time.Millisecond, 8
				c.MaxConnections, c.UpstreamRate, c.UpstreamBurst = 16, 2, 5
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := DefaultConfig()
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			got.AddFlags(fs)
			require.NoError(t, fs.Parse(tc.args))
			want := DefaultConfig()
			tc.want(&want)
			assert.Equal(t, want, got)
			assert.NoError(t, got.Validate())
		})
	}
}

func TestConfigValidate(t *testing.T) {
	cases := map[string]struct {
		mutate   func(*Config)
		contains string
	}{
		"port":           {func(c *Config) { c.Port = 70000 }, "--port 70000 is not in 0-65535"},
		"log level":      {func(c *Config) { c.LogLevel = "loud" }, `--log-level "loud" is not debug, info, warn or error`},
		"shutdown":       {func(c *Config) { c.ShutdownTimeout = 0 }, "--shutdown-timeout 0s must be positive"},
		"probe":          {func(c *Config) { c.ProbeTimeout = -1 }, "--probe-timeout -1ns must be positive"},
		"resources":      {func(c *Config) { c.MaxResourcesPerIdentity = 0 }, "--max-resources-per-identity 0 must be at least 1"},
		"upstream rate":  {func(c *Config) { c.UpstreamRate = 0 }, "--upstream-rate 0 must be positive"},
		"upstream burst": {func(c *Config) { c.UpstreamBurst = 0 }, "--upstream-burst 0 must be at least 1"},
		"connections":    {func(c *Config) { c.MaxConnections = 0 }, "--max-connections 0 must be at least 1"},
		"authority http": {func(c *Config) { c.AuthorityHost = "http://login.example/" }, "must be an https URL"},
		"imds endpoint":  {func(c *Config) { c.IMDSEndpoint = "127.0.0.1:80" }, "--imds-endpoint \"127.0.0.1:80\" must be an http(s) URL"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.contains)
		})
	}
}

func noEnv(string) string { return "" }

func TestRunUsage(t *testing.T) {
	var stderr bytes.Buffer
	ctx := context.Background()
	require.ErrorIs(t, run(ctx, nil, noEnv, &stderr), errUsage)
	require.ErrorIs(t, run(ctx, []string{"serv"}, noEnv, &stderr), errUsage)
	require.ErrorIs(t, run(ctx, []string{"serve", "extra"}, noEnv, &stderr), errUsage)
	require.Error(t, run(ctx, []string{"serve", "--no-such-flag"}, noEnv, &stderr))
	err := run(ctx, []string{"serve"}, noEnv, &stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no sidecar config: POD_IDENTITY_SIDECAR_CONFIG is empty and --config-file is not set")
}

// TestServeStartErrors: a pod whose credentials cannot be loaded fails at
// start with a message naming the identity and the Secret.
func TestServeStartErrors(t *testing.T) {
	p, err := fakeaad.NewPod(fakeaad.PodOptions{Dir: t.TempDir(), Port: freePort(t)})
	require.NoError(t, err)
	defer p.Close()
	id := p.Identity(fakeaad.IdentitySecret)
	require.NoError(t, os.RemoveAll(id.SecretDir))
	doc, err := p.Config.Marshal()
	require.NoError(t, err)
	env := map[string]string{names.EnvSidecarConfig: doc, names.EnvIdentityHeader: p.IdentityHeader}

	err = run(context.Background(), []string{"serve"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "AzureIdentity default/secret-identity (source clientSecret): read Secret secret-identity-secret mounted at "+id.SecretDir)

	env[names.EnvIdentityHeader] = ""
	require.NoError(t, os.MkdirAll(id.SecretDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(id.SecretDir, "clientSecret"), []byte("x"), 0o600))
	err = run(context.Background(), []string{"serve", "--imds-endpoint", p.IMDS.URL}, func(k string) string { return env[k] }, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "set IDENTITY_HEADER on the pod-identity-sidecar container")

	// With per-container headers, a pod-wide one is refused: it would open
	// every identity to whoever holds it.
	p.Config.Containers = []sidecarconfig.Container{{Name: "app", HeaderSHA256: sidecarconfig.HeaderSum("app-header"), Identities: []string{p.Config.DefaultIdentity}}}
	doc, err = p.Config.Marshal()
	require.NoError(t, err)
	env = map[string]string{names.EnvSidecarConfig: doc, names.EnvIdentityHeader: p.IdentityHeader}
	err = run(context.Background(), []string{"serve", "--imds-endpoint", p.IMDS.URL}, func(k string) string { return env[k] }, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "remove IDENTITY_HEADER from the pod-identity-sidecar container")
}

func TestProbe(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != names.PathHealth {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer ok.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	port := func(s *httptest.Server) string { return strconv.Itoa(s.Listener.Addr().(*net.TCPAddr).Port) }

	cases := map[string]struct {
		args    []string
		env     map[string]string
		wantErr string
	}{
		"healthy by --port": {[]string{"probe", "--port", port(ok)}, nil, ""},
		"healthy by config": {[]string{"probe"}, map[string]string{names.EnvSidecarConfig: `{"apiVersion":"sidecar.aadpodidentity.k8s.io/v1","port":` + port(ok) +
			`,"defaultIdentity":"a","identities":[{"name":"a","namespace":"n","source":"imds","clientID":"c"}]}`}, ""},
		"unhealthy":       {[]string{"probe", "--port", port(failing)}, nil, "status 503"},
		"nobody listens":  {[]string{"probe", "--port", strconv.Itoa(freePort(t))}, nil, "connection refused"},
		"no port, no doc": {[]string{"probe"}, nil, "no sidecar config"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := run(context.Background(), tc.args, func(k string) string { return tc.env[k] }, &bytes.Buffer{})
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

// TestProbeWaitsForTheListener: a probe that starts before the server
// listens passes once it does, within its timeout, as the kubelet's first
// startupProbe does; one that never finds a listener says so.
func TestProbeWaitsForTheListener(t *testing.T) {
	port := freePort(t)
	listening := make(chan struct{})
	go func() {
		defer close(listening)
		time.Sleep(150 * time.Millisecond)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if !assert.NoError(t, err) {
			return
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })}
		t.Cleanup(func() { _ = srv.Close() })
		go func() { _ = srv.Serve(ln) }()
	}()
	err := run(context.Background(), []string{"probe", "--port", strconv.Itoa(port), "--probe-timeout", "5s"}, func(string) string { return "" }, &bytes.Buffer{})
	<-listening
	require.NoError(t, err, "the probe waits for the listener within its timeout")

	err = run(context.Background(), []string{"probe", "--port", strconv.Itoa(freePort(t)), "--probe-timeout", "100ms"}, func(string) string { return "" }, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection refused")
	assert.Contains(t, err.Error(), "retried until the probe's 100ms timeout")
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
