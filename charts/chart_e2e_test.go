//go:build e2e

package charts_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podidentity/injector/e2e/framework/controlplane"
	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/examples"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/certgen"
	"github.com/podidentity/injector/test/logbuf"
)

// serviceCIDR is the apiserver's service range in this test. It is on
// loopback, so that the Service the chart creates gets a ClusterIP this
// machine can listen on: the API server resolves a webhook's service
// reference to the Service's ClusterIP and port, as kube-proxy would route
// it, and the webhook serves there. Nothing else is needed to call the
// chart's webhook configuration unchanged.
const serviceCIDR = "127.77.0.0/24"

const tenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"

// TestE2EHelm installs the chart with `helm install` on a real
// kube-apiserver, serves its webhook as the Deployment describes it, at the
// Service the webhook configuration names, with TLS from the chart's own
// Certificate and caBundle filled by cert-manager's cainjector, and checks:
// the seed pod is injected exactly as after `kubectl apply -k manifests/`;
// `helm upgrade` with a changed value changes the injection and keeps the
// caBundle; `helm uninstall` leaves no webhook configuration, so labelled
// pods are created while no webhook runs.
func TestE2EHelm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	h := startHarness(ctx, t)

	t.Run("a misspelt value fails helm install", func(t *testing.T) {
		out, err := h.helm(t, "install", releaseName, chartDir, "-n", namespace, "--create-namespace", "--set", "webhook.failurPolicy=Ignore")
		require.Error(t, err, "%s", out)
		assert.Contains(t, err.Error(), "additional properties 'failurPolicy' not allowed")
		_, err = h.helm(t, "status", releaseName, "-n", namespace)
		assert.Error(t, err, "no release was created")
	})

	t.Run("NOTES.txt", func(t *testing.T) {
		testNotes(t, h)
	})

	t.Run("without cert-manager: your Secret and caBundle", func(t *testing.T) {
		testWithoutCertManager(ctx, t, h)
	})

	out, err := h.helm(t, "install", releaseName, chartDir, "-n", namespace, "--create-namespace",
		"--set", "webhook.defaultTenantID="+tenantID, "--wait=false")
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "STATUS: deployed")
	assert.Contains(t, string(out), "kubectl annotate namespace <namespace> podidentity.github.io/inject=enabled", "NOTES says the next step")

	stopCAInjector := h.fillCABundle(ctx, t)
	wh := h.serveWebhook(ctx, t)
	helmPod := h.injectSeed(ctx, t, "seed-helm")
	t.Run("the seed pod is injected", func(t *testing.T) {
		require.NotEmpty(t, helmPod.Spec.InitContainers)
		assert.Equal(t, names.SidecarContainerName, helmPod.Spec.InitContainers[0].Name)
		assert.Contains(t, helmPod.Annotations, names.InjectedAnnotation)
	})
	stopCAInjector()
	bundle := h.caBundle(ctx, t)
	require.NotEmpty(t, bundle)

	t.Run("helm upgrade with a changed value", func(t *testing.T) {
		out, err := h.helm(t, "upgrade", releaseName, chartDir, "-n", namespace, "--reuse-values",
			"--set", "sidecar.port=8282", "--set", "webhook.timeoutSeconds=7", "--wait=false")
		require.NoError(t, err, "%s", out)
		mwc := h.webhookConfiguration(ctx, t)
		require.NotNil(t, mwc)
		assert.Equal(t, int32(7), *mwc.Webhooks[0].TimeoutSeconds)
		assert.Equal(t, bundle, mwc.Webhooks[0].ClientConfig.CABundle, "the upgrade keeps the caBundle cainjector wrote")

		// The Deployment rolls; its new replica is served from the new spec.
		wh.stop()
		wh = h.serveWebhook(ctx, t)
		pod := h.injectSeed(ctx, t, "seed-upgraded")
		app, err := webhookenv.Container(pod, "my-app")
		require.NoError(t, err)
		endpoint, _ := envValue(app, names.EnvIdentityEndpoint)
		assert.Equal(t, "http://127.0.0.1:8282/msi/token", endpoint)
	})

	t.Run("helm uninstall leaves no webhook configuration that blocks pods", func(t *testing.T) {
		out, err := h.helm(t, "uninstall", releaseName, "-n", namespace, "--wait")
		require.NoError(t, err, "%s", out)
		wh.stop()
		assert.Nil(t, h.webhookConfiguration(ctx, t))
		var all admissionregistrationv1.MutatingWebhookConfigurationList
		require.NoError(t, h.client.List(ctx, &all))
		for _, c := range all.Items {
			for _, w := range c.Webhooks {
				assert.NotContains(t, w.Name, "pod-identity", "MutatingWebhookConfiguration %s remains", c.Name)
			}
		}
		// A labelled pod in the opted-in namespace, with no webhook running.
		pod, err := webhookenv.SeedPodTemplate(filepath.Join(examples.BlogPath(".."), "deployment.yaml"), "default")
		require.NoError(t, err)
		pod.Name = "after-uninstall"
		require.NoError(t, h.client.Create(ctx, pod), "a labelled pod is admitted after helm uninstall")
		assert.Empty(t, pod.Annotations[names.InjectedAnnotation])
		var crds int
		for _, r := range []string{"azureidentities", "azureidentitybindings", "azurepodidentityexceptions"} {
			if _, err := h.cluster.Kubectl(ctx, "get", "crd", r+"."+names.Group); err == nil {
				crds++
			}
		}
		assert.Equal(t, 3, crds, "helm uninstall keeps the CRDs and the identities in them")
	})

	// The same seed through `kubectl apply -k`: an overlay of manifests/
	// that adds the tenant, as docs/install.md shows.
	overlay := t.TempDir()
	abs, err := filepath.Abs("../manifests")
	require.NoError(t, err)
	rel, err := filepath.Rel(overlay, abs)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(fmt.Sprintf(`resources:
  - %s
patches:
  - target: {kind: Deployment, name: pod-identity-webhook}
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --default-tenant-id=%s
`, rel, tenantID)), 0o600))
	out, err = h.cluster.Kubectl(ctx, "apply", "-k", overlay)
	require.NoError(t, err, "%s", out)
	stopCAInjector = h.fillCABundle(ctx, t)
	defer stopCAInjector()
	wh = h.serveWebhook(ctx, t)
	defer wh.stop()
	kustomizePod := h.injectSeed(ctx, t, "seed-helm")

	t.Run("injected exactly as with kubectl apply -k", func(t *testing.T) {
		want, got := comparablePod(kustomizePod), comparablePod(helmPod)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("the seed pod after helm install (+) differs from after kubectl apply -k (-):\n%s", diff)
		}
	})
}

// testWithoutCertManager follows docs/install.md's "TLS without
// cert-manager": certificates from test/certgen's code (which hack/certgen
// runs) for the names in certs/, a kubernetes.io/tls Secret, and the CA as
// tls.caBundle. The chart then renders no cert-manager object, and the API
// server trusts the webhook through that caBundle alone.
func testWithoutCertManager(ctx context.Context, t *testing.T, h *harness) {
	serving, err := certgen.ReadCertificate("../certs/serving-certificate.yaml")
	require.NoError(t, err)
	ca, err := certgen.ReadCertificate("../certs/ca-certificate.yaml")
	require.NoError(t, err)
	b, err := certgen.Issue(certgen.Options{Serving: serving, CA: ca})
	require.NoError(t, err)
	h.kubectl(ctx, t, "create", "namespace", namespace)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "my-webhook-tls", Namespace: namespace},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": b.Serving.Cert, "tls.key": b.Serving.Key},
	}
	require.NoError(t, h.client.Create(ctx, secret))

	out, err := h.helm(t, "install", releaseName, chartDir, "-n", namespace,
		"--set", "certManager.enabled=false", "--set", "tls.secretName=my-webhook-tls",
		"--set", "tls.caBundle="+base64.StdEncoding.EncodeToString(b.Serving.CA),
		"--set", "webhook.defaultTenantID="+tenantID, "--wait=false")
	require.NoError(t, err, "%s", out)
	var certs cmapi.CertificateList
	require.NoError(t, h.client.List(ctx, &certs, client.InNamespace(namespace)))
	assert.Empty(t, certs.Items, "no cert-manager Certificate without cert-manager")

	wh := h.serveWebhook(ctx, t)
	pod := h.injectSeed(ctx, t, "seed-own-tls")
	assert.Equal(t, names.SidecarContainerName, pod.Spec.InitContainers[0].Name)
	wh.stop()
	out, err = h.helm(t, "uninstall", releaseName, "-n", namespace, "--wait")
	require.NoError(t, err, "%s", out)
	assert.Nil(t, h.webhookConfiguration(ctx, t))
}

// testNotes renders NOTES.txt as `helm install` prints it, through a dry
// run against the API server (Helm renders the notes only on install and
// upgrade).
func testNotes(t *testing.T, h *harness) {
	notes := func(t *testing.T, set ...string) string {
		args := []string{"install", "notes-check", chartDir, "--namespace", namespace, "--dry-run=server"}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		out, err := h.helm(t, args...)
		require.NoError(t, err)
		_, n, ok := strings.Cut(string(out), "NOTES:\n")
		require.True(t, ok, "no NOTES in\n%s", out)
		return n
	}
	t.Run("defaults: the next steps, no warning", func(t *testing.T) {
		n := notes(t)
		assert.Contains(t, n, "kubectl -n pod-identity-system wait certificate/pod-identity-webhook")
		assert.Contains(t, n, "kubectl annotate namespace <namespace> podidentity.github.io/inject=enabled")
		assert.NotContains(t, n, "WARNING")
	})
	t.Run("failurePolicy Ignore warns", func(t *testing.T) {
		n := notes(t, "webhook.failurePolicy=Ignore")
		assert.Contains(t, n, "WARNING: webhook.failurePolicy is Ignore")
		assert.Contains(t, n, "labelled pods start\nWITHOUT their identity")
	})
	t.Run("label mode says to label", func(t *testing.T) {
		n := notes(t, "namespaceSelection.mode=label")
		assert.Contains(t, n, "kubectl label namespace <namespace> podidentity.github.io/inject=enabled")
	})
	t.Run("without cert-manager names the Secret", func(t *testing.T) {
		n := notes(t, "certManager.enabled=false", "tls.secretName=my-tls", "tls.caBundle=LS0tLS1CRUdJTiBDRVJU")
		assert.Contains(t, n, "the Secret my-tls in pod-identity-system must hold")
		assert.NotContains(t, n, "wait certificate")
	})
}

// harness is one control plane with cert-manager's CRDs and the seed's
// namespace, identity and binding.
type harness struct {
	cluster *controlplane.Cluster
	client  client.Client
	webhook string // the built webhook binary
}

func startHarness(ctx context.Context, t *testing.T) *harness {
	t.Helper()
	// Clients log through controller-runtime; the test reports failures.
	ctrllog.SetLogger(logr.Discard())
	bin := filepath.Join(t.TempDir(), "pod-identity-webhook")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/webhook")
	build.Dir, build.Env = "..", append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/webhook: %s", out)

	c, err := controlplane.Start(ctx, controlplane.Options{WorkDir: t.TempDir(), ServiceClusterIPRange: serviceCIDR, Log: testWriter{t}})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			var b strings.Builder
			c.WriteLogTails(&b, 40)
			t.Log(b.String())
		}
		assert.NoError(t, c.Stop())
	})
	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	require.NoError(t, cmapi.AddToScheme(s))
	cl, err := client.New(c.RESTConfig(), client.Options{Scheme: s})
	require.NoError(t, err)
	h := &harness{cluster: c, client: cl, webhook: bin}

	crds, err := webhookenv.CertManagerCRDs(ctx)
	require.NoError(t, err)
	h.kubectl(ctx, t, "apply", "--server-side", "-f", crds)
	h.kubectl(ctx, t, "apply", "-f", filepath.Join(chartDir, "crds"))
	h.kubectl(ctx, t, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
	for _, f := range []string{"namespace.yaml", "azureidentity.yaml", "azureidentitybinding.yaml"} {
		h.kubectl(ctx, t, "apply", "-f", filepath.Join(examples.BlogPath(".."), f))
	}
	return h
}

func (h *harness) kubectl(ctx context.Context, t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := h.cluster.Kubectl(ctx, args...)
	require.NoError(t, err)
	return out
}

// helm runs the Helm CLI against the cluster.
func (h *harness) helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	return helm(t, append(args, "--kubeconfig", h.cluster.KubeconfigPath())...)
}

// fillCABundle does what cert-manager would for the Certificates now in the
// cluster: it issues the serving Certificate under its CA Certificate with
// cert-manager's own code (package certgen), writes the Secret as
// cert-manager writes it, and runs cainjector, which fills the webhook
// configuration's caBundle from the Secret its inject-ca-from annotation
// names. It returns once the caBundle is set; stop ends cainjector.
func (h *harness) fillCABundle(ctx context.Context, t *testing.T) (stop func()) {
	t.Helper()
	var serving, ca cmapi.Certificate
	require.NoError(t, h.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "pod-identity-webhook"}, &serving))
	require.NoError(t, h.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "pod-identity-webhook-ca"}, &ca))
	b, err := certgen.Issue(certgen.Options{Serving: &serving, CA: &ca})
	require.NoError(t, err)
	secret, err := certgen.Secret(b.Certificate, b.Serving)
	require.NoError(t, err)
	var existing corev1.Secret
	if err := h.client.Get(ctx, client.ObjectKeyFromObject(secret), &existing); err == nil {
		existing.Data, existing.Annotations = secret.Data, secret.Annotations
		require.NoError(t, h.client.Update(ctx, &existing))
	} else {
		require.True(t, apierrors.IsNotFound(err), "%v", err)
		require.NoError(t, h.client.Create(ctx, secret))
	}

	log := &logbuf.Buffer{}
	stop, err = webhookenv.RunCAInjector("..", h.cluster.KubeconfigPath(), log)
	require.NoError(t, err)
	t.Cleanup(stop)
	require.Eventually(t, func() bool {
		mwc := h.webhookConfiguration(ctx, t)
		return mwc != nil && string(mwc.Webhooks[0].ClientConfig.CABundle) == string(b.Serving.CA)
	}, 90*time.Second, 250*time.Millisecond, "cainjector fills caBundle; its log:\n%s", log)
	return stop
}

func (h *harness) caBundle(ctx context.Context, t *testing.T) []byte {
	t.Helper()
	mwc := h.webhookConfiguration(ctx, t)
	require.NotNil(t, mwc)
	return mwc.Webhooks[0].ClientConfig.CABundle
}

// webhookConfiguration returns the live MutatingWebhookConfiguration, or
// nil when there is none.
func (h *harness) webhookConfiguration(ctx context.Context, t *testing.T) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	err := h.client.Get(ctx, client.ObjectKey{Name: "pod-identity-injector"}, &mwc)
	if apierrors.IsNotFound(err) {
		return nil
	}
	require.NoError(t, err)
	require.Len(t, mwc.Webhooks, 1)
	return &mwc
}

// runningWebhook is the webhook process of one replica.
type runningWebhook struct {
	stop func()
}

// serveWebhook runs one replica of the live Deployment as a process, as
// the kubelet would run its container: its args with $(VAR) expanded from
// its env, its ServiceAccount's token, and the files of its TLS Secret
// volume. Only the addresses change: it serves at the Service's ClusterIP
// and port, where the API server calls it, and its probe and metrics
// endpoints go to free loopback ports. It returns once the API server's
// calls reach it.
func (h *harness) serveWebhook(ctx context.Context, t *testing.T) *runningWebhook {
	t.Helper()
	var dep appsv1.Deployment
	require.NoError(t, h.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "pod-identity-webhook"}, &dep))
	spec := dep.Spec.Template.Spec
	require.Len(t, spec.Containers, 1)
	c := spec.Containers[0]
	var svc corev1.Service
	require.NoError(t, h.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "pod-identity-webhook"}, &svc))
	require.True(t, strings.HasPrefix(svc.Spec.ClusterIP, "127.77."), "ClusterIP %s in %s", svc.Spec.ClusterIP, serviceCIDR)

	// The TLS volume's Secret, as the kubelet mounts it.
	var secretName string
	for _, v := range spec.Volumes {
		if v.Name == "tls" && v.Secret != nil {
			secretName = v.Secret.SecretName
		}
	}
	require.NotEmpty(t, secretName, "the Deployment mounts its TLS Secret as volume tls")
	var secret corev1.Secret
	require.NoError(t, h.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: secretName}, &secret))
	certDir := t.TempDir()
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
		require.NoError(t, os.WriteFile(filepath.Join(certDir, k), secret.Data[k], 0o600))
	}
	kubeconfig, _, err := h.cluster.ServiceAccountKubeconfig(ctx, namespace, spec.ServiceAccountName)
	require.NoError(t, err)

	vars := map[string]string{}
	for _, e := range c.Env {
		vars[e.Name] = e.Value
	}
	expand := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	var args []string
	for _, a := range c.Args {
		args = append(args, expand.ReplaceAllStringFunc(a, func(m string) string {
			if v, ok := vars[m[2:len(m)-1]]; ok {
				return v
			}
			return m
		}))
	}
	ports := freePorts(t, 2)
	var svcPort int32
	for _, p := range svc.Spec.Ports {
		if p.Name == "https" {
			svcPort = p.Port
		}
	}
	require.NotZero(t, svcPort)
	readyURL := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
	// A flag given twice takes its last value.
	args = append(args,
		"--kubeconfig="+kubeconfig,
		"--cert-dir="+certDir,
		"--host="+svc.Spec.ClusterIP,
		fmt.Sprintf("--port=%d", svcPort),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
	)
	log := &logbuf.Buffer{}
	cmd := exec.Command(h.webhook, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		// The exit status of a process told to stop says nothing.
		select {
		case _ = <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			_ = <-done
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("webhook %v log:\n%s", args, log)
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get(readyURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 200*time.Millisecond, "webhook ready; its log:\n%s", log)
	return &runningWebhook{stop: stop}
}

// injectSeed dry-runs the seed Deployment's pod template in namespace
// default, which the seed opts in, until the API server has called the
// webhook, and returns the pod the API server would store.
func (h *harness) injectSeed(ctx context.Context, t *testing.T, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	var lastErr error
	require.Eventually(t, func() bool {
		p, err := webhookenv.SeedPodTemplate(filepath.Join(examples.BlogPath(".."), "deployment.yaml"), "default")
		require.NoError(t, err)
		p.Name = name
		if lastErr = h.client.Create(ctx, p, client.DryRunAll); lastErr != nil {
			return false
		}
		pod = p
		return len(p.Spec.InitContainers) > 0 && p.Spec.InitContainers[0].Name == names.SidecarContainerName
	}, 30*time.Second, 200*time.Millisecond, "the API server calls the webhook at the Service and it injects the seed pod (last error: %v)", lastErr)
	return pod
}

// comparablePod is what the webhook decides about a pod: its spec, labels and
// annotations, with what differs between any two creates masked: the
// per-pod IDENTITY_HEADER secret, and the random suffix of the API token
// volume that the ServiceAccount admission plugin adds.
func comparablePod(pod *corev1.Pod) map[string]any {
	p := pod.DeepCopy()
	const apiToken = "kube-api-access-"
	for i := range p.Spec.Volumes {
		if strings.HasPrefix(p.Spec.Volumes[i].Name, apiToken) {
			p.Spec.Volumes[i].Name = apiToken + "(random)"
		}
	}
	mask := func(cs []corev1.Container) {
		for i := range cs {
			for j := range cs[i].Env {
				if cs[i].Env[j].Name == names.EnvIdentityHeader {
					cs[i].Env[j].Value = "(per-pod secret)"
				}
			}
			for j := range cs[i].VolumeMounts {
				if strings.HasPrefix(cs[i].VolumeMounts[j].Name, apiToken) {
					cs[i].VolumeMounts[j].Name = apiToken + "(random)"
				}
			}
		}
	}
	mask(p.Spec.InitContainers)
	mask(p.Spec.Containers)
	return map[string]any{"labels": p.Labels, "annotations": p.Annotations, "spec": p.Spec}
}

func envValue(c *corev1.Container, name string) (string, int) {
	val, n := "", 0
	for _, e := range c.Env {
		if e.Name == name {
			val, n = e.Value, n+1
		}
	}
	return val, n
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
