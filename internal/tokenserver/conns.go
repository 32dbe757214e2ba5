package tokenserver

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultMaxConnections bounds the sidecar's open connections when
// Options.MaxConnections is zero. A pod's own clients hold a few each
// (the SDKs keep one or two alive per process), and a cold start of many
// goroutines may open a few hundred at once; each open connection costs
// the sidecar a goroutine and its buffers, some 20 KiB while idle, so the
// cap keeps a flood of idle connections to about 5 MiB.
const DefaultMaxConnections = 256

// idleTimeout closes a kept-alive connection that sends no next request.
// The SDKs ask again only near a token's refresh time, minutes away, and
// Go's and the other SDKs' clients redial transparently when a kept-alive
// connection was closed, so keeping one open longer only serves a flood.
const idleTimeout = 10 * time.Second

// connLimiter caps the server's open connections. Past the cap it closes,
// rather than refuses, the connection that has waited longest without a
// request in progress (a new one that has sent nothing yet, or a kept-alive
// one between requests), so that a process of the pod that opens thousands
// of idle connections neither grows the sidecar's memory nor locks the
// pod's own clients out: a client that connects and sends its request
// at once pushes out an idle connection, not the other way round. Only
// when every connection is in the middle of a request is the newcomer
// closed instead. It is the server's ConnState hook; http.Server calls
// StateNew from its accept loop, before the connection's goroutine runs.
type connLimiter struct {
	max int

	mu    sync.Mutex
	seq   uint64
	conns map[net.Conn]*connInfo
	// shed counts connections closed for the cap; tests and logs read it.
	shed uint64
}

type connInfo struct {
	// since orders connections by when they last became closable.
	since uint64
	// closable: no request is in progress on the connection.
	closable bool
}

func newConnLimiter(limit int) *connLimiter {
	return &connLimiter{max: limit, conns: map[net.Conn]*connInfo{}}
}

// hook is the http.Server's ConnState.
func (l *connLimiter) hook(c net.Conn, state http.ConnState) {
	var victim net.Conn
	l.mu.Lock()
	l.seq++
	switch state {
	case http.StateNew:
		l.conns[c] = &connInfo{since: l.seq, closable: true}
		if len(l.conns) > l.max {
			victim = l.oldestClosable(c)
			delete(l.conns, victim)
			l.shed++
		}
	case http.StateActive:
		if ci := l.conns[c]; ci != nil {
			ci.closable = false
		}
	case http.StateIdle:
		if ci := l.conns[c]; ci != nil {
			ci.closable, ci.since = true, l.seq
		}
	case http.StateHijacked, http.StateClosed:
		delete(l.conns, c)
	}
	l.mu.Unlock()
	if victim != nil {
		// Its goroutine's read fails, and it ends without a response.
		_ = victim.Close()
	}
}

// oldestClosable is the connection other than newcomer that has waited
// longest without a request in progress, else newcomer. l.mu is held.
func (l *connLimiter) oldestClosable(newcomer net.Conn) net.Conn {
	victim, since := newcomer, l.conns[newcomer].since
	for c, ci := range l.conns {
		if ci.closable && ci.since < since {
			victim, since = c, ci.since
		}
	}
	return victim
}

// closed is the number of connections closed for the cap.
func (l *connLimiter) closed() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.shed
}

// open is the number of connections the limiter counts.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}
