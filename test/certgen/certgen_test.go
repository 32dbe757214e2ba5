package certgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The repository's own manifests, the ones a cluster applies.
const (
	// The manifests in certs/ at the repository root, two levels up from
	// test/certgen.
	servingManifest = "../../certs/serving-certificate.yaml"
	caManifest      = "../../certs/ca-certificate.yaml"
)

func readManifests(t *testing.T) (serving, ca *cmapi.Certificate) {
	t.Helper()
	serving, err := ReadCertificate(servingManifest)
	require.NoError(t, err)
	ca, err = ReadCertificate(caManifest)
	require.NoError(t, err)
	return serving, ca
}

func parseLeaf(t *testing.T, m Material) *x509.Certificate {
	t.Helper()
	chain, err := pki.DecodeX509CertificateChainBytes(m.Cert)
	require.NoError(t, err)
	require.Len(t, chain, 1, "tls.crt holds the leaf only: the CA is a root and goes in ca.crt")
	return chain[0]
}

func roots(t *testing.T, caPEM []byte) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM), "ca.crt holds a PEM certificate")
	return pool
}

func TestIssue(t *testing.T) {
	serving, ca := readManifests(t)
	tests := []struct {
		name      string
		dnsNames  []string
		ips       []string
		wantDNS   []string
		wantIPs   []string
		verifyFor []string
	}{
		{
			name:      "the manifest's names",
			wantDNS:   serving.Spec.DNSNames,
			verifyFor: serving.Spec.DNSNames,
		},
		{
			name:      "loopback IP and an extra DNS name added for a webhook called by URL",
			dnsNames:  []string{"localhost", serving.Spec.DNSNames[0]},
			ips:       []string{"127.0.0.1", "::1"},
			wantDNS:   append(append([]string{}, serving.Spec.DNSNames...), "localhost"),
			wantIPs:   []string{"127.0.0.1", "::1"},
			verifyFor: []string{"localhost", "127.0.0.1", "::1", serving.Spec.DNSNames[1]},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Issue(Options{Serving: serving, CA: ca, DNSNames: tt.dnsNames, IPAddresses: tt.ips})
			require.NoError(t, err)
			leaf := parseLeaf(t, b.Serving)

			assert.Equal(t, tt.wantDNS, leaf.DNSNames)
			assert.Equal(t, tt.wantIPs, pki.IPAddressesToString(leaf.IPAddresses))
			assert.Equal(t, tt.wantDNS, b.Certificate.Spec.DNSNames, "the returned Certificate says what was issued")
			assert.Equal(t, serving.Spec.Duration.Duration, leaf.NotAfter.Sub(leaf.NotBefore), "spec.duration")
			assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, leaf.ExtKeyUsage)
			assert.Equal(t, x509.KeyUsageDigitalSignature, leaf.KeyUsage)
			assert.False(t, leaf.IsCA)
			pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
			require.True(t, ok, "spec.privateKey.algorithm ECDSA, got %T", leaf.PublicKey)
			assert.Equal(t, elliptic.P256(), pub.Curve)

			key, err := pki.DecodePrivateKeyBytes(b.Serving.Key)
			require.NoError(t, err)
			match, err := pki.PublicKeyMatchesCertificate(key.Public(), leaf)
			require.NoError(t, err)
			assert.True(t, match, "tls.key belongs to tls.crt")

			caCert, err := pki.DecodeX509CertificateBytes(b.Serving.CA)
			require.NoError(t, err)
			assert.True(t, caCert.IsCA)
			assert.Equal(t, ca.Spec.CommonName, caCert.Subject.CommonName)
			assert.Equal(t, ca.Spec.Duration.Duration, caCert.NotAfter.Sub(caCert.NotBefore), "the CA's spec.duration")
			assert.Equal(t, b.CA.Cert, b.Serving.CA, "ca.crt is the CA's certificate")

			for _, name := range tt.verifyFor {
				_, err := leaf.Verify(x509.VerifyOptions{
					DNSName:   name,
					Roots:     roots(t, b.Serving.CA),
					KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				})
				assert.NoError(t, err, "chains to ca.crt for %s", name)
			}
		})
	}
}

func TestIssueReusesCA(t *testing.T) {
	serving, ca := readManifests(t)
	first, err := Issue(Options{Serving: serving, CA: ca})
	require.NoError(t, err)

	rotated, err := Issue(Options{Serving: serving, ExistingCA: &first.CA})
	require.NoError(t, err)

	assert.Equal(t, first.Serving.CA, rotated.Serving.CA, "same ca.crt, so the caBundle stays valid across the rotation")
	assert.Equal(t, first.CA, rotated.CA)
	assert.NotEqual(t, first.Serving.Key, rotated.Serving.Key, "rotationPolicy Always: a new key")
	oldLeaf, newLeaf := parseLeaf(t, first.Serving), parseLeaf(t, rotated.Serving)
	assert.NotEqual(t, oldLeaf.SerialNumber, newLeaf.SerialNumber)
	for _, leaf := range []*x509.Certificate{oldLeaf, newLeaf} {
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: serving.Spec.DNSNames[0], Roots: roots(t, first.Serving.CA)})
		assert.NoError(t, err)
	}
}

func TestIssueErrors(t *testing.T) {
	serving, ca := readManifests(t)
	issued, err := Issue(Options{Serving: serving, CA: ca})
	require.NoError(t, err)
	other, err := Issue(Options{Serving: serving, CA: ca})
	require.NoError(t, err)

	tests := []struct {
		name    string
		opts    Options
		wantErr error
		wantMsg string
	}{
		{
			name:    "no serving Certificate",
			opts:    Options{CA: ca},
			wantErr: ErrNotCertificate,
		},
		{
			name:    "neither a CA manifest nor an existing CA",
			opts:    Options{Serving: serving},
			wantErr: ErrBadCA,
			wantMsg: "give a CA Certificate manifest or an existing CA",
		},
		{
			name:    "existing CA that is a serving certificate",
			opts:    Options{Serving: serving, ExistingCA: &issued.Serving},
			wantErr: ErrBadCA,
			wantMsg: "is not a CA",
		},
		{
			name:    "existing CA whose key belongs to another CA",
			opts:    Options{Serving: serving, ExistingCA: &Material{Cert: issued.CA.Cert, Key: other.CA.Key}},
			wantErr: ErrBadCA,
			wantMsg: "tls.key does not belong to certificate",
		},
		{
			name:    "IP address that is not one",
			opts:    Options{Serving: serving, CA: ca, IPAddresses: []string{"localhost"}},
			wantMsg: `Certificate pod-identity-system/pod-identity-webhook: IP address "localhost" is not an IP address`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Issue(tt.opts)
			require.Error(t, err)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
			}
			assert.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

func TestDecodeCertificate(t *testing.T) {
	tests := []struct {
		name     string
		manifest string
		wantErr  error
		wantMsg  string
	}{
		{
			name:     "a cert-manager Certificate",
			manifest: "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: a}\nspec: {secretName: a, issuerRef: {name: i}}\n",
		},
		{
			name:     "an Issuer",
			manifest: "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: a}\n",
			wantErr:  ErrNotCertificate,
		},
		{
			name:     "an older API version",
			manifest: "apiVersion: cert-manager.io/v1alpha2\nkind: Certificate\nmetadata: {name: a}\n",
			wantErr:  ErrNotCertificate,
		},
		{
			name:     "a misspelt field",
			manifest: "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: a}\nspec: {dnsName: [a]}\n",
			wantMsg:  `unknown field "dnsName"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			crt, err := DecodeCertificate([]byte(tt.manifest))
			switch {
			case tt.wantErr != nil:
				assert.ErrorIs(t, err, tt.wantErr)
			case tt.wantMsg != "":
				assert.ErrorContains(t, err, tt.wantMsg)
			default:
				require.NoError(t, err)
				assert.Equal(t, "a", crt.Name)
			}
		})
	}
}

// TestTLSHandshake serves the issued certificate over a real TLS listener on
// loopback and connects as the API server would: trusting only ca.crt and
// checking the name it dialled.
func TestTLSHandshake(t *testing.T) {
	serving, ca := readManifests(t)
	b, err := Issue(Options{Serving: serving, CA: ca, IPAddresses: []string{"127.0.0.1"}})
	require.NoError(t, err)
	stranger, err := Issue(Options{Serving: serving, CA: ca, IPAddresses: []string{"127.0.0.1"}})
	require.NoError(t, err)

	pair, err := tls.X509KeyPair(b.Serving.Cert, b.Serving.Key)
	require.NoError(t, err)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			// Finish the handshake, then hang up.
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()

	tests := []struct {
		name       string
		serverName string
		caPEM      []byte
		wantErr    bool
	}{
		{name: "by IP, trusting ca.crt", serverName: "127.0.0.1", caPEM: b.Serving.CA},
		{name: "by the Service's DNS name, trusting ca.crt", serverName: serving.Spec.DNSNames[0], caPEM: b.Serving.CA},
		{name: "by a name the certificate lacks", serverName: "evil.example", caPEM: b.Serving.CA, wantErr: true},
		{name: "trusting another CA", serverName: "127.0.0.1", caPEM: stranger.Serving.CA, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{
				RootCAs:    roots(t, tt.caPEM),
				ServerName: tt.serverName,
				MinVersion: tls.VersionTLS12,
			})
			if tt.wantErr {
				var verr *tls.CertificateVerificationError
				assert.ErrorAs(t, err, &verr)
				return
			}
			require.NoError(t, err)
			defer conn.Close()
			assert.Equal(t, parseLeaf(t, b.Serving).Raw, conn.ConnectionState().PeerCertificates[0].Raw)
		})
	}
}

func TestCommandRun(t *testing.T) {
	dir := t.TempDir()
	out, caDir, secretPath := filepath.Join(dir, "tls"), filepath.Join(dir, "ca"), filepath.Join(dir, "secret.yaml")
	cfg := CommandConfig{
		Certificate:   servingManifest,
		CACertificate: caManifest,
		Out:           out,
		CADir:         caDir,
		IPAddresses:   []string{"127.0.0.1"},
		SecretYAML:    secretPath,
	}
	require.NoError(t, cfg.Validate())

	written, err := cfg.Run(io.Discard)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{
		filepath.Join(caDir, "tls.crt"), filepath.Join(caDir, "tls.key"), filepath.Join(caDir, "ca.crt"),
		filepath.Join(out, "tls.crt"), filepath.Join(out, "tls.key"), filepath.Join(out, "ca.crt"),
		secretPath,
	}, written)
	first, err := ReadDir(out)
	require.NoError(t, err)
	info, err := os.Stat(filepath.Join(out, "tls.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the key is readable by its owner only")

	t.Run("Secret manifest in cert-manager's layout", func(t *testing.T) {
		data, err := os.ReadFile(secretPath)
		require.NoError(t, err)
		var s corev1.Secret
		require.NoError(t, yaml.UnmarshalStrict(data, &s))
		assert.Equal(t, corev1.SecretTypeTLS, s.Type)
		assert.Equal(t, "pod-identity-system", s.Namespace)
		assert.Equal(t, "pod-identity-webhook-tls", s.Name)
		// cainjector only trusts a Secret that names its Certificate.
		assert.Equal(t, "pod-identity-webhook", s.Annotations[cmapi.CertificateNameKey])
		assert.Equal(t, "127.0.0.1", s.Annotations[cmapi.IPSANAnnotationKey])
		assert.Equal(t, map[string][]byte{"tls.crt": first.Cert, "tls.key": first.Key, "ca.crt": first.CA}, s.Data)
	})

	t.Run("second run rotates under the kept CA", func(t *testing.T) {
		written, err := cfg.Run(io.Discard)
		require.NoError(t, err)
		assert.NotContains(t, written, filepath.Join(caDir, "tls.key"), "the CA is reused, not rewritten")
		second, err := ReadDir(out)
		require.NoError(t, err)
		assert.Equal(t, first.CA, second.CA)
		assert.NotEqual(t, first.Cert, second.Cert)
	})

	t.Run("half a CA is refused, not replaced", func(t *testing.T) {
		require.NoError(t, os.Remove(filepath.Join(caDir, "tls.key")))
		_, err := cfg.Run(io.Discard)
		assert.ErrorIs(t, err, os.ErrNotExist)
		_, statErr := os.Stat(filepath.Join(caDir, "tls.key"))
		assert.ErrorIs(t, statErr, os.ErrNotExist, "the CA directory is left alone")
	})

	t.Run("no --out", func(t *testing.T) {
		assert.ErrorContains(t, (&CommandConfig{Certificate: servingManifest}).Validate(), "--out is required")
	})
}

func TestReadDirMissing(t *testing.T) {
	_, err := ReadDir(t.TempDir())
	assert.True(t, errors.Is(err, os.ErrNotExist))
}
