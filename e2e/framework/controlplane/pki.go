package controlplane

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certValidity is long enough for any demo and short enough that a leaked
// work directory is worth little.
const certValidity = 7 * 24 * time.Hour

// adminGroup is the group that the default RBAC policy binds to cluster-admin.
const adminGroup = "system:masters"

// pki is everything the control plane needs to trust itself and its admin,
// written as PEM files in one directory.
type pki struct {
	caCertPEM []byte
	caX509    *x509.Certificate
	caSigner  crypto.Signer // kept to issue node client certificates later

	caCert     string // CA certificate; the apiserver trusts clients it signed
	serverCert string // kube-apiserver serving certificate
	serverKey  string
	adminCert  string // client certificate in group system:masters
	adminKey   string
	saKey      string // service-account token signing key (private)
	saPub      string // its public half, which the apiserver verifies with

	adminCertPEM []byte
	adminKeyPEM  []byte
}

// newPKI makes a CA, the apiserver's serving certificate, an admin client
// certificate and the service-account signing key pair, and writes them to
// dir. serviceIP is the first address of the service range: in-cluster
// clients reach the apiserver there as kubernetes.default.svc.
func newPKI(dir string, serviceIP net.IP, extraIPs ...net.IP) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create PKI directory %s: %w", dir, err)
	}
	now := time.Now()

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "pod-identity-testcluster-ca"},
		NotBefore:             now.Add(-time.Hour), // tolerate a little clock skew
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caCert, caDER, err := sign(caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA certificate: %w", err)
	}

	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate kube-apiserver serving key: %w", err)
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	if serviceIP != nil {
		ips = append(ips, serviceIP)
	}
	ips = append(ips, extraIPs...)
	_, serverDER, err := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(certValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{
			"localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
		},
		IPAddresses: ips,
	}, caCert, serverKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("sign kube-apiserver serving certificate: %w", err)
	}

	adminKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate admin client key: %w", err)
	}
	_, adminDER, err := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "testcluster-admin", Organization: []string{adminGroup}},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(certValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, caCert, adminKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("sign admin client certificate: %w", err)
	}

	// RSA, not ECDSA: Azure AD federation accepts only RS256 service-account
	// tokens, and AKS signs with RSA, so the tokens here look like real ones.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate service-account signing key: %w", err)
	}

	p := &pki{
		caX509:     caCert,
		caSigner:   caKey,
		caCertPEM:  pemBlock("CERTIFICATE", caDER),
		caCert:     filepath.Join(dir, "ca.crt"),
		serverCert: filepath.Join(dir, "apiserver.crt"),
		serverKey:  filepath.Join(dir, "apiserver.key"),
		adminCert:  filepath.Join(dir, "admin.crt"),
		adminKey:   filepath.Join(dir, "admin.key"),
		saKey:      filepath.Join(dir, "sa.key"),
		saPub:      filepath.Join(dir, "sa.pub"),
	}
	p.adminCertPEM = pemBlock("CERTIFICATE", adminDER)
	if p.adminKeyPEM, err = privateKeyPEM(adminKey); err != nil {
		return nil, err
	}
	serverKeyPEM, err := privateKeyPEM(serverKey)
	if err != nil {
		return nil, err
	}
	saKeyPEM, err := privateKeyPEM(saKey)
	if err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, fmt.Errorf("marshal service-account public key: %w", err)
	}

	files := []struct {
		path string
		data []byte
	}{
		{p.caCert, p.caCertPEM},
		{p.serverCert, pemBlock("CERTIFICATE", serverDER)},
		{p.serverKey, serverKeyPEM},
		{p.adminCert, p.adminCertPEM},
		{p.adminKey, p.adminKeyPEM},
		{p.saKey, saKeyPEM},
		{p.saPub, pemBlock("PUBLIC KEY", saPubDER)},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	return p, nil
}

// clientCertificate issues a client certificate for user cn in groups
// orgs, signed by the cluster's CA, and returns its PEM and key PEM.
func (p *pki) clientCertificate(cn string, orgs ...string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate client key for %s: %w", cn, err)
	}
	now := time.Now()
	_, der, err := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(certValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, p.caX509, key.Public(), p.caSigner)
	if err != nil {
		return nil, nil, fmt.Errorf("sign client certificate for %s: %w", cn, err)
	}
	keyPEM, err = privateKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), keyPEM, nil
}

// sign issues tmpl for pub, signed by parent's key, with a random serial.
func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, []byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("generate serial number: %w", err)
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, der, nil
}

func privateKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
