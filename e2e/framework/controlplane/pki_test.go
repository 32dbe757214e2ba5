package controlplane

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/util/keyutil"
)

func TestPKIServingCertVerifiesForEveryAPIServerName(t *testing.T) {
	p, err := newPKI(t.TempDir(), net.ParseIP("10.0.0.1"))
	require.NoError(t, err)
	serving := loadCert(t, p.serverCert)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(p.caCertPEM))

	for _, name := range []string{"127.0.0.1", "localhost", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "10.0.0.1"} {
		t.Run(name, func(t *testing.T) {
			_, err := serving.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			assert.NoError(t, err)
		})
	}
	t.Run("other host is rejected", func(t *testing.T) {
		_, err := serving.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: roots})
		var hostErr x509.HostnameError
		assert.ErrorAs(t, err, &hostErr)
	})
}

func TestPKIAdminCertIsAClusterAdminClient(t *testing.T) {
	p, err := newPKI(t.TempDir(), nil)
	require.NoError(t, err)
	admin := loadCert(t, p.adminCert)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(p.caCertPEM))

	_, err = admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	assert.Equal(t, []string{"system:masters"}, admin.Subject.Organization)
}

// The files are read by kube-apiserver and kube-controller-manager, so they
// are checked with the parsers those use, and over a real mutual TLS
// handshake.
func TestPKIFilesLoadAndHandshake(t *testing.T) {
	p, err := newPKI(t.TempDir(), nil)
	require.NoError(t, err)

	serverPair, err := tls.LoadX509KeyPair(p.serverCert, p.serverKey)
	require.NoError(t, err)
	clientPair, err := tls.LoadX509KeyPair(p.adminCert, p.adminKey)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(p.caCertPEM))

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.TLS.PeerCertificates[0].Subject.Organization[0]))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverPair}, ClientCAs: roots, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, Certificates: []tls.Certificate{clientPair},
	}}}
	resp, err := client.Get(srv.URL) // srv.URL is https://127.0.0.1:<port>
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "system:masters", string(body), "server saw the wrong client identity")

	signing, err := keyutil.PrivateKeyFromFile(p.saKey)
	require.NoError(t, err)
	rsaKey, ok := signing.(*rsa.PrivateKey)
	require.True(t, ok, "service-account key must be RSA for RS256 tokens, got %T", signing)
	pubs, err := keyutil.PublicKeysFromFile(p.saPub)
	require.NoError(t, err)
	require.Len(t, pubs, 1)
	assert.True(t, rsaKey.PublicKey.Equal(pubs[0]), "sa.pub is not the public half of sa.key")

	for _, f := range []string{p.serverKey, p.adminKey, p.saKey} {
		info, err := os.Stat(f)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), f)
	}
}

func loadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block, "no PEM in %s", path)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return cert
}
