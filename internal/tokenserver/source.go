package tokenserver

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/managedidentity"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// Token is an access token and when it stops being usable.
type Token struct {
	// AccessToken is the bearer token. It is never logged.
	AccessToken string
	// ExpiresOn is when the token expires.
	ExpiresOn time.Time
	// RefreshOn, when set, is when the cache should renew the token. A
	// source sets it when the upstream says so, or when it knows that an
	// earlier refresh would only return the same token.
	RefreshOn time.Time
}

// Source gets tokens for one identity from upstream: Entra ID or the
// node's IMDS. Token is called by the cache only, one call at a time per
// resource, and never for a token the cache still considers fresh.
type Source interface {
	Token(ctx context.Context, scope string) (Token, error)
}

// SourceOptions are what every source shares.
type SourceOptions struct {
	// AuthorityHost is used for identities whose config names none; empty
	// means azidentity's default (AZURE_AUTHORITY_HOST, else public cloud).
	AuthorityHost string
	// Transport carries every upstream request. Build it with
	// NewHTTPClient so that it trusts any extra CA.
	Transport policy.Transporter
	// IMDSEndpoint, when set, replaces http://169.254.169.254 for the imds
	// source. Tests and local runs point it at a fake IMDS.
	IMDSEndpoint string
	// AllowedAuthorityHosts are the only hosts the Entra sources send
	// requests to (sidecarconfig.Config.AllowedAuthorities); empty means
	// sidecarconfig.PublicAuthorityHosts.
	AllowedAuthorityHosts []string
}

// Errors that classify why an identity cannot be loaded, for errors.Is.
var (
	// ErrSecretLayout is wrapped when a mounted Secret lacks the keys its
	// identity type needs.
	ErrSecretLayout = errors.New("secret does not have the keys this identity needs")
	// ErrIMDSEnvironment is wrapped when environment variables would send
	// ManagedIdentityCredential somewhere other than the node's IMDS.
	ErrIMDSEnvironment = errors.New("environment would redirect managed identity away from IMDS")
)

// LoadSource builds the source of one identity. It reads the identity's
// mounted files once, so that a pod with a missing or malformed Secret fails
// at start with a message that names it rather than at its first request.
func LoadSource(id sidecarconfig.Identity, o SourceOptions) (Source, error) {
	who := fmt.Sprintf("AzureIdentity %s/%s", id.Namespace, id.Name)
	switch id.Source {
	case names.TokenSourceFederated:
		if _, err := os.Stat(id.TokenFile); err != nil {
			return nil, fmt.Errorf("%s (source %s): projected service account token: %w; check the %s volume of the sidecar", who, id.Source, err, names.TokenVolumeName)
		}
		return &federatedSource{id: id, opts: o}, nil
	case names.TokenSourceIMDS:
		return newIMDSSource(id, o, who)
	case names.TokenSourceClientSecret:
		s := &secretSource{id: id, opts: o}
		if _, err := s.readSecret(); err != nil {
			return nil, fmt.Errorf("%s (source %s): %w", who, id.Source, err)
		}
		return s, nil
	case names.TokenSourceClientCertificate:
		s := &certificateSource{id: id, opts: o}
		if _, _, err := s.readCertificate(); err != nil {
			return nil, fmt.Errorf("%s (source %s): %w", who, id.Source, err)
		}
		return s, nil
	}
	// The switch builds each source of sidecarconfig.Sources; a source added
	// there and not here fails every identity that uses it, by name.
	return nil, fmt.Errorf("%s: unknown token source %q; use %s", who, id.Source, sidecarconfig.SourceNames(-1))
}

// clientOptions are the azcore options of one credential. Retries are off:
// the cache retries with its own bounded backoff, and azcore's retries
// inside each attempt would multiply with them.
func clientOptions(id sidecarconfig.Identity, o SourceOptions) azcore.ClientOptions {
	co := azcore.ClientOptions{
		Transport: o.Transport,
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}
	host := id.AuthorityHost
	if host == "" {
		host = o.AuthorityHost
	}
	if host != "" {
		co.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: host}
	}
	return co
}

// entraClientOptions are clientOptions with the host guard: every request
// of an Entra source, the token endpoint included, goes only to an https
// host on the allow-list.
func entraClientOptions(id sidecarconfig.Identity, o SourceOptions) azcore.ClientOptions {
	co := clientOptions(id, o)
	allowed := o.AllowedAuthorityHosts
	if len(allowed) == 0 {
		allowed = sidecarconfig.PublicAuthorityHosts
	}
	co.PerRetryPolicies = append(co.PerRetryPolicies, newHostGuard("AzureIdentity "+id.Namespace+"/"+id.Name, allowed))
	return co
}

// The three Entra sources below build a new azidentity credential for every
// upstream call. A credential caches its tokens and hands the cached one back
// until five minutes before it expires, which would defeat refreshing ahead
// of expiry; a fresh credential always asks Entra. It also means that a
// rotated Secret or projected token is read again on every refresh. The price
// is one OpenID metadata request per refresh, once an hour or so.

// federatedSource exchanges the projected service account token for an
// Entra token (workload identity federation).
type federatedSource struct {
	id   sidecarconfig.Identity
	opts SourceOptions
}

func (s *federatedSource) Token(ctx context.Context, scope string) (Token, error) {
	cred, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
		ClientOptions:              entraClientOptions(s.id, s.opts),
		ClientID:                   s.id.ClientID,
		TenantID:                   s.id.TenantID,
		TokenFilePath:              s.id.TokenFile,
		DisableInstanceDiscovery:   s.id.DisableInstanceDiscovery,
		AdditionallyAllowedTenants: s.id.AdditionallyAllowedTenants,
	})
	if err != nil {
		return Token{}, permanent(fmt.Errorf("configure WorkloadIdentityCredential: %w", err))
	}
	return getToken(ctx, cred, scope)
}

// secretSource is a service principal with a client secret (type 1).
type secretSource struct {
	id   sidecarconfig.Identity
	opts SourceOptions
}

func (s *secretSource) Token(ctx context.Context, scope string) (Token, error) {
	secret, err := s.readSecret()
	if err != nil {
		return Token{}, permanent(err)
	}
	cred, err := azidentity.NewClientSecretCredential(s.id.TenantID, s.id.ClientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:              entraClientOptions(s.id, s.opts),
		DisableInstanceDiscovery:   s.id.DisableInstanceDiscovery,
		AdditionallyAllowedTenants: s.id.AdditionallyAllowedTenants,
	})
	if err != nil {
		return Token{}, permanent(fmt.Errorf("configure ClientSecretCredential: %w", err))
	}
	return getToken(ctx, cred, scope)
}

// readSecret reads the client secret: key clientSecret, or the only key, as
// aad-pod-identity accepted.
func (s *secretSource) readSecret() (string, error) {
	keys, err := secretKeys(s.id.SecretDir)
	if err != nil {
		return "", fmt.Errorf("read Secret %s mounted at %s: %w", s.id.SecretName, s.id.SecretDir, err)
	}
	key := names.SecretKeyClientSecret
	if !slices.Contains(keys, key) {
		if len(keys) != 1 {
			return "", fmt.Errorf("%w: Secret %s has keys %v; a type 1 AzureIdentity needs key %q (or exactly one key); add key %s to the Secret",
				ErrSecretLayout, s.id.SecretName, keys, names.SecretKeyClientSecret, names.SecretKeyClientSecret)
		}
		key = keys[0]
	}
	b, err := os.ReadFile(filepath.Join(s.id.SecretDir, key))
	if err != nil {
		return "", fmt.Errorf("read key %s of Secret %s: %w", key, s.id.SecretName, err)
	}
	// `kubectl create secret --from-file` keeps the file's final newline,
	// which no client secret contains.
	secret := strings.TrimRight(string(b), "\r\n")
	if secret == "" {
		return "", fmt.Errorf("%w: key %s of Secret %s is empty; put the client secret there", ErrSecretLayout, key, s.id.SecretName)
	}
	return secret, nil
}

// certificateSource is a service principal with a certificate (type 2).
type certificateSource struct {
	id   sidecarconfig.Identity
	opts SourceOptions
}

func (s *certificateSource) Token(ctx context.Context, scope string) (Token, error) {
	certs, key, err := s.readCertificate()
	if err != nil {
		return Token{}, permanent(err)
	}
	cred, err := azidentity.NewClientCertificateCredential(s.id.TenantID, s.id.ClientID, certs, key, &azidentity.ClientCertificateCredentialOptions{
		ClientOptions:              entraClientOptions(s.id, s.opts),
		DisableInstanceDiscovery:   s.id.DisableInstanceDiscovery,
		AdditionallyAllowedTenants: s.id.AdditionallyAllowedTenants,
	})
	if err != nil {
		return Token{}, permanent(fmt.Errorf("configure ClientCertificateCredential: %w", err))
	}
	return getToken(ctx, cred, scope)
}

// readCertificate reads PKCS#12 certificate+password, or PEM
// tls.crt+tls.key.
func (s *certificateSource) readCertificate() ([]*x509.Certificate, crypto.PrivateKey, error) {
	keys, err := secretKeys(s.id.SecretDir)
	if err != nil {
		return nil, nil, fmt.Errorf("read Secret %s mounted at %s: %w", s.id.SecretName, s.id.SecretDir, err)
	}
	read := func(key string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(s.id.SecretDir, key))
		if err != nil {
			return nil, fmt.Errorf("read key %s of Secret %s: %w", key, s.id.SecretName, err)
		}
		return b, nil
	}
	var data, password []byte
	var layout string
	switch {
	case slices.Contains(keys, names.SecretKeyCertificate):
		layout = "PKCS#12 key " + names.SecretKeyCertificate
		if data, err = read(names.SecretKeyCertificate); err != nil {
			return nil, nil, err
		}
		if slices.Contains(keys, names.SecretKeyPassword) {
			if password, err = read(names.SecretKeyPassword); err != nil {
				return nil, nil, err
			}
			password = []byte(strings.TrimRight(string(password), "\r\n"))
		}
	case slices.Contains(keys, names.SecretKeyTLSCert) && slices.Contains(keys, names.SecretKeyTLSKey):
		layout = "PEM keys " + names.SecretKeyTLSCert + " and " + names.SecretKeyTLSKey
		crt, err := read(names.SecretKeyTLSCert)
		if err != nil {
			return nil, nil, err
		}
		key, err := read(names.SecretKeyTLSKey)
		if err != nil {
			return nil, nil, err
		}
		data = append(append(crt, '\n'), key...)
	default:
		return nil, nil, fmt.Errorf("%w: Secret %s has keys %v; a type 2 AzureIdentity needs %q (PKCS#12) with %q, or %q and %q (PEM)",
			ErrSecretLayout, s.id.SecretName, keys, names.SecretKeyCertificate, names.SecretKeyPassword, names.SecretKeyTLSCert, names.SecretKeyTLSKey)
	}
	certs, key, err := azidentity.ParseCertificates(data, password)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s of Secret %s: %w; it must hold an RSA certificate and its unencrypted private key", ErrSecretLayout, layout, s.id.SecretName, err)
	}
	return certs, key, nil
}

// secretKeys lists the keys of a mounted Secret. The kubelet's atomic writer
// adds entries whose names begin with "..", which are not keys.
func secretKeys(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		keys = append(keys, e.Name())
	}
	return keys, nil
}

// imdsSource asks the node's IMDS for a user-assigned identity. One
// credential serves the process: MSAL keeps managed identity tokens in a
// process-wide cache anyway, so a new credential would not refresh earlier.
type imdsSource struct {
	cred *azidentity.ManagedIdentityCredential
}

// msalHoldsFor is how long before expiry MSAL stops handing out a cached
// token (its AccessToken.Validate).
const msalHoldsFor = 5 * time.Minute

func newIMDSSource(id sidecarconfig.Identity, o SourceOptions, who string) (*imdsSource, error) {
	// azidentity chooses the managed identity endpoint from the process
	// environment when the credential is made. In the sidecar these
	// variables would point it at the sidecar itself or at another service.
	if src, err := managedidentity.GetSource(); err != nil || src != managedidentity.DefaultToIMDS {
		return nil, fmt.Errorf("%s (source %s): %w: ManagedIdentityCredential would use %q; remove IDENTITY_ENDPOINT, MSI_ENDPOINT and IMDS_ENDPOINT from the %s container",
			who, id.Source, ErrIMDSEnvironment, src, names.SidecarContainerName)
	}
	co := clientOptions(id, o)
	if o.IMDSEndpoint != "" {
		p, err := newIMDSRedirect(o.IMDSEndpoint)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", who, err)
		}
		co.PerCallPolicies = append(co.PerCallPolicies, p)
	}
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
		ClientOptions: co,
		ID:            azidentity.ClientID(id.ClientID),
	})
	if err != nil {
		return nil, fmt.Errorf("%s (source %s): configure ManagedIdentityCredential: %w", who, id.Source, err)
	}
	return &imdsSource{cred: cred}, nil
}

func (s *imdsSource) Token(ctx context.Context, scope string) (Token, error) {
	t, err := getToken(ctx, s.cred, scope)
	if err == nil && t.RefreshOn.IsZero() {
		// MSAL sets no refresh time for tokens of two hours or less and
		// returns its cached copy until msalHoldsFor before expiry.
		t.RefreshOn = t.ExpiresOn.Add(-msalHoldsFor + time.Second)
	}
	return t, err
}

func getToken(ctx context.Context, cred azcore.TokenCredential, scope string) (Token, error) {
	r := &refusal{}
	at, err := cred.GetToken(context.WithValue(ctx, refusalKey{}, r), policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.err != nil {
			return Token{}, permanent(r.err)
		}
		return Token{}, classify(err)
	}
	return Token{AccessToken: at.Token, ExpiresOn: at.ExpiresOn, RefreshOn: at.RefreshOn}, nil
}

// upstreamError marks whether retrying an upstream failure can help.
type upstreamError struct {
	err       error
	temporary bool
}

func (e *upstreamError) Error() string { return e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

func permanent(err error) error { return &upstreamError{err: err} }

// classify decides whether an upstream failure is worth retrying: a network
// error, a timeout, 408, 429 or a 5xx is; a definite refusal such as
// invalid_client is not, and retrying it would only slow the client down.
func classify(err error) error {
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) && afe.RawResponse != nil {
		code := afe.RawResponse.StatusCode
		temp := code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
		return &upstreamError{err: err, temporary: temp}
	}
	return &upstreamError{err: err, temporary: true}
}

// isTemporary reports whether err is worth retrying. Errors that did not go
// through classify are.
func isTemporary(err error) bool {
	var ue *upstreamError
	if errors.As(err, &ue) {
		return ue.temporary
	}
	return true
}
