package tokenserver

// Every refusal the server answers, in one shape: an *apiError, written as
// the {"error","error_description"} body the Azure SDKs read. An upstream
// failure becomes one here too, so that a client can tell "ask again later"
// (429, 503) from "this will not work" (500), and its reader can see which
// AzureIdentity failed and why, in Entra's or IMDS's own words.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/podidentity/injector/internal/names"
)

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

func errNotFound(path string) *apiError {
	return &apiError{http.StatusNotFound, "not_found", fmt.Sprintf("no endpoint at %q; tokens are served at %s and %s", truncate(path), names.PathAppService, names.PathIMDS)}
}

func errMethodNotAllowed(method string) *apiError {
	return &apiError{http.StatusMethodNotAllowed, "invalid_request", "method " + method + " is not allowed; use GET"}
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{e.code, e.description})
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
