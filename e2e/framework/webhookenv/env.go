// Package webhookenv runs the whole product on this machine, as a cluster
// would run it, for the e2e suites and `make demo`. It stacks on package
// controlplane: on its real etcd, kube-apiserver and kube-controller-manager
// it puts the project's CRDs and RBAC from manifests/, the webhook as a real
// HTTPS process authenticated as its own ServiceAccount, a
// MutatingWebhookConfiguration generated from the one in manifests/, and a
// fake Entra ID (test/fakeaad) on loopback that verifies federated tokens
// against the apiserver's real JWKS.
//
// Only Entra ID (and node IMDS) are fakes. Everything listens on 127.0.0.1.
// No pod runs here: package nodeenv adds the real node on top of this.
package webhookenv

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/podidentity/injector/e2e/framework/controlplane"
	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/certgen"
	"github.com/podidentity/injector/test/fakeaad"
)

// Names of the objects the environment installs, as manifests/ names them.
const (
	WebhookNamespace      = "pod-identity-system"
	WebhookServiceAccount = "pod-identity-webhook"
	// WebhookConfigName is cluster-scoped, so it is not pod-identity-webhook,
	// which the EKS pod identity webhook uses.
	WebhookConfigName = "pod-identity-injector"
	// TenantID is the fake tenant the webhook uses as its default.
	TenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	// SidecarImage is written into pods; nothing pulls it here.
	SidecarImage = "ghcr.io/podidentity/pod-identity-sidecar:e2e"
)

// Options configure Start.
type Options struct {
	// RepoRoot is the repository, for manifests/ and certs/.
	RepoRoot string
	// WebhookBinary is the built webhook (bin/pod-identity-webhook). No
	// pod runs here: the sidecar runs only on the real node (package
	// nodeenv), from its image.
	WebhookBinary string
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// WebhookArgs are appended to the webhook's flags.
	WebhookArgs []string
	// Cluster configures the control plane; a real node needs
	// Cluster.NodeAddress (see package nodeparts).
	Cluster controlplane.Options
	// AADListenAddress is where the fake Entra ID listens; empty means
	// 127.0.0.1. Pods on a real node reach it at the node's address.
	AADListenAddress string
	// SidecarImage is the image the webhook injects; empty means
	// SidecarImage, which nothing pulls without a node.
	SidecarImage string
}

// Env is a running environment. Stop it when done.
type Env struct {
	Cluster *controlplane.Cluster
	// Client is an admin client whose scheme knows the CRD types.
	Client client.Client
	// AAD is the fake Entra ID.
	AAD *fakeaad.Server
	// WebhookURL is the admission endpoint the API server calls.
	WebhookURL string
	// MetricsURL is the webhook's Prometheus endpoint.
	MetricsURL string

	opts     Options
	rendered []*unstructured.Unstructured // manifests/, rendered once
	dir      string
	certDir  string
	ca       certgen.Material
	serving  certgen.Bundle
	webhook  *exec.Cmd
	whLog    *os.File
	whDone   chan error
	stopOnce sync.Once

	mu    sync.Mutex // guards creds and rendered
	creds []fakeaad.FederatedCredential
	jwks  *jwksCache
}

// Scheme knows the built-in kinds and the aadpodidentity.k8s.io kinds.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := aadv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Start brings everything up. On error it has stopped what it started.
func Start(ctx context.Context, opts Options) (_ *Env, err error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Cluster.Log == nil {
		opts.Cluster.Log = opts.Log
	}
	if opts.SidecarImage == "" {
		opts.SidecarImage = SidecarImage
	}
	if _, err := os.Stat(opts.WebhookBinary); err != nil {
		return nil, fmt.Errorf("binary %s: %w (run make build)", opts.WebhookBinary, err)
	}
	e := &Env{opts: opts, whDone: make(chan error, 1)}
	if e.dir, err = os.MkdirTemp("", "pod-identity-localenv-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	e.logf("starting etcd, kube-apiserver and kube-controller-manager on 127.0.0.1")
	if e.Cluster, err = controlplane.Start(ctx, opts.Cluster); err != nil {
		return nil, err
	}
	if e.Client, err = client.New(e.Cluster.RESTConfig(), client.Options{Scheme: Scheme()}); err != nil {
		return nil, err
	}
	e.jwks = &jwksCache{url: e.Cluster.Issuer() + "/openid/v1/jwks", client: e.Cluster.AnonymousHTTPClient()}
	if e.AAD, err = fakeaad.Start(fakeaad.Options{VerifyAssertion: e.verifyAssertion, ListenAddress: opts.AADListenAddress}); err != nil {
		return nil, err
	}
	e.logf("fake Entra ID at %s", e.AAD.URL)
	if err := e.installManifests(ctx); err != nil {
		return nil, err
	}
	if err := e.issueCerts(nil); err != nil {
		return nil, err
	}
	if err := e.writeServingSecret(ctx); err != nil {
		return nil, err
	}
	if err := e.startWebhook(ctx); err != nil {
		return nil, err
	}
	if err := e.registerWebhook(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Env) logf(format string, args ...any) {
	fmt.Fprintf(e.opts.Log, ">> "+format+"\n", args...)
}

// Stop ends the webhook, the fake and the cluster, and removes every file
// the environment wrote. It is safe to call twice.
func (e *Env) Stop() {
	e.stopOnce.Do(func() {
		if e.webhook != nil && e.webhook.Process != nil {
			terminate(e.webhook.Process, e.whDone, 5*time.Second)
		}
		if e.whLog != nil {
			_ = e.whLog.Close()
		}
		if e.AAD != nil {
			e.AAD.Close()
		}
		if e.Cluster != nil {
			_ = e.Cluster.Stop()
		}
		if e.dir != "" {
			_ = os.RemoveAll(e.dir)
		}
	})
}

// StopWebhook ends the webhook process, for a suite that runs the webhook
// in the cluster instead (see ServiceWebhookConfiguration).
func (e *Env) StopWebhook() {
	if e.webhook != nil && e.webhook.Process != nil {
		terminate(e.webhook.Process, e.whDone, 5*time.Second)
	}
	e.webhook = nil
}

// WebhookArgs are the flags, beyond manifests/' own, that the webhook
// needs here: the sidecar image, the default tenant and the fake Entra ID.
func (e *Env) WebhookArgs() []string {
	return []string{
		"--sidecar-image=" + e.opts.SidecarImage,
		"--default-tenant-id=" + TenantID,
		"--authority-host=" + e.AAD.AuthorityHost(),
	}
}

// WebhookLogTail returns the last lines of the webhook's log.
func (e *Env) WebhookLogTail(n int) string {
	data, _ := os.ReadFile(filepath.Join(e.dir, "webhook.log"))
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Render returns the objects of `kubectl kustomize manifests/`.
// It runs kustomize once per environment; callers get their own copies.
func (e *Env) Render(ctx context.Context) ([]*unstructured.Unstructured, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rendered == nil {
		out, err := e.Cluster.Kubectl(ctx, "kustomize", filepath.Join(e.opts.RepoRoot, "manifests"))
		if err != nil {
			return nil, err
		}
		if e.rendered, err = DecodeObjects(out); err != nil {
			return nil, err
		}
	}
	objs := make([]*unstructured.Unstructured, len(e.rendered))
	for i, o := range e.rendered {
		objs[i] = o.DeepCopy()
	}
	return objs, nil
}

// DecodeObjects splits a multi-document YAML stream into objects.
func DecodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// CertManagerCRDs is the directory of cert-manager's CRDs in the module
// cache, so that its Issuer and Certificate kinds exist.
func CertManagerCRDs(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		return "", fmt.Errorf("locate cert-manager in the module cache: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds"), nil
}

// installManifests applies cert-manager's CRDs and everything in
// manifests/ except the MutatingWebhookConfiguration, whose service
// reference cannot be reached here; registerWebhook installs a copy that
// calls the webhook by URL.
func (e *Env) installManifests(ctx context.Context) error {
	crds, err := CertManagerCRDs(ctx)
	if err != nil {
		return err
	}
	e.logf("installing cert-manager's CRDs from %s", crds)
	if _, err := e.Cluster.Kubectl(ctx, "apply", "--server-side", "-f", crds); err != nil {
		return err
	}
	if _, err := e.Cluster.Kubectl(ctx, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"); err != nil {
		return err
	}
	objs, err := e.Render(ctx)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, o := range objs {
		if o.GetKind() == "MutatingWebhookConfiguration" {
			continue
		}
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	e.logf("applying manifests/ (CRDs, RBAC, Deployment, Service, PDB, cert-manager resources)")
	path := filepath.Join(e.dir, "manifests.yaml")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return err
	}
	// kustomize puts the Namespace and the CRDs first, and nothing here is
	// an object of our own CRDs, so one apply suffices.
	if _, err := e.Cluster.Kubectl(ctx, "apply", "-f", path); err != nil {
		return err
	}
	_, err = e.Cluster.Kubectl(ctx, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
	return err
}

// issueCerts writes the webhook's serving certificate with the dev path of
// certs/, from the same Certificate manifest cert-manager would read, with
// 127.0.0.1 added. With ca nil it makes a new CA; otherwise it renews under
// that CA, as cert-manager does.
func (e *Env) issueCerts(ca *certgen.Material) error {
	serving, err := certgen.ReadCertificate(filepath.Join(e.opts.RepoRoot, "certs", "serving-certificate.yaml"))
	if err != nil {
		return err
	}
	caCrt, err := certgen.ReadCertificate(filepath.Join(e.opts.RepoRoot, "certs", "ca-certificate.yaml"))
	if err != nil {
		return err
	}
	b, err := certgen.Issue(certgen.Options{Serving: serving, CA: caCrt, ExistingCA: ca, IPAddresses: []string{"127.0.0.1"}})
	if err != nil {
		return err
	}
	e.certDir = filepath.Join(e.dir, "certs")
	if err := b.Serving.WriteDir(e.certDir); err != nil {
		return err
	}
	e.ca, e.serving = b.CA, *b
	return nil
}

// writeServingSecret creates or updates the serving Certificate's Secret,
// as cert-manager would write it, so that the Deployment's volume and
// cainjector's inject-ca-from find what they find in a cluster.
func (e *Env) writeServingSecret(ctx context.Context) error {
	secret, err := certgen.Secret(e.serving.Certificate, e.serving.Serving)
	if err != nil {
		return err
	}
	err = e.Client.Create(ctx, secret)
	if apierrors.IsAlreadyExists(err) {
		err = e.Client.Update(ctx, secret)
	}
	if err != nil {
		return fmt.Errorf("write Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return nil
}

// RotateServingCert issues a new serving certificate under the same CA and
// writes it over the files the webhook serves and into its Secret, as a
// cert-manager renewal does. It returns the new leaf certificate.
func (e *Env) RotateServingCert(ctx context.Context) (*x509.Certificate, error) {
	ca := e.ca
	if err := e.issueCerts(&ca); err != nil {
		return nil, err
	}
	if err := e.writeServingSecret(ctx); err != nil {
		return nil, err
	}
	return leaf(e.serving.Serving.Cert)
}

// ServingCert is the leaf certificate currently on disk.
func (e *Env) ServingCert() (*x509.Certificate, error) { return leaf(e.serving.Serving.Cert) }

// CABundle is the PEM CA that signs the webhook's serving certificate.
func (e *Env) CABundle() []byte { return bytes.Clone(e.serving.Serving.CA) }

// leaf parses the first certificate of a PEM chain.
func leaf(chainPEM []byte) (*x509.Certificate, error) {
	for rest := chainPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no certificate in PEM")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// startWebhook runs bin/pod-identity-webhook as a real process that
// authenticates as its own ServiceAccount, so that manifests/ RBAC is what
// it gets, and waits for /readyz.
func (e *Env) startWebhook(ctx context.Context) error {
	kubeconfig, _, err := e.Cluster.ServiceAccountKubeconfig(ctx, WebhookNamespace, WebhookServiceAccount)
	if err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	e.WebhookURL = fmt.Sprintf("https://127.0.0.1:%d/mutate-v1-pod", ports[0])
	e.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1])
	readyURL := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[2])
	args := append([]string{
		"--kubeconfig=" + kubeconfig,
		"--cert-dir=" + e.certDir,
		"--host=127.0.0.1",
		"--port=" + strconv.Itoa(ports[0]),
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(ports[1]),
		// Plain HTTP on 127.0.0.1, so that tests read counters without a
		// token; manifests/ serves them over HTTPS behind authn/authz.
		"--metrics-secure=false",
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(ports[2]),
	}, e.WebhookArgs()...)
	args = append(args, e.opts.WebhookArgs...)
	e.whLog, err = os.Create(filepath.Join(e.dir, "webhook.log"))
	if err != nil {
		return err
	}
	e.webhook = exec.Command(e.opts.WebhookBinary, args...)
	e.webhook.Stdout, e.webhook.Stderr = e.whLog, e.whLog
	e.webhook.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	e.logf("starting the webhook as ServiceAccount %s/%s on %s", WebhookNamespace, WebhookServiceAccount, e.WebhookURL)
	if err := e.webhook.Start(); err != nil {
		return fmt.Errorf("start webhook: %w", err)
	}
	go func() { e.whDone <- e.webhook.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-e.whDone:
			e.whDone <- err
			return fmt.Errorf("webhook exited: %v\n%s", err, e.WebhookLogTail(20))
		default:
		}
		resp, err := http.Get(readyURL)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook not ready after 60s\n%s", e.WebhookLogTail(20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WebhookConfiguration returns manifests/' MutatingWebhookConfiguration
// with its service reference swapped for url (kept when url is empty) and
// the caBundle set, as the cainjector sets it.
func (e *Env) WebhookConfiguration(ctx context.Context, url string, caBundle []byte) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	objs, err := e.Render(ctx)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if o.GetKind() != "MutatingWebhookConfiguration" {
			continue
		}
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &mwc); err != nil {
			return nil, err
		}
		for i := range mwc.Webhooks {
			if url == "" {
				// The Service reference, as manifests/ writes it.
				mwc.Webhooks[i].ClientConfig.CABundle = caBundle
				continue
			}
			mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: ptr.To(url), CABundle: caBundle}
		}
		return &mwc, nil
	}
	return nil, errors.New("manifests/ has no MutatingWebhookConfiguration")
}

// registerWebhook installs the generated webhook configuration and waits
// until the API server calls the webhook.
func (e *Env) registerWebhook(ctx context.Context) error {
	mwc, err := e.WebhookConfiguration(ctx, e.WebhookURL, e.CABundle())
	if err != nil {
		return err
	}
	if err := e.Client.Create(ctx, mwc); err != nil {
		return fmt.Errorf("create MutatingWebhookConfiguration: %w", err)
	}
	e.logf("registered MutatingWebhookConfiguration %s -> %s", mwc.Name, e.WebhookURL)
	return e.waitForWebhook(ctx)
}

// waitForWebhook dry-runs a labelled pod until the API server's webhook
// informer has the configuration and the webhook injects.
func (e *Env) waitForWebhook(ctx context.Context) error {
	const ns = readinessNamespace
	if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Namespace: ns, Labels: map[string]string{names.BindingLabel: "readiness"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}
		// The namespace has not opted in: a webhook that answers lets the
		// pod through unchanged with its skip message; an unregistered one
		// is not called at all. Either way the create succeeds, so the
		// signal is the webhook's own counter of skipped pods.
		before := e.skippedCount()
		err := e.Client.Create(ctx, pod, client.DryRunAll)
		if err == nil && e.skippedCount() > before {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the API server did not call the webhook within 30s (last error: %v)\n%s", err, e.WebhookLogTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readinessNamespace holds waitForWebhook's dry-run pods.
const readinessNamespace = "localenv-readiness"

// skippedCount reads pod_identity_injector_decisions_total for skipped pods
// of readinessNamespace.
func (e *Env) skippedCount() float64 {
	// The exposition sorts labels by name.
	v, _ := e.Metric(`pod_identity_injector_decisions_total{outcome="skipped",pod_namespace="` + readinessNamespace + `"}`)
	return v
}

// Metric returns the value of one sample line of the webhook's metrics,
// given as name{labels} exactly as exposed.
func (e *Env) Metric(sample string) (float64, error) {
	resp, err := http.Get(e.MetricsURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", sample)
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
