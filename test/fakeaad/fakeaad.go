// Package fakeaad is test infrastructure, and only that: a fake Microsoft
// Entra ID (Azure AD) token service over TLS and a fake node instance metadata
// service (IMDS), both listening on 127.0.0.1 with a port the kernel picks.
//
// It stands in for the two things a test machine cannot reach. The Entra ID
// fake serves the OpenID metadata and the v2 token endpoint that azidentity
// (through MSAL) calls for the client-credentials grant, and it checks what it
// receives: a client secret, a certificate-signed client assertion, or a
// federated assertion checked by a pluggable verifier. It issues signed JWT
// access tokens shaped like Entra's v1 tokens, counts its calls, and can be
// told to fail or to hang.
//
// It is an ordinary package rather than a _test file because the unit tests
// of the token server and the sidecar, the e2e suites and the demo reuse it.
// Nothing in a production binary imports it (hack/layout checks that).
package fakeaad

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // x5t is defined as a SHA-1 thumbprint.
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// Mode tells a fake how to answer token requests, so that tests can make the
// upstream fail.
type Mode int32

const (
	// ModeOK answers normally.
	ModeOK Mode = iota
	// ModeBadRequest answers every token request with 400 invalid_request.
	ModeBadRequest
	// ModeServerError answers every token request with 500 server_error.
	ModeServerError
	// ModeHang never answers: it holds the request until the client gives
	// up or the fake is closed.
	ModeHang
)

// Grant types recorded in Request.Grant.
const (
	GrantClientSecret = "client_secret"
	GrantCertificate  = "certificate"
	GrantAssertion    = "assertion"
)

// JWTBearer is the client_assertion_type of an assertion-based request.
const JWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Options configure the Entra ID fake. The zero value is a fake that knows no
// client and rejects every request.
type Options struct {
	// ClientSecrets maps a client ID to its one valid secret.
	ClientSecrets map[string]string
	// Certificates maps a client ID to the certificates whose keys may sign
	// its client assertions (matched by x5t or x5t#S256).
	Certificates map[string][]*x509.Certificate
	// VerifyAssertion checks a client assertion that carries no certificate
	// thumbprint, that is a federated token such as a Kubernetes service
	// account token. A nil VerifyAssertion rejects them. See VerifyFederated.
	VerifyAssertion func(clientID, tenantID, assertion string) error
	// TokenLifetime is the lifetime of issued access tokens; default 1h.
	TokenLifetime time.Duration
	// Now is the fake's clock; default time.Now.
	Now func() time.Time
	// ListenAddress is the IP address to listen on; empty means 127.0.0.1.
	// The real node's pods reach the fake at the node's address, which the
	// serving certificate then names too.
	ListenAddress string
}

// Request is one call to the token endpoint, as the fake saw it. It holds no
// secret and no assertion.
type Request struct {
	TenantID string
	ClientID string
	Scope    string
	// Grant is one of the Grant* constants, or empty when the request had
	// no credential.
	Grant string
	// Status is the HTTP status the fake answered.
	Status int
	// Error is the OAuth error code of a refusal.
	Error string
}

// Counts are the fake's call counters.
type Counts struct {
	// Metadata counts OpenID configuration requests.
	Metadata int
	// Token counts token endpoint requests, whatever their outcome.
	Token int
	// Issued counts access tokens issued.
	Issued int
}

// Server is a running Entra ID fake.
type Server struct {
	// URL is the base URL, https://127.0.0.1:<port>, without a trailing slash.
	URL string

	opts    Options
	ca      *testCA
	signer  *ecdsa.PrivateKey
	srv     *http.Server
	closing chan struct{}
	once    sync.Once

	mu       sync.Mutex
	secrets  map[string]string
	certs    map[string][]*x509.Certificate
	requests []Request
	gate     chan struct{}

	metadata, token, issued, pending atomic.Int64
	mode                             atomic.Int32
}

// maxRecorded bounds Requests, so that a load test cannot grow the fake.
const maxRecorded = 10000

// Start starts an Entra ID fake on 127.0.0.1 with a fresh test CA.
func Start(o Options) (*Server, error) {
	if o.TokenLifetime <= 0 {
		o.TokenLifetime = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ca, err := newTestCA()
	if err != nil {
		return nil, err
	}
	host := "127.0.0.1"
	var extraIPs []net.IP
	if o.ListenAddress != "" {
		ip := net.ParseIP(o.ListenAddress)
		if ip == nil {
			return nil, fmt.Errorf("fakeaad: Options.ListenAddress %q is not an IP address", o.ListenAddress)
		}
		host, extraIPs = o.ListenAddress, []net.IP{ip}
	}
	serving, err := ca.serverCertificate(extraIPs...)
	if err != nil {
		return nil, err
	}
	signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate token signing key: %w", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("listen for fake Entra ID: %w", err)
	}
	s := &Server{
		URL:     "https://" + ln.Addr().String(),
		opts:    o,
		ca:      ca,
		signer:  signer,
		closing: make(chan struct{}),
		secrets: map[string]string{},
		certs:   map[string][]*x509.Certificate{},
	}
	for id, secret := range o.ClientSecrets {
		s.secrets[id] = secret
	}
	for id, certs := range o.Certificates {
		s.certs[id] = append([]*x509.Certificate(nil), certs...)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", s.handleMetadata)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", s.handleToken)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{serving}, MinVersion: tls.VersionTLS12},
	}
	go func() { _ = s.srv.Serve(tls.NewListener(ln, s.srv.TLSConfig)) }()
	return s, nil
}

// Close stops the fake and releases any request it holds.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closing)
		_ = s.srv.Close()
	})
}

// AuthorityHost is the value for an identity's authority host, with the
// trailing slash that Entra's own host URLs have.
func (s *Server) AuthorityHost() string { return s.URL + "/" }

// CAPEM returns the PEM of the CA that signed the fake's serving certificate.
func (s *Server) CAPEM() []byte { return append([]byte(nil), s.ca.certPEM...) }

// CertPool returns a pool holding only the fake's CA.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.ca.cert)
	return p
}

// HTTPClient returns a client that trusts the fake's CA.
func (s *Server) HTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: s.CertPool(), MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t}
}

// SetMode changes how token requests are answered from now on.
func (s *Server) SetMode(m Mode) { s.mode.Store(int32(m)) }

// Hold makes token requests wait until the returned release is called (or
// the fake closes). Tests use it to pile up concurrent requests.
func (s *Server) Hold() (release func()) {
	gate := make(chan struct{})
	s.mu.Lock()
	s.gate = gate
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.gate == gate {
				s.gate = nil
			}
			s.mu.Unlock()
			close(gate)
		})
	}
}

// Pending is the number of token requests being handled right now.
func (s *Server) Pending() int { return int(s.pending.Load()) }

// Counts returns the call counters.
func (s *Server) Counts() Counts {
	return Counts{Metadata: int(s.metadata.Load()), Token: int(s.token.Load()), Issued: int(s.issued.Load())}
}

// Requests returns the token requests seen so far (at most the first 10,000).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// AddClientSecret registers (or replaces) a client's secret.
func (s *Server) AddClientSecret(clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets[clientID] = secret
}

// AddCertificate registers a certificate for a client's assertions.
func (s *Server) AddCertificate(clientID string, cert *x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs[clientID] = append(s.certs[clientID], cert)
}

func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	s.metadata.Add(1)
	tenant := r.PathValue("tenant")
	base := s.URL + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"issuer":                                base + "/v2.0",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"tenant_region_scope":                   "WW",
		"cloud_instance_name":                   "fakeaad",
	})
}

// oauthError is a refusal in Entra's shape.
type oauthError struct {
	status int
	code   string
	desc   string
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	s.token.Add(1)
	s.pending.Add(1)
	defer s.pending.Add(-1)
	rec := Request{TenantID: r.PathValue("tenant")}
	defer func() { s.record(rec) }()

	if !s.wait(r) {
		rec.Status, rec.Error = 0, "abandoned"
		return
	}
	switch Mode(s.mode.Load()) {
	case ModeBadRequest:
		rec.Status, rec.Error = s.refuse(w, oauthError{http.StatusBadRequest, "invalid_request", "AADSTS90000: fakeaad was told to fail this request"})
		return
	case ModeServerError:
		rec.Status, rec.Error = s.refuse(w, oauthError{http.StatusInternalServerError, "server_error", "AADSTS90033: fakeaad was told to be unavailable"})
		return
	case ModeHang:
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		rec.Status, rec.Error = 0, "hung"
		return
	}

	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		rec.Status, rec.Error = s.refuse(w, oauthError{http.StatusBadRequest, "invalid_request", "AADSTS900144: the request body is not a valid form: " + err.Error()})
		return
	}
	rec.ClientID = r.PostForm.Get("client_id")
	rec.Scope = r.PostForm.Get("scope")
	resource, grant, oe := s.authenticate(r, rec.TenantID)
	rec.Grant = grant
	if oe != nil {
		rec.Status, rec.Error = s.refuse(w, *oe)
		return
	}
	token, err := s.issue(rec.TenantID, rec.ClientID, resource, grant)
	if err != nil {
		rec.Status, rec.Error = s.refuse(w, oauthError{http.StatusInternalServerError, "server_error", err.Error()})
		return
	}
	s.issued.Add(1)
	secs := int64(s.opts.TokenLifetime / time.Second)
	rec.Status = http.StatusOK
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   token,
	})
}

// wait blocks while the fake is held. It reports false when the client or
// the fake gave up first.
func (s *Server) wait(r *http.Request) bool {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate == nil {
		return true
	}
	select {
	case <-gate:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closing:
		return false
	}
}

// authenticate checks the client-credentials request and returns the
// resource the token is for and which grant the client used.
func (s *Server) authenticate(r *http.Request, tenant string) (resource, grant string, _ *oauthError) {
	f := r.PostForm
	if gt := f.Get("grant_type"); gt != "client_credentials" {
		return "", "", &oauthError{http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("AADSTS70003: grant_type %q is not supported by fakeaad", gt)}
	}
	clientID := f.Get("client_id")
	if clientID == "" {
		return "", "", &oauthError{http.StatusBadRequest, "invalid_request", "AADSTS900144: the request body must contain the parameter client_id"}
	}
	// MSAL adds the OpenID scopes to every request; Entra ignores them for
	// the client-credentials grant, and so does the fake.
	scope := f.Get("scope")
	var scopes []string
	for _, sc := range strings.Fields(scope) {
		if sc != "openid" && sc != "offline_access" && sc != "profile" {
			scopes = append(scopes, sc)
		}
	}
	ok := len(scopes) == 1
	if ok {
		resource, ok = strings.CutSuffix(scopes[0], "/.default")
	}
	if !ok || resource == "" {
		return "", "", &oauthError{http.StatusBadRequest, "invalid_scope", fmt.Sprintf("AADSTS1002012: the scope %q is not valid; client credential flows need one scope ending in /.default", scope)}
	}
	switch {
	case f.Has("client_secret"):
		s.mu.Lock()
		want, known := s.secrets[clientID]
		s.mu.Unlock()
		if !known {
			return "", GrantClientSecret, &oauthError{http.StatusBadRequest, "unauthorized_client", fmt.Sprintf("AADSTS700016: application with identifier %q was not found in tenant %q", clientID, tenant)}
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(f.Get("client_secret"))) != 1 {
			return "", GrantClientSecret, &oauthError{http.StatusUnauthorized, "invalid_client", fmt.Sprintf("AADSTS7000215: invalid client secret provided for application %q", clientID)}
		}
		return resource, GrantClientSecret, nil
	case f.Has("client_assertion"):
		if at := f.Get("client_assertion_type"); at != JWTBearer {
			return "", "", &oauthError{http.StatusBadRequest, "invalid_request", fmt.Sprintf("AADSTS50027: client_assertion_type %q is not %s", at, JWTBearer)}
		}
		assertion := f.Get("client_assertion")
		hdr, err := unverifiedHeader(assertion)
		if err != nil {
			return "", GrantAssertion, &oauthError{http.StatusBadRequest, "invalid_request", "AADSTS50027: the client assertion is not a JWT: " + err.Error()}
		}
		if _, has := hdr["x5t#S256"]; has || hdr["x5t"] != nil {
			if err := s.verifyCertificateAssertion(clientID, tenant, hdr, assertion); err != nil {
				return "", GrantCertificate, &oauthError{http.StatusUnauthorized, "invalid_client", "AADSTS700027: " + err.Error()}
			}
			return resource, GrantCertificate, nil
		}
		if s.opts.VerifyAssertion == nil {
			return "", GrantAssertion, &oauthError{http.StatusBadRequest, "invalid_client", "AADSTS70021: no federated identity credentials are configured in fakeaad"}
		}
		if err := s.opts.VerifyAssertion(clientID, tenant, assertion); err != nil {
			return "", GrantAssertion, &oauthError{http.StatusBadRequest, "invalid_client", "AADSTS70021: no matching federated identity record found for the presented assertion: " + err.Error()}
		}
		return resource, GrantAssertion, nil
	default:
		return "", "", &oauthError{http.StatusBadRequest, "invalid_client", "AADSTS7000218: the request body must contain client_assertion or client_secret"}
	}
}

// verifyCertificateAssertion finds the registered certificate named by the
// assertion's thumbprint and checks the signature and claims MSAL writes.
func (s *Server) verifyCertificateAssertion(clientID, tenant string, hdr map[string]any, assertion string) error {
	s.mu.Lock()
	certs := s.certs[clientID]
	s.mu.Unlock()
	var key any
	for _, c := range certs {
		if thumbprintMatches(hdr, c) {
			key = c.PublicKey
			break
		}
	}
	if key == nil {
		return fmt.Errorf("no certificate registered for application %q matches the assertion's thumbprint", clientID)
	}
	_, err := jwt.Parse(assertion, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{"PS256", "RS256", "ES256"}),
		jwt.WithAudience(s.URL+"/"+tenant+"/oauth2/v2.0/token"),
		jwt.WithIssuer(clientID),
		jwt.WithSubject(clientID),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.opts.Now),
		jwt.WithLeeway(time.Minute),
	)
	if err != nil {
		return fmt.Errorf("client assertion for application %q is invalid: %w", clientID, err)
	}
	return nil
}

func thumbprintMatches(hdr map[string]any, c *x509.Certificate) bool {
	if v, ok := hdr["x5t#S256"].(string); ok {
		sum := sha256.Sum256(c.Raw)
		return equalB64(v, sum[:])
	}
	if v, ok := hdr["x5t"].(string); ok {
		sum := sha1.Sum(c.Raw) //nolint:gosec // x5t is defined as SHA-1.
		return equalB64(v, sum[:])
	}
	return false
}

// equalB64 accepts both base64 alphabets: MSAL writes the standard one,
// RFC 7515 says base64url.
func equalB64(v string, want []byte) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding} {
		if got, err := enc.DecodeString(v); err == nil {
			return subtle.ConstantTimeCompare(got, want) == 1
		}
	}
	return false
}

func unverifiedHeader(token string) (map[string]any, error) {
	head, _, ok := strings.Cut(token, ".")
	if !ok {
		return nil, errors.New("no '.' separator")
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return nil, fmt.Errorf("decode header: %w", err)
	}
	var hdr map[string]any
	if err := json.Unmarshal(raw, &hdr); err != nil {
		return nil, fmt.Errorf("parse header: %w", err)
	}
	return hdr, nil
}

// AccessTokenClaims are the claims of a token the fakes issue, as a test
// reads them back with VerifyAccessToken.
type AccessTokenClaims struct {
	Audience  string `json:"aud"`
	Issuer    string `json:"iss"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	ExpiresAt int64  `json:"exp"`
	AppID     string `json:"appid"`
	AZP       string `json:"azp"`
	AppIDACR  string `json:"appidacr"`
	TenantID  string `json:"tid"`
	ObjectID  string `json:"oid"`
	Subject   string `json:"sub"`
	Version   string `json:"ver"`
	UTI       string `json:"uti"`
	// Source is "entra" or "imds": which fake issued the token.
	Source string `json:"fakeaad_source"`
}

// GetExpirationTime and the other methods make AccessTokenClaims a
// jwt.Claims, so that jwt.Parse validates the time claims.
func (c *AccessTokenClaims) GetExpirationTime() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.ExpiresAt, 0)), nil
}

// GetIssuedAt implements jwt.Claims.
func (c *AccessTokenClaims) GetIssuedAt() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.IssuedAt, 0)), nil
}

// GetNotBefore implements jwt.Claims.
func (c *AccessTokenClaims) GetNotBefore() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.NotBefore, 0)), nil
}

// GetIssuer implements jwt.Claims.
func (c *AccessTokenClaims) GetIssuer() (string, error) { return c.Issuer, nil }

// GetSubject implements jwt.Claims.
func (c *AccessTokenClaims) GetSubject() (string, error) { return c.Subject, nil }

// GetAudience implements jwt.Claims.
func (c *AccessTokenClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings{c.Audience}, nil
}

// VerifyAccessToken checks that token was issued by this fake (or its IMDS),
// is signed by its key and is within its lifetime, and returns its claims.
func (s *Server) VerifyAccessToken(token string) (*AccessTokenClaims, error) {
	var c AccessTokenClaims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return &s.signer.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(s.opts.Now), jwt.WithExpirationRequired())
	if err != nil {
		return nil, fmt.Errorf("verify fakeaad access token: %w", err)
	}
	return &c, nil
}

// issue signs an access token shaped like an Entra v1 token for resource.
func (s *Server) issue(tenant, clientID, resource, grant string) (string, error) {
	return s.sign(tenant, clientID, resource, grant, "entra", s.opts.TokenLifetime)
}

func (s *Server) sign(tenant, clientID, resource, grant, source string, lifetime time.Duration) (string, error) {
	now := s.opts.Now()
	acr := "1"
	if grant != GrantClientSecret {
		acr = "2"
	}
	oid := uuid.NewSHA1(uuid.NameSpaceOID, []byte(tenant+"/"+clientID)).String()
	claims := jwt.MapClaims{
		"aud":            resource,
		"iss":            "https://sts.windows.net/" + tenant + "/",
		"iat":            now.Unix(),
		"nbf":            now.Unix(),
		"exp":            now.Add(lifetime).Unix(),
		"appid":          clientID,
		"azp":            clientID,
		"appidacr":       acr,
		"idtyp":          "app",
		"tid":            tenant,
		"oid":            oid,
		"sub":            oid,
		"ver":            "1.0",
		"uti":            uuid.NewString(),
		"fakeaad_source": source,
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(s.signer)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	return signed, nil
}

func (s *Server) refuse(w http.ResponseWriter, e oauthError) (int, string) {
	writeJSON(w, e.status, map[string]any{
		"error":             e.code,
		"error_description": e.desc,
		"error_codes":       []int{aadstsCode(e.desc)},
		"timestamp":         s.opts.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":          uuid.NewString(),
		"correlation_id":    uuid.NewString(),
	})
	return e.status, e.code
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) < maxRecorded {
		s.requests = append(s.requests, r)
	}
}

// aadstsCode pulls the number out of an "AADSTSnnnn:" description.
func aadstsCode(desc string) int {
	n := 0
	rest, ok := strings.CutPrefix(desc, "AADSTS")
	if !ok {
		return 0
	}
	for _, ch := range rest {
		if ch < '0' || ch > '9' {
			break
		}
		n = n*10 + int(ch-'0')
	}
	return n
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
