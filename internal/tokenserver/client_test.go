package tokenserver

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/fakeaad"
)

// setClientEnv sets exactly the environment the webhook injects into app
// containers, and clears what would steer DefaultAzureCredential elsewhere.
func setClientEnv(t *testing.T, r *running, p *fakeaad.Pod, defaultClientID string) {
	t.Setenv(names.EnvIdentityEndpoint, r.url+names.PathAppService)
	t.Setenv(names.EnvIdentityHeader, p.IdentityHeader)
	t.Setenv(names.EnvAzureClientID, defaultClientID)
	t.Setenv(names.EnvAuthorityHost, r.url)
	for _, k := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE",
		"AZURE_USERNAME", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT", "AZURE_TOKEN_CREDENTIALS"} {
		t.Setenv(k, "") // restored after the test
		require.NoError(t, os.Unsetenv(k))
	}
}

// checkToken verifies that tok was issued by the pod's fakes for resource
// and the identity with clientID.
func checkToken(t *testing.T, p *fakeaad.Pod, tok azcore.AccessToken, resource, clientID, source string) {
	t.Helper()
	claims, err := p.AAD.VerifyAccessToken(tok.Token)
	require.NoError(t, err)
	assert.Equal(t, resource, claims.Audience)
	assert.Equal(t, clientID, claims.AppID)
	assert.Equal(t, "https://sts.windows.net/"+p.TenantID+"/", claims.Issuer)
	assert.Equal(t, source, claims.Source)
	assert.WithinDuration(t, time.Unix(claims.ExpiresAt, 0), tok.ExpiresOn, 2*time.Second, "expires_on must be the token's exp")
}

// TestRealClients drives the real azidentity ManagedIdentityCredential and
// DefaultAzureCredential, configured only by the injected environment,
// against the sidecar for every token source.
func TestRealClients(t *testing.T) {
	for _, name := range fakeaad.PodIdentities {
		t.Run(name, func(t *testing.T) {
			// The identity under test is the pod's default, so that requests
			// naming no identity exercise it too.
			p := newPod(t, name)
			r := startServer(t, p)
			id := p.Identity(name)
			setClientEnv(t, r, p, id.ClientID)
			wantSource := "entra"
			if id.Source == names.TokenSourceIMDS {
				wantSource = "imds"
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			clients := map[string]func() (azcore.TokenCredential, error){
				"ManagedIdentityCredential with client ID": func() (azcore.TokenCredential, error) {
					return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(id.ClientID)})
				},
				"ManagedIdentityCredential without ID": func() (azcore.TokenCredential, error) {
					return azidentity.NewManagedIdentityCredential(nil)
				},
				"DefaultAzureCredential": func() (azcore.TokenCredential, error) {
					return azidentity.NewDefaultAzureCredential(nil)
				},
			}
			for kind, newCred := range clients {
				t.Run(kind, func(t *testing.T) {
					cred, err := newCred()
					require.NoError(t, err)
					resource := uniqueResource(t)
					tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{resource + "/.default"}})
					require.NoError(t, err)
					checkToken(t, p, tok, resource, id.ClientID, wantSource)
				})
			}
		})
	}
}

// TestRealClientSelectsEachIdentity asks one sidecar for every bound
// identity by client ID, and for the type 0 identity by resource ID.
func TestRealClientSelectsEachIdentity(t *testing.T) {
	p := newPod(t, fakeaad.IdentitySecret)
	r := startServer(t, p)
	setClientEnv(t, r, p, p.Identity(fakeaad.IdentitySecret).ClientID)
	ctx := context.Background()
	for _, name := range fakeaad.PodIdentities {
		id := p.Identity(name)
		cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(id.ClientID)})
		require.NoError(t, err)
		resource := uniqueResource(t)
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{resource + "/.default"}})
		require.NoError(t, err, name)
		claims, err := p.AAD.VerifyAccessToken(tok.Token)
		require.NoError(t, err)
		assert.Equal(t, id.ClientID, claims.AppID, name)
	}

	im := p.Identity(fakeaad.IdentityIMDS)
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ResourceID(im.ResourceID)})
	require.NoError(t, err)
	resource := uniqueResource(t)
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{resource}})
	require.NoError(t, err)
	checkToken(t, p, tok, resource, im.ClientID, "imds")
}

// TestRealClientUnboundIdentity checks the error a real client shows for an
// identity that is not bound to the pod.
func TestRealClientUnboundIdentity(t *testing.T) {
	p := newPod(t, "")
	r := startServer(t, p)
	setClientEnv(t, r, p, p.Identity(fakeaad.IdentityFederated).ClientID)
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
		ID:            azidentity.ClientID("00000000-0000-0000-0000-000000000000"),
		ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}},
	})
	require.NoError(t, err)
	_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{uniqueResource(t) + "/.default"}})
	var afe *azidentity.AuthenticationFailedError
	require.ErrorAs(t, err, &afe)
	require.NotNil(t, afe.RawResponse)
	assert.Equal(t, http.StatusNotFound, afe.RawResponse.StatusCode)
	assert.Contains(t, err.Error(), `no identity with client_id \"00000000-0000-0000-0000-000000000000\" is bound to this pod`)
}

// TestIMDSPathRawClient requests tokens the IMDS way with a plain HTTP
// client, as curl or an SDK honouring AZURE_POD_IDENTITY_AUTHORITY_HOST
// would, and checks IMDS's response shape: every field a string.
func TestIMDSPathRawClient(t *testing.T) {
	p := newPod(t, fakeaad.IdentitySecret)
	r := startServer(t, p)
	digits := regexp.MustCompile(`^[0-9]+$`)
	cases := map[string]struct {
		path  string
		query func(resource string) url.Values
		want  string // identity name
	}{
		"default identity": {
			path:  names.PathIMDS,
			query: func(res string) url.Values { return url.Values{"resource": {res}} },
			want:  fakeaad.IdentitySecret,
		},
		"trailing slash as msal-node sends": {
			path:  names.PathIMDS + "/",
			query: func(res string) url.Values { return url.Values{"resource": {res}} },
			want:  fakeaad.IdentitySecret,
		},
		"client_id": {
			path: names.PathIMDS,
			query: func(res string) url.Values {
				return url.Values{"resource": {res}, "client_id": {strings.ToUpper(p.Identity(fakeaad.IdentityCertPEM).ClientID)}}
			},
			want: fakeaad.IdentityCertPEM,
		},
		"msi_res_id": {
			path: names.PathIMDS,
			query: func(res string) url.Values {
				return url.Values{"resource": {res}, "msi_res_id": {p.Identity(fakeaad.IdentityIMDS).ResourceID}}
			},
			want: fakeaad.IdentityIMDS,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			resource := uniqueResource(t)
			q := tc.query(resource)
			q.Set("api-version", "2018-02-01")
			resp := r.get(t, tc.path+"?"+q.Encode(), http.Header{"Metadata": {"true"}})
			require.Equal(t, http.StatusOK, resp.status, resp.body)
			for _, k := range []string{"access_token", "client_id", "expires_in", "expires_on", "ext_expires_in", "not_before", "resource", "token_type"} {
				require.IsType(t, "", resp.body[k], "IMDS sends %s as a string", k)
			}
			for _, k := range []string{"expires_in", "expires_on", "ext_expires_in", "not_before"} {
				assert.Regexp(t, digits, resp.str(k), k)
			}
			want := p.Identity(tc.want)
			assert.Equal(t, want.ClientID, resp.str("client_id"))
			assert.Equal(t, resource, resp.str("resource"))
			assert.Equal(t, "Bearer", resp.str("token_type"))
			claims, err := p.AAD.VerifyAccessToken(resp.str("access_token"))
			require.NoError(t, err)
			assert.Equal(t, want.ClientID, claims.AppID)
			assert.Equal(t, resource, claims.Audience)
			assert.Equal(t, resp.str("expires_on"), itoa(claims.ExpiresAt))
		})
	}
}

// TestAppServiceResponseShape pins the App Service fields and their JSON
// types: expires_on a string of epoch seconds, expires_in a number.
func TestAppServiceResponseShape(t *testing.T) {
	p := newPod(t, fakeaad.IdentityCertP12)
	r := startServer(t, p)
	resource := uniqueResource(t)
	resp := r.appService(t, p, url.Values{"resource": {resource}})
	require.Equal(t, http.StatusOK, resp.status, resp.body)
	assert.IsType(t, float64(0), resp.body["expires_in"])
	assert.IsType(t, float64(0), resp.body["refresh_in"], "a fresh token carries a refresh hint")
	assert.Regexp(t, `^[0-9]+$`, resp.str("expires_on"))
	assert.Regexp(t, `^[0-9]+$`, resp.str("not_before"))
	assert.Equal(t, "Bearer", resp.str("token_type"))
	assert.Equal(t, resource, resp.str("resource"))
	assert.Equal(t, p.Identity(fakeaad.IdentityCertP12).ClientID, resp.str("client_id"))
	claims, err := p.AAD.VerifyAccessToken(resp.str("access_token"))
	require.NoError(t, err)
	assert.Equal(t, itoa(claims.ExpiresAt), resp.str("expires_on"))
	assert.InDelta(t, float64(claims.ExpiresAt-time.Now().Unix()), resp.body["expires_in"], 5)
	grants := map[string]string{}
	for _, rq := range p.AAD.Requests() {
		grants[rq.ClientID] = rq.Grant
	}
	assert.Equal(t, fakeaad.GrantCertificate, grants[p.Identity(fakeaad.IdentityCertP12).ClientID])
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
