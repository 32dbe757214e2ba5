package controlplane

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// webhookClient is the client certificate kube-apiserver presents to
// admission webhooks when Options.WebhookClientAuth is set, from a CA of
// its own: a webhook that trusts this CA trusts no other client of the
// cluster.
type webhookClient struct {
	caPEM, certPEM, keyPEM []byte
}

// admissionConfig is kube-apiserver's --admission-control-config-file: both
// webhook plugins read the kubeconfig whose user "*" (every webhook) holds
// the client certificate.
const admissionConfig = `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: %[1]q
- name: ValidatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: %[1]q
`

// setupWebhookClient makes the CA and the certificate, writes the
// admission configuration and its kubeconfig into dir, and returns the
// apiserver flag that reads them.
func (c *Cluster) setupWebhookClient(dir string) (string, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	caTmpl := &x509.Certificate{
		Subject:   pkix.Name{CommonName: "pod-identity-testcluster-webhook-client-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true,
	}
	caCert, caDER, err := sign(caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return "", fmt.Errorf("self-sign webhook client CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	_, der, err := sign(&x509.Certificate{
		Subject:   pkix.Name{CommonName: "kube-apiserver-webhook-client"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(certValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, caCert, key.Public(), caKey)
	if err != nil {
		return "", fmt.Errorf("sign webhook client certificate: %w", err)
	}
	keyPEM, err := privateKeyPEM(key)
	if err != nil {
		return "", err
	}
	c.webhookClient = &webhookClient{caPEM: pemBlock("CERTIFICATE", caDER), certPEM: pemBlock("CERTIFICATE", der), keyPEM: keyPEM}

	kubeconfig := filepath.Join(dir, "webhook-client.kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.AuthInfos["*"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.webhookClient.certPEM, ClientKeyData: keyPEM}
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		return "", fmt.Errorf("write %s: %w", kubeconfig, err)
	}
	admission := filepath.Join(dir, "admission-config.yaml")
	if err := os.WriteFile(admission, fmt.Appendf(nil, admissionConfig, kubeconfig), 0o600); err != nil {
		return "", err
	}
	return "--admission-control-config-file=" + admission, nil
}

// WebhookClientCA is the CA of the client certificate the apiserver
// presents to webhooks (the webhook's --client-ca-file), or nil without
// Options.WebhookClientAuth.
func (c *Cluster) WebhookClientCA() []byte {
	if c.webhookClient == nil {
		return nil
	}
	return bytes.Clone(c.webhookClient.caPEM)
}

// WebhookClientCertificate is the certificate the apiserver presents to
// webhooks, for a test that calls a webhook as the apiserver would.
func (c *Cluster) WebhookClientCertificate() (tls.Certificate, error) {
	if c.webhookClient == nil {
		return tls.Certificate{}, fmt.Errorf("the cluster was started without Options.WebhookClientAuth")
	}
	return tls.X509KeyPair(c.webhookClient.certPEM, c.webhookClient.keyPEM)
}
