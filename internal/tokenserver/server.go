// Package tokenserver is the pod-identity sidecar: a token server on the
// pod's loopback that speaks the two managed identity protocols the Azure
// SDKs and azcopy use (App Service 2019-08-01 and IMDS), and answers them with
// tokens of the identities bound to the pod, obtained through azidentity.
//
// A token request takes one path through plain steps: its route decides its
// protocol (protocol.go), authorize admits its caller (authorize.go), its
// query is parsed (request.go), an identity is chosen (identity.go), and
// its token comes from a Cache (cache.go) that holds them per (identity,
// resource) and gets new ones from one Source per identity (source.go).
// Every refusal is an apiError (errors.go), and every request, served or
// refused, is one log line (log.go).
package tokenserver

// Building the server, its routes and its handlers, and serving them: the
// only place that knows which path is which protocol.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// Options configure a Server.
type Options struct {
	// Config is the validated sidecar configuration.
	Config *sidecarconfig.Config
	// Sources holds one Source per identity, by identity name.
	Sources map[string]Source
	// IdentityHeader is the pod's secret, expected in X-IDENTITY-HEADER.
	// It must be empty when Config.Containers gives each container a
	// header of its own, and set otherwise.
	IdentityHeader string
	// Logger receives one line per request; default slog.Default().
	Logger *slog.Logger
	// Cache tunes the token cache.
	Cache CacheOptions
	// ShutdownTimeout bounds the graceful shutdown in Serve; default 5s.
	ShutdownTimeout time.Duration
	// MaxConnections caps the connections Serve keeps open; default
	// DefaultMaxConnections. See connLimiter for what happens past it.
	MaxConnections int
}

// Server answers token requests. It is an http.Handler.
type Server struct {
	header []byte
	// grants are the per-container headers of Config.Containers; empty
	// when the pod has one header for every identity.
	grants []grant
	// headerless is what an IMDS-path request without X-IDENTITY-HEADER
	// may use when grants are set: nothing, since it may come from a
	// container that has no entry (skipped, added later, ephemeral).
	headerless *grant
	// imdsNeedsHeader refuses IMDS-path requests without
	// X-IDENTITY-HEADER (Config.IMDSRequiresHeader).
	imdsNeedsHeader bool
	log             *slog.Logger
	cache           *Cache
	def             *identity
	byClientID      map[string]*identity
	byResID         map[string]*identity
	shutdown        time.Duration
	conns           *connLimiter
	port            int // the config's port, for requests served without a listener
	mux             *http.ServeMux
	// now is the cache's clock, so that expires_in and refresh_in agree
	// with the cache's idea of freshness.
	now func() time.Time
}

// ErrNoIdentityHeader is returned by New when the pod's secret is empty.
var ErrNoIdentityHeader = errors.New("the identity header secret is empty")

// ErrPodWideHeader is returned by New when the config gives containers
// headers of their own and a pod-wide header is set too: it would open
// every identity to whoever holds it.
var ErrPodWideHeader = errors.New("a pod-wide identity header is set beside per-container headers")

// New builds a server. It does no I/O.
func New(o Options) (*Server, error) {
	if o.Config == nil {
		return nil, errors.New("tokenserver: no config")
	}
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	switch perContainer := len(o.Config.Containers) > 0; {
	case perContainer && o.IdentityHeader != "":
		return nil, fmt.Errorf("%w: remove %s from the %s container; with per-container identities (%s) the webhook sets none there",
			ErrPodWideHeader, names.EnvIdentityHeader, names.SidecarContainerName, names.ContainerIdentitiesAnnotation)
	case !perContainer && o.IdentityHeader == "":
		return nil, fmt.Errorf("%w: set %s on the %s container (the webhook does)", ErrNoIdentityHeader, names.EnvIdentityHeader, names.SidecarContainerName)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 5 * time.Second
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	s := &Server{
		header:   []byte(o.IdentityHeader),
		log:      o.Logger,
		shutdown: o.ShutdownTimeout,
		conns:    newConnLimiter(o.MaxConnections),
		port:     o.Config.Port,

		imdsNeedsHeader: o.Config.IMDSRequiresHeader,
	}
	byName, err := s.addIdentities(o.Config, o.Sources)
	if err != nil {
		return nil, err
	}
	s.grants, s.headerless = grants(o.Config, byName)
	s.cache = NewCache(o.Cache)
	s.now = s.cache.o.Now
	s.mux = s.routes()
	return s, nil
}

// routes registers each protocol on its path, so that the protocol of a
// request is decided here, once, and no later step looks at the path.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	for _, p := range protocols {
		route := tokenRoute{s, p}
		mux.Handle("GET "+p.path, route)
		if p.trailingSlash {
			mux.Handle("GET "+p.path+"/{$}", route)
		}
		s.refuseOtherMethods(mux, p.path)
	}
	mux.HandleFunc("GET "+names.PathHealth, s.handleHealth)
	s.refuseOtherMethods(mux, names.PathHealth)
	mux.HandleFunc("/", s.handleNotFound)
	return mux
}

// refuseOtherMethods answers 405 to a request for path, or for path with a
// trailing slash, that no GET route took: that is any other method, and
// GET on the slash form of a path that is served without one.
func (s *Server) refuseOtherMethods(mux *http.ServeMux, path string) {
	mux.HandleFunc(path, s.handleMethodNotAllowed)
	mux.HandleFunc(path+"/{$}", s.handleMethodNotAllowed)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops background token renewals.
func (s *Server) Close() { s.cache.Close() }

// Serve answers requests on ln until ctx is done, then shuts down
// gracefully within the shutdown timeout and closes the server. It returns
// an error only when the listener fails.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           http.MaxBytesHandler(s, 4<<10),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      s.cache.o.MaxWait + 5*time.Second,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
		ConnState:         s.conns.hook,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.shutdown)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		// Requests still waiting on the upstream are cut off: the pod is
		// going away, which is no error of the sidecar's.
		s.log.Warn("shutdown deadline passed; closing open connections", "shutdownTimeout", s.shutdown, "error", err.Error())
		_ = hs.Close()
	}
	s.Close()
	return nil
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
	}{"ok"})
}

// handleMethodNotAllowed answers a request for a served path that no GET
// route took.
func (s *Server) handleMethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", http.MethodGet)
	s.refuse(w, r, time.Now(), nil, "", errMethodNotAllowed(r.Method))
}

// handleNotFound answers what no route matched.
func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.refuse(w, r, time.Now(), nil, "", errNotFound(r.URL.Path))
}

// tokenRoute is the handler of one protocol's path.
type tokenRoute struct {
	s *Server
	p *protocol
}

// ServeHTTP answers a token request in plain steps, each of which may
// refuse it: admit the caller, parse the query, choose the identity, get
// the token, encode it in the route's protocol. A refusal is the response,
// and the request ends there. Either way one line is logged.
func (rt tokenRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s, p := rt.s, rt.p
	start := time.Now()
	caller, e := s.authorize(p, r)
	if e != nil {
		s.refuse(w, r, start, nil, "", e)
		return
	}
	req, e := p.parse(r.URL.RawQuery)
	if e != nil {
		s.refuse(w, r, start, nil, req.resource, e)
		return
	}
	id, e := s.selectIdentity(req, caller)
	if e != nil {
		s.refuse(w, r, start, nil, req.resource, e)
		return
	}
	tok, hit, err := s.cache.Get(r.Context(), id.cfg.Name, req.resource, req.scope, id.source)
	if err != nil {
		s.refuse(w, r, start, id, req.resource, upstreamFailure(id, req.resource, err))
		return
	}
	p.encode(w, tokenResponse{
		accessToken: tok.AccessToken, clientID: id.cfg.ClientID, resource: req.resource,
		expiresOn: tok.ExpiresOn, refreshOn: tok.RefreshOn, now: s.now(),
	})
	s.logRequest(r, start, id, req.resource, http.StatusOK, hit, nil)
}

// refuse writes e and logs it.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, start time.Time, id *identity, resource string, e *apiError) {
	writeError(w, e)
	s.logRequest(r, start, id, resource, e.status, false, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only strings and numbers are marshalled; this cannot happen.
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error","error_description":"encode response"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
