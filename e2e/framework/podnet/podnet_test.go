//go:build linux

package podnet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestForwardAndIsolate: in the namespace, the forwarded port reaches the
// host's server on loopback, and an address outside is unreachable.
func TestForwardAndIsolate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root (the e2e suite runs as root)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "from the host")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	n, err := New(port)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, n.Close()) })

	for i := range 20 {
		out, err := n.Command(context.Background(), "curl", "-sS", "http://127.0.0.1:"+strconv.Itoa(port)+"/").CombinedOutput()
		require.NoError(t, err, "request %d: %s", i, out)
		assert.Equal(t, "from the host", string(out))
	}
	out, err := n.Command(context.Background(), "curl", "-sS", "--max-time", "5", "http://169.254.169.254/").CombinedOutput()
	require.Error(t, err)
	assert.True(t, strings.Contains(string(out), "unreachable") || strings.Contains(string(out), "Couldn't connect"), "%s", out)
}
