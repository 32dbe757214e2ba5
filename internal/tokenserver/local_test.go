package tokenserver

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/fakeaad"
)

// TestServerRefusesRemoteHosts: over a real connection, a request with
// another Host (DNS rebinding) or a browser's headers gets a JSON 403 and no
// upstream call is made; the same request with the loopback Host is
// served.
func TestServerRefusesRemoteHosts(t *testing.T) {
	p := newPod(t, fakeaad.IdentitySecret)
	r := startServer(t, p)
	port := r.url[strings.LastIndex(r.url, ":")+1:]
	resource := uniqueResource(t)
	send := func(host string, extra http.Header) response {
		req, err := http.NewRequest(http.MethodGet, r.url+names.PathIMDS+"?api-version=2018-02-01&resource="+resource, nil)
		require.NoError(t, err)
		req.Host = host
		req.Header.Set(names.HeaderMetadata, "true")
		for k, v := range extra {
			req.Header[k] = v
		}
		return r.do(t, req)
	}

	for name, tc := range map[string]struct {
		host  string
		extra http.Header
	}{
		"rebound host":       {"attacker.example:" + port, nil},
		"browser":            {"127.0.0.1:" + port, http.Header{"Origin": {"http://attacker.example"}, "Sec-Fetch-Site": {"cross-site"}}},
		"pass-through proxy": {"127.0.0.1:" + port, http.Header{"Via": {"1.1 proxy"}, "X-Real-Ip": {"203.0.113.9"}, "X-Forwarded-Host": {"app.example"}}},
	} {
		t.Run(name, func(t *testing.T) {
			got := send(tc.host, tc.extra)
			assert.Equal(t, http.StatusForbidden, got.status)
			assert.Equal(t, "forbidden", got.str("error"))
			assert.NotEmpty(t, got.str("error_description"))
			assert.Empty(t, got.str("access_token"))
		})
	}
	assert.Zero(t, p.AAD.Counts().Token, "a refused request reaches no upstream")

	ok := send("localhost:"+port, nil)
	require.Equal(t, http.StatusOK, ok.status, ok.body)
	assert.NotEmpty(t, ok.str("access_token"))
}

// TestServerInvalidUTF8: a resource that is not UTF-8 gets a 400, and the
// log line shows the bytes escaped rather than replaced or raw.
func TestServerInvalidUTF8(t *testing.T) {
	p := newPod(t, fakeaad.IdentityFederated)
	r := startServer(t, p)
	got := r.get(t, names.PathAppService+"?api-version=2019-08-01&resource=https%3A%2F%2Fvault%FF%C3.azure.net",
		http.Header{names.HeaderIdentity: {p.IdentityHeader}})
	assert.Equal(t, http.StatusBadRequest, got.status)
	assert.Contains(t, got.str("error_description"), "not valid UTF-8")
	eventually(t, "the log line", func() bool { return strings.Contains(r.logs.String(), `"msg":"token request"`) })
	logs := r.logs.String()
	assert.Contains(t, logs, `"resource":"https://vault\\xff\\xc3.azure.net"`)
	assert.NotContains(t, logs, `\ufffd`)
}
