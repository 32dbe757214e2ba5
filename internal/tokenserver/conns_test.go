package tokenserver

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
)

// TestConnectionCap: idle connections beyond the cap are closed, oldest
// first, so the server never holds more than the cap, and a client that
// connects afterwards and sends its request at once is served.
func TestConnectionCap(t *testing.T) {
	p := newPod(t, "")
	srv := startServer(t, p, func(o *Options) { o.MaxConnections = 4 })
	addr := strings.TrimPrefix(srv.url, "http://")
	var idle []net.Conn
	for range 20 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		require.NoError(t, err)
		idle = append(idle, c)
		t.Cleanup(func() { _ = c.Close() })
	}
	eventually(t, "the server to accept the idle connections", func() bool { return srv.srv.conns.closed() >= 16 })
	assert.LessOrEqual(t, srv.srv.conns.open(), 4)

	// The oldest were closed: their reads end at once.
	require.NoError(t, idle[0].SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := idle[0].Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the oldest idle connection is closed by the server")

	q := url.Values{"resource": {uniqueResource(t)}, "api-version": {appServiceAPIVersion}}
	got := srv.get(t, names.PathAppService+"?"+q.Encode(), http.Header{names.HeaderIdentity: {p.IdentityHeader}})
	require.Equal(t, http.StatusOK, got.status, "%v", got.body)
	assert.NotEmpty(t, got.str("access_token"))
	assert.LessOrEqual(t, srv.srv.conns.open(), 4)
}
