package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/spf13/pflag"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// parse runs the same flag code as run.
func parse(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	cfg := defaultConfig()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
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
		"bad live rate":      {[]string{"--sidecar-image=x", "--live-reads-per-second=0"}, "--live-reads-per-second"},
		"bad live burst":     {[]string{"--sidecar-image=x", "--live-read-burst=0"}, "--live-read-burst"},
		"authority off list": {[]string{"--sidecar-image=x", "--authority-host=https://login.example/", "--allowed-authority-hosts=login.microsoftonline.com"}, "--authority-host \"https://login.example/\" is not on --allowed-authority-hosts"},
		"bad allowed host":   {[]string{"--sidecar-image=x", "--allowed-authority-hosts=login.microsoftonline.com,http://x/"}, "--allowed-authority-hosts"},
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

func TestConfigAllowedAuthorityHosts(t *testing.T) {
	cfg, err := parse(t, "--sidecar-image=x")
	require.NoError(t, err)
	assert.Equal(t, []string{"login.microsoftonline.com", "login.chinacloudapi.cn", "login.microsoftonline.us"}, cfg.AllowedHosts(),
		"the public clouds by default")

	cfg, err = parse(t, "--sidecar-image=x", "--authority-host=https://127.0.0.1:8443/")
	require.NoError(t, err)
	assert.Equal(t, []string{"login.microsoftonline.com", "login.chinacloudapi.cn", "login.microsoftonline.us", "127.0.0.1:8443"}, cfg.AllowedHosts(),
		"and the default authority's host")

	cfg, err = parse(t, "--sidecar-image=x", "--authority-host=https://login.azurestack.example/", "--allowed-authority-hosts=login.azurestack.example, login.microsoftonline.com")
	require.NoError(t, err)
	assert.Equal(t, []string{"login.azurestack.example", "login.microsoftonline.com"}, cfg.AllowedHosts(), "the flag replaces the default")
}

func TestConfigResourcesEmptyLimit(t *testing.T) {
	cfg, err := parse(t, "--sidecar-image=x", "--sidecar-cpu-limit=", "--sidecar-memory-limit=")
	require.NoError(t, err)
	rr, err := cfg.Resources()
	require.NoError(t, err)
	assert.Empty(t, rr.Limits)
	assert.Contains(t, rr.Requests, corev1.ResourceCPU)
}

// TestMetricsOptions: by default metrics are served over HTTPS behind the
// API server's authentication and authorization, from the webhook's own
// certificate; --metrics-secure=false is plain HTTP for local runs.
func TestMetricsOptions(t *testing.T) {
	cfg, err := parse(t, "--sidecar-image=x", "--cert-dir=/tls")
	require.NoError(t, err)
	o := metricsOptions(cfg)
	assert.True(t, o.SecureServing)
	assert.NotNil(t, o.FilterProvider, "an authn/authz filter guards /metrics")
	assert.Equal(t, ":8443", o.BindAddress)
	assert.Equal(t, []string{"/tls", "tls.crt", "tls.key"}, []string{o.CertDir, o.CertName, o.KeyName})
	assert.Len(t, o.TLSOpts, 1, "HTTP/2 off")

	cfg, err = parse(t, "--sidecar-image=x", "--metrics-secure=false", "--enable-http2")
	require.NoError(t, err)
	o = metricsOptions(cfg)
	assert.False(t, o.SecureServing)
	assert.Nil(t, o.FilterProvider)
	assert.Empty(t, o.TLSOpts)
}

// TestTLSOptionsHTTP2: over a real TLS handshake, a client that offers h2
// gets HTTP/1.1 unless --enable-http2 (CVE-2023-44487).
func TestTLSOptionsHTTP2(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"default":        {nil, "HTTP/1.1"},
		"--enable-http2": {[]string{"--enable-http2"}, "HTTP/2.0"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := parse(t, append([]string{"--sidecar-image=x"}, tc.args...)...)
			require.NoError(t, err)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) }))
			srv.EnableHTTP2 = true
			srv.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
			for _, f := range tlsOptions(cfg) {
				f(srv.TLS)
			}
			srv.StartTLS()
			defer srv.Close()
			client := srv.Client()
			client.Transport.(*http.Transport).ForceAttemptHTTP2 = true
			resp, err := client.Get(srv.URL)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(body))
		})
	}
}

// TestClientRatesLeaveTheLiveReadBudget: client-go's throttle admits a
// whole burst of live reads at once, and their rate, with room for the
// informers, so the webhook's own limiter is the one bound on them.
func TestClientRatesLeaveTheLiveReadBudget(t *testing.T) {
	for _, args := range [][]string{nil, {"--live-reads-per-second=50", "--live-read-burst=200"}} {
		cfg, err := parse(t, append([]string{"--sidecar-image=x"}, args...)...)
		require.NoError(t, err)
		qps, burst := cfg.clientRates()
		assert.Greater(t, burst, cfg.LiveReadBurst, "%v", args)
		assert.Greater(t, float64(qps), cfg.LiveReadsPerSecond, "%v", args)
	}
}
