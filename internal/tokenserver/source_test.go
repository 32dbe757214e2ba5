package tokenserver

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
	"github.com/podidentity/injector/test/fakeaad"
)

// writeSecret writes a Secret volume as the kubelet does, with its ..data
// link and timestamped directory.
func writeSecret(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2024_01_01")
	require.NoError(t, os.Mkdir(ts, 0o755))
	for k, v := range files {
		require.NoError(t, os.WriteFile(filepath.Join(ts, k), []byte(v), 0o600))
		require.NoError(t, os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)))
	}
	require.NoError(t, os.Symlink("..2024_01_01", filepath.Join(dir, "..data")))
	return dir
}

func TestReadClientSecret(t *testing.T) {
	cases := []struct {
		name     string
		files    map[string]string
		want     string
		contains string
	}{
		{"clientSecret key", map[string]string{"clientSecret": "abc"}, "abc", ""},
		{"trailing newline dropped", map[string]string{"clientSecret": "abc\r\n"}, "abc", ""},
		{"clientSecret among others", map[string]string{"clientSecret": "abc", "other": "x"}, "abc", ""},
		{"single key of another name", map[string]string{"password": "xyz"}, "xyz", ""},
		{"two keys, neither clientSecret", map[string]string{"a": "1", "b": "2"}, "",
			"Secret sp-secret has keys [a b]; a type 1 AzureIdentity needs key \"clientSecret\" (or exactly one key); add key clientSecret to the Secret"},
		{"no keys", map[string]string{}, "", "Secret sp-secret has keys []"},
		{"empty value", map[string]string{"clientSecret": "\n"}, "", "key clientSecret of Secret sp-secret is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &secretSource{id: sidecarconfig.Identity{SecretDir: writeSecret(t, tc.files), SecretName: "sp-secret"}}
			got, err := s.readSecret()
			if tc.contains != "" {
				require.ErrorIs(t, err, ErrSecretLayout)
				assert.Contains(t, err.Error(), tc.contains)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestReadCertificate(t *testing.T) {
	pem, err := fakeaad.NewClientCertificate("t")
	require.NoError(t, err)
	cases := []struct {
		name     string
		files    map[string]string
		contains string
	}{
		{"PKCS#12 with password", map[string]string{"certificate": string(fakeaad.PKCS12), "password": fakeaad.PKCS12Password + "\n"}, ""},
		{"PEM pair", map[string]string{"tls.crt": string(pem.CertPEM), "tls.key": string(pem.KeyPEM)}, ""},
		{"PKCS#12 with wrong password", map[string]string{"certificate": string(fakeaad.PKCS12), "password": "nope"},
			"PKCS#12 key certificate of Secret sp-cert"},
		{"only tls.crt", map[string]string{"tls.crt": string(pem.CertPEM)},
			`Secret sp-cert has keys [tls.crt]; a type 2 AzureIdentity needs "certificate" (PKCS#12) with "password", or "tls.crt" and "tls.key" (PEM)`},
		{"key without certificate", map[string]string{"tls.crt": string(pem.KeyPEM), "tls.key": ""}, "found no certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &certificateSource{id: sidecarconfig.Identity{SecretDir: writeSecret(t, tc.files), SecretName: "sp-cert"}}
			certs, key, err := s.readCertificate()
			if tc.contains != "" {
				require.ErrorIs(t, err, ErrSecretLayout)
				assert.Contains(t, err.Error(), tc.contains)
				return
			}
			require.NoError(t, err)
			assert.NotEmpty(t, certs)
			assert.NotNil(t, key)
		})
	}
}

// TestLoadSourceErrors names the identity and the mounted object at fault.
func TestLoadSourceErrors(t *testing.T) {
	base := sidecarconfig.Identity{Name: "sp", Namespace: "team-a", ClientID: "c", TenantID: "t"}
	cases := []struct {
		name     string
		mutate   func(*sidecarconfig.Identity)
		contains string
	}{
		{"missing token file", func(i *sidecarconfig.Identity) {
			i.Source, i.TokenFile = names.TokenSourceFederated, "/nonexistent/token"
		}, "AzureIdentity team-a/sp (source federated): projected service account token"},
		{"missing Secret mount", func(i *sidecarconfig.Identity) {
			i.Source, i.SecretDir, i.SecretName = names.TokenSourceClientSecret, "/nonexistent", "sp-secret"
		}, "AzureIdentity team-a/sp (source clientSecret): read Secret sp-secret mounted at /nonexistent"},
		{"bad certificate Secret", func(i *sidecarconfig.Identity) {
			i.Source, i.SecretName = names.TokenSourceClientCertificate, "sp-cert"
			i.SecretDir = writeSecret(t, map[string]string{"a": "b"})
		}, "AzureIdentity team-a/sp (source clientCertificate): secret does not have the keys"},
		{"unknown source", func(i *sidecarconfig.Identity) { i.Source = "magic" }, `AzureIdentity team-a/sp: unknown token source "magic"`},
		{"bad IMDS endpoint", func(i *sidecarconfig.Identity) { i.Source = names.TokenSourceIMDS }, "IMDS endpoint \"ftp://x\""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := base
			tc.mutate(&id)
			_, err := LoadSource(id, SourceOptions{IMDSEndpoint: "ftp://x"})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.contains)
		})
	}
}

// TestIMDSSourceRefusesRedirectingEnvironment: in a sidecar whose
// environment names a managed identity endpoint, azidentity would not call
// IMDS; the source refuses to start rather than call itself.
func TestIMDSSourceRefusesRedirectingEnvironment(t *testing.T) {
	for _, env := range []string{"IDENTITY_ENDPOINT", "MSI_ENDPOINT"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv("IDENTITY_HEADER", "x")
			t.Setenv(env, "http://127.0.0.1:1/msi/token")
			_, err := LoadSource(sidecarconfig.Identity{Name: "mi", Namespace: "ns", Source: names.TokenSourceIMDS, ClientID: "c"}, SourceOptions{})
			require.ErrorIs(t, err, ErrIMDSEnvironment)
			assert.Contains(t, err.Error(), "remove IDENTITY_ENDPOINT, MSI_ENDPOINT and IMDS_ENDPOINT from the pod-identity-sidecar container")
		})
	}
}

// TestSecretRotation: a rotated client secret is used at the next refresh,
// without a restart.
func TestSecretRotation(t *testing.T) {
	p := newPod(t, fakeaad.IdentitySecret)
	r := startServer(t, p)
	resp := r.appService(t, p, url.Values{"resource": {uniqueResource(t)}})
	require.Equal(t, http.StatusOK, resp.status, resp.body)

	// Entra ID now only accepts a new secret, and the kubelet writes it.
	id := p.Identity(fakeaad.IdentitySecret)
	p.AAD.AddClientSecret(id.ClientID, "rotated-secret")
	link := filepath.Join(id.SecretDir, names.SecretKeyClientSecret)
	target, err := filepath.EvalSymlinks(link)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(target, []byte("rotated-secret"), 0o600))

	resp = r.appService(t, p, url.Values{"resource": {uniqueResource(t)}})
	require.Equal(t, http.StatusOK, resp.status, resp.body)
}

// TestIMDSRedirect sends requests for the IMDS address to the override and
// leaves every other host alone.
func TestIMDSRedirect(t *testing.T) {
	p, err := newIMDSRedirect("http://127.0.0.1:9")
	require.NoError(t, err)
	var seen []string
	pl := runtime.NewPipeline("test", "v0", runtime.PipelineOptions{PerCall: []policy.Policy{p}}, &policy.ClientOptions{
		Transport: transportFunc(func(r *http.Request) (*http.Response, error) {
			seen = append(seen, r.URL.String()+" host="+r.Host)
			return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
		}),
		Retry: policy.RetryOptions{MaxRetries: -1},
	})
	for _, u := range []string{"http://169.254.169.254/metadata/identity/oauth2/token?resource=r", "https://login.microsoftonline.com/t/oauth2/v2.0/token"} {
		req, err := runtime.NewRequest(context.Background(), http.MethodGet, u)
		require.NoError(t, err)
		resp, err := pl.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
	}
	assert.Equal(t, []string{
		"http://127.0.0.1:9/metadata/identity/oauth2/token?resource=r host=127.0.0.1:9",
		"https://login.microsoftonline.com/t/oauth2/v2.0/token host=login.microsoftonline.com",
	}, seen)

	_, err = newIMDSRedirect("127.0.0.1:9")
	require.Error(t, err)
	_, err = NewHTTPClient([]byte("not PEM"))
	require.ErrorIs(t, err, ErrNoCertificates)
}

type transportFunc func(*http.Request) (*http.Response, error)

func (f transportFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

// TestLoadSourceBuildsEverySourceOfTheTable: a source added to
// sidecarconfig.Sources must have a constructor here; the webhook would
// otherwise inject pods whose sidecar cannot start.
func TestLoadSourceBuildsEverySourceOfTheTable(t *testing.T) {
	for _, spec := range sidecarconfig.Sources {
		t.Run(spec.Name, func(t *testing.T) {
			id := sidecarconfig.Identity{Name: "id", Namespace: "ns", ClientID: "c", TenantID: "t", Source: spec.Name,
				TokenFile: "/nonexistent/token", SecretDir: "/nonexistent", SecretName: "s"}
			_, err := LoadSource(id, SourceOptions{IMDSEndpoint: "ftp://x"})
			if err != nil {
				assert.NotContains(t, err.Error(), "unknown token source", "LoadSource has no constructor for %s", spec.Name)
			}
		})
	}
}
