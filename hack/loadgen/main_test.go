package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckLoopback(t *testing.T) {
	cases := map[string]bool{
		"http://127.0.0.1:8181/msi/token": true,
		"http://localhost:8181/msi/token": true,
		"http://[::1]:8181/msi/token":     true,
		"http://10.0.0.1:8181/msi/token":  false,
		"https://127.0.0.1:8181/":         false,
		"http://example.com/":             false,
		"http://127.0.0.1.example.com/":   false,
	}
	for u, ok := range cases {
		t.Run(u, func(t *testing.T) {
			err := checkLoopback(u)
			assert.Equal(t, ok, err == nil, "%v", err)
		})
	}
}

// TestLoad runs a small bounded load, closed-loop and at a fixed rate,
// against a loopback server and checks the counts and headers.
func TestLoad(t *testing.T) {
	var mu sync.Mutex
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.URL, cfg.IdentityHeader, cfg.Requests, cfg.Workers = srv.URL+"/msi/token", "secret", 200, 4
	res, err := load(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, 200, res.Requests)
	assert.Zero(t, res.Errors)
	assert.Len(t, res.Latencies, 200)
	mu.Lock()
	assert.Equal(t, "secret", got.Get("X-Identity-Header"))
	mu.Unlock()

	cfg.Rate, cfg.Requests = 1000, 50
	res, err = load(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, 50, res.Requests)
	// A lower bound only, which a slow machine cannot break: the pacing
	// holds requests back until they are due.
	assert.GreaterOrEqual(t, res.Elapsed, 49*time.Millisecond, "50 requests at 1000/s take at least 49ms")

	cfg.URL, cfg.Rate, cfg.Requests = srv.URL+"/msi/token?fail=1", 0, 10
	res, err = load(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, 10, res.Errors)
	assert.Equal(t, "status 503", res.FirstError)
}

func TestQuantile(t *testing.T) {
	r := Result{Latencies: []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
	assert.Equal(t, time.Duration(1), r.Quantile(0))
	assert.Equal(t, time.Duration(5), r.Quantile(0.5))
	assert.Equal(t, time.Duration(10), r.Quantile(1))
	assert.Zero(t, Result{}.Quantile(0.99))
}
