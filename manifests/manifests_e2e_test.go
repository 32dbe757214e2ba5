//go:build e2e

package manifests_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/podidentity/injector/e2e/framework/controlplane"
	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/certgen"
)

// TestE2EManifests applies manifests/ to a real kube-apiserver with
// cert-manager's CRDs installed, checks the webhook's RBAC as its own
// ServiceAccount, and runs cert-manager's cainjector (test/cainjector) to
// show that the webhook configuration's caBundle is filled from the serving
// Certificate's Secret, and refilled when the CA changes.
func TestE2EManifests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := startCluster(ctx, t)

	crdDir := certManagerCRDs(ctx, t)
	kubectl(ctx, t, c, "apply", "--server-side", "-f", crdDir)
	kubectl(ctx, t, c, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")

	// Namespaced objects cannot be dry-run into a namespace that does not
	// exist yet, so the namespace goes in first, as on an upgrade.
	kubectl(ctx, t, c, "apply", "-f", "namespace.yaml")
	t.Run("server-side dry run", func(t *testing.T) {
		out := kubectl(ctx, t, c, "apply", "-k", ".", "--dry-run=server")
		assert.Contains(t, string(out), "mutatingwebhookconfiguration.admissionregistration.k8s.io/"+clusterName+" created (server dry run)")
	})
	kubectl(ctx, t, c, "apply", "-k", ".")
	kubectl(ctx, t, c, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")

	t.Run("RBAC of the webhook's ServiceAccount", func(t *testing.T) {
		testRBAC(ctx, t, c)
	})
	t.Run("namespace admins, editors and viewers through the built-in roles", func(t *testing.T) {
		testUserRoles(ctx, t, c)
	})
	t.Run("cainjector fills caBundle", func(t *testing.T) {
		testCAInjection(ctx, t, c)
	})
}

func testRBAC(ctx context.Context, t *testing.T, c *controlplane.Cluster) {
	kubeconfig, saConfig, err := c.ServiceAccountKubeconfig(ctx, namespace, webhookName)
	require.NoError(t, err)

	canI := []struct {
		args []string
		want string
	}{
		{[]string{"get", "azureidentities." + names.Group, "-n", "team-a"}, "yes"},
		{[]string{"list", "azureidentities." + names.Group, "--all-namespaces"}, "yes"},
		{[]string{"watch", "azureidentities." + names.Group, "--all-namespaces"}, "yes"},
		{[]string{"get", "azureidentitybindings." + names.Group, "-n", "team-a"}, "yes"},
		{[]string{"list", "azureidentitybindings." + names.Group, "--all-namespaces"}, "yes"},
		{[]string{"watch", "azureidentitybindings." + names.Group, "--all-namespaces"}, "yes"},
		{[]string{"get", "azurepodidentityexceptions." + names.Group, "-n", "team-a"}, "yes"},
		{[]string{"list", "azurepodidentityexceptions." + names.Group, "--all-namespaces"}, "yes"},
		{[]string{"watch", "azurepodidentityexceptions." + names.Group, "--all-namespaces"}, "yes"},
		{[]string{"get", "namespaces"}, "yes"},
		{[]string{"list", "namespaces"}, "yes"},
		{[]string{"watch", "namespaces"}, "yes"},
		{[]string{"create", "tokenreviews.authentication.k8s.io"}, "yes"},
		{[]string{"create", "subjectaccessreviews.authorization.k8s.io"}, "yes"},
		{[]string{"get", "/metrics"}, "no"},
		{[]string{"get", "secrets", "-n", "team-a"}, "no"},
		{[]string{"get", "secrets", "-n", namespace}, "no"},
		{[]string{"list", "secrets", "--all-namespaces"}, "no"},
		{[]string{"watch", "secrets", "--all-namespaces"}, "no"},
		{[]string{"create", "pods", "-n", "team-a"}, "no"},
		{[]string{"create", "serviceaccounts/token", "-n", "team-a"}, "no"},
		{[]string{"update", "azureidentities." + names.Group, "-n", "team-a"}, "no"},
		{[]string{"patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io"}, "no"},
	}
	for _, tt := range canI {
		t.Run("can-i "+strings.Join(tt.args, " "), func(t *testing.T) {
			args := append([]string{"auth", "can-i"}, tt.args...)
			// can-i exits 1 when the answer is no; its stdout is the answer.
			out, _ := c.Kubectl(ctx, append(args, "--kubeconfig="+kubeconfig)...)
			assert.Equal(t, tt.want, strings.TrimSpace(string(out)))
		})
	}

	// And for real: the reads the webhook's informers make work, and a
	// Secret read is refused.
	dyn, err := dynamic.NewForConfig(saConfig)
	require.NoError(t, err)
	for _, res := range []string{"azureidentities", "azureidentitybindings", "azurepodidentityexceptions"} {
		_, err := dyn.Resource(schema.GroupVersionResource{Group: names.Group, Version: "v1", Resource: res}).List(ctx, metav1.ListOptions{})
		assert.NoError(t, err, "list %s as the webhook", res)
	}
	cs, err := kubernetes.NewForConfig(saConfig)
	require.NoError(t, err)
	_, err = cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	assert.NoError(t, err, "list namespaces as the webhook")
	_, err = cs.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{})
	assert.True(t, apierrors.IsForbidden(err), "list secrets as the webhook: want Forbidden, got %v", err)
}

// testUserRoles binds three users to the built-in admin, edit and view
// ClusterRoles in one namespace, as a platform team would, and asks the API
// server what each may do with the project's objects: the aggregated
// ClusterRoles of user-roles.yaml reach them through the
// clusterrole-aggregation controller of kube-controller-manager.
func testUserRoles(ctx context.Context, t *testing.T, c *controlplane.Cluster) {
	const team = "team-roles"
	kubectl(ctx, t, c, "create", "namespace", team)
	users := map[string]string{"admin": "alice", "edit": "erin", "view": "victor"}
	for role, user := range users {
		kubectl(ctx, t, c, "create", "rolebinding", user+"-"+role, "-n", team, "--clusterrole="+role, "--user="+user)
	}
	canI := func(user, verb, resource, ns string) string {
		out, _ := c.Kubectl(ctx, "auth", "can-i", verb, resource, "-n", ns, "--as="+user)
		return strings.TrimSpace(string(out))
	}
	// Aggregation is asynchronous: wait until the admin can write.
	require.Eventually(t, func() bool {
		return canI(users["admin"], "create", "azureidentities."+names.Group, team) == "yes" &&
			canI(users["view"], "list", "azurepodidentityexceptions."+names.Group, team) == "yes"
	}, 60*time.Second, 250*time.Millisecond, "the clusterrole-aggregation controller folds user-roles.yaml into admin, edit and view")

	write := []string{"create", "update", "patch", "delete"}
	read := []string{"get", "list", "watch"}
	for _, res := range []string{"azureidentities", "azureidentitybindings", "azurepodidentityexceptions"} {
		resource := res + "." + names.Group
		for role, user := range users {
			for _, verb := range append(slices.Clone(read), write...) {
				want := "yes"
				if role == "view" && slices.Contains(write, verb) {
					want = "no"
				}
				assert.Equal(t, want, canI(user, verb, resource, team), "%s (%s in %s) can-i %s %s", user, role, team, verb, resource)
			}
			// A RoleBinding grants nothing in another namespace.
			assert.Equal(t, "no", canI(user, "get", resource, "default"), "%s (%s in %s) can-i get %s -n default", user, role, team, resource)
		}
	}
}

func testCAInjection(ctx context.Context, t *testing.T, c *controlplane.Cluster) {
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	require.NoError(t, err)
	serving, err := certgen.ReadCertificate("../certs/serving-certificate.yaml")
	require.NoError(t, err)
	caManifest, err := certgen.ReadCertificate("../certs/ca-certificate.yaml")
	require.NoError(t, err)

	// The Secret cert-manager would write for the serving Certificate.
	first, err := certgen.Issue(certgen.Options{Serving: serving, CA: caManifest, IPAddresses: []string{"127.0.0.1"}})
	require.NoError(t, err)
	secret, err := certgen.Secret(first.Certificate, first.Serving)
	require.NoError(t, err)
	_, err = cs.CoreV1().Secrets(namespace).Create(ctx, secret, metav1.CreateOptions{})
	require.NoError(t, err)

	startCAInjector(ctx, t, c)
	waitForCABundle(ctx, t, cs, first.Serving.CA)

	// A new CA, as after the CA Certificate is reissued: cainjector must
	// follow the Secret.
	second, err := certgen.Issue(certgen.Options{Serving: serving, CA: caManifest, IPAddresses: []string{"127.0.0.1"}})
	require.NoError(t, err)
	require.NotEqual(t, first.Serving.CA, second.Serving.CA)
	rotated, err := certgen.Secret(second.Certificate, second.Serving)
	require.NoError(t, err)
	_, err = cs.CoreV1().Secrets(namespace).Update(ctx, rotated, metav1.UpdateOptions{})
	require.NoError(t, err)
	// cert-manager's cainjector (CAInjectorMerging, on by default since it
	// went GA) adds the new CA and keeps the old one until it expires, so
	// replicas still serving a certificate from the old CA keep being
	// trusted during the rotation.
	waitForCABundle(ctx, t, cs, first.Serving.CA, second.Serving.CA)

	block, _ := pem.Decode(second.Serving.CA)
	require.NotNil(t, block)
	caCert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	assert.Equal(t, caManifest.Spec.CommonName, caCert.Subject.CommonName)
}

// waitForCABundle waits until the webhook configuration's caBundle holds
// exactly the given PEM certificates, in order.
func waitForCABundle(ctx context.Context, t *testing.T, cs kubernetes.Interface, wantPEM ...[]byte) {
	t.Helper()
	var want []string
	for _, p := range wantPEM {
		want = append(want, pemSubjects(t, p)...)
	}
	var last []string
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		cfg, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, clusterName, metav1.GetOptions{})
		require.NoError(t, err)
		require.Len(t, cfg.Webhooks, 1)
		last = pemSubjects(t, cfg.Webhooks[0].ClientConfig.CABundle)
		if slices.Equal(last, want) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	t.Fatalf("caBundle of MutatingWebhookConfiguration %s after 90s:\n  have %q\n  want %q", clusterName, last, want)
}

// pemSubjects names each certificate in a PEM bundle by subject and serial
// number, which tells two CAs with the same subject apart.
func pemSubjects(t *testing.T, data []byte) []string {
	t.Helper()
	var out []string
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		require.NoError(t, err)
		out = append(out, fmt.Sprintf("%s #%x", cert.Subject, cert.SerialNumber))
	}
}

// startCAInjector runs cert-manager's cainjector (test/cainjector) against
// the cluster until the test ends.
func startCAInjector(_ context.Context, t *testing.T, c *controlplane.Cluster) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "cainjector.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	stop, err := webhookenv.RunCAInjector("..", c.KubeconfigPath(), logFile)
	require.NoError(t, err)
	t.Cleanup(func() {
		stop()
		logFile.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("cainjector log:\n%s", tail(string(data), 80))
		}
	})
}

func startCluster(ctx context.Context, t *testing.T) *controlplane.Cluster {
	t.Helper()
	c, err := controlplane.Start(ctx, controlplane.Options{WorkDir: t.TempDir(), Log: testWriter{t}})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			var b strings.Builder
			c.WriteLogTails(&b, 40)
			t.Log(b.String())
		}
		assert.NoError(t, c.Stop())
	})
	return c
}

// certManagerCRDs is deploy/crds of the cert-manager module this repository
// builds against, from the module cache.
func certManagerCRDs(ctx context.Context, t *testing.T) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	require.NoError(t, err, "locate the cert-manager module")
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	_, err = os.Stat(filepath.Join(dir, "cert-manager.io_certificates.yaml"))
	require.NoError(t, err, "cert-manager's CRDs in %s", dir)
	return dir
}

func kubectl(ctx context.Context, t *testing.T, c *controlplane.Cluster, args ...string) []byte {
	t.Helper()
	out, err := c.Kubectl(ctx, args...)
	require.NoError(t, err)
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
