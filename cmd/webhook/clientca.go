package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// clientCA verifies the admission endpoint's callers against a CA bundle
// file (--client-ca-file), so that only an API server that presents a
// certificate from it (AdmissionConfiguration's kubeConfigFile) is served.
// The file is read again when its size or modification time changes, so a
// rotated bundle takes effect without a restart, as the serving
// certificate's does.
type clientCA struct {
	path string

	mu      sync.Mutex
	size    int64
	modTime time.Time
	pool    *x509.CertPool
}

// newClientCA reads path once, so that a missing or empty bundle fails
// at start rather than at the first API server call.
func newClientCA(path string) (*clientCA, error) {
	ca := &clientCA{path: path}
	if _, err := ca.current(); err != nil {
		return nil, err
	}
	return ca, nil
}

// current returns the pool of the file as it is now.
func (ca *clientCA) current() (*x509.CertPool, error) {
	fi, err := os.Stat(ca.path)
	if err != nil {
		return nil, fmt.Errorf("--client-ca-file: %w", err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.pool != nil && fi.Size() == ca.size && fi.ModTime().Equal(ca.modTime) {
		return ca.pool, nil
	}
	pem, err := os.ReadFile(ca.path)
	if err != nil {
		return nil, fmt.Errorf("--client-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--client-ca-file %s holds no PEM certificate; give the CA bundle that signs the API server's client certificate", ca.path)
	}
	ca.pool, ca.size, ca.modTime = pool, fi.Size(), fi.ModTime()
	return pool, nil
}

// verify checks the caller's chain against the current bundle, for
// client authentication.
func (ca *clientCA) verify(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return errors.New("no client certificate: the admission endpoint requires one signed by --client-ca-file")
	}
	pool, err := ca.current()
	if err != nil {
		return err
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		if certs[i], err = x509.ParseCertificate(raw); err != nil {
			return fmt.Errorf("client certificate: %w", err)
		}
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("client certificate of %q: %w", certs[0].Subject.CommonName, err)
	}
	return nil
}

// tlsOption makes the server ask for a client certificate and accept only
// those verify passes. The chain is checked in verify, not through
// tls.Config.ClientCAs, so that the bundle can change under a running
// server.
func (ca *clientCA) tlsOption(c *tls.Config) {
	c.ClientAuth = tls.RequireAnyClientCert
	c.VerifyPeerCertificate = ca.verify
}
