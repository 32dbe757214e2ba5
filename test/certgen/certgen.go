// Package certgen issues the webhook's TLS material without cert-manager, for
// development, e2e and the demo. It reads the same cert-manager Certificate
// manifests that a cluster applies (certs/ca-certificate.yaml and
// certs/serving-certificate.yaml), decodes them into cert-manager's own API
// types, and signs with cert-manager's own PKI helpers along the path that
// cert-manager takes: Certificate -> CSR -> CertificateRequest -> template ->
// signature. The result has the Secret layout cert-manager writes (tls.crt,
// tls.key, ca.crt), so the webhook cannot tell the two apart.
package certgen

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmutil "github.com/cert-manager/cert-manager/pkg/util"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// ErrNotCertificate is returned when a manifest is not a cert-manager.io/v1
// Certificate.
var ErrNotCertificate = errors.New("not a cert-manager.io/v1 Certificate")

// ErrBadCA is returned when an existing CA cannot be used: its files are
// unreadable, its key does not match its certificate, or it is not a CA.
var ErrBadCA = errors.New("unusable CA")

// Material is the data that cert-manager keeps in a Certificate's Secret.
type Material struct {
	// Cert is tls.crt: the PEM certificate chain, leaf first.
	Cert []byte
	// Key is tls.key: the PEM private key.
	Key []byte
	// CA is ca.crt: the PEM certificate of the issuing CA.
	CA []byte
}

// Bundle is the result of Issue: the serving material and the CA that
// signed it.
type Bundle struct {
	// Serving is the content of the serving Certificate's Secret.
	Serving Material
	// CA is the content of the CA Certificate's Secret. Pass it back as
	// Options.ExistingCA to issue a new serving certificate under the same
	// CA, as a cert-manager renewal does.
	CA Material
	// Certificate is the serving Certificate as issued: the manifest's
	// spec with the added DNS names and IP addresses.
	Certificate *cmapi.Certificate
}

// Options says what Issue issues.
type Options struct {
	// Serving is the serving Certificate manifest. Required.
	Serving *cmapi.Certificate
	// CA is the CA Certificate manifest, used when ExistingCA is nil.
	CA *cmapi.Certificate
	// ExistingCA, when set, signs the serving certificate instead of a new
	// CA. Its Cert and Key are a CA's Secret (tls.crt and tls.key).
	ExistingCA *Material
	// DNSNames are added to the manifest's spec.dnsNames.
	DNSNames []string
	// IPAddresses are added to the manifest's spec.ipAddresses, e.g.
	// 127.0.0.1 for a webhook that the API server calls by URL on loopback.
	IPAddresses []string
}

// ReadCertificate reads a cert-manager Certificate manifest from a file.
func ReadCertificate(path string) (*cmapi.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read Certificate manifest: %w", err)
	}
	crt, err := DecodeCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return crt, nil
}

// DecodeCertificate decodes one cert-manager Certificate manifest. Unknown
// fields are an error, so that a typo in the manifest does not silently
// produce a different certificate here than in the cluster.
func DecodeCertificate(data []byte) (*cmapi.Certificate, error) {
	var crt cmapi.Certificate
	if err := yaml.UnmarshalStrict(data, &crt); err != nil {
		return nil, fmt.Errorf("decode Certificate: %w", err)
	}
	gvk := cmapi.SchemeGroupVersion.WithKind(cmapi.CertificateKind)
	if crt.APIVersion != gvk.GroupVersion().String() || crt.Kind != gvk.Kind {
		return nil, fmt.Errorf("apiVersion %q kind %q: %w", crt.APIVersion, crt.Kind, ErrNotCertificate)
	}
	return &crt, nil
}

// Issue issues a serving certificate for opts.Serving, signed by
// opts.ExistingCA or by a new CA issued for opts.CA.
func Issue(opts Options) (*Bundle, error) {
	if opts.Serving == nil {
		return nil, fmt.Errorf("issue: %w: no serving Certificate given", ErrNotCertificate)
	}
	serving := opts.Serving.DeepCopy()
	serving.Spec.DNSNames = appendMissing(serving.Spec.DNSNames, opts.DNSNames...)
	for _, ip := range opts.IPAddresses {
		if net.ParseIP(ip) == nil {
			return nil, fmt.Errorf("issue Certificate %s/%s: IP address %q is not an IP address", serving.Namespace, serving.Name, ip)
		}
	}
	serving.Spec.IPAddresses = appendMissing(serving.Spec.IPAddresses, opts.IPAddresses...)

	var ca Material
	if opts.ExistingCA != nil {
		ca = *opts.ExistingCA
	} else {
		if opts.CA == nil {
			return nil, fmt.Errorf("issue Certificate %s/%s: %w: give a CA Certificate manifest or an existing CA", serving.Namespace, serving.Name, ErrBadCA)
		}
		var err error
		if ca, err = issueSelfSigned(opts.CA); err != nil {
			return nil, err
		}
	}
	caCert, caKey, err := parseCA(ca)
	if err != nil {
		return nil, err
	}

	key, req, err := request(serving)
	if err != nil {
		return nil, err
	}
	template, err := pki.CertificateTemplateFromCertificateRequest(req)
	if err != nil {
		return nil, fmt.Errorf("template for Certificate %s/%s: %w", serving.Namespace, serving.Name, err)
	}
	// The CA issuer's own signing function: it returns the chain (without
	// the root) and the root that goes in ca.crt.
	signed, err := pki.SignCSRTemplate([]*x509.Certificate{caCert}, caKey, template)
	if err != nil {
		return nil, fmt.Errorf("sign Certificate %s/%s: %w", serving.Namespace, serving.Name, err)
	}
	keyPEM, err := pki.EncodePrivateKey(key, encoding(serving))
	if err != nil {
		return nil, fmt.Errorf("encode key of Certificate %s/%s: %w", serving.Namespace, serving.Name, err)
	}
	return &Bundle{
		Serving:     Material{Cert: signed.ChainPEM, Key: keyPEM, CA: signed.CAPEM},
		CA:          ca,
		Certificate: serving,
	}, nil
}

// issueSelfSigned issues a certificate signed by its own key, as
// cert-manager's SelfSigned issuer does; the CA Certificate's Secret then
// holds the certificate as both tls.crt and ca.crt.
func issueSelfSigned(crt *cmapi.Certificate) (Material, error) {
	key, req, err := request(crt)
	if err != nil {
		return Material{}, err
	}
	template, err := pki.CertificateTemplateFromCertificateRequest(req)
	if err != nil {
		return Material{}, fmt.Errorf("template for Certificate %s/%s: %w", crt.Namespace, crt.Name, err)
	}
	certPEM, _, err := pki.SignCertificate(template, template, key.Public(), key)
	if err != nil {
		return Material{}, fmt.Errorf("self-sign Certificate %s/%s: %w", crt.Namespace, crt.Name, err)
	}
	keyPEM, err := pki.EncodePrivateKey(key, encoding(crt))
	if err != nil {
		return Material{}, fmt.Errorf("encode key of Certificate %s/%s: %w", crt.Namespace, crt.Name, err)
	}
	return Material{Cert: certPEM, Key: keyPEM, CA: certPEM}, nil
}

// request does what cert-manager's request manager does for a Certificate:
// a private key per spec.privateKey, a CSR per the spec, and a
// CertificateRequest carrying the spec's duration, isCA and usages.
func request(crt *cmapi.Certificate) (crypto.Signer, *cmapi.CertificateRequest, error) {
	key, err := pki.GeneratePrivateKeyForCertificate(crt)
	if err != nil {
		return nil, nil, fmt.Errorf("private key for Certificate %s/%s (spec.privateKey): %w", crt.Namespace, crt.Name, err)
	}
	csr, err := pki.GenerateCSR(crt)
	if err != nil {
		return nil, nil, fmt.Errorf("CSR for Certificate %s/%s: %w", crt.Namespace, crt.Name, err)
	}
	der, err := pki.EncodeCSR(csr, key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign CSR for Certificate %s/%s: %w", crt.Namespace, crt.Name, err)
	}
	return key, &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Name: crt.Name, Namespace: crt.Namespace},
		Spec: cmapi.CertificateRequestSpec{
			Request:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			Duration:  crt.Spec.Duration,
			IssuerRef: crt.Spec.IssuerRef,
			IsCA:      crt.Spec.IsCA,
			Usages:    crt.Spec.Usages,
		},
	}, nil
}

// parseCA checks that m is a CA whose key matches its certificate.
func parseCA(m Material) (*x509.Certificate, crypto.Signer, error) {
	cert, err := pki.DecodeX509CertificateBytes(m.Cert)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: tls.crt: %w", ErrBadCA, err)
	}
	key, err := pki.DecodePrivateKeyBytes(m.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: tls.key: %w", ErrBadCA, err)
	}
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("%w: certificate %q is not a CA (basicConstraints CA:false)", ErrBadCA, cert.Subject)
	}
	if ok, err := pki.PublicKeyMatchesCertificate(key.Public(), cert); err != nil || !ok {
		return nil, nil, fmt.Errorf("%w: tls.key does not belong to certificate %q", ErrBadCA, cert.Subject)
	}
	return cert, key, nil
}

func encoding(crt *cmapi.Certificate) cmapi.PrivateKeyEncoding {
	if crt.Spec.PrivateKey == nil {
		return ""
	}
	return crt.Spec.PrivateKey.Encoding
}

func appendMissing(list []string, add ...string) []string {
	for _, s := range add {
		if !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	return list
}

// Secret file names, as cert-manager writes them.
const (
	fileCert = corev1.TLSCertKey       // tls.crt
	fileKey  = corev1.TLSPrivateKeyKey // tls.key
	fileCA   = cmmeta.TLSCAKey         // ca.crt
)

// WriteDir writes m into dir as tls.crt, tls.key and ca.crt: the layout of a
// mounted cert-manager Secret, which the webhook's --cert-dir expects. The
// key file is readable by its owner only.
func (m Material) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create certificate directory: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{fileCA, m.CA, 0o644},
		{fileKey, m.Key, 0o600},
		{fileCert, m.Cert, 0o644},
	} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic replaces path in one rename, so that a webhook watching
// the directory never reads half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadDir reads a CA or serving Secret's files from dir. It reports
// os.ErrNotExist (test with errors.Is) when dir holds no tls.crt.
func ReadDir(dir string) (*Material, error) {
	var m Material
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{
		{fileCert, &m.Cert},
		{fileKey, &m.Key},
		{fileCA, &m.CA},
	} {
		data, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			return nil, fmt.Errorf("read certificate directory: %w", err)
		}
		*f.dst = data
	}
	return &m, nil
}

// Secret returns the kubernetes.io/tls Secret that cert-manager would write
// for crt: the name in spec.secretName, the data, and the annotations that
// cert-manager's cainjector and `cmctl` read (certificate-name, issuer and
// the names the certificate holds).
func Secret(crt *cmapi.Certificate, m Material) (*corev1.Secret, error) {
	leaf, err := pki.DecodeX509CertificateBytes(m.Cert)
	if err != nil {
		return nil, fmt.Errorf("Secret for Certificate %s/%s: tls.crt: %w", crt.Namespace, crt.Name, err)
	}
	annotations := map[string]string{
		cmapi.CertificateNameKey:       crt.Name,
		cmapi.IssuerNameAnnotationKey:  crt.Spec.IssuerRef.Name,
		cmapi.IssuerKindAnnotationKey:  crt.Spec.IssuerRef.Kind,
		cmapi.IssuerGroupAnnotationKey: crt.Spec.IssuerRef.Group,
		cmapi.CommonNameAnnotationKey:  leaf.Subject.CommonName,
	}
	for key, values := range map[string][]string{
		cmapi.AltNamesAnnotationKey: leaf.DNSNames,
		cmapi.IPSANAnnotationKey:    pki.IPAddressesToString(leaf.IPAddresses),
		cmapi.URISANAnnotationKey:   pki.URLsToString(leaf.URIs),
	} {
		csv, err := cmutil.JoinWithEscapeCSV(values)
		if err != nil {
			return nil, fmt.Errorf("Secret for Certificate %s/%s: annotation %s: %w", crt.Namespace, crt.Name, key, err)
		}
		annotations[key] = csv
	}
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        crt.Spec.SecretName,
			Namespace:   crt.Namespace,
			Annotations: annotations,
			Labels:      map[string]string{cmapi.PartOfCertManagerControllerLabelKey: "true"},
		},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{
			fileCert: m.Cert,
			fileKey:  m.Key,
			fileCA:   m.CA,
		},
	}, nil
}

// SecretYAML is Secret as a manifest for kubectl apply.
func SecretYAML(crt *cmapi.Certificate, m Material) ([]byte, error) {
	s, err := Secret(crt, m)
	if err != nil {
		return nil, err
	}
	out, err := yaml.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("marshal Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	// creationTimestamp: null is noise that kubectl ignores.
	return bytes.ReplaceAll(out, []byte("  creationTimestamp: null\n"), nil), nil
}
