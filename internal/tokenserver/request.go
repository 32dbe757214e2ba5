package tokenserver

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/podidentity/injector/internal/names"
)

// protocol is the dialect of a token request.
type protocol int

const (
	// appService is App Service's 2019-08-01 protocol: IDENTITY_ENDPOINT
	// with the X-IDENTITY-HEADER secret.
	appService protocol = iota + 1
	// imds is the instance metadata service's protocol, with "Metadata: true".
	imds
)

func (p protocol) String() string {
	switch p {
	case appService:
		return "appService"
	case imds:
		return "imds"
	}
	return "unknown"
}

// Protocol versions.
const (
	appServiceAPIVersion = "2019-08-01"
	// oldestIMDSAPIVersion is the first IMDS version with this response
	// shape; IMDS versions are dates, so later ones compare greater.
	oldestIMDSAPIVersion = "2018-02-01"
)

// Query parameters that select an identity. App Service spells the ARM ID
// mi_res_id, IMDS msi_res_id; principal_id is App Service's object_id.
const (
	paramClientID    = "client_id"
	paramObjectID    = "object_id"
	paramPrincipalID = "principal_id"
	paramMIResID     = "mi_res_id"
	paramMSIResID    = "msi_res_id"
)

var selectorParams = []string{paramClientID, paramObjectID, paramPrincipalID, paramMIResID, paramMSIResID}

// maxResourceLen bounds the resource parameter; real audiences are URIs or
// GUIDs of well under a hundred bytes.
const maxResourceLen = 512

// tokenRequest is a parsed, authenticated token request.
type tokenRequest struct {
	protocol protocol
	// resource is the audience exactly as the client asked for it; it is
	// echoed in the response and keys the cache.
	resource string
	// scope is the v2 scope sent upstream.
	scope string
	// selectorKey and selectorValue name the identity the client asked for;
	// both are empty for the default identity.
	selectorKey   string
	selectorValue string
	// grant is the caller's, with per-container identities; nil when the
	// pod has one header for every identity.
	grant *grant
}

// authorizeFunc finds the grant of a request's X-IDENTITY-HEADER values,
// or refuses them.
type authorizeFunc func(p protocol, headers []string) (*grant, *apiError)

// parseRequest authenticates and parses a token request. The path must be a
// token path; authorize checks the X-IDENTITY-HEADER; port is the port the
// server listens on, which the Host header must name. Errors are *apiError
// with the status the SDKs expect.
func parseRequest(r *http.Request, authorize authorizeFunc, port int) (tokenRequest, *apiError) {
	var req tokenRequest
	switch strings.TrimSuffix(r.URL.Path, "/") {
	case names.PathAppService:
		req.protocol = appService
	case names.PathIMDS:
		req.protocol = imds
	default:
		return req, errNotFound(r.URL.Path)
	}
	if e := checkLocal(r, port); e != nil {
		return req, e
	}
	if req.protocol == imds {
		if md := r.Header.Values(names.HeaderMetadata); len(md) != 1 || !strings.EqualFold(md[0], "true") {
			return req, &apiError{http.StatusUnauthorized, "unauthorized", "the " + names.HeaderMetadata + ": true header is missing; send it once"}
		}
	}
	g, e := authorize(req.protocol, r.Header.Values(names.HeaderIdentity))
	if e != nil {
		return req, e
	}
	req.grant = g

	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return req, badRequest("the query string is malformed: %v", err)
	}
	for key, vals := range q {
		if len(vals) > 1 {
			return req, badRequest("query parameter %s is given %d times; give it once", key, len(vals))
		}
	}
	if e := checkAPIVersion(req.protocol, q.Get("api-version")); e != nil {
		return req, e
	}
	req.resource = q.Get("resource")
	if e := checkResource(req.resource); e != nil {
		return req, e
	}
	req.scope = scopeFor(req.resource)
	for _, key := range selectorParams {
		v := q.Get(key)
		if v == "" {
			continue
		}
		if req.selectorKey != "" {
			return req, badRequest("both %s and %s select an identity; give at most one", req.selectorKey, key)
		}
		if len(v) > maxResourceLen || !printable(v) || !utf8.ValidString(v) {
			return req, badRequest("query parameter %s is not a valid identifier", key)
		}
		req.selectorKey, req.selectorValue = key, v
	}
	return req, nil
}

func checkAPIVersion(p protocol, v string) *apiError {
	if v == "" {
		return badRequest("query parameter api-version is missing; use %s", map[protocol]string{appService: appServiceAPIVersion, imds: oldestIMDSAPIVersion}[p])
	}
	switch p {
	case appService:
		// 2017-09-01 has another header and a date-string expires_on, which
		// newer clients misread; only 2019-08-01 is served.
		if v != appServiceAPIVersion {
			return badRequest("api-version %q is not supported on %s; use %s", truncate(v), names.PathAppService, appServiceAPIVersion)
		}
	case imds:
		if !isDate(v) || v < oldestIMDSAPIVersion {
			return badRequest("api-version %q is not supported on %s; use %s or later", truncate(v), names.PathIMDS, oldestIMDSAPIVersion)
		}
	}
	return nil
}

func checkResource(resource string) *apiError {
	switch {
	case resource == "":
		return badRequest("query parameter resource is missing; name the audience of the token, for example resource=https://storage.azure.com/")
	case len(resource) > maxResourceLen:
		return badRequest("query parameter resource is longer than %d bytes", maxResourceLen)
	case !printable(resource):
		return badRequest("query parameter resource contains spaces or control characters")
	case !utf8.ValidString(resource):
		return badRequest("query parameter resource is not valid UTF-8")
	case resource == "/.default" || strings.HasSuffix(resource, "/.default/"):
		return badRequest("query parameter resource %q is not an audience", resource)
	}
	return nil
}

// scopeFor turns a v1 resource into the v2 scope Entra expects. The suffix
// is appended to the resource verbatim: for a resource with a trailing slash
// such as https://management.azure.com/, Entra documents the scope
// https://management.azure.com//.default, whose token has aud equal to the
// resource as asked. A client that already sent a scope keeps it.
func scopeFor(resource string) string {
	if strings.HasSuffix(resource, "/.default") {
		return resource
	}
	return resource + "/.default"
}

// printable reports whether s has only visible ASCII or non-ASCII runes: no
// space, control character or DEL, which no audience contains and which
// would make log lines and upstream requests ambiguous.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// isDate reports whether v is YYYY-MM-DD in digits.
func isDate(v string) bool {
	if len(v) != 10 || v[4] != '-' || v[7] != '-' {
		return false
	}
	for i, c := range []byte(v) {
		if i == 4 || i == 7 {
			continue
		}
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// truncate shortens a client's value for a message, escaping it when it
// holds control characters or invalid UTF-8, so that a response or a log
// line always shows what was sent, unambiguously.
func truncate(s string) string {
	cut := ""
	if len(s) > 64 {
		s, cut = s[:64], "..."
	}
	return escape(s) + cut
}

// escape returns s if every rune is valid and printable, else s quoted
// with Go escapes (and without the quotes).
func escape(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			q := strconv.QuoteToASCII(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

// apiError is a refusal, written as JSON {"error","error_description"}.
type apiError struct {
	status      int
	code        string
	description string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.description) }

func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "invalid_request", fmt.Sprintf(format, args...)}
}

func errHeaderMissing() *apiError {
	return &apiError{http.StatusUnauthorized, "unauthorized", "the " + names.HeaderIdentity + " header is missing; send the value of the " + names.EnvIdentityHeader + " environment variable"}
}

// errIMDSHeaderRequired refuses an IMDS-path request without the header
// in a pod whose config requires it there (Config.IMDSRequiresHeader): a
// port-forward or an ephemeral container reaches the loopback too, and
// "Metadata: true" alone proves nothing.
func errIMDSHeaderRequired() *apiError {
	return &apiError{http.StatusUnauthorized, "unauthorized", "the " + names.HeaderIdentity + " header is missing: this pod requires it on " + names.PathIMDS +
		" too (pod annotation " + names.IMDSRequiresHeaderAnnotation + ", on by default with " + names.ContainerIdentitiesAnnotation +
		"); send the value of the " + names.EnvIdentityHeader + " environment variable, or use " + names.EnvIdentityEndpoint + ", which the Azure SDKs do when it is set"}
}

func errHeaderWrong() *apiError {
	return &apiError{http.StatusUnauthorized, "unauthorized", "the " + names.HeaderIdentity + " header is wrong; send the value of the " + names.EnvIdentityHeader + " environment variable of this container"}
}

func errNotFound(path string) *apiError {
	return &apiError{http.StatusNotFound, "not_found", fmt.Sprintf("no endpoint at %q; tokens are served at %s and %s", truncate(path), names.PathAppService, names.PathIMDS)}
}

// checkLocal refuses a request that did not come straight from a process of
// the pod. The sidecar listens on loopback only, but that alone does not
// make a caller local:
//   - a browser in the pod, or one whose DNS an attacker rebinds to
//     127.0.0.1, sends another Host, and Origin or Sec-Fetch-* headers;
//   - a reverse proxy or an SSRF in the pod relays a remote caller's
//     request and marks it with Forwarded, Via, X-Real-IP or X-Forwarded-*.
//
// IMDS refuses forwarded requests for the same reason. The Host must name a
// loopback address and the server's own port; every SDK sends exactly that
// for IDENTITY_ENDPOINT and AZURE_POD_IDENTITY_AUTHORITY_HOST.
func checkLocal(r *http.Request, port int) *apiError {
	for key := range r.Header {
		if refusedHeader(key) {
			return &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf(
				"requests with the %s header are refused: tokens are only for processes in this pod, not for browsers or requests relayed by a proxy",
				truncate(key))}
		}
	}
	p := strconv.Itoa(port)
	switch strings.ToLower(r.Host) {
	case net.JoinHostPort("127.0.0.1", p), net.JoinHostPort("localhost", p), net.JoinHostPort("::1", p):
		return nil
	}
	return &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf(
		"Host %q is refused: send requests to 127.0.0.1:%s, localhost:%s or [::1]:%s, as IDENTITY_ENDPOINT says", truncate(r.Host), p, p, p)}
}

// refusedHeader reports whether a header marks a browser's or a proxy's
// request.
func refusedHeader(key string) bool {
	k := http.CanonicalHeaderKey(key)
	switch k {
	case "Origin", "Via", "Forwarded", "X-Real-Ip":
		return true
	}
	return strings.HasPrefix(k, "Sec-Fetch-") || strings.HasPrefix(k, "X-Forwarded-")
}
