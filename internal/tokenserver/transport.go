package tokenserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/podidentity/injector/internal/sidecarconfig"
)

// ErrNoCertificates is wrapped when an extra CA bundle holds no certificate.
var ErrNoCertificates = errors.New("no PEM certificate found")

// Refusals of upstream requests, for errors.Is.
var (
	// ErrUpstreamRedirect is wrapped when an upstream answers with a
	// redirect, which the sidecar never follows: a followed redirect would
	// carry the POST body, a client secret, signed assertion or service
	// account token, to wherever the upstream points, http included.
	ErrUpstreamRedirect = errors.New("the upstream answered with a redirect, which the sidecar does not follow")
	// ErrUpstreamNotAllowed is wrapped when an identity's request would go
	// to a host off the authority allow-list, or without https: say, a
	// token_endpoint named by the authority's OpenID metadata.
	ErrUpstreamNotAllowed = errors.New("upstream request refused: not an https URL on the authority allow-list")
)

// NewHTTPClient returns the client for upstream calls: the standard
// transport (with proxy settings from the environment), TLS 1.2 or later, and
// the system roots extended with extraCAPEM, if any. Tests pass the CA of a
// fake Entra ID here.
func NewHTTPClient(extraCAPEM []byte) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if len(extraCAPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(extraCAPEM) {
			return nil, ErrNoCertificates
		}
		t.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: t, CheckRedirect: refuseRedirect}, nil
}

// refuseRedirect is the upstream client's CheckRedirect. Entra ID, IMDS and
// the OpenID metadata never redirect a token client.
func refuseRedirect(req *http.Request, via []*http.Request) error {
	from := via[len(via)-1].URL
	return refuse(req.Context(), fmt.Errorf("%w: %s %s://%s%s redirected to %s://%s%s; point the identity's authority (spec.adEndpoint) at the Entra endpoint itself",
		ErrUpstreamRedirect, via[0].Method, from.Scheme, from.Host, from.Path, req.URL.Scheme, req.URL.Host, req.URL.Path))
}

// refusalKey is the context key of a *refusal.
type refusalKey struct{}

// refusal carries a refusal of the transport's out to getToken:
// azidentity flattens the errors of the transport into text, and the
// sidecar's own error is clearer than its wrapping, and says "do not
// retry".
type refusal struct {
	mu  sync.Mutex
	err error
}

// refuse records err in ctx's refusal, if any, and returns it.
func refuse(ctx context.Context, err error) error {
	if r, ok := ctx.Value(refusalKey{}).(*refusal); ok {
		r.mu.Lock()
		if r.err == nil {
			r.err = err
		}
		r.mu.Unlock()
	}
	return err
}

// hostGuard is an azcore policy of the Entra sources that lets a request
// through only to an https URL whose host is on the authority allow-list.
// The webhook and the sidecar check the configured authority; this checks
// every request, so that the authority's OpenID metadata cannot send the
// credential to another host through its token_endpoint.
type hostGuard struct {
	who     string   // "AzureIdentity ns/name", for the message
	allowed []string // canonical hosts, see sidecarconfig.AllowedHost
}

func newHostGuard(who string, allowed []string) *hostGuard {
	g := &hostGuard{who: who}
	for _, a := range allowed {
		if c, err := sidecarconfig.AllowedHost(a); err == nil {
			g.allowed = append(g.allowed, c)
		}
	}
	return g
}

// Do implements policy.Policy.
func (g *hostGuard) Do(req *policy.Request) (*http.Response, error) {
	u := req.Raw().URL
	host, err := sidecarconfig.AuthorityHost(u.Scheme + "://" + u.Host + "/")
	if err != nil || !slices.Contains(g.allowed, host) {
		return nil, refuse(req.Raw().Context(), fmt.Errorf("%w: %s would send a request to %s://%s%s, whose host is not among %s (the OpenID metadata of its authority may have named it as token_endpoint); "+
			"the webhook's --allowed-authority-hosts decides which hosts may receive credentials",
			ErrUpstreamNotAllowed, g.who, u.Scheme, u.Host, u.Path, strings.Join(g.allowed, ", ")))
	}
	return req.Next()
}

// imdsHost is where azidentity sends IMDS requests; it is not configurable.
const imdsHost = "169.254.169.254"

// imdsRedirect is an azcore per-call policy that sends requests addressed to
// the IMDS link-local address to another endpoint instead. It is how tests,
// e2e and local runs point the imds source at a fake, because azidentity
// hard-codes the IMDS address and a policy is its supported extension point.
type imdsRedirect struct {
	target *url.URL
}

func newIMDSRedirect(endpoint string) (*imdsRedirect, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("IMDS endpoint %q is not an http(s) URL with a host, such as http://127.0.0.1:8080", endpoint)
	}
	return &imdsRedirect{target: u}, nil
}

// Do implements policy.Policy.
func (p *imdsRedirect) Do(req *policy.Request) (*http.Response, error) {
	raw := req.Raw()
	if raw.URL.Hostname() == imdsHost {
		raw.URL.Scheme = p.target.Scheme
		raw.URL.Host = p.target.Host
		raw.Host = p.target.Host
	}
	return req.Next()
}
