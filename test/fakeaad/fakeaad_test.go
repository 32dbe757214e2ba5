package fakeaad

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fake is only useful if it refuses what Entra ID refuses: each case
// drives a real azidentity credential at it and checks the outcome.
func TestEntraChecksCredentials(t *testing.T) {
	p, err := NewPod(PodOptions{Dir: t.TempDir()})
	require.NoError(t, err)
	defer p.Close()
	opts := azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: p.AAD.AuthorityHost()},
		Transport: p.AAD.HTTPClient(),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}
	secretID := p.Identity(IdentitySecret).ClientID
	pemCert, err := NewClientCertificate("other")
	require.NoError(t, err)
	otherIssuer, err := NewTokenIssuer(p.Issuer.Issuer)
	require.NoError(t, err)
	tokenFile := func(t *testing.T, tok string) string {
		f := t.TempDir() + "/token"
		require.NoError(t, writeFile(f, tok))
		return f
	}
	fedID := p.Identity(IdentityFederated).ClientID
	goodSA := p.ServiceAccountToken
	wrongSubject, err := p.Issuer.Sign(ServiceAccountSubject("default", "someone-else"), time.Hour)
	require.NoError(t, err)
	wrongKey, err := otherIssuer.Sign(ServiceAccountSubject("default", "workload"), time.Hour)
	require.NoError(t, err)

	cases := []struct {
		name    string
		cred    func(t *testing.T) (azcore.TokenCredential, error)
		wantErr string // empty: a token
		grant   string
	}{
		{"right secret", func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewClientSecretCredential(p.TenantID, secretID, p.ClientSecret, &azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
		}, "", GrantClientSecret},
		{"wrong secret", func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewClientSecretCredential(p.TenantID, secretID, "nope", &azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
		}, "AADSTS7000215", GrantClientSecret},
		{"unknown client", func(*testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewClientSecretCredential(p.TenantID, "00000000-0000-0000-0000-000000000001", "x", &azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
		}, "AADSTS700016", GrantClientSecret},
		{"registered certificate", func(*testing.T) (azcore.TokenCredential, error) {
			certs, key, err := azidentity.ParseCertificates(PKCS12, []byte(PKCS12Password))
			require.NoError(t, err)
			return azidentity.NewClientCertificateCredential(p.TenantID, p.Identity(IdentityCertP12).ClientID, certs, key, &azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
		}, "", GrantCertificate},
		{"unregistered certificate", func(*testing.T) (azcore.TokenCredential, error) {
			certs, key, err := azidentity.ParseCertificates(append(pemCert.CertPEM, pemCert.KeyPEM...), nil)
			require.NoError(t, err)
			return azidentity.NewClientCertificateCredential(p.TenantID, p.Identity(IdentityCertPEM).ClientID, certs, key, &azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
		}, "AADSTS700027", GrantCertificate},
		{"federated token", func(t *testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{ClientOptions: opts, ClientID: fedID, TenantID: p.TenantID, TokenFilePath: tokenFile(t, goodSA), DisableInstanceDiscovery: true})
		}, "", GrantAssertion},
		{"federated token for another subject", func(t *testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{ClientOptions: opts, ClientID: fedID, TenantID: p.TenantID, TokenFilePath: tokenFile(t, wrongSubject), DisableInstanceDiscovery: true})
		}, "AADSTS70021", GrantAssertion},
		{"federated token signed by another key", func(t *testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{ClientOptions: opts, ClientID: fedID, TenantID: p.TenantID, TokenFilePath: tokenFile(t, wrongKey), DisableInstanceDiscovery: true})
		}, "token signature is invalid", GrantAssertion},
		{"federated token for another client", func(t *testing.T) (azcore.TokenCredential, error) {
			return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{ClientOptions: opts, ClientID: secretID, TenantID: p.TenantID, TokenFilePath: tokenFile(t, goodSA), DisableInstanceDiscovery: true})
		}, "none is declared for client", GrantAssertion},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cred, err := tc.cred(t)
			require.NoError(t, err)
			before := len(p.AAD.Requests())
			tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}})
			reqs := p.AAD.Requests()
			require.Len(t, reqs, before+1)
			assert.Equal(t, tc.grant, reqs[before].Grant)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			claims, err := p.AAD.VerifyAccessToken(tok.Token)
			require.NoError(t, err)
			assert.Equal(t, "https://vault.azure.net", claims.Audience)
			assert.Equal(t, "https://sts.windows.net/"+p.TenantID+"/", claims.Issuer)
		})
	}
}

func TestEntraModesAndScopes(t *testing.T) {
	aad, err := Start(Options{ClientSecrets: map[string]string{"c": "s"}})
	require.NoError(t, err)
	defer aad.Close()
	client := aad.HTTPClient()
	post := func(form url.Values) int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, aad.URL+"/t/oauth2/v2.0/token", strings.NewReader(form.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good := url.Values{"grant_type": {"client_credentials"}, "client_id": {"c"}, "client_secret": {"s"}, "scope": {"https://r/.default openid profile offline_access"}}
	assert.Equal(t, 200, post(good))
	bad := url.Values{"grant_type": {"client_credentials"}, "client_id": {"c"}, "client_secret": {"s"}, "scope": {"https://r"}}
	assert.Equal(t, 400, post(bad), "a scope without /.default")
	aad.SetMode(ModeBadRequest)
	assert.Equal(t, 400, post(good))
	aad.SetMode(ModeServerError)
	assert.Equal(t, 500, post(good))
	aad.SetMode(ModeHang)
	assert.Equal(t, 0, post(good), "a hung request ends with the client's deadline")
	assert.Equal(t, Counts{Token: 5, Issued: 1}, aad.Counts())
}

func TestIMDSChecksRequests(t *testing.T) {
	aad, err := Start(Options{})
	require.NoError(t, err)
	defer aad.Close()
	m, err := aad.StartIMDS(IMDSOptions{TenantID: "t", ClientIDs: []string{"a", "b"}})
	require.NoError(t, err)
	defer m.Close()
	get := func(query string, header http.Header) int {
		req, err := http.NewRequest(http.MethodGet, m.URL+"/metadata/identity/oauth2/token?"+query, nil)
		require.NoError(t, err)
		req.Header = header
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	md := http.Header{"Metadata": {"true"}}
	assert.Equal(t, 200, get("api-version=2018-02-01&resource=r&client_id=a", md))
	assert.Equal(t, 400, get("api-version=2018-02-01&resource=r", md), "two identities and none named")
	assert.Equal(t, 400, get("api-version=2018-02-01&resource=r&client_id=zzz", md), "not attached")
	assert.Equal(t, 400, get("api-version=2018-02-01&resource=r&client_id=a", http.Header{}), "no Metadata header")
	assert.Equal(t, 400, get("resource=r&client_id=a", md), "no api-version")
	assert.Equal(t, 1, m.Issued())
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
