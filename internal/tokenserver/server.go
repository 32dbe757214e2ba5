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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	IdentityHeader string
	// Logger receives one line per request; default slog.Default().
	Logger *slog.Logger
	// Cache tunes the token cache.
	Cache CacheOptions
	// ShutdownTimeout bounds the graceful shutdown in Serve; default 5s.
	ShutdownTimeout time.Duration
}

// Server answers token requests. It is an http.Handler.
type Server struct {
	header     []byte
	log        *slog.Logger
	cache      *Cache
	def        *identity
	byClientID map[string]*identity
	byResID    map[string]*identity
	shutdown   time.Duration
	port       int // the config's port, for requests served without a listener
	mux        *http.ServeMux
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

// ErrNoIdentityHeader is returned by New when the pod's secret is empty.
var ErrNoIdentityHeader = errors.New("the identity header secret is empty")

// New builds a server. It does no I/O.
func New(o Options) (*Server, error) {
	if o.Config == nil {
		return nil, errors.New("tokenserver: no config")
	}
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.IdentityHeader == "" {
		return nil, fmt.Errorf("%w: set %s on the %s container (the webhook does)", ErrNoIdentityHeader, names.EnvIdentityHeader, names.SidecarContainerName)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 5 * time.Second
	}
	s := &Server{
		header:     []byte(o.IdentityHeader),
		log:        o.Logger,
		byClientID: map[string]*identity{},
		byResID:    map[string]*identity{},
		shutdown:   o.ShutdownTimeout,
		port:       o.Config.Port,
	}
	for _, c := range o.Config.Identities {
		src := o.Sources[c.Name]
		if src == nil {
			return nil, fmt.Errorf("tokenserver: no source for identity %q", c.Name)
		}
		id := &identity{cfg: c, label: c.Namespace + "/" + c.Name, source: src}
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
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
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
	req, e := parseRequest(r, s.header, s.localPort(r))
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

// selectIdentity picks the identity a request names, or the default.
func (s *Server) selectIdentity(req tokenRequest) (*identity, *apiError) {
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
				req.selectorKey, names.SidecarContainerName, s.boundList())}
	}
	if id == nil {
		return nil, &apiError{http.StatusNotFound, "identity_not_found",
			fmt.Sprintf("no identity with %s %q is bound to this pod; bound: %s. Add an AzureIdentityBinding for it with this pod's aadpodidbinding label, then recreate the pod",
				req.selectorKey, truncate(req.selectorValue), s.boundList())}
	}
	return id, nil
}

// boundList names the pod's identities for error messages.
func (s *Server) boundList() string {
	var parts []string
	seen := map[*identity]bool{}
	for _, id := range s.byClientID {
		if !seen[id] {
			seen[id] = true
			parts = append(parts, fmt.Sprintf("%s (client_id %s)", id.label, id.cfg.ClientID))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// upstreamFailure turns a failed token fetch into the response: 503 when a
// retry may help, 500 when Entra ID or IMDS refused outright.
func upstreamFailure(id *identity, resource string, err error) *apiError {
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
