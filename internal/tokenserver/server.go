// Package tokenserver is the pod-identity sidecar: a token server on the
// pod's loopback that speaks the two managed identity protocols the Azure
// SDKs and azcopy use (App Service 2019-08-01 and IMDS), and answers them with
// tokens of the identities bound to the pod, obtained through azidentity.
//
// Requests are parsed and authenticated in request.go, identities are chosen
// here, tokens come from a Cache (cache.go) that holds them per (identity,
// resource) and gets new ones from one Source per identity (source.go).
package tokenserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

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

// identity is a configured identity with its source.
type identity struct {
	cfg    sidecarconfig.Identity
	label  string // namespace/name, for logs and messages
	source Source
}

// grant is what one container's header may ask for.
type grant struct {
	// container names it in messages; "" for headerless IMDS requests.
	container string
	sum       [sha256.Size]byte
	// allowed are the identities it may use; def is the one it gets when
	// a request names none, nil when none is shared (headerless).
	allowed []*identity
	def     *identity
}

// may reports whether g allows id.
func (g *grant) may(id *identity) bool { return slices.Contains(g.allowed, id) }

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
		header:     []byte(o.IdentityHeader),
		log:        o.Logger,
		byClientID: map[string]*identity{},
		byResID:    map[string]*identity{},
		shutdown:   o.ShutdownTimeout,
		conns:      newConnLimiter(o.MaxConnections),
		port:       o.Config.Port,

		imdsNeedsHeader: o.Config.IMDSRequiresHeader,
	}
	byName := map[string]*identity{}
	for _, c := range o.Config.Identities {
		src := o.Sources[c.Name]
		if src == nil {
			return nil, fmt.Errorf("tokenserver: no source for identity %q", c.Name)
		}
		id := &identity{cfg: c, label: c.Namespace + "/" + c.Name, source: src}
		byName[c.Name] = id
		if c.Name == o.Config.DefaultIdentity {
			s.def = id
		}
		// Two AzureIdentities may name one client ID (say, with different
		// sources); the first listed wins, unless the default is among
		// them (below).
		if k := strings.ToLower(c.ClientID); s.byClientID[k] == nil {
			s.byClientID[k] = id
		}
		if k := strings.ToLower(c.ResourceID); k != "" && s.byResID[k] == nil {
			s.byResID[k] = id
		}
	}
	s.byClientID[strings.ToLower(s.def.cfg.ClientID)] = s.def
	s.grants, s.headerless = grants(o.Config, byName)
	s.cache = NewCache(o.Cache)
	s.now = s.cache.o.Now
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET "+names.PathAppService, s.handleToken)
	s.mux.HandleFunc("GET "+names.PathIMDS, s.handleToken)
	s.mux.HandleFunc("GET "+names.PathIMDS+"/", s.handleToken)
	s.mux.HandleFunc("GET "+names.PathHealth, s.handleHealth)
	s.mux.HandleFunc("/", s.handleOther)
	return s, nil
}

// grants builds the per-container grants of c and the grant of headerless
// IMDS requests, which allows nothing. A request without a header cannot
// be told from one of a container that has no entry in the table: one that
// skip-containers or inject-containers left out, one added after
// admission, or an ephemeral debug container. Those get no identity, so
// neither does a request without a header, even for an identity that
// every listed container may use.
func grants(c *sidecarconfig.Config, byName map[string]*identity) ([]grant, *grant) {
	if len(c.Containers) == 0 {
		return nil, nil
	}
	gs := make([]grant, 0, len(c.Containers))
	for _, ct := range c.Containers {
		g := grant{container: ct.Name}
		// Validate checked that the sum is hex of the right size.
		_, _ = hex.Decode(g.sum[:], []byte(ct.HeaderSHA256))
		for _, n := range ct.Identities {
			id := byName[n]
			if id == nil || g.may(id) {
				continue
			}
			g.allowed = append(g.allowed, id)
		}
		g.def = g.allowed[0]
		gs = append(gs, g)
	}
	return gs, &grant{}
}

// authorize finds the grant of a request's X-IDENTITY-HEADER values: nil
// when the pod has one header for every identity. The header is compared
// with each container's sum in constant time, and with all of them, so
// that timing tells nothing about which sums are close.
func (s *Server) authorize(p protocol, got []string) (*grant, *apiError) {
	if p == imds && len(got) == 0 && s.imdsNeedsHeader {
		return nil, errIMDSHeaderRequired()
	}
	if len(s.grants) == 0 {
		if p == imds && len(got) == 0 {
			return nil, nil
		}
		if len(got) == 0 {
			return nil, errHeaderMissing()
		}
		// Length is not secret; the content is compared in constant time.
		if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), s.header) != 1 {
			return nil, errHeaderWrong()
		}
		return nil, nil
	}
	if len(got) == 0 {
		if p == imds {
			return s.headerless, nil
		}
		return nil, errHeaderMissing()
	}
	if len(got) != 1 {
		return nil, errHeaderWrong()
	}
	sum := sha256.Sum256([]byte(got[0]))
	var match *grant
	for i := range s.grants {
		if subtle.ConstantTimeCompare(sum[:], s.grants[i].sum[:]) == 1 {
			match = &s.grants[i]
		}
	}
	if match == nil {
		return nil, errHeaderWrong()
	}
	return match, nil
}

// localPort is the port the request arrived on: the listener's, which
// --port may have set, else the config's.
func (s *Server) localPort(r *http.Request) int {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		return a.Port
	}
	return s.port
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

// handleOther answers what no route matched: the wrong method on a token
// path, or an unknown path.
func (s *Server) handleOther(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	e := errNotFound(r.URL.Path)
	switch strings.TrimSuffix(r.URL.Path, "/") {
	case names.PathAppService, names.PathIMDS, names.PathHealth:
		w.Header().Set("Allow", http.MethodGet)
		e = &apiError{http.StatusMethodNotAllowed, "invalid_request", "method " + r.Method + " is not allowed; use GET"}
	}
	writeError(w, e)
	s.logRequest(r, start, nil, "", e.status, false, e)
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req, e := parseRequest(r, s.authorize, s.localPort(r))
	if e != nil {
		writeError(w, e)
		s.logRequest(r, start, nil, req.resource, e.status, false, e)
		return
	}
	id, e := s.selectIdentity(req)
	if e != nil {
		writeError(w, e)
		s.logRequest(r, start, nil, req.resource, e.status, false, e)
		return
	}
	tok, hit, err := s.cache.Get(r.Context(), id.cfg.Name, req.resource, req.scope, id.source)
	if err != nil {
		e := upstreamFailure(id, req.resource, err)
		writeError(w, e)
		s.logRequest(r, start, id, req.resource, e.status, false, e)
		return
	}
	writeToken(w, req, id, tok, s.now())
	s.logRequest(r, start, id, req.resource, http.StatusOK, hit, nil)
}

// selectIdentity picks the identity a request names, or the default, and
// with per-container identities refuses one the caller's header does not
// allow.
func (s *Server) selectIdentity(req tokenRequest) (*identity, *apiError) {
	if g := req.grant; g != nil {
		id, e := s.selectGranted(req, g)
		if id != nil || e != nil {
			return id, e
		}
	}
	var id *identity
	switch req.selectorKey {
	case "":
		return s.def, nil
	case paramClientID:
		id = s.byClientID[strings.ToLower(req.selectorValue)]
	case paramMIResID, paramMSIResID:
		id = s.byResID[strings.ToLower(req.selectorValue)]
	case paramObjectID, paramPrincipalID:
		// The webhook knows client and resource IDs only; an object ID would
		// need a Graph lookup the sidecar has no credentials for.
		return nil, &apiError{http.StatusNotFound, "identity_not_found",
			fmt.Sprintf("selecting an identity by %s is not supported by %s, which does not know object IDs; select it with client_id=<clientID of the AzureIdentity> instead (bound: %s)",
				req.selectorKey, names.SidecarContainerName, s.boundList(req.grant))}
	}
	if id == nil {
		return nil, &apiError{http.StatusNotFound, "identity_not_found",
			fmt.Sprintf("no identity with %s %q is bound to this pod; bound: %s. Add an AzureIdentityBinding for it with this pod's aadpodidbinding label, then recreate the pod",
				req.selectorKey, truncate(req.selectorValue), s.boundList(req.grant))}
	}
	if req.grant != nil {
		// Bound to the pod, but not to the caller's container. The message
		// names the caller's own container and grant only: nothing of the
		// container that may use id, and never a header or its sum.
		return nil, s.notGranted(req, id)
	}
	return id, nil
}

// selectGranted looks the request's selector up among the identities g
// allows; it returns nil, nil when none of them matches, so that the
// caller can tell "not granted" from "not bound".
func (s *Server) selectGranted(req tokenRequest, g *grant) (*identity, *apiError) {
	match := func(id *identity) bool {
		switch req.selectorKey {
		case paramClientID:
			return strings.EqualFold(id.cfg.ClientID, req.selectorValue)
		case paramMIResID, paramMSIResID:
			return id.cfg.ResourceID != "" && strings.EqualFold(id.cfg.ResourceID, req.selectorValue)
		}
		return false
	}
	if req.selectorKey == "" {
		if g.def == nil {
			return nil, s.notGranted(req, s.def)
		}
		return g.def, nil
	}
	for _, id := range g.allowed {
		if match(id) {
			return id, nil
		}
	}
	return nil, nil
}

// notGranted is the 403 for an identity that the pod has but the caller's
// header does not allow.
func (s *Server) notGranted(req tokenRequest, id *identity) *apiError {
	g := req.grant
	var mine []string
	for _, a := range g.allowed {
		mine = append(mine, a.label)
	}
	allowed := "none"
	if len(mine) > 0 {
		allowed = strings.Join(mine, ", ")
	}
	if g.container == "" {
		return &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf(
			"AzureIdentity %s is not served on %s without the %s header: this pod gives its containers identities of their own (%s), "+
				"and a request without the header gets no identity, since it may come from a container that has none; send %s with the value of %s, "+
				"or use %s, which the Azure SDKs do when it is set",
			id.label, names.PathIMDS, names.HeaderIdentity, names.ContainerIdentitiesAnnotation, names.HeaderIdentity, names.EnvIdentityHeader, names.EnvIdentityEndpoint)}
	}
	return &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf(
		"container %q may not use AzureIdentity %s: the pod's %s annotation gives it %s; "+
			"ask for that identity, or change the annotation and recreate the pod",
		g.container, id.label, names.ContainerIdentitiesAnnotation, allowed)}
}

// boundList names, for error messages, the identities the caller may use:
// with per-container identities those of its grant g (none without a
// header), so that a message tells a container nothing of the identities
// of others; otherwise every identity of the pod.
func (s *Server) boundList(g *grant) string {
	var parts []string
	seen := map[*identity]bool{}
	ids := slices.Collect(maps.Values(s.byClientID))
	if g != nil {
		ids = g.allowed
	}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			parts = append(parts, fmt.Sprintf("%s (client_id %s)", id.label, id.cfg.ClientID))
		}
	}
	if len(parts) == 0 {
		return "none for this caller"
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// upstreamFailure turns a failed token fetch into the response: 503 when a
// retry may help, 500 when Entra ID or IMDS refused outright.
func upstreamFailure(id *identity, resource string, err error) *apiError {
	if errors.Is(err, ErrUpstreamRateLimited) || errors.Is(err, ErrTooManyResources) {
		return &apiError{http.StatusTooManyRequests, "too_many_requests", fmt.Sprintf(
			"AzureIdentity %s (client_id %s) gets no token for resource %q now: %s; ask again later, and for fewer distinct resources",
			id.label, id.cfg.ClientID, resource, oneLine(err.Error()))}
	}
	status, code := http.StatusServiceUnavailable, "temporarily_unavailable"
	if !isTemporary(err) {
		status, code = http.StatusInternalServerError, "upstream_refused"
	}
	var what string
	switch id.cfg.Source {
	case names.TokenSourceIMDS:
		what = "the node's IMDS"
	default:
		what = "Entra ID"
	}
	return &apiError{status, code, fmt.Sprintf("AzureIdentity %s (source %s, client_id %s) could not get a token for resource %q from %s: %s",
		id.label, id.cfg.Source, id.cfg.ClientID, resource, what, upstreamReason(err))}
}

// maxReason bounds the upstream's reason in a response.
const maxReason = 2048

// upstreamReason condenses an upstream failure: for an HTTP refusal, the
// status and the OAuth error Entra or IMDS sent; otherwise the error text.
func upstreamReason(err error) string {
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) && afe.RawResponse != nil {
		resp := afe.RawResponse
		reason := fmt.Sprintf("HTTP %d", resp.StatusCode)
		if resp.Request != nil {
			reason += " from " + resp.Request.URL.Scheme + "://" + resp.Request.URL.Host + resp.Request.URL.Path
		}
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if b, perr := runtime.Payload(resp); perr == nil && json.Unmarshal(b, &body) == nil && body.Error != "" {
			reason += ": " + body.Error
			if body.Description != "" {
				reason += ": " + body.Description
			}
		} else {
			reason += ": " + oneLine(afe.Error())
		}
		return clip(reason)
	}
	return clip(oneLine(err.Error()))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func clip(s string) string {
	if len(s) > maxReason {
		return s[:maxReason] + "..."
	}
	return s
}

// appServiceResponse is App Service 2019-08-01's token response: expires_on
// is epoch seconds as a string; expires_in is a number. JS clients read only
// expires_on, so it is always present.
type appServiceResponse struct {
	AccessToken string `json:"access_token"`
	ExpiresOn   string `json:"expires_on"`
	ExpiresIn   int64  `json:"expires_in"`
	RefreshIn   int64  `json:"refresh_in,omitempty"`
	NotBefore   string `json:"not_before"`
	Resource    string `json:"resource"`
	TokenType   string `json:"token_type"`
	ClientID    string `json:"client_id"`
}

// imdsResponse is IMDS's token response, where every field is a string.
type imdsResponse struct {
	AccessToken  string `json:"access_token"`
	ClientID     string `json:"client_id"`
	ExpiresIn    string `json:"expires_in"`
	ExpiresOn    string `json:"expires_on"`
	ExtExpiresIn string `json:"ext_expires_in"`
	NotBefore    string `json:"not_before"`
	RefreshIn    string `json:"refresh_in,omitempty"`
	Resource     string `json:"resource"`
	TokenType    string `json:"token_type"`
}

// minRefreshIn: a refresh hint shorter than this is left out, because MSAL
// clients treat a past refresh time as "ask again on every call".
const minRefreshIn = time.Minute

func writeToken(w http.ResponseWriter, req tokenRequest, id *identity, tok Token, now time.Time) {
	expiresIn := max(int64(tok.ExpiresOn.Sub(now)/time.Second), 0)
	var refreshIn int64
	if d := tok.RefreshOn.Sub(now); d >= minRefreshIn {
		refreshIn = int64(d / time.Second)
	}
	expiresOn := strconv.FormatInt(tok.ExpiresOn.Unix(), 10)
	// The token's own nbf is inside the opaque token; now is a safe bound.
	notBefore := strconv.FormatInt(now.Unix(), 10)
	var body any
	if req.protocol == appService {
		body = appServiceResponse{
			AccessToken: tok.AccessToken, ExpiresOn: expiresOn, ExpiresIn: expiresIn, RefreshIn: refreshIn,
			NotBefore: notBefore, Resource: req.resource, TokenType: "Bearer", ClientID: id.cfg.ClientID,
		}
	} else {
		r := imdsResponse{
			AccessToken: tok.AccessToken, ClientID: id.cfg.ClientID, ExpiresIn: strconv.FormatInt(expiresIn, 10),
			ExpiresOn: expiresOn, ExtExpiresIn: strconv.FormatInt(expiresIn, 10), NotBefore: notBefore,
			Resource: req.resource, TokenType: "Bearer",
		}
		if refreshIn > 0 {
			r.RefreshIn = strconv.FormatInt(refreshIn, 10)
		}
		body = r
	}
	writeJSON(w, http.StatusOK, body)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{e.code, e.description})
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

// logRequest writes the one line per token request. It never logs the
// token, the header secret or any other header.
func (s *Server) logRequest(r *http.Request, start time.Time, id *identity, resource string, status int, hit bool, e *apiError) {
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	} else if status >= 400 {
		level = slog.LevelWarn
	}
	if !s.log.Enabled(r.Context(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs,
		// The client chose path and resource: escaped, so that a log line
		// always reads unambiguously.
		slog.String("path", truncate(r.URL.Path)),
		slog.String("identity", identityLabel(id)),
		slog.String("resource", logValue(resource)),
		slog.Int("status", status),
		slog.Bool("cacheHit", hit),
		slog.Duration("latency", time.Since(start)),
	)
	if e != nil {
		attrs = append(attrs, slog.String("error", e.code), slog.String("reason", e.description))
	}
	s.log.LogAttrs(r.Context(), level, "token request", attrs...)
}

// logValue is a client's value for a log line: at most maxResourceLen
// bytes, escaped.
func logValue(s string) string {
	if len(s) > maxResourceLen {
		return escape(s[:maxResourceLen]) + "..."
	}
	return escape(s)
}

func identityLabel(id *identity) string {
	if id == nil {
		return ""
	}
	return id.label
}
