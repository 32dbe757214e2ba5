package tokenserver

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
	"github.com/podidentity/injector/test/fakeaad"
)

// TestRefusals covers every request the server must turn away, with the
// status the SDKs expect and a message that says what to do.
func TestRefusals(t *testing.T) {
	p := newPod(t, "")
	r := startServer(t, p)
	good := func() http.Header { return http.Header{names.HeaderIdentity: {p.IdentityHeader}} }
	res := url.QueryEscape(uniqueResource(t))
	cases := []struct {
		name     string
		method   string
		target   string
		header   http.Header
		status   int
		code     string
		contains string
	}{
		{"missing identity header", "GET", "/msi/token?api-version=2019-08-01&resource=" + res, nil,
			401, "unauthorized", "X-IDENTITY-HEADER header is missing; send the value of the IDENTITY_HEADER"},
		{"wrong identity header", "GET", "/msi/token?api-version=2019-08-01&resource=" + res,
			http.Header{names.HeaderIdentity: {p.IdentityHeader + "x"}}, 401, "unauthorized", "X-IDENTITY-HEADER header is wrong"},
		{"empty identity header", "GET", "/msi/token?api-version=2019-08-01&resource=" + res,
			http.Header{names.HeaderIdentity: {""}}, 401, "unauthorized", "is wrong"},
		{"identity header twice", "GET", "/msi/token?api-version=2019-08-01&resource=" + res,
			http.Header{names.HeaderIdentity: {p.IdentityHeader, p.IdentityHeader}}, 401, "unauthorized", "is wrong"},
		{"X-Forwarded-For", "GET", "/msi/token?api-version=2019-08-01&resource=" + res,
			http.Header{names.HeaderIdentity: {p.IdentityHeader}, "X-Forwarded-For": {"10.0.0.1"}}, 403, "forbidden", "X-Forwarded-For"},
		{"X-Forwarded-For on IMDS", "GET", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + res,
			http.Header{"Metadata": {"true"}, "X-Forwarded-For": {""}}, 403, "forbidden", "X-Forwarded-For"},
		{"Forwarded", "GET", "/msi/token?api-version=2019-08-01&resource=" + res,
			http.Header{names.HeaderIdentity: {p.IdentityHeader}, "Forwarded": {"for=10.0.0.1"}}, 403, "forbidden", "Forwarded header"},
		{"missing Metadata header", "GET", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + res, nil,
			401, "unauthorized", "Metadata: true header is missing"},
		{"Metadata false", "GET", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + res,
			http.Header{"Metadata": {"false"}}, 401, "unauthorized", "Metadata: true"},
		{"no resource", "GET", "/msi/token?api-version=2019-08-01", good(),
			400, "invalid_request", "query parameter resource is missing"},
		{"no resource on IMDS", "GET", "/metadata/identity/oauth2/token?api-version=2018-02-01", http.Header{"Metadata": {"true"}},
			400, "invalid_request", "resource is missing"},
		{"resource with a space", "GET", "/msi/token?api-version=2019-08-01&resource=a%20b", good(),
			400, "invalid_request", "spaces or control characters"},
		{"resource twice", "GET", "/msi/token?api-version=2019-08-01&resource=a&resource=b", good(),
			400, "invalid_request", "resource is given 2 times"},
		{"no api-version", "GET", "/msi/token?resource=" + res, good(),
			400, "invalid_request", "api-version is missing; use 2019-08-01"},
		{"old App Service api-version", "GET", "/msi/token?api-version=2017-09-01&resource=" + res, good(),
			400, "invalid_request", `api-version "2017-09-01" is not supported on /msi/token; use 2019-08-01`},
		{"IMDS api-version too old", "GET", "/metadata/identity/oauth2/token?api-version=2017-12-01&resource=" + res, http.Header{"Metadata": {"true"}},
			400, "invalid_request", "use 2018-02-01 or later"},
		{"malformed query", "GET", "/msi/token?api-version=2019-08-01&resource=%zz", good(),
			400, "invalid_request", "query string is malformed"},
		{"two selectors", "GET", "/msi/token?api-version=2019-08-01&resource=" + res + "&client_id=a&mi_res_id=b", good(),
			400, "invalid_request", "both client_id and mi_res_id select an identity"},
		{"client_id not bound", "GET", "/msi/token?api-version=2019-08-01&resource=" + res + "&client_id=11111111-2222-3333-4444-555555555555", good(),
			404, "identity_not_found", `no identity with client_id "11111111-2222-3333-4444-555555555555" is bound to this pod; bound: default/cert-p12-identity`},
		{"mi_res_id not bound", "GET", "/msi/token?api-version=2019-08-01&resource=" + res + "&mi_res_id=%2Fsubscriptions%2Fx", good(),
			404, "identity_not_found", "AzureIdentityBinding"},
		{"object_id", "GET", "/msi/token?api-version=2019-08-01&resource=" + res + "&object_id=11111111-2222-3333-4444-555555555555", good(),
			404, "identity_not_found", "selecting an identity by object_id is not supported"},
		{"principal_id", "GET", "/msi/token?api-version=2019-08-01&resource=" + res + "&principal_id=11111111-2222-3333-4444-555555555555", good(),
			404, "identity_not_found", "select it with client_id=<clientID of the AzureIdentity>"},
		{"unknown path", "GET", "/metadata/instance?api-version=2021-02-01", http.Header{"Metadata": {"true"}},
			404, "not_found", "tokens are served at /msi/token and /metadata/identity/oauth2/token"},
		{"POST to the token path", "POST", "/msi/token?api-version=2019-08-01&resource=" + res, good(),
			405, "invalid_request", "method POST is not allowed; use GET"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, r.url+tc.target, nil)
			require.NoError(t, err)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp := r.do(t, req)
			assert.Equal(t, tc.status, resp.status)
			assert.Equal(t, tc.code, resp.str("error"))
			assert.Contains(t, resp.str("error_description"), tc.contains)
			assert.Len(t, resp.body, 2, "errors are exactly {error, error_description}")
		})
	}
	assert.Zero(t, p.AAD.Counts().Token, "no refusal may reach Entra ID")
}

// TestHealthz answers the probe without touching the upstream.
func TestHealthz(t *testing.T) {
	p := newPod(t, "")
	p.AAD.SetMode(fakeaad.ModeServerError)
	r := startServer(t, p)
	resp := r.get(t, names.PathHealth, nil)
	assert.Equal(t, http.StatusOK, resp.status)
	assert.Equal(t, "ok", resp.str("status"))
	assert.Zero(t, p.AAD.Counts().Token+p.AAD.Counts().Metadata)
}

// TestLimits checks header size caps and that the server refuses oversized
// requests before any handler runs.
func TestLimits(t *testing.T) {
	p := newPod(t, "")
	r := startServer(t, p)
	req, err := http.NewRequest(http.MethodGet, r.url+names.PathHealth, nil)
	require.NoError(t, err)
	req.Header.Set("X-Padding", strings.Repeat("a", 64<<10))
	resp, err := r.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}

// TestUpstreamFailures makes Entra ID refuse, fail and hang: the client gets
// a clear JSON error naming the identity and the upstream's reason, and no
// goroutine outlives the server.
func TestUpstreamFailures(t *testing.T) {
	cases := []struct {
		name     string
		mode     fakeaad.Mode
		status   int
		code     string
		contains []string
		attempts int
	}{
		{"400 from Entra ID", fakeaad.ModeBadRequest, 500, "upstream_refused",
			[]string{"AzureIdentity default/secret-identity (source clientSecret", "from Entra ID: HTTP 400 from https://127.0.0.1:", "invalid_request: AADSTS90000"}, 1},
		{"500 from Entra ID", fakeaad.ModeServerError, 503, "temporarily_unavailable",
			[]string{"AzureIdentity default/secret-identity", "HTTP 500", "server_error: AADSTS90033"}, 2},
		{"Entra ID hangs", fakeaad.ModeHang, 503, "temporarily_unavailable",
			[]string{"AzureIdentity default/secret-identity", "context deadline exceeded"}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Cleanups run last-in first-out: this one runs after the
			// server and the fakes are gone.
			before := runtime.NumGoroutine()
			t.Cleanup(func() { checkNoLeak(t, before) })
			func() {
				p := newPod(t, fakeaad.IdentitySecret)
				r := startServer(t, p, withCache(CacheOptions{AttemptTimeout: 300 * time.Millisecond, MaxAttempts: 2, RetryDelay: 10 * time.Millisecond}))
				p.AAD.SetMode(tc.mode)
				resp := r.appService(t, p, url.Values{"resource": {uniqueResource(t)}})
				assert.Equal(t, tc.status, resp.status)
				assert.Equal(t, tc.code, resp.str("error"))
				for _, c := range tc.contains {
					assert.Contains(t, resp.str("error_description"), c)
				}
				assert.Equal(t, tc.attempts, p.AAD.Counts().Token, "attempts: a refusal is not retried, a temporary failure is, boundedly")

				// Within the backoff window the failure is answered from
				// memory, without another upstream call.
				resp = r.appService(t, p, url.Values{"resource": {resp.str("resource")}})
				assert.Equal(t, tc.attempts, p.AAD.Counts().Token)
				_ = resp
			}()
		})
	}
}

// checkNoLeak waits for the goroutine count to come back to before, and
// prints the stacks when it does not.
func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines leaked:\n%s", runtime.NumGoroutine()-before, buf[:n])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCoalescing sends 200 concurrent requests for a resource nobody asked
// for yet: exactly one token request reaches Entra ID.
func TestCoalescing(t *testing.T) {
	p := newPod(t, fakeaad.IdentitySecret)
	r := startServer(t, p)
	resource := uniqueResource(t)
	release := p.AAD.Hold()
	defer release()

	const n = 200
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	tokens := make([]string, n)
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, r.url+"/msi/token?api-version=2019-08-01&resource="+url.QueryEscape(resource), nil)
			req.Header.Set(names.HeaderIdentity, p.IdentityHeader)
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			statuses[i] = resp.StatusCode
			tokens[i], _ = body["access_token"].(string)
		})
	}
	// All 200 must be waiting on the one upstream call before it answers,
	// so that none is served from a warm cache.
	eventually(t, "200 requests waiting on one upstream call", func() bool {
		return r.srv.cache.waiting.Load() == n && p.AAD.Pending() == 1
	})
	release()
	wg.Wait()
	for i := range n {
		require.Equal(t, http.StatusOK, statuses[i], "request %d", i)
		require.Equal(t, tokens[0], tokens[i], "request %d got another token", i)
	}
	assert.Equal(t, 1, p.AAD.Counts().Token)
	assert.Equal(t, 1, p.AAD.Counts().Issued)
}

// TestServesCachedTokenWhileUpstreamDown: once Entra ID fails, the cached
// token is served until it is about to expire, then the failure shows.
func TestServesCachedTokenWhileUpstreamDown(t *testing.T) {
	clock := newFakeClock()
	p := newPod(t, fakeaad.IdentitySecret)
	r := startServer(t, p, withClock(clock), withCache(CacheOptions{MaxAttempts: 2, RetryDelay: time.Millisecond}))
	q := url.Values{"resource": {uniqueResource(t)}}

	first := r.appService(t, p, q)
	require.Equal(t, http.StatusOK, first.status, first.body)
	p.AAD.SetMode(fakeaad.ModeServerError)

	// Past the refresh time (half the hour): served from memory, and a
	// background renewal fails.
	clock.Advance(40 * time.Minute)
	resp := r.appService(t, p, q)
	require.Equal(t, http.StatusOK, resp.status, resp.body)
	assert.Equal(t, first.str("access_token"), resp.str("access_token"))
	assert.NotContains(t, resp.body, "refresh_in", "no refresh hint once past the refresh time")
	eventually(t, "the background renewal to fail twice", func() bool {
		return p.AAD.Counts().Token == 3 && r.srv.cache.idle(fakeaad.IdentitySecret, q.Get("resource"))
	})

	clock.Advance(10 * time.Minute)
	resp = r.appService(t, p, q)
	require.Equal(t, http.StatusOK, resp.status, resp.body)
	assert.Equal(t, first.str("access_token"), resp.str("access_token"))
	eventually(t, "the next renewal to fail", func() bool { return r.srv.cache.idle(fakeaad.IdentitySecret, q.Get("resource")) })

	// Past expiry (minus the margin) nothing valid is left.
	clock.Advance(10 * time.Minute)
	resp = r.appService(t, p, q)
	assert.Equal(t, http.StatusServiceUnavailable, resp.status)
	assert.Contains(t, resp.str("error_description"), "HTTP 500")

	// Recovery is covered by the cache tests: the fake clock is now past
	// any token Entra ID could issue, whose expiry azidentity computes from
	// the real clock.
}

// TestRefreshAheadThroughServer renews a token in the background before it
// expires; the next client sees the new token, and none sees an expired one.
func TestRefreshAheadThroughServer(t *testing.T) {
	clock := newFakeClock()
	p := newPod(t, fakeaad.IdentityCertPEM)
	r := startServer(t, p, withClock(clock))
	q := url.Values{"resource": {uniqueResource(t)}}

	first := r.appService(t, p, q)
	require.Equal(t, http.StatusOK, first.status, first.body)
	assert.InDelta(t, 30*60, first.body["refresh_in"], 5, "refresh half way through the hour")

	clock.Advance(31 * time.Minute)
	stale := r.appService(t, p, q)
	assert.Equal(t, first.str("access_token"), stale.str("access_token"), "served while renewing")
	eventually(t, "background renewal", func() bool {
		return p.AAD.Counts().Issued == 2 && r.srv.cache.idle(fakeaad.IdentityCertPEM, q.Get("resource"))
	})

	fresh := r.appService(t, p, q)
	require.Equal(t, http.StatusOK, fresh.status)
	assert.NotEqual(t, first.str("access_token"), fresh.str("access_token"))
	assert.Equal(t, 2, p.AAD.Counts().Token)
}

// TestLogs captures every log line of a run with successes and failures:
// one line per request with the agreed fields, and no token or secret
// anywhere.
func TestLogs(t *testing.T) {
	p := newPod(t, fakeaad.IdentityFederated)
	r := startServer(t, p)
	var tokens []string
	for _, name := range fakeaad.PodIdentities {
		resp := r.appService(t, p, url.Values{"resource": {uniqueResource(t)}, "client_id": {p.Identity(name).ClientID}})
		require.Equal(t, http.StatusOK, resp.status, resp.body)
		tokens = append(tokens, resp.str("access_token"))
	}
	resp := r.get(t, "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net", http.Header{"Metadata": {"true"}})
	require.Equal(t, http.StatusOK, resp.status)
	tokens = append(tokens, resp.str("access_token"))
	// A cache hit, a wrong header that shares a prefix with the secret, a
	// forwarded request and an upstream failure.
	r.appService(t, p, url.Values{"resource": {"https://vault.azure.net"}})
	r.get(t, "/msi/token?api-version=2019-08-01&resource=x", http.Header{names.HeaderIdentity: {p.IdentityHeader[:8]}})
	r.get(t, "/msi/token?api-version=2019-08-01&resource=x", http.Header{names.HeaderIdentity: {p.IdentityHeader}, "X-Forwarded-For": {"1.2.3.4"}})
	p.AAD.SetMode(fakeaad.ModeBadRequest)
	r.appService(t, p, url.Values{"resource": {uniqueResource(t)}})

	logs := r.logs.String()
	for _, secret := range append(tokens, p.IdentityHeader, p.ClientSecret, p.ServiceAccountToken) {
		require.NotEmpty(t, secret)
		assert.NotContains(t, logs, secret)
		// A JWT's signature alone would be a leak too.
		if i := strings.LastIndexByte(secret, '.'); i > 0 {
			assert.NotContains(t, logs, secret[i+1:])
		}
	}

	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var l map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), sc.Text())
		if l["msg"] == "token request" {
			lines = append(lines, l)
		}
	}
	require.Len(t, lines, 10, "one line per token request")
	for _, l := range lines {
		for _, k := range []string{"path", "identity", "resource", "status", "cacheHit", "latency"} {
			assert.Contains(t, l, k)
		}
	}
	assert.Equal(t, "default/fed-identity", lines[6]["identity"])
	assert.Equal(t, true, lines[6]["cacheHit"])
	assert.Equal(t, float64(401), lines[7]["status"])
	assert.Equal(t, float64(403), lines[8]["status"])
	assert.Equal(t, float64(500), lines[9]["status"])
	assert.Equal(t, "ERROR", lines[9]["level"])
}

// TestNewRejects names what is wrong with a server's options.
func TestNewRejects(t *testing.T) {
	p := newPod(t, "")
	_, err := New(Options{Config: p.Config, Sources: map[string]Source{}, IdentityHeader: "x"})
	require.ErrorContains(t, err, `no source for identity "fed-identity"`)
	_, err = New(Options{Config: p.Config})
	require.ErrorIs(t, err, ErrNoIdentityHeader)
}

// TestServeReturnsListenerErrors: a closed listener is an error, not a
// panic or a hang.
func TestServeReturnsListenerErrors(t *testing.T) {
	p := newPod(t, "")
	srv, err := New(Options{Config: p.Config, Sources: map[string]Source{
		fakeaad.IdentityFederated: &fakeSource{}, fakeaad.IdentityIMDS: &fakeSource{}, fakeaad.IdentitySecret: &fakeSource{},
		fakeaad.IdentityCertPEM: &fakeSource{}, fakeaad.IdentityCertP12: &fakeSource{},
	}, IdentityHeader: "x"})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	err = srv.Serve(context.Background(), ln)
	require.ErrorIs(t, err, net.ErrClosed)
}

// TestShutdownCutsOffWaitingRequests: a request still waiting on a hung
// upstream when the shutdown deadline passes is cut off, and Serve returns
// without error.
func TestShutdownCutsOffWaitingRequests(t *testing.T) {
	p := newPod(t, fakeaad.IdentitySecret)
	p.AAD.SetMode(fakeaad.ModeHang)
	up, err := NewHTTPClient(p.AAD.CAPEM())
	require.NoError(t, err)
	defer up.CloseIdleConnections()
	sources := map[string]Source{}
	for _, id := range p.Config.Identities {
		sources[id.Name] = &fakeSource{}
	}
	sources[fakeaad.IdentitySecret], err = LoadSource(p.Identity(fakeaad.IdentitySecret), SourceOptions{Transport: up, AllowedAuthorityHosts: p.Config.AllowedAuthorities()})
	require.NoError(t, err)
	srv, err := New(Options{Config: p.Config, Sources: sources, IdentityHeader: p.IdentityHeader, ShutdownTimeout: 50 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	reqDone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/msi/token?api-version=2019-08-01&resource=r", nil)
		req.Header.Set(names.HeaderIdentity, p.IdentityHeader)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		reqDone <- err
	}()
	eventually(t, "the request to wait on Entra ID", func() bool { return p.AAD.Pending() == 1 })
	cancel()
	require.NoError(t, <-done)
	require.Error(t, <-reqDone, "the waiting request is cut off")
}

// TestSelectIdentity covers selection rules that need no upstream.
func TestSelectIdentity(t *testing.T) {
	id := func(name, clientID, resID string) sidecarconfig.Identity {
		return sidecarconfig.Identity{Name: name, Namespace: "ns", Source: names.TokenSourceIMDS, ClientID: clientID, ResourceID: resID}
	}
	cfg := &sidecarconfig.Config{APIVersion: sidecarconfig.APIVersion, Port: 1, DefaultIdentity: "b", Identities: []sidecarconfig.Identity{
		id("a", "SHARED", ""), id("b", "shared", ""), id("c", "other", "/Subscriptions/S/rg/X"),
	}}
	srv, err := New(Options{Config: cfg, IdentityHeader: "x", Sources: map[string]Source{"a": &fakeSource{}, "b": &fakeSource{}, "c": &fakeSource{}}})
	require.NoError(t, err)
	defer srv.Close()
	cases := []struct {
		key, value, want string
	}{
		{"", "", "b"},
		{paramClientID, "shared", "b"},
		{paramClientID, "OTHER", "c"},
		{paramMIResID, "/subscriptions/s/RG/x", "c"},
		{paramMSIResID, "/subscriptions/s/rg/x", "c"},
	}
	for _, tc := range cases {
		got, e := srv.selectIdentity(tokenRequest{selectorKey: tc.key, selectorValue: tc.value}, nil)
		require.Nil(t, e, "%s=%s", tc.key, tc.value)
		assert.Equal(t, tc.want, got.cfg.Name, "%s=%s", tc.key, tc.value)
	}
}

// TestRoutes pins the route table, which alone decides a request's
// protocol: each token path reaches its own protocol (seen in the
// api-version it asks for), the IMDS path with a trailing slash too, and
// nothing below either; every other method, and GET on the slash form of
// a path served without one, gets 405 with Allow: GET; any other path,
// an encoded slash included, gets 404.
func TestRoutes(t *testing.T) {
	cfg := &sidecarconfig.Config{APIVersion: sidecarconfig.APIVersion, Port: testPort, DefaultIdentity: "id",
		Identities: []sidecarconfig.Identity{{Name: "id", Namespace: "ns", Source: names.TokenSourceClientSecret, ClientID: "c", TenantID: "t", SecretDir: "/s"}}}
	src := &fakeSource{now: time.Now, lifetime: time.Hour}
	srv, err := New(Options{Config: cfg, Sources: map[string]Source{"id": src}, IdentityHeader: testSecret, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	const (
		appServiceRoute = "api-version is missing; use " + appServiceAPIVersion
		imdsRoute       = "api-version is missing; use " + oldestIMDSAPIVersion
	)
	cases := []struct {
		method, path string
		status       int
		contains     string // of error_description; empty for a 200
	}{
		{"GET", names.PathAppService, 400, appServiceRoute},
		{"HEAD", names.PathAppService, 400, ""},
		{"GET", names.PathIMDS, 400, imdsRoute},
		{"GET", names.PathIMDS + "/", 400, imdsRoute},
		{"GET", names.PathHealth, 200, ""},
		{"POST", names.PathAppService, 405, "method POST is not allowed; use GET"},
		{"PUT", names.PathIMDS, 405, "method PUT is not allowed; use GET"},
		{"DELETE", names.PathIMDS + "/", 405, "method DELETE is not allowed; use GET"},
		{"POST", names.PathHealth, 405, "method POST is not allowed; use GET"},
		{"GET", names.PathAppService + "/", 405, "method GET is not allowed; use GET"},
		{"GET", names.PathHealth + "/", 405, "method GET is not allowed; use GET"},
		{"GET", names.PathIMDS + "/x", 404, "no endpoint at"},
		{"GET", names.PathAppService + "/x", 404, "no endpoint at"},
		{"GET", "/metadata/identity/oauth2", 404, "no endpoint at"},
		{"GET", "/msi%2Ftoken", 404, "no endpoint at"},
		{"POST", "/", 404, "no endpoint at"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "http://127.0.0.1:8181"+tc.path, nil)
			r.Header.Set(names.HeaderIdentity, testSecret)
			r.Header.Set(names.HeaderMetadata, "true")
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, r)
			require.Equal(t, tc.status, w.Code, "%s", w.Body)
			if tc.status == http.StatusMethodNotAllowed {
				assert.Equal(t, http.MethodGet, w.Header().Get("Allow"))
			}
			if tc.contains == "" || tc.method == http.MethodHead {
				return
			}
			var body map[string]string
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
			assert.Contains(t, body["error_description"], tc.contains)
		})
	}
	assert.Zero(t, src.calls, "no route but a token request's may reach the source")
}
