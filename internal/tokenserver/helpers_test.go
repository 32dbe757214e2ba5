package tokenserver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/fakeaad"
	"github.com/podidentity/injector/test/logbuf"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newPod starts the fakes of one pod with the given default identity.
func newPod(t *testing.T, def string) *fakeaad.Pod {
	t.Helper()
	p, err := fakeaad.NewPod(fakeaad.PodOptions{Dir: t.TempDir(), Default: def})
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

// running is a token server on loopback.
type running struct {
	srv    *Server
	url    string // http://127.0.0.1:port
	logs   *logbuf.Buffer
	client *http.Client
	up     *http.Client // the sidecar's upstream client
}

type serverOption func(*Options)

func withClock(c *fakeClock) serverOption {
	return func(o *Options) { o.Cache.Now = c.Now }
}

func withCache(co CacheOptions) serverOption {
	return func(o *Options) {
		now := o.Cache.Now
		o.Cache = co
		if o.Cache.Now == nil {
			o.Cache.Now = now
		}
	}
}

// startServer loads the pod's sources as the sidecar does and serves them
// on 127.0.0.1 until the test ends.
func startServer(t *testing.T, p *fakeaad.Pod, opts ...serverOption) *running {
	t.Helper()
	up, err := NewHTTPClient(p.AAD.CAPEM())
	require.NoError(t, err)
	so := SourceOptions{Transport: up, IMDSEndpoint: p.IMDS.URL, AllowedAuthorityHosts: p.Config.AllowedAuthorities()}
	sources := map[string]Source{}
	for _, id := range p.Config.Identities {
		src, err := LoadSource(id, so)
		require.NoError(t, err, "load source of %s", id.Name)
		sources[id.Name] = src
	}
	logs := &logbuf.Buffer{}
	o := Options{
		Config:         p.Config,
		Sources:        sources,
		IdentityHeader: p.IdentityHeader,
		Logger:         slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := New(o)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	r := &running{srv: srv, url: "http://" + ln.Addr().String(), logs: logs, client: &http.Client{Transport: &http.Transport{}}, up: up}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		r.client.CloseIdleConnections()
		up.CloseIdleConnections()
	})
	return r
}

// response is a decoded token server answer.
type response struct {
	status int
	body   map[string]any
}

func (r response) str(key string) string {
	s, _ := r.body[key].(string)
	return s
}

// get sends a GET with the given headers.
func (r *running) get(t *testing.T, pathAndQuery string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.url+pathAndQuery, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	return r.do(t, req)
}

func (r *running) do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := r.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"), "body: %s", b)
	var body map[string]any
	require.NoError(t, json.Unmarshal(b, &body), "body: %s", b)
	return response{status: resp.StatusCode, body: body}
}

// appService requests a token the App Service way.
func (r *running) appService(t *testing.T, p *fakeaad.Pod, query url.Values) response {
	t.Helper()
	if !query.Has("api-version") {
		query.Set("api-version", appServiceAPIVersion)
	}
	return r.get(t, names.PathAppService+"?"+query.Encode(), http.Header{names.HeaderIdentity: {p.IdentityHeader}})
}

// uniqueResource returns an audience no other test uses. MSAL keeps managed
// identity tokens in a process-wide cache keyed by client and resource, so
// tests that share a resource could be served from another test's tokens.
// It has no trailing slash, so that a scope is resource + "/.default".
func uniqueResource(t *testing.T) string {
	t.Helper()
	return "https://" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())) + "-" + uuid.NewString()[:8] + ".example.com"
}

// eventually polls cond until it holds or a generous deadline passes. It
// waits for background work; it does not measure speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fakeSource is a scripted Source for cache tests.
type fakeSource struct {
	mu       sync.Mutex
	now      func() time.Time
	lifetime time.Duration
	err      error
	calls    int
	block    chan struct{}
}

func (s *fakeSource) Token(ctx context.Context, scope string) (Token, error) {
	s.mu.Lock()
	s.calls++
	n, err, block := s.calls, s.err, s.block
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return Token{}, classify(ctx.Err())
		}
	}
	if err != nil {
		return Token{}, err
	}
	return Token{AccessToken: scope + "#" + string(rune('A'+n-1)), ExpiresOn: s.now().Add(s.lifetime)}, nil
}

func (s *fakeSource) set(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *fakeSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

var errUpstreamDown = errors.New("upstream is down")
