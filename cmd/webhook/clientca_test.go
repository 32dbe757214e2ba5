package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
)

// testCA issues certificates for the client CA tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a leaf for usage, as PEM certificate and key.
func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage, ips ...net.IP) ([]byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func (ca *testCA) client(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, cn, x509.ExtKeyUsageClientAuth)
	pair, err := tls.X509KeyPair(c, k)
	require.NoError(t, err)
	return pair
}

// TestClientCAFile runs controller-runtime's webhook server with the
// --client-ca-file option over real TLS: a caller without a certificate,
// with one from another CA, or with a server-only certificate of the right
// CA is refused in the handshake; the API server's client certificate is
// served; a rotated bundle takes effect without a restart; and the
// server's own started check still passes.
func TestClientCAFile(t *testing.T) {
	dir := t.TempDir()
	servingCA, apiCA, otherCA := newTestCA(t, "serving"), newTestCA(t, "apiserver-clients"), newTestCA(t, "other")
	crt, key := servingCA.issue(t, "webhook", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.crt"), crt, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.key"), key, 0o600))
	caFile := filepath.Join(dir, "client-ca.crt")
	require.NoError(t, os.WriteFile(caFile, apiCA.pem, 0o600))

	cfg, err := parse(t, "--sidecar-image=x", "--client-ca-file="+caFile)
	require.NoError(t, err)
	ca, err := newClientCA(cfg.ClientCAFile)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{Host: "127.0.0.1", Port: port, CertDir: dir, TLSOpts: append(tlsOptions(cfg), ca.tlsOption)})
	srv.Register("/hello", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello") }))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Start(ctx) }()
	t.Cleanup(func() { cancel(); _ = <-errc })

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(servingCA.pem)
	get := func(certs ...tls.Certificate) error {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
		defer c.CloseIdleConnections()
		resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/hello", port))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	require.Eventually(t, func() bool { return get(apiCA.client(t, "kube-apiserver")) == nil }, 10*time.Second, 50*time.Millisecond,
		"the API server's client certificate is served")

	assert.Error(t, get(), "no client certificate")
	assert.Error(t, get(otherCA.client(t, "intruder")), "a certificate of another CA")
	c, k := apiCA.issue(t, "not-a-client", x509.ExtKeyUsageServerAuth)
	serverOnly, err := tls.X509KeyPair(c, k)
	require.NoError(t, err)
	assert.Error(t, get(serverOnly), "a certificate of the right CA without client auth usage")
	assert.NoError(t, srv.StartedChecker()(nil), "readiness's own handshake still passes")

	// Rotation: the bundle now holds the new CA alone.
	rotated := newTestCA(t, "apiserver-clients-2")
	require.NoError(t, os.WriteFile(caFile, rotated.pem, 0o600))
	require.NoError(t, os.Chtimes(caFile, time.Now().Add(time.Minute), time.Now().Add(time.Minute)))
	assert.NoError(t, get(rotated.client(t, "kube-apiserver")), "the rotated bundle is read without a restart")
	assert.Error(t, get(apiCA.client(t, "kube-apiserver")), "the old CA is gone with the old bundle")
}

// TestClientCAFileRefusesBadBundle: a bundle that cannot be read fails at
// start, with the flag's name.
func TestClientCAFileRefusesBadBundle(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.crt")
	require.NoError(t, os.WriteFile(empty, []byte("not a certificate\n"), 0o600))
	for name, path := range map[string]string{"missing": filepath.Join(dir, "nope.crt"), "no PEM": empty} {
		t.Run(name, func(t *testing.T) {
			_, err := newClientCA(path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "--client-ca-file")
		})
	}
}
