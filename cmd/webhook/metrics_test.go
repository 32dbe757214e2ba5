package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// fakeReviews stands in for the API server's TokenReview and
// SubjectAccessReview: token "reader" is a caller bound to the
// metrics-reader role, token "other" is authenticated but not allowed.
func fakeReviews(t *testing.T) *httptest.Server {
	t.Helper()
	const reader = "system:serviceaccount:monitoring:prometheus"
	mux := http.NewServeMux()
	mux.HandleFunc("POST /apis/authentication.k8s.io/v1/tokenreviews", func(w http.ResponseWriter, r *http.Request) {
		var tr authenticationv1.TokenReview
		if err := json.NewDecoder(r.Body).Decode(&tr); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch tr.Spec.Token {
		case "reader":
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: reader}}
		case "other":
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: "someone-else"}}
		}
		tr.APIVersion, tr.Kind = "authentication.k8s.io/v1", "TokenReview"
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(tr)
	})
	mux.HandleFunc("POST /apis/authorization.k8s.io/v1/subjectaccessreviews", func(w http.ResponseWriter, r *http.Request) {
		var sar authorizationv1.SubjectAccessReview
		if err := json.NewDecoder(r.Body).Decode(&sar); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		na := sar.Spec.NonResourceAttributes
		sar.Status.Allowed = sar.Spec.User == reader && na != nil && na.Path == "/metrics" && na.Verb == "get"
		sar.APIVersion, sar.Kind = "authorization.k8s.io/v1", "SubjectAccessReview"
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(sar)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestMetricsServerSecure runs controller-runtime's metrics server with the
// webhook's options: over a real TLS connection, a scrape without a token
// is 401, one whose caller may not get /metrics is 403, the reader gets the
// metrics, and HTTP/2 is not offered.
func TestMetricsServerSecure(t *testing.T) {
	api := fakeReviews(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	cfg, err := parse(t, "--sidecar-image=x", "--metrics-bind-address="+addr)
	require.NoError(t, err)
	restCfg := &rest.Config{Host: api.URL}
	httpClient, err := rest.HTTPClientFor(restCfg)
	require.NoError(t, err)
	srv, err := metricsserver.NewServer(metricsOptions(cfg), restCfg, httpClient)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()

	client := &http.Client{Transport: &http.Transport{
		// The serving certificate is self-signed here; the token is what
		// the endpoint checks.
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}, //nolint:gosec // a self-signed serving certificate on loopback; the test is about the bearer token
		ForceAttemptHTTP2: true,
	}}
	scrape := func(token string) *http.Response {
		req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		var resp *http.Response
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if resp, err = client.Do(req); err == nil || time.Now().After(deadline) {
				break
			}
		}
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp
	}
	// controller-runtime's filter answers 500 for a token the API server
	// does not know ("invalid bearer token"); what matters is the refusal.
	const refused = 0
	for token, want := range map[string]int{"": http.StatusUnauthorized, "unknown": refused, "other": http.StatusForbidden, "reader": http.StatusOK} {
		t.Run(fmt.Sprintf("token %q", token), func(t *testing.T) {
			resp := scrape(token) //nolint:bodyclose // scrape closed it; only the status line and TLS state are read
			if want == refused {
				assert.GreaterOrEqual(t, resp.StatusCode, 400)
			} else {
				assert.Equal(t, want, resp.StatusCode)
			}
			assert.Equal(t, "HTTP/1.1", resp.Proto, "HTTP/2 is off")
			require.NotNil(t, resp.TLS)
		})
	}
}
