package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
)

// tokenServer answers App Service token requests as the sidecar does,
// counting them and the connections they came on, and fails the request
// numbered failAt (1-based; 0 never).
func tokenServer(t *testing.T, failAt int64) (srv *httptest.Server, requests, conns *atomic.Int64) {
	t.Helper()
	requests, conns = &atomic.Int64{}, &atomic.Int64{}
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		switch {
		case r.URL.Path != names.PathAppService || r.URL.Query().Get("resource") != storageResource || r.URL.Query().Get("api-version") != "2019-08-01":
			http.Error(w, "bad request "+r.URL.String(), http.StatusBadRequest)
		case r.Header.Get(names.HeaderIdentity) != "the-header":
			http.Error(w, "no header", http.StatusUnauthorized)
		case n == failAt:
			http.Error(w, "upstream down", http.StatusInternalServerError)
		default:
			fmt.Fprint(w, `{"access_token":"eyJ.e30.sig","expires_on":"1700000000","resource":"https://storage.azure.com","token_type":"Bearer"}`)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, requests, conns
}

func TestRequestTokens(t *testing.T) {
	t.Run("every request succeeds", func(t *testing.T) {
		srv, requests, conns := tokenServer(t, 0)
		require.NoError(t, requestTokens(context.Background(), 50, srv.URL+names.PathAppService, "the-header"))
		assert.Equal(t, int64(50), requests.Load())
		assert.Equal(t, int64(1), conns.Load(), "one keep-alive connection carries them all")
	})
	t.Run("the first failure stops the run and is counted", func(t *testing.T) {
		srv, requests, _ := tokenServer(t, 7)
		err := requestTokens(context.Background(), 50, srv.URL+names.PathAppService, "the-header")
		require.Error(t, err)
		assert.ErrorContains(t, err, "token request 7 of 50")
		assert.ErrorContains(t, err, "(6 succeeded)")
		assert.Equal(t, int64(7), requests.Load())
	})
	t.Run("a wrong header fails", func(t *testing.T) {
		srv, _, _ := tokenServer(t, 0)
		assert.ErrorContains(t, requestTokens(context.Background(), 1, srv.URL+names.PathAppService, "another"), "401")
	})
	t.Run("an answer without a token fails", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{}`) }))
		t.Cleanup(srv.Close)
		assert.ErrorContains(t, requestTokens(context.Background(), 1, srv.URL, "the-header"), "without an access_token")
	})
	t.Run("not injected", func(t *testing.T) {
		assert.ErrorContains(t, requestTokens(context.Background(), 1, "", ""), names.EnvIdentityEndpoint)
	})
}

func TestConfigValidate(t *testing.T) {
	tests := map[string]struct {
		cfg     Config
		wantErr bool
	}{
		"the seed's app":    {cfg: Config{}},
		"idle":              {cfg: Config{Idle: true}},
		"token requests":    {cfg: Config{TokenRequests: 10_000}},
		"both modes":        {cfg: Config{Idle: true, TokenRequests: 1}, wantErr: true},
		"negative requests": {cfg: Config{TokenRequests: -1}, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := tc.cfg.Validate(); tc.wantErr {
				assert.Error(t, err)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}
