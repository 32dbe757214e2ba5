package fakeaad

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/podidentity/injector/internal/names"
)

// ClientCertificate is a self-signed RSA certificate and key for a service
// principal of type 2, with the PEM that a kubernetes.io/tls Secret holds.
type ClientCertificate struct {
	Cert    *x509.Certificate
	Key     *rsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// NewClientCertificate makes a certificate for commonName. Entra's
// certificate credentials are RSA, and MSAL signs assertions with PS256.
func NewClientCertificate(commonName string) (*ClientCertificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate client certificate key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign client certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse client certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode client certificate key: %w", err)
	}
	return &ClientCertificate{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// TokenIssuer stands in for a kube-apiserver's service account token
// issuer: it signs projected tokens and declares matching federated
// credentials.
type TokenIssuer struct {
	// Issuer is the iss of the tokens it signs.
	Issuer string
	key    *ecdsa.PrivateKey
}

// NewTokenIssuer makes an issuer with a fresh signing key.
func NewTokenIssuer(issuer string) (*TokenIssuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate issuer key: %w", err)
	}
	return &TokenIssuer{Issuer: issuer, key: key}, nil
}

// ServiceAccountSubject is the sub of a service account's token.
func ServiceAccountSubject(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// Sign returns a projected service account token for subject with the
// audience Entra expects (names.TokenAudience).
func (i *TokenIssuer) Sign(subject string, lifetime time.Duration) (string, error) {
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": i.Issuer,
		"sub": subject,
		"aud": []string{names.TokenAudience},
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(lifetime).Unix(),
		"jti": uuid.NewString(),
	})
	s, err := tok.SignedString(i.key)
	if err != nil {
		return "", fmt.Errorf("sign service account token: %w", err)
	}
	return s, nil
}

// Credential declares a federated credential on clientID that trusts this
// issuer's tokens for subject.
func (i *TokenIssuer) Credential(clientID, subject string) FederatedCredential {
	return FederatedCredential{
		ClientID: clientID,
		Issuer:   i.Issuer,
		Subject:  subject,
		KeyFunc:  StaticKey(&i.key.PublicKey),
	}
}
