// Package tlsclient is the upstream TLS client with the system roots, one layer of the sidecar's stack that the
// hack/footprint programs add one at a time (BENCHMARKS.md, "Sidecar
// footprint"). A program links only the layers it imports.
package tlsclient

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
)

// TLSClient builds the upstream client and loads the system roots, as the
// first TLS handshake to Entra ID does.
func TLSClient() *http.Client {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	return &http.Client{Transport: t}
}
