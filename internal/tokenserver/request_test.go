package tokenserver

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
)

const testSecret = "0123456789abcdef0123456789abcdef"

// testPort is the port podWide's server listens on.
const testPort = 8181

func newRequest(path, rawQuery string, header http.Header) *http.Request {
	return &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path, RawQuery: rawQuery}, Header: header, Host: "127.0.0.1:8181"}
}

// TestParseRequest pins how requests become (protocol, resource, scope,
// selector).
func TestParseRequest(t *testing.T) {
	as := http.Header{http.CanonicalHeaderKey(names.HeaderIdentity): {testSecret}}
	md := http.Header{"Metadata": {"true"}}
	cases := []struct {
		name     string
		path     string
		query    string
		header   http.Header
		want     tokenRequest
		wantCode int
	}{
		{"App Service", "/msi/token", "api-version=2019-08-01&resource=https://vault.azure.net", as,
			tokenRequest{protocol: appService, resource: "https://vault.azure.net", scope: "https://vault.azure.net/.default"}, 0},
		{"trailing slash kept in the scope", "/msi/token", "api-version=2019-08-01&resource=https%3A%2F%2Fmanagement.azure.com%2F", as,
			tokenRequest{protocol: appService, resource: "https://management.azure.com/", scope: "https://management.azure.com//.default"}, 0},
		{"scope passed as resource", "/msi/token", "api-version=2019-08-01&resource=https://storage.azure.com/.default", as,
			tokenRequest{protocol: appService, resource: "https://storage.azure.com/.default", scope: "https://storage.azure.com/.default"}, 0},
		{"GUID resource", "/msi/token", "api-version=2019-08-01&resource=cfa8b339-82a2-471a-a3c9-0fc0be7a4093", as,
			tokenRequest{protocol: appService, resource: "cfa8b339-82a2-471a-a3c9-0fc0be7a4093", scope: "cfa8b339-82a2-471a-a3c9-0fc0be7a4093/.default"}, 0},
		{"client_id", "/msi/token", "api-version=2019-08-01&resource=r&client_id=abc", as,
			tokenRequest{protocol: appService, resource: "r", scope: "r/.default", selectorKey: "client_id", selectorValue: "abc"}, 0},
		{"empty selector means default", "/msi/token", "api-version=2019-08-01&resource=r&client_id=", as,
			tokenRequest{protocol: appService, resource: "r", scope: "r/.default"}, 0},
		{"unknown parameters ignored", "/msi/token", "api-version=2019-08-01&resource=r&bypass_cache=true", as,
			tokenRequest{protocol: appService, resource: "r", scope: "r/.default"}, 0},
		{"IMDS", "/metadata/identity/oauth2/token", "api-version=2018-02-01&resource=r&msi_res_id=%2Fsubscriptions%2Fs", md,
			tokenRequest{protocol: imds, resource: "r", scope: "r/.default", selectorKey: "msi_res_id", selectorValue: "/subscriptions/s"}, 0},
		{"IMDS newer api-version", "/metadata/identity/oauth2/token/", "api-version=2021-02-01&resource=r", http.Header{"Metadata": {"True"}},
			tokenRequest{protocol: imds, resource: "r", scope: "r/.default"}, 0},
		{"IMDS api-version not a date", "/metadata/identity/oauth2/token", "api-version=latest&resource=r", md, tokenRequest{}, 400},
		{"resource too long", "/msi/token", "api-version=2019-08-01&resource=" + strings.Repeat("a", maxResourceLen+1), as, tokenRequest{}, 400},
		{"resource with a newline", "/msi/token", "api-version=2019-08-01&resource=a%0Ab", as, tokenRequest{}, 400},
		{"bare .default", "/msi/token", "api-version=2019-08-01&resource=/.default", as, tokenRequest{}, 400},
		{"selector with a control character", "/msi/token", "api-version=2019-08-01&resource=r&client_id=a%00", as, tokenRequest{}, 400},
		{"other path", "/msi/token2", "", as, tokenRequest{}, 404},
		{"resource with invalid UTF-8", "/msi/token", "api-version=2019-08-01&resource=https%3A%2F%2Fvault%FF.azure.net", as, tokenRequest{}, 400},
		{"selector with invalid UTF-8", "/msi/token", "api-version=2019-08-01&resource=r&client_id=%C3%28", as, tokenRequest{}, 400},
		{"resource in another script", "/msi/token", "api-version=2019-08-01&resource=api%3A%2F%2F%E6%97%A5%E6%9C%AC", as,
			tokenRequest{protocol: appService, resource: "api://日本", scope: "api://日本/.default"}, 0},
		{"Metadata twice", "/metadata/identity/oauth2/token", "api-version=2018-02-01&resource=r", http.Header{"Metadata": {"true", "true"}}, tokenRequest{}, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRequest(newRequest(tc.path, tc.query, tc.header), podWide(testSecret))
			if tc.wantCode != 0 {
				require.NotNil(t, err)
				assert.Equal(t, tc.wantCode, err.status)
				return
			}
			require.Nil(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestParseRequestLocalOnly: only a process of the pod, talking straight to
// the loopback port, gets a token. A browser (DNS rebinding, another Host,
// Origin, Sec-Fetch-*) or a relaying proxy (Forwarded, Via, X-Real-IP,
// X-Forwarded-*) is refused with 403 on both paths, with a JSON error that
// says why.
func TestParseRequestLocalOnly(t *testing.T) {
	paths := map[string]struct {
		path, query string
		header      http.Header
	}{
		"App Service": {"/msi/token", "api-version=2019-08-01&resource=r", http.Header{http.CanonicalHeaderKey(names.HeaderIdentity): {testSecret}}},
		"IMDS":        {"/metadata/identity/oauth2/token", "api-version=2018-02-01&resource=r", http.Header{"Metadata": {"true"}}},
	}
	tests := []struct {
		name   string
		host   string
		header string // added with a value, when not empty
		want   string // substring of the refusal; empty: accepted
	}{
		{name: "127.0.0.1", host: "127.0.0.1:8181"},
		{name: "localhost", host: "localhost:8181"},
		{name: "localhost upper case", host: "LOCALHOST:8181"},
		{name: "ipv6 loopback", host: "[::1]:8181"},
		{name: "rebound name", host: "attacker.example:8181", want: `Host "attacker.example:8181" is refused`},
		{name: "no port", host: "127.0.0.1", want: "Host"},
		{name: "other port", host: "127.0.0.1:8182", want: "Host"},
		{name: "pod IP", host: "10.0.0.7:8181", want: "Host"},
		{name: "empty host", host: "", want: "Host"},
		{name: "origin", host: "127.0.0.1:8181", header: "Origin", want: "Origin header"},
		{name: "sec-fetch-site", host: "127.0.0.1:8181", header: "Sec-Fetch-Site", want: "Sec-Fetch-Site header"},
		{name: "sec-fetch-mode", host: "127.0.0.1:8181", header: "sec-fetch-mode", want: "Sec-Fetch-Mode header"},
		{name: "via", host: "127.0.0.1:8181", header: "Via", want: "Via header"},
		{name: "x-real-ip", host: "127.0.0.1:8181", header: "X-Real-IP", want: "X-Real-Ip header"},
		{name: "x-forwarded-host", host: "127.0.0.1:8181", header: "X-Forwarded-Host", want: "X-Forwarded-Host header"},
		{name: "x-forwarded-for", host: "127.0.0.1:8181", header: "X-Forwarded-For", want: "X-Forwarded-For header"},
		{name: "forwarded", host: "127.0.0.1:8181", header: "Forwarded", want: "Forwarded header"},
	}
	for pname, p := range paths {
		for _, tc := range tests {
			t.Run(pname+"/"+tc.name, func(t *testing.T) {
				h := p.header.Clone()
				if tc.header != "" {
					h[http.CanonicalHeaderKey(tc.header)] = []string{"x"}
				}
				r := newRequest(p.path, p.query, h)
				r.Host = tc.host
				_, err := parseRequest(r, podWide(testSecret))
				if tc.want == "" {
					require.Nil(t, err)
					return
				}
				require.NotNil(t, err)
				assert.Equal(t, http.StatusForbidden, err.status)
				assert.Equal(t, "forbidden", err.code)
				assert.Contains(t, err.description, tc.want)
			})
		}
	}
}

// refusedHeaders are the headers of browsers and proxies, as fuzz inputs.
var refusedHeaders = []string{"Origin", "Sec-Fetch-Site", "Sec-Fetch-Dest", "Via", "X-Real-IP", "X-Forwarded-Host", "X-Forwarded-For", "X-Forwarded-Proto", "Forwarded"}

// FuzzParseRequest feeds arbitrary paths, queries, hosts and header values
// to the parser, with each header sent up to four times: it must not panic,
// must answer only with the statuses the protocol allows, and must accept
// only requests that carry the secret (or Metadata: true) exactly once, a
// loopback Host with the server's port, no browser or proxy header, and a
// clean resource.
func FuzzParseRequest(f *testing.F) {
	f.Add("/msi/token", "api-version=2019-08-01&resource=https://vault.azure.net", testSecret, "", "127.0.0.1:8181", uint8(0), uint8(1), uint8(0))
	f.Add("/msi/token", "api-version=2019-08-01&resource=r&client_id=a&mi_res_id=b", testSecret, "", "localhost:8181", uint8(0), uint8(2), uint8(0))
	f.Add("/metadata/identity/oauth2/token/", "api-version=2018-02-01&resource=r&msi_res_id=x", "", "true", "[::1]:8181", uint8(0), uint8(1), uint8(2))
	f.Add("/metadata/identity/oauth2/token", "api-version=2018-02-01&resource=%zz", "", "true", "127.0.0.1:8181", uint8(7), uint8(1), uint8(1))
	f.Add("/metadata/identity/oauth2/token", "api-version=2018-02-01&resource=r", "", "true", "attacker.example:8181", uint8(0), uint8(1), uint8(0))
	f.Add("/msi/token", "resource=a&resource=b", testSecret[:5], "", "127.0.0.1:8181", uint8(1), uint8(1), uint8(3))
	f.Add("/msi/token", "api-version=2019-08-01&resource=%FF", testSecret, "", "127.0.0.1:8181", uint8(0), uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, path, query, identityHeader, metadata, host string, refused, times, refusedTimes uint8) {
		// Each header goes in 0 to 3 extra times: a client may repeat any.
		h := http.Header{}
		n := 1 + int(times%4)
		for range n {
			if identityHeader != "" {
				h.Add(names.HeaderIdentity, identityHeader)
			}
			if metadata != "" {
				h.Add(names.HeaderMetadata, metadata)
			}
		}
		bad := ""
		if k := int(refusedTimes % 4); k > 0 {
			bad = refusedHeaders[int(refused)%len(refusedHeaders)]
			for range k {
				h.Add(bad, "x")
			}
		}
		r := newRequest(path, query, h)
		r.Host = host
		req, err := parseRequest(r, podWide(testSecret))
		if err != nil {
			switch err.status {
			case 400, 401, 403, 404:
			default:
				t.Fatalf("status %d for path %q query %q", err.status, path, query)
			}
			if err.code == "" || err.description == "" || !utf8.ValidString(err.code) || !utf8.ValidString(err.description) {
				t.Fatalf("error without code or description, or not UTF-8: %+v", err)
			}
			return
		}
		if bad != "" {
			t.Fatalf("accepted a request with header %s", bad)
		}
		switch strings.ToLower(host) {
		case "127.0.0.1:8181", "localhost:8181", "[::1]:8181":
		default:
			t.Fatalf("accepted Host %q", host)
		}
		switch req.protocol {
		case appService:
			if identityHeader != testSecret || n != 1 {
				t.Fatalf("accepted App Service request with header %q sent %d times", identityHeader, n)
			}
		case imds:
			if !strings.EqualFold(metadata, "true") || n != 1 {
				t.Fatalf("accepted IMDS request with Metadata %q sent %d times", metadata, n)
			}
		default:
			t.Fatalf("accepted unknown protocol for path %q", path)
		}
		if req.resource == "" || len(req.resource) > maxResourceLen || !printable(req.resource) || !utf8.ValidString(req.resource) {
			t.Fatalf("accepted resource %q", req.resource)
		}
		if !strings.HasSuffix(req.scope, "/.default") || len(req.scope) <= len("/.default") {
			t.Fatalf("scope %q for resource %q", req.scope, req.resource)
		}
		if (req.selectorKey == "") != (req.selectorValue == "") {
			t.Fatalf("half a selector: %q=%q", req.selectorKey, req.selectorValue)
		}
		if !utf8.ValidString(req.selectorValue) {
			t.Fatalf("accepted selector %q", req.selectorValue)
		}
	})
}

// podWide is a server with the one pod-wide header secret, listening on
// testPort, with its routes and nothing to serve.
func podWide(secret string) *Server {
	s := &Server{header: []byte(secret), port: testPort}
	s.mux = s.routes()
	return s
}

// parseRequest takes r through s's routes and the steps of a token request
// before identity choice: authorize, then parse. A request that no token
// route takes gets the server's 404.
func parseRequest(r *http.Request, s *Server) (tokenRequest, *apiError) {
	h, _ := s.mux.Handler(r)
	route, ok := h.(tokenRoute)
	if !ok {
		return tokenRequest{}, errNotFound(r.URL.Path)
	}
	if _, e := s.authorize(route.p, r); e != nil {
		return tokenRequest{}, e
	}
	return route.p.parse(r.URL.RawQuery)
}
