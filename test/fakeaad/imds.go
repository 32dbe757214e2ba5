package fakeaad

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// IMDSOptions configure the fake node IMDS.
type IMDSOptions struct {
	// TenantID goes into the issuer of the tokens it issues.
	TenantID string
	// ClientIDs are the user-assigned identities attached to the fake node.
	ClientIDs []string
	// TokenLifetime is the lifetime of issued tokens; default 24h, as IMDS.
	TokenLifetime time.Duration
}

// IMDS is a running fake of the node's instance metadata service token
// endpoint, GET /metadata/identity/oauth2/token with "Metadata: true". It is
// plain HTTP, like the real one at 169.254.169.254.
type IMDS struct {
	// URL is http://127.0.0.1:<port>, without a trailing slash.
	URL string

	aad       *Server
	opts      IMDSOptions
	srv       *http.Server
	closing   chan struct{}
	once      sync.Once
	mode      atomic.Int32
	requests  atomic.Int64
	issued    atomic.Int64
	clientIDs map[string]bool
}

// StartIMDS starts a fake IMDS whose tokens are signed by s, so that
// s.VerifyAccessToken accepts them.
func (s *Server) StartIMDS(o IMDSOptions) (*IMDS, error) {
	if o.TokenLifetime <= 0 {
		o.TokenLifetime = 24 * time.Hour
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for fake IMDS: %w", err)
	}
	m := &IMDS{
		URL:       "http://" + ln.Addr().String(),
		aad:       s,
		opts:      o,
		closing:   make(chan struct{}),
		clientIDs: map[string]bool{},
	}
	for _, id := range o.ClientIDs {
		m.clientIDs[strings.ToLower(id)] = true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metadata/identity/oauth2/token", m.handleToken)
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = m.srv.Serve(ln) }()
	return m, nil
}

// Close stops the fake IMDS.
func (m *IMDS) Close() {
	m.once.Do(func() {
		close(m.closing)
		_ = m.srv.Close()
	})
}

// SetMode changes how token requests are answered from now on.
func (m *IMDS) SetMode(mode Mode) { m.mode.Store(int32(mode)) }

// Requests counts token requests, whatever their outcome.
func (m *IMDS) Requests() int { return int(m.requests.Load()) }

// Issued counts tokens issued.
func (m *IMDS) Issued() int { return int(m.issued.Load()) }

func (m *IMDS) handleToken(w http.ResponseWriter, r *http.Request) {
	m.requests.Add(1)
	fail := func(status int, desc string) {
		writeJSON(w, status, map[string]string{"error": "invalid_request", "error_description": desc})
	}
	if _, ok := r.Header["X-Forwarded-For"]; ok {
		fail(http.StatusForbidden, "Request with X-Forwarded-For header is not allowed")
		return
	}
	if r.Header.Get("Metadata") != "true" {
		fail(http.StatusBadRequest, "Required metadata header not specified")
		return
	}
	q := r.URL.Query()
	if q.Get("api-version") == "" {
		fail(http.StatusBadRequest, "Required query variable 'api-version' is missing")
		return
	}
	resource := q.Get("resource")
	if resource == "" {
		fail(http.StatusBadRequest, "Required query variable 'resource' is missing")
		return
	}
	switch Mode(m.mode.Load()) {
	case ModeBadRequest:
		fail(http.StatusBadRequest, "fakeaad IMDS was told to fail this request")
		return
	case ModeServerError:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "unknown", "error_description": "fakeaad IMDS was told to be unavailable"})
		return
	case ModeHang:
		select {
		case <-r.Context().Done():
		case <-m.closing:
		}
		return
	}
	clientID, err := m.pick(q.Get("client_id"))
	if err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	token, err := m.aad.sign(m.opts.TenantID, clientID, resource, GrantAssertion, "imds", m.opts.TokenLifetime)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "unknown", "error_description": err.Error()})
		return
	}
	m.issued.Add(1)
	now := m.aad.opts.Now()
	secs := int64(m.opts.TokenLifetime / time.Second)
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token":   token,
		"client_id":      clientID,
		"expires_in":     strconv.FormatInt(secs, 10),
		"expires_on":     strconv.FormatInt(now.Unix()+secs, 10),
		"ext_expires_in": strconv.FormatInt(secs, 10),
		"not_before":     strconv.FormatInt(now.Unix(), 10),
		"resource":       resource,
		"token_type":     "Bearer",
	})
}

// pick chooses the identity as IMDS does: the named one, or the only one.
func (m *IMDS) pick(clientID string) (string, error) {
	if clientID != "" {
		if !m.clientIDs[strings.ToLower(clientID)] {
			return "", errors.New("Identity not found")
		}
		return clientID, nil
	}
	if len(m.opts.ClientIDs) == 1 {
		return m.opts.ClientIDs[0], nil
	}
	ids := slices.Clone(m.opts.ClientIDs)
	slices.Sort(ids)
	//nolint:staticcheck // IMDS's own wording, capital and all, which clients may match
	return "", fmt.Errorf("Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request (attached: %v)", ids)
}
