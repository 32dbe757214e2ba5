package tokenserver

// The two managed identity protocols the sidecar speaks, each in one value
// that knows its paths, its own header, its api-version and its response.
// The route a request arrives on carries its protocol (routes in server.go),
// so that nothing after the mux looks at the path again, and a third
// protocol would be one more value here rather than a case in every step.

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/podidentity/injector/internal/names"
)

// protocol is the dialect of a token request.
type protocol struct {
	// name is the protocol's name in tests and messages.
	name string
	// path is the path it is served on, exactly (no subtree).
	path string
	// trailingSlash: it is served on path + "/" too.
	trailingSlash bool
	// checkHeader refuses a request without the protocol's own header;
	// nil when it has none.
	checkHeader func(http.Header) *apiError
	// headerOptional: a client may send no X-IDENTITY-HEADER, since it
	// knows no secret (IMDS clients). authorize decides what such a
	// request may use.
	headerOptional bool
	// checkAPIVersion refuses an api-version the protocol does not serve.
	checkAPIVersion func(string) *apiError
	// encode writes the token response.
	encode func(w http.ResponseWriter, t tokenResponse)
}

func (p *protocol) String() string { return p.name }

// Protocol versions.
const (
	appServiceAPIVersion = "2019-08-01"
	// oldestIMDSAPIVersion is the first IMDS version with this response
	// shape; IMDS versions are dates, so later ones compare greater.
	oldestIMDSAPIVersion = "2018-02-01"
)

// appService is App Service's 2019-08-01 protocol: IDENTITY_ENDPOINT with
// the X-IDENTITY-HEADER secret.
var appService = &protocol{
	name:            "appService",
	path:            names.PathAppService,
	checkAPIVersion: checkAppServiceAPIVersion,
	encode:          encodeAppService,
}

// imds is the instance metadata service's protocol, with "Metadata: true".
// Some of its clients send a trailing slash.
var imds = &protocol{
	name:            "imds",
	path:            names.PathIMDS,
	trailingSlash:   true,
	checkHeader:     checkMetadata,
	headerOptional:  true,
	checkAPIVersion: checkIMDSAPIVersion,
	encode:          encodeIMDS,
}

// protocols are the protocols the server routes.
var protocols = []*protocol{appService, imds}

func checkMetadata(h http.Header) *apiError {
	if md := h.Values(names.HeaderMetadata); len(md) != 1 || !strings.EqualFold(md[0], "true") {
		return &apiError{http.StatusUnauthorized, "unauthorized", "the " + names.HeaderMetadata + ": true header is missing; send it once"}
	}
	return nil
}

func checkAppServiceAPIVersion(v string) *apiError {
	switch v {
	case "":
		return errNoAPIVersion(appServiceAPIVersion)
	case appServiceAPIVersion:
		return nil
	}
	// 2017-09-01 has another header and a date-string expires_on, which
	// newer clients misread; only 2019-08-01 is served.
	return badRequest("api-version %q is not supported on %s; use %s", truncate(v), names.PathAppService, appServiceAPIVersion)
}

func checkIMDSAPIVersion(v string) *apiError {
	if v == "" {
		return errNoAPIVersion(oldestIMDSAPIVersion)
	}
	if !isDate(v) || v < oldestIMDSAPIVersion {
		return badRequest("api-version %q is not supported on %s; use %s or later", truncate(v), names.PathIMDS, oldestIMDSAPIVersion)
	}
	return nil
}

func errNoAPIVersion(use string) *apiError {
	return badRequest("query parameter api-version is missing; use %s", use)
}

// tokenResponse is what either protocol's response says, before its
// encoding.
type tokenResponse struct {
	accessToken string
	clientID    string
	resource    string
	expiresOn   time.Time
	refreshOn   time.Time
	now         time.Time
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

// expiresIn is the token's remaining lifetime in seconds, never negative.
func (t tokenResponse) expiresIn() int64 {
	return max(int64(t.expiresOn.Sub(t.now)/time.Second), 0)
}

// refreshIn is the refresh hint in seconds; 0 leaves it out.
func (t tokenResponse) refreshIn() int64 {
	if d := t.refreshOn.Sub(t.now); d >= minRefreshIn {
		return int64(d / time.Second)
	}
	return 0
}

// notBefore: the token's own nbf is inside the opaque token; now is a safe
// bound.
func (t tokenResponse) notBefore() string { return strconv.FormatInt(t.now.Unix(), 10) }

func encodeAppService(w http.ResponseWriter, t tokenResponse) {
	writeJSON(w, http.StatusOK, appServiceResponse{
		AccessToken: t.accessToken, ExpiresOn: strconv.FormatInt(t.expiresOn.Unix(), 10), ExpiresIn: t.expiresIn(), RefreshIn: t.refreshIn(),
		NotBefore: t.notBefore(), Resource: t.resource, TokenType: "Bearer", ClientID: t.clientID,
	})
}

func encodeIMDS(w http.ResponseWriter, t tokenResponse) {
	expiresIn := strconv.FormatInt(t.expiresIn(), 10)
	r := imdsResponse{
		AccessToken: t.accessToken, ClientID: t.clientID, ExpiresIn: expiresIn,
		ExpiresOn: strconv.FormatInt(t.expiresOn.Unix(), 10), ExtExpiresIn: expiresIn, NotBefore: t.notBefore(),
		Resource: t.resource, TokenType: "Bearer",
	}
	if n := t.refreshIn(); n > 0 {
		r.RefreshIn = strconv.FormatInt(n, 10)
	}
	writeJSON(w, http.StatusOK, r)
}
