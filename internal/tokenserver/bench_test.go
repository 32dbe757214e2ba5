package tokenserver

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// newBenchServer is a server with one identity whose source never fails,
// logging JSON to io.Discard so that the log line's cost is counted.
func newBenchServer(b *testing.B) *Server {
	b.Helper()
	cfg := &sidecarconfig.Config{
		APIVersion: sidecarconfig.APIVersion, Port: names.DefaultTokenPort, DefaultIdentity: "id",
		Identities: []sidecarconfig.Identity{{Name: "id", Namespace: "ns", Source: names.TokenSourceClientSecret,
			ClientID: "11111111-2222-3333-4444-555555555555", TenantID: "t", SecretDir: "/s"}},
	}
	srv, err := New(Options{
		Config:         cfg,
		Sources:        map[string]Source{"id": &fakeSource{now: time.Now, lifetime: time.Hour}},
		IdentityHeader: testSecret,
		Logger:         slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	return srv
}

func benchRequest(path string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Host = "127.0.0.1:" + strconv.Itoa(names.DefaultTokenPort)
	r.Header.Set(names.HeaderIdentity, testSecret)
	r.Header.Set(names.HeaderMetadata, "true")
	return r
}

// BenchmarkHandlerCached is the cost of one cached App Service token
// request inside the handler: parse, authenticate, select, cache lookup,
// JSON response and the log line. No network.
func BenchmarkHandlerCached(b *testing.B) {
	for name, path := range map[string]string{
		"appService": "/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net",
		"imds":       "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&client_id=11111111-2222-3333-4444-555555555555",
	} {
		b.Run(name, func(b *testing.B) {
			srv := newBenchServer(b)
			req := benchRequest(path)
			srv.ServeHTTP(httptest.NewRecorder(), req) // warm the cache
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

// BenchmarkHandlerCachedParallel is the same on all cores, to show
// contention on the cache's lock.
func BenchmarkHandlerCachedParallel(b *testing.B) {
	srv := newBenchServer(b)
	path := "/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net"
	srv.ServeHTTP(httptest.NewRecorder(), benchRequest(path))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := benchRequest(path)
		for pb.Next() {
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}
