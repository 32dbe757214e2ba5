package fakeaad

import (
	"crypto/rand"
	"crypto/x509"
	_ "embed" // the PKCS#12 fixture
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/google/uuid"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// PKCS12 is a throw-away certificate and key in PKCS#12, protected by
// PKCS12Password (see testdata/README.md). The standard library cannot write
// PKCS#12, so it is a fixture.
//
//go:embed testdata/client.p12
var PKCS12 []byte

// PKCS12Password is the password of PKCS12.
const PKCS12Password = "fixture-password"

// Names of the identities of a Pod, one per way of getting a token.
const (
	IdentityFederated = "fed-identity"
	IdentityIMDS      = "imds-identity"
	IdentitySecret    = "secret-identity"
	IdentityCertPEM   = "cert-pem-identity"
	IdentityCertP12   = "cert-p12-identity"
)

// PodIdentities lists the identity names of a Pod in config order.
var PodIdentities = []string{IdentityFederated, IdentityIMDS, IdentitySecret, IdentityCertPEM, IdentityCertP12}

// PodOptions configure NewPod.
type PodOptions struct {
	// Dir receives the projected token and the mounted Secrets; required
	// (a test's t.TempDir()).
	Dir string
	// Port goes into the config; default names.DefaultTokenPort.
	Port int
	// Default is the name of the default identity; default
	// IdentityFederated.
	Default string
	// Namespace of the identities; default "default".
	Namespace string
	// AAD tunes the Entra ID fake; its credentials are filled in.
	AAD Options
}

// Pod is everything a sidecar of one pod talks to, faked: an Entra ID and an
// IMDS, a service account token issuer with a federated credential, the
// mounted files the webhook would mount, and the sidecar config that names
// them, with one identity per token source (and both type 2 layouts).
type Pod struct {
	AAD    *Server
	IMDS   *IMDS
	Issuer *TokenIssuer
	// TenantID is the tenant of every identity.
	TenantID string
	// Config is the sidecar config, valid and ready to marshal.
	Config *sidecarconfig.Config
	// IdentityHeader is the pod's secret.
	IdentityHeader string
	// ClientSecret is the type 1 identity's secret.
	ClientSecret string
	// ServiceAccountToken is the projected token in the token file.
	ServiceAccountToken string
}

// NewPod starts the fakes and writes the files. Close it when done.
func NewPod(o PodOptions) (_ *Pod, err error) {
	if o.Dir == "" {
		return nil, errors.New("fakeaad.NewPod: PodOptions.Dir is required")
	}
	if o.Port == 0 {
		o.Port = names.DefaultTokenPort
	}
	if o.Default == "" {
		o.Default = IdentityFederated
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	p := &Pod{TenantID: uuid.NewString(), IdentityHeader: randomHex(32), ClientSecret: "s3cr3t~" + randomHex(16)}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	clientIDs := map[string]string{}
	for _, n := range PodIdentities {
		clientIDs[n] = uuid.NewString()
	}

	if p.Issuer, err = NewTokenIssuer("https://kubernetes.default.svc.cluster.local"); err != nil {
		return nil, err
	}
	subject := ServiceAccountSubject(o.Namespace, "workload")
	if p.ServiceAccountToken, err = p.Issuer.Sign(subject, time.Hour); err != nil {
		return nil, err
	}
	pem, err := NewClientCertificate("pod-identity-test-pem")
	if err != nil {
		return nil, err
	}
	p12Certs, _, err := azidentity.ParseCertificates(PKCS12, []byte(PKCS12Password))
	if err != nil {
		return nil, fmt.Errorf("parse the PKCS#12 fixture: %w", err)
	}

	aadOpts := o.AAD
	aadOpts.ClientSecrets = map[string]string{clientIDs[IdentitySecret]: p.ClientSecret}
	aadOpts.Certificates = map[string][]*x509.Certificate{
		clientIDs[IdentityCertPEM]: {pem.Cert},
		clientIDs[IdentityCertP12]: p12Certs,
	}
	aadOpts.VerifyAssertion = VerifyFederated(p.Issuer.Credential(clientIDs[IdentityFederated], subject))
	if p.AAD, err = Start(aadOpts); err != nil {
		return nil, err
	}
	if p.IMDS, err = p.AAD.StartIMDS(IMDSOptions{TenantID: p.TenantID, ClientIDs: []string{clientIDs[IdentityIMDS]}}); err != nil {
		return nil, err
	}

	tokenFile := filepath.Join(o.Dir, "serviceaccount", names.TokenFileName)
	if err := writeAtomic(filepath.Dir(tokenFile), map[string][]byte{names.TokenFileName: []byte(p.ServiceAccountToken)}); err != nil {
		return nil, err
	}
	secretDir := func(name string) string { return filepath.Join(o.Dir, "identities", name) }
	files := map[string]map[string][]byte{
		IdentitySecret:  {names.SecretKeyClientSecret: []byte(p.ClientSecret + "\n")},
		IdentityCertPEM: {names.SecretKeyTLSCert: pem.CertPEM, names.SecretKeyTLSKey: pem.KeyPEM},
		IdentityCertP12: {names.SecretKeyCertificate: PKCS12, names.SecretKeyPassword: []byte(PKCS12Password)},
	}
	for name, data := range files {
		if err := writeAtomic(secretDir(name), data); err != nil {
			return nil, err
		}
	}

	base := func(name, source string) sidecarconfig.Identity {
		return sidecarconfig.Identity{
			Name: name, Namespace: o.Namespace, Source: source, ClientID: clientIDs[name], TenantID: p.TenantID,
			AuthorityHost: p.AAD.AuthorityHost(), DisableInstanceDiscovery: true,
		}
	}
	fed := base(IdentityFederated, names.TokenSourceFederated)
	fed.TokenFile = tokenFile
	im := base(IdentityIMDS, names.TokenSourceIMDS)
	im.TenantID, im.AuthorityHost, im.DisableInstanceDiscovery = "", "", false
	im.ResourceID = "/subscriptions/" + uuid.NewString() + "/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" + IdentityIMDS
	var ids []sidecarconfig.Identity
	ids = append(ids, fed, im)
	for _, n := range []string{IdentitySecret, IdentityCertPEM, IdentityCertP12} {
		src := names.TokenSourceClientCertificate
		if n == IdentitySecret {
			src = names.TokenSourceClientSecret
		}
		id := base(n, src)
		id.SecretDir, id.SecretName = secretDir(n), n+"-secret"
		ids = append(ids, id)
	}
	// The fake's host is on the allow-list, as the webhook writes it when
	// its --authority-host names the fake.
	p.Config = &sidecarconfig.Config{APIVersion: sidecarconfig.APIVersion, Port: o.Port, DefaultIdentity: o.Default, Identities: ids,
		AllowedAuthorityHosts: []string{p.AAD.AuthorityHost()}}
	if err := p.Config.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// Identity returns the configured identity called name.
func (p *Pod) Identity(name string) sidecarconfig.Identity {
	for _, id := range p.Config.Identities {
		if id.Name == name {
			return id
		}
	}
	return sidecarconfig.Identity{}
}

// Close stops the fakes.
func (p *Pod) Close() {
	if p.IMDS != nil {
		p.IMDS.Close()
	}
	if p.AAD != nil {
		p.AAD.Close()
	}
}

// writeAtomic lays files out as the kubelet's atomic writer does: a
// timestamped directory, a ..data symlink to it, and one symlink per key.
func writeAtomic(dir string, files map[string][]byte) error {
	ts := "..2024_01_01_00_00_00." + randomHex(4)
	if err := os.MkdirAll(filepath.Join(dir, ts), 0o755); err != nil {
		return fmt.Errorf("write mounted files: %w", err)
	}
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(dir, ts, k), v, 0o600); err != nil {
			return fmt.Errorf("write mounted files: %w", err)
		}
	}
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		return fmt.Errorf("write mounted files: %w", err)
	}
	for k := range files {
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
			return fmt.Errorf("write mounted files: %w", err)
		}
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
