package tokenserver

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
)

const testSecret = "0123456789abcdef0123456789abcdef"

func newRequest(path, rawQuery string, header http.Header) *http.Request {
	return &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path, RawQuery: rawQuery}, Header: header}
}

// TestParseRequest pins how requests become (protocol, resource, scope,
// selector).
func TestParseRequest(t *testing.T) {
	as := http.Header{http.CanonicalHeaderKey(names.HeaderIdentity): {testSecret}}
	md := http.Header{"Metadata": {"true"}}
	cases := []struct {
		name     string
		path     string
		query    string
		header   http.Header
		want     tokenRequest
		wantCode int
	}{
		{"App Service", "/msi/token", "api-version=2019-08-01&resource=https://vault.azure.net", as,
			tokenRequest{protocol: appService, resource: "https://vault.azure.net", scope: "https://vault.azure.net/.default"}, 0},
		{"trailing slash kept in the scope", "/msi/token", "api-version=2019-08-01&resource=https%3A%2F%2Fmanagement.azure.com%2F", as,
			tokenRequest{protocol: appService, resource: "https://management.azure.com/", scope: "https://management.azure.com//.default"}, 0},
		{"scope passed as resource", "/msi/token", "api-version=2019-08-01&resource=https://storage.azure.com/.default", as,
			tokenRequest{protocol: appService, resource: "https://storage.azure.com/.default", scope: "https://storage.azure.com/.default"}, 0},
		{"GUID resource", "/msi/token", "api-version=2019-08-01&resource=cfa8b339-82a2-471a-a3c9-0fc0be7a4093", as,
			tokenRequest{protocol: appService, resource: "cfa8b339-82a2-471a-a3c9-0fc0be7a4093", scope: "cfa8b339-82a2-471a-a3c9-0fc0be7a4093/.default"}, 0},
		{"client_id", "/msi/token", "api-version=2019-08-01&resource=r&client_id=abc", as,
			tokenRequest{protocol: appService, resource: "r", scope: "r/.default", selectorKey: "client_id", selectorValue: "abc"}, 0},
		{"empty selector means default", "/msi/token", "api-version=2019-08-01&resource=r&client_id=", as,
			tokenRequest{protocol: appService, resource: "r", scope: "r/.default"}, 0},
		{"unknown parameters ignored", "/msi/token", "api-version=2019-08-01&resource=r&bypass_cache=true", as,
			tokenRequest{protocol: appService, resource: "r", scope: "r/.default"}, 0},
		{"IMDS", "/metadata/identity/oauth2/token", "api-version=2018-02-01&resource=r&msi_res_id=%2Fsubscriptions%2Fs", md,
			tokenRequest{protocol: imds, resource: "r", scope: "r/.default", selectorKey: "msi_res_id", selectorValue: "/subscriptions/s"}, 0},
		{"IMDS newer api-version", "/metadata/identity/oauth2/token/", "api-version=2021-02-01&resource=r", http.Header{"Metadata": {"True"}},
			tokenRequest{protocol: imds, resource: "r", scope: "r/.default"}, 0},
		{"IMDS api-version not a date", "/metadata/identity/oauth2/token", "api-version=latest&resource=r", md, tokenRequest{}, 400},
		{"resource too long", "/msi/token", "api-version=2019-08-01&resource=" + strings.Repeat("a", maxResourceLen+1), as, tokenRequest{}, 400},
		{"resource with a newline", "/msi/token", "api-version=2019-08-01&resource=a%0Ab", as, tokenRequest{}, 400},
		{"bare .default", "/msi/token", "api-version=2019-08-01&resource=/.default", as, tokenRequest{}, 400},
		{"selector with a control character", "/msi/token", "api-version=2019-08-01&resource=r&client_id=a%00", as, tokenRequest{}, 400},
		{"other path", "/msi/token2", "", as, tokenRequest{}, 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRequest(newRequest(tc.path, tc.query, tc.header), podWide(testSecret))
			if tc.wantCode != 0 {
				require.NotNil(t, err)
				assert.Equal(t, tc.wantCode, err.status)
				return
			}
			require.Nil(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// FuzzParseRequest feeds arbitrary paths, queries and header values to the
// parser: it must not panic, must answer only with the statuses the
// protocol allows, and must accept only requests that carry the secret (or
// Metadata: true) and a clean resource.
func FuzzParseRequest(f *testing.F) {
	f.Add("/msi/token", "api-version=2019-08-01&resource=https://vault.azure.net", testSecret, "", "")
	f.Add("/msi/token", "api-version=2019-08-01&resource=r&client_id=a&mi_res_id=b", testSecret, "", "")
	f.Add("/metadata/identity/oauth2/token/", "api-version=2018-02-01&resource=r&msi_res_id=x", "", "true", "")
	f.Add("/metadata/identity/oauth2/token", "api-version=2018-02-01&resource=%zz", "", "true", "1.2.3.4")
	f.Add("/msi/token", "resource=a&resource=b", testSecret[:5], "", "")
	f.Fuzz(func(t *testing.T, path, query, identityHeader, metadata, forwarded string) {
		h := http.Header{}
		if identityHeader != "" {
			h.Set(names.HeaderIdentity, identityHeader)
		}
		if metadata != "" {
			h.Set("Metadata", metadata)
		}
		if forwarded != "" {
			h.Set("X-Forwarded-For", forwarded)
		}
		req, err := parseRequest(newRequest(path, query, h), podWide(testSecret))
		if err != nil {
			switch err.status {
			case 400, 401, 403, 404:
			default:
				t.Fatalf("status %d for path %q query %q", err.status, path, query)
			}
			if err.code == "" || err.description == "" || !utf8.ValidString(err.code) {
				t.Fatalf("error without code or description: %+v", err)
			}
			return
		}
		if forwarded != "" {
			t.Fatal("accepted a forwarded request")
		}
		switch req.protocol {
		case appService:
			if identityHeader != testSecret {
				t.Fatalf("accepted App Service request with header %q", identityHeader)
			}
		case imds:
			if !strings.EqualFold(metadata, "true") {
				t.Fatalf("accepted IMDS request with Metadata %q", metadata)
			}
		default:
			t.Fatalf("accepted unknown protocol for path %q", path)
		}
		if req.resource == "" || len(req.resource) > maxResourceLen || !printable(req.resource) {
			t.Fatalf("accepted resource %q", req.resource)
		}
		if !strings.HasSuffix(req.scope, "/.default") || len(req.scope) <= len("/.default") {
			t.Fatalf("scope %q for resource %q", req.scope, req.resource)
		}
		if (req.selectorKey == "") != (req.selectorValue == "") {
			t.Fatalf("half a selector: %q=%q", req.selectorKey, req.selectorValue)
		}
	})
}

// podWide authorizes as a server with the one pod-wide header secret.
func podWide(secret string) authorizeFunc {
	return (&Server{header: []byte(secret)}).authorize
}
