//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/examples"
	"github.com/podidentity/injector/internal/names"
)

const (
	seedClientID = "11111111-2222-3333-4444-555555555555"
	denyPrefix   = `admission webhook "pod-identity-injector.podidentity.github.io" denied the request: `
)

func seedDir(t *testing.T) string {
	dir := examples.BlogPath(repoRoot)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the seed fixtures are not at %s: %v", dir, err)
	}
	return dir
}

func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := env.Cluster.Kubectl(ctx, args...)
	return string(out), err
}

// applyYAML writes manifest to a file and runs kubectl with it.
func applyYAML(t *testing.T, verb, manifest string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	require.NoError(t, os.WriteFile(path, []byte(manifest), 0o600))
	return kubectl(t, verb, "-f", path)
}

func createNamespace(t *testing.T, name string, optIn bool) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if optIn {
		ns.Annotations = map[string]string{names.InjectAnnotation: names.InjectEnabled}
	}
	require.NoError(t, env.Client.Create(context.Background(), ns))
	// kube-controller-manager creates the default ServiceAccount.
	require.Eventually(t, func() bool {
		var sa corev1.ServiceAccount
		return env.Client.Get(context.Background(), client.ObjectKey{Namespace: name, Name: "default"}, &sa) == nil
	}, 30*time.Second, 100*time.Millisecond, "default ServiceAccount in %s", name)
}

// bindIdentity creates AzureIdentity "id" (type 0, clientID) and a binding
// of it to selector "app" in namespace.
func bindIdentity(t *testing.T, namespace, clientID string) {
	t.Helper()
	out, err := applyYAML(t, "apply", fmt.Sprintf(`
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: id, namespace: %[1]s}
spec: {type: 0, clientID: %[2]s}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: b, namespace: %[1]s}
spec: {azureIdentity: id, selector: app}
`, namespace, clientID))
	require.NoError(t, err, out)
}

func labelledPod(ns, name, selector string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{names.BindingLabel: selector}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
	}
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

// TestSeedVerbatim applies the blog-era manifests unchanged and checks the
// Pod that kube-controller-manager creates from them: the webhook's
// warnings for the legacy keys, the native sidecar first, the env of the
// azcopy init container and the app, and which containers hold which
// tokens. The suite e2e/node runs that pod on a real node (TestSeedRuns).
func TestSeedVerbatim(t *testing.T) {
	ctx := context.Background()
	dir := seedDir(t)
	for _, f := range []string{"namespace.yaml", "azureidentity.yaml", "azureidentitybinding.yaml"} {
		out, err := kubectl(t, "apply", "-f", filepath.Join(dir, f))
		require.NoError(t, err, out)
	}

	// The same pod template, created directly, shows the warnings that the
	// webhook returns for the legacy keys. (kube-controller-manager gets
	// them for the Deployment's pods, where nobody reads them.)
	dry, err := webhookenv.SeedPodTemplate(filepath.Join(dir, "deployment.yaml"), "default")
	require.NoError(t, err)
	dry.Name = "seed-dry-run"
	warnings, err := env.DryRunWarnings(ctx, dry)
	require.NoError(t, err)
	joined := strings.Join(warnings, "\n")
	for _, key := range []string{`"ResourceID"`, `"ClientID"`, `"AzureIdentity"`, `"Selector"`} {
		assert.Contains(t, joined, key, "a warning names the legacy key")
	}
	assert.Contains(t, joined, "AzureIdentity default/blob-reader")
	assert.Contains(t, joined, "AzureIdentityBinding default/blob-reader-to-my-app")
	// namespace.yaml opts in with the legacy key, which still works.
	assert.Contains(t, joined, `Namespace default: annotation "aadpodidentity.k8s.io/inject" is deprecated; rename it to "`+names.InjectAnnotation+`"`)

	out, err := kubectl(t, "apply", "-f", filepath.Join(dir, "deployment.yaml"))
	require.NoError(t, err, out)
	var pod corev1.Pod
	require.Eventually(t, func() bool {
		var pods corev1.PodList
		if env.Client.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels{"run": "my-app"}) != nil || len(pods.Items) == 0 {
			return false
		}
		pod = pods.Items[0]
		return true
	}, 60*time.Second, 200*time.Millisecond, "kube-controller-manager creates the Deployment's pod")

	t.Run("native sidecar first", func(t *testing.T) {
		require.NotEmpty(t, pod.Spec.InitContainers)
		sc := pod.Spec.InitContainers[0]
		assert.Equal(t, names.SidecarContainerName, sc.Name)
		require.NotNil(t, sc.RestartPolicy)
		assert.Equal(t, corev1.ContainerRestartPolicyAlways, *sc.RestartPolicy)
		require.NotNil(t, sc.StartupProbe)
		assert.Equal(t, "data-init", pod.Spec.InitContainers[1].Name, "the azcopy init container runs after the sidecar")
	})
	t.Run("env on the azcopy init container and the app", func(t *testing.T) {
		for _, name := range []string{"data-init", "my-app"} {
			c, err := webhookenv.Container(&pod, name)
			require.NoError(t, err)
			for _, v := range []string{names.EnvIdentityEndpoint, names.EnvIdentityHeader, names.EnvAzureClientID} {
				_, n := envValue(c, v)
				assert.Equal(t, 1, n, "%s has %s once", name, v)
			}
			id, _ := envValue(c, names.EnvAzureClientID)
			assert.Equal(t, seedClientID, id)
		}
	})
	t.Run("the sidecar gets no Kubernetes API token", func(t *testing.T) {
		// The ServiceAccount admission plugin mounts kube-api-access-* into
		// every container without a mount at its path; the sidecar has one.
		for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for _, c := range list {
				apiToken := false
				for _, m := range c.VolumeMounts {
					apiToken = apiToken || strings.HasPrefix(m.Name, "kube-api-access-")
				}
				assert.Equal(t, c.Name != names.SidecarContainerName, apiToken, "container %s has the API token", c.Name)
			}
		}
	})
	t.Run("only the sidecar mounts the projected token", func(t *testing.T) {
		for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for _, c := range list {
				mounts := false
				for _, m := range c.VolumeMounts {
					mounts = mounts || m.Name == names.TokenVolumeName
				}
				assert.Equal(t, c.Name == names.SidecarContainerName, mounts, "container %s", c.Name)
			}
		}
	})
}

// TestNoOptIn: a namespace without the annotation, and a pod without the
// label, are left alone.
func TestNoOptIn(t *testing.T) {
	ctx := context.Background()
	createNamespace(t, "no-opt-in", false)
	createNamespace(t, "opted-in-unlabelled", true)

	p := labelledPod("no-opt-in", "labelled", "whatever")
	require.NoError(t, env.Client.Create(ctx, p))
	assert.Empty(t, p.Spec.InitContainers)
	assert.Empty(t, p.Spec.Containers[0].Env)

	u := labelledPod("opted-in-unlabelled", "unlabelled", "")
	u.Labels = nil
	require.NoError(t, env.Client.Create(ctx, u))
	assert.Empty(t, u.Spec.InitContainers)
	assert.Empty(t, u.Spec.Containers[0].Env)
}

// TestDenials asserts each message exactly as kubectl shows it.
func TestDenials(t *testing.T) {
	createNamespace(t, "deny-a", true)
	createNamespace(t, "deny-b", true)
	setup := `
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: to-missing, namespace: deny-a}
spec: {azureIdentity: ghost, selector: missing-identity}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: elsewhere, namespace: deny-b}
spec: {type: 0, clientID: 22222222-0000-0000-0000-000000000000}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: to-elsewhere, namespace: deny-a}
spec: {azureIdentity: elsewhere, selector: other-namespace}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: sp, namespace: deny-a}
spec:
  type: 1
  clientID: 33333333-0000-0000-0000-000000000000
  clientPassword: {name: sp-secret, namespace: deny-b}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: to-sp, namespace: deny-a}
spec: {azureIdentity: sp, selector: secret-elsewhere}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: ok, namespace: deny-a}
spec: {type: 0, clientID: 44444444-0000-0000-0000-000000000000}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: to-ok, namespace: deny-a}
spec: {azureIdentity: ok, selector: ok}
`
	out, err := applyYAML(t, "apply", setup)
	require.NoError(t, err, out)

	pod := func(name, selector, extra string) string {
		return fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: deny-a, labels: {aadpodidbinding: %s}}
spec:
%s  containers: [{name: app, image: nginx}]
`, name, selector, extra)
	}
	tests := []struct {
		name, manifest, want string
	}{
		{"no binding for the selector", pod("p1", "nobody", ""),
			`pod deny-a/p1: no AzureIdentityBinding in namespace deny-a has selector "nobody"; create one or fix the pod label aadpodidbinding`},
		{"binding names a missing identity", pod("p2", "missing-identity", ""),
			`AzureIdentityBinding deny-a/to-missing (selector "missing-identity") names AzureIdentity "ghost", which does not exist in namespace deny-a`},
		{"identity in another namespace", pod("p3", "other-namespace", ""),
			`AzureIdentityBinding deny-a/to-elsewhere (selector "other-namespace") names AzureIdentity "elsewhere", which does not exist in namespace deny-a; create it there (identities are never looked up in other namespaces)`},
		{"type 1 secret in another namespace", pod("p4", "secret-elsewhere", ""),
			`AzureIdentity deny-a/sp: spec.clientPassword.namespace is "deny-b", but the Secret must live in the identity's namespace "deny-a"`},
		{"hostNetwork", pod("p5", "ok", "  hostNetwork: true\n"), "hostNetwork"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := applyYAML(t, "create", tc.manifest)
			require.Error(t, err, "the pod must be denied: %s", out)
			msg := err.Error()
			assert.Contains(t, msg, denyPrefix)
			assert.Contains(t, msg, tc.want)
			// From the API server's answer on, or all of it if kubectl worded it otherwise.
			t.Logf("kubectl: %s", msg[max(strings.Index(msg, "Error from server"), 0):])
		})
	}
}

// TestReinvocation: a second webhook adds a container after ours; under
// reinvocationPolicy IfNeeded ours runs again, and the new container gets
// the environment once while nothing is duplicated.
func TestReinvocation(t *testing.T) {
	ctx := context.Background()
	createNamespace(t, "reinvoke", true)
	bindIdentity(t, "reinvoke", "55555555-0000-0000-0000-000000000000")
	adder := startContainerAdder(t)
	t.Cleanup(func() { _ = env.Client.Delete(ctx, adder) })

	p := labelledPod("reinvoke", "with-late-container", "app")
	require.NoError(t, env.Client.Create(ctx, p))
	late, err := webhookenv.Container(p, "late")
	require.NoError(t, err, "the second webhook added its container")
	for _, v := range []string{names.EnvIdentityEndpoint, names.EnvIdentityHeader, names.EnvAzureClientID} {
		_, n := envValue(late, v)
		assert.Equal(t, 1, n, "late container has %s once", v)
	}
	sidecars := 0
	for _, c := range p.Spec.InitContainers {
		if c.Name == names.SidecarContainerName {
			sidecars++
		}
	}
	assert.Equal(t, 1, sidecars)
	h1, _ := envValue(late, names.EnvIdentityHeader)
	h2, _ := envValue(&p.Spec.Containers[0], names.EnvIdentityHeader)
	assert.Equal(t, h1, h2, "one header secret per pod")
}

// TestCertificateRotation rewrites the serving certificate under the same
// CA, as a cert-manager renewal does; the webhook picks it up without a
// restart and admissions keep working.
func TestCertificateRotation(t *testing.T) {
	ctx := context.Background()
	createNamespace(t, "rotation", true)
	bindIdentity(t, "rotation", "66666666-0000-0000-0000-000000000000")
	old, err := env.ServingCert()
	require.NoError(t, err)
	require.Equal(t, old.SerialNumber, servedSerial(t), "the webhook serves the first certificate")

	renewed, err := env.RotateServingCert(ctx)
	require.NoError(t, err)
	require.NotEqual(t, old.SerialNumber, renewed.SerialNumber)
	require.Eventually(t, func() bool { return servedSerial(t).Cmp(renewed.SerialNumber) == 0 },
		30*time.Second, 100*time.Millisecond, "the webhook serves the renewed certificate without a restart")

	p := labelledPod("rotation", "after-rotation", "app")
	require.NoError(t, env.Client.Create(ctx, p))
	require.NotEmpty(t, p.Spec.InitContainers)
	assert.Equal(t, names.SidecarContainerName, p.Spec.InitContainers[0].Name)
}

// servedSerial dials the webhook and returns its certificate's serial.
func servedSerial(t *testing.T) *big.Int {
	t.Helper()
	host := strings.TrimPrefix(strings.TrimSuffix(env.WebhookURL, "/mutate-v1-pod"), "https://")
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", host, &tls.Config{InsecureSkipVerify: true}) // #nosec: only reads the served certificate
	require.NoError(t, err)
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}
