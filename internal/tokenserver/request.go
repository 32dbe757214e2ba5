package tokenserver

// The query of a token request, which both protocols share but for the
// api-version, and the helpers that keep a client's values out of
// responses and log lines unless they are clean or escaped. Parsing comes
// after authorize (authorize.go), so that a caller without the secret
// learns nothing from the parser's messages.

import (
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
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

// tokenRequest is a parsed token request.
type tokenRequest struct {
	protocol *protocol
	// resource is the audience exactly as the client asked for it; it is
	// echoed in the response and keys the cache.
	resource string
	// scope is the v2 scope sent upstream.
	scope string
	// selectorKey and selectorValue name the identity the client asked for;
	// both are empty for the default identity.
	selectorKey   string
	selectorValue string
}

// parse parses the query of a request of protocol p. Errors are *apiError
// with the status the SDKs expect; the request holds what was parsed
// before the error, so that the log line can name the resource.
func (p *protocol) parse(rawQuery string) (tokenRequest, *apiError) {
	req := tokenRequest{protocol: p}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return req, badRequest("the query string is malformed: %v", err)
	}
	for key, vals := range q {
		if len(vals) > 1 {
			return req, badRequest("query parameter %s is given %d times; give it once", key, len(vals))
		}
	}
	if e := p.checkAPIVersion(q.Get("api-version")); e != nil {
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
