package tokenserver

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// ErrNoCertificates is wrapped when an extra CA bundle holds no certificate.
var ErrNoCertificates = errors.New("no PEM certificate found")

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
	return &http.Client{Transport: t}, nil
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
