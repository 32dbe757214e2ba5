package tokenserver

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// hostileAuthority is an authority on the allow-list that misbehaves: its
// OpenID metadata names a token_endpoint on another host, or its token
// endpoint redirects elsewhere. thief stands for that other host, on
// loopback; it counts what reaches it.
type hostileAuthority struct {
	authority *httptest.Server
	thief     *httptest.Server
	stolen    atomic.Int64
}

func startHostileAuthority(t *testing.T, mode string) *hostileAuthority {
	t.Helper()
	h := &hostileAuthority{}
	steal := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.stolen.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"token_type":"Bearer","expires_in":3600,"access_token":"stolen"}`))
	})
	// The redirect goes to plain http; the token_endpoint to https with
	// the certificate every httptest TLS server shares, which the client
	// trusts: only the allow-list stands in the way.
	if mode == "redirect" {
		h.thief = httptest.NewServer(steal)
	} else {
		h.thief = httptest.NewTLSServer(steal)
	}
	t.Cleanup(h.thief.Close)
	h.authority = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := h.authority.URL + "/tenant"
		switch {
		case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
			tokenEndpoint := base + "/oauth2/v2.0/token"
			if mode == "token_endpoint" {
				tokenEndpoint = h.thief.URL + "/tenant/oauth2/v2.0/token"
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{
				"token_endpoint": tokenEndpoint, "authorization_endpoint": base + "/oauth2/v2.0/authorize",
				"issuer": base + "/v2.0", "jwks_uri": base + "/discovery/v2.0/keys",
			})
		case mode == "redirect":
			// 307 keeps the method and body: an https to http downgrade.
			http.Redirect(w, r, h.thief.URL+r.URL.Path, http.StatusTemporaryRedirect)
		default:
			http.Error(w, "unexpected", http.StatusTeapot)
		}
	}))
	t.Cleanup(h.authority.Close)
	return h
}

// source is a client-secret identity of the hostile authority, with it
// alone on the allow-list.
func (h *hostileAuthority) source(t *testing.T) Source {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, names.SecretKeyClientSecret), []byte("the-client-secret"), 0o600))
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.authority.Certificate().Raw})
	up, err := NewHTTPClient(ca)
	require.NoError(t, err)
	id := sidecarconfig.Identity{Name: "sp", Namespace: "ns", Source: names.TokenSourceClientSecret, ClientID: "c", TenantID: "tenant",
		AuthorityHost: h.authority.URL + "/", DisableInstanceDiscovery: true, SecretDir: dir, SecretName: "sp"}
	src, err := LoadSource(id, SourceOptions{Transport: up, AllowedAuthorityHosts: []string{h.authority.URL}})
	require.NoError(t, err)
	return src
}

// TestUpstreamRefusesForeignTokenEndpoint: OpenID metadata that names a
// token_endpoint off the allow-list gets no request there, and the error
// says why and is not retried.
func TestUpstreamRefusesForeignTokenEndpoint(t *testing.T) {
	h := startHostileAuthority(t, "token_endpoint")
	_, err := h.source(t).Token(context.Background(), "https://vault.azure.net/.default")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUpstreamNotAllowed)
	assert.False(t, isTemporary(err), "a refused host is refused again: no retry")
	assert.Contains(t, err.Error(), "AzureIdentity ns/sp would send a request to "+h.thief.URL)
	assert.Contains(t, err.Error(), "--allowed-authority-hosts")
	assert.Zero(t, h.stolen.Load(), "the foreign token endpoint received the request")
}

// TestUpstreamFollowsNoRedirect: a token endpoint that redirects (here
// https to http, with the POST body) is not followed.
func TestUpstreamFollowsNoRedirect(t *testing.T) {
	h := startHostileAuthority(t, "redirect")
	_, err := h.source(t).Token(context.Background(), "https://vault.azure.net/.default")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUpstreamRedirect)
	assert.False(t, isTemporary(err), "a redirect comes again: no retry")
	assert.Contains(t, err.Error(), "redirected to "+h.thief.URL)
	assert.Zero(t, h.stolen.Load(), "the redirect was followed")
}
