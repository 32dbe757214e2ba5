//go:build e2e

package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podidentity/injector/e2e/framework/nodeparts"
	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/internal/names"
)

// TestPerContainerIdentities runs, on the real node, a pod whose
// container-identities annotation gives the init container blob-reader and
// the app queue-writer: each container's token, got with azidentity
// (test/standin/gettoken) through its own injected environment, has its own
// identity's appid, and neither can get the other's, which the sidecar
// refuses with 403. The init container runs its checks as its command and
// must exit 0 before the app starts; the app's run with `kubectl exec`. The
// pod is the client matrix's (see TestClientMatrix): the image holds
// gettoken, and the shell comes from the host's /usr.
func TestPerContainerIdentities(t *testing.T) {
	const (
		ns          = "node-per-container"
		blobReader  = "66666666-0000-0000-0000-000000000001"
		queueWriter = "66666666-0000-0000-0000-000000000002"
	)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pushClientsImage(t)
	require.NoError(t, cluster.ApplyManifest(ctx, fmt.Sprintf(`
apiVersion: v1
kind: Namespace
metadata: {name: %[1]s, annotations: {%[2]q: %[3]q}}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: blob-reader, namespace: %[1]s}
spec: {type: 0, clientID: %[4]s}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: queue-writer, namespace: %[1]s}
spec: {type: 0, clientID: %[5]s}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: blob-reader-to-app, namespace: %[1]s}
spec: {azureIdentity: blob-reader, selector: app, weight: 10}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: queue-writer-to-app, namespace: %[1]s}
spec: {azureIdentity: queue-writer, selector: app}
`, ns, names.InjectAnnotation, names.InjectEnabled, blobReader, queueWriter)))
	require.Eventually(t, func() bool {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "default ServiceAccount in %s", ns)
	for _, clientID := range []string{blobReader, queueWriter} {
		env.DeclareFederatedCredential(clientID, ns, "default")
	}

	pod := clientsPod(ns, "my-app", "my-app")
	pod.Annotations = map[string]string{names.ContainerIdentitiesAnnotation: "data-init=blob-reader; my-app=queue-writer"}
	// data-init gets its own token, then tries queue-writer's both ways an
	// SDK user would; it exits 0 only if the first works and neither other
	// does. Each step's output follows its "== " line in its log.
	pod.Spec.InitContainers = []corev1.Container{{
		Name: "data-init", Image: nodeparts.ClientsImage, Command: []string{"sh", "-c", fmt.Sprintf(`
echo "== own identity"; %[1]s --credential=default 2>&1 || exit 1
echo "== ManagedIdentityCredential with its client ID"; if %[1]s --credential=managed --client-id=%[2]s 2>&1; then exit 2; fi
echo "== DefaultAzureCredential with AZURE_CLIENT_ID set to it"; if AZURE_CLIENT_ID=%[2]s %[1]s --credential=default 2>&1; then exit 3; fi
`, nodeparts.ClientsGettoken, queueWriter)},
	}}
	for _, dir := range nodeparts.ClientsHostDirs {
		mountHostDir(pod, &pod.Spec.InitContainers[0], "host"+strings.ReplaceAll(dir, "/", "-"), dir, dir)
	}
	app := startClientsPod(ctx, t, pod, "my-app")

	t.Run("the webhook gives each container its own identity and header", func(t *testing.T) {
		want := map[string]string{"data-init": blobReader, "my-app": queueWriter}
		for name, clientID := range want {
			assert.Equal(t, clientID, envOf(t, app.pod, name, names.EnvAzureClientID), "%s: AZURE_CLIENT_ID", name)
		}
		assert.NotEqual(t, envOf(t, app.pod, "data-init", names.EnvIdentityHeader), envOf(t, app.pod, "my-app", names.EnvIdentityHeader),
			"each container has a header of its own")
		sc, err := webhookenv.Container(app.pod, names.SidecarContainerName)
		require.NoError(t, err)
		for _, e := range sc.Env {
			assert.NotEqual(t, names.EnvIdentityHeader, e.Name, "the sidecar holds no pod-wide header")
		}
	})

	// data-init ran to completion (exit 0) before my-app started: read
	// what each of its steps said.
	initLog := containerLog(ctx, t, app.pod, "data-init")
	t.Logf("kubectl logs %s -c data-init:\n%s", app.pod.Name, redact([]byte(initLog)))
	steps := map[string]string{}
	for _, step := range strings.Split(initLog, "== ")[1:] {
		title, out, _ := strings.Cut(step, "\n")
		steps[title] = out
	}
	t.Run("data-init gets its own identity", func(t *testing.T) {
		out, ok := steps["own identity"]
		require.True(t, ok, "kubectl logs -c data-init:\n%s", redact([]byte(initLog)))
		claims, err := scriptClaims([]byte(out))
		require.NoError(t, err, redact([]byte(out)))
		assertStorageToken(t, claims, blobReader)
	})
	t.Run("data-init cannot get my-app's identity", func(t *testing.T) {
		for _, step := range []string{"ManagedIdentityCredential with its client ID", "DefaultAzureCredential with AZURE_CLIENT_ID set to it"} {
			out, ok := steps[step]
			require.True(t, ok, "kubectl logs -c data-init:\n%s", redact([]byte(initLog)))
			assert.Contains(t, out, "may not use AzureIdentity "+ns+"/queue-writer", step)
			assert.NotContains(t, out, envOf(t, app.pod, "my-app", names.EnvIdentityHeader), step)
		}
	})

	t.Run("my-app gets its own identity", func(t *testing.T) {
		stdout, stderr, err := app.run(ctx, nodeparts.ClientsGettoken, "--credential=default")
		require.NoError(t, err, "gettoken: %s\nsidecar log:\n%s", redact(stderr), redact([]byte(app.sidecarLogs(ctx, t))))
		claims, err := scriptClaims(stdout)
		require.NoError(t, err, redact(stdout))
		assertStorageToken(t, claims, queueWriter)
	})
	t.Run("my-app cannot get data-init's identity", func(t *testing.T) {
		for name, argv := range map[string][]string{
			"ManagedIdentityCredential with its client ID":          {nodeparts.ClientsGettoken, "--credential=managed", "--client-id=" + blobReader},
			"DefaultAzureCredential with AZURE_CLIENT_ID set to it": {"env", names.EnvAzureClientID + "=" + blobReader, nodeparts.ClientsGettoken, "--credential=default"},
		} {
			t.Run(name, func(t *testing.T) {
				stdout, stderr, err := app.run(ctx, argv...)
				require.Error(t, err, "it must not get a token: %s", redact(stdout))
				assert.Contains(t, string(stderr), "may not use AzureIdentity "+ns+"/blob-reader")
				assert.NotContains(t, string(stderr), envOf(t, app.pod, "data-init", names.EnvIdentityHeader))
			})
		}
	})

	t.Run("no header in the sidecar's logs", func(t *testing.T) {
		logs := app.sidecarLogs(ctx, t)
		for _, c := range []string{"data-init", "my-app"} {
			assert.NotContains(t, logs, envOf(t, app.pod, c, names.EnvIdentityHeader))
		}
		assert.Contains(t, logs, `"status":403`, "the refusal is logged")
		assert.NotContains(t, logs, "eyJ", "no JWT in the logs")
	})
}
