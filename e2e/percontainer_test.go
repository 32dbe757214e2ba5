//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podidentity/injector/e2e/framework/localenv"
	"github.com/podidentity/injector/internal/names"
)

// TestPerContainerIdentities runs both containers of a pod whose
// container-identities annotation gives the init container blob-reader and
// the app queue-writer, through the real apiserver, webhook and sidecar
// binary: each container's token, got with azidentity through its own
// injected environment, has its own identity's appid, and neither can get
// the other's.
func TestPerContainerIdentities(t *testing.T) {
	const (
		ns          = "per-container"
		blobReader  = "66666666-0000-0000-0000-000000000001"
		queueWriter = "66666666-0000-0000-0000-000000000002"
	)
	ctx := context.Background()
	createNamespace(t, ns, true)
	out, err := applyYAML(t, "apply", `
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: blob-reader, namespace: per-container}
spec: {type: 0, clientID: `+blobReader+`}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: queue-writer, namespace: per-container}
spec: {type: 0, clientID: `+queueWriter+`}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: blob-reader-to-my-app, namespace: per-container}
spec: {azureIdentity: blob-reader, selector: my-app, weight: 10}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: queue-writer-to-my-app, namespace: per-container}
spec: {azureIdentity: queue-writer, selector: my-app}
`)
	require.NoError(t, err, out)

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "my-app", Namespace: ns,
			Labels:      map[string]string{names.BindingLabel: "my-app"},
			Annotations: map[string]string{names.ContainerIdentitiesAnnotation: "data-init=blob-reader; my-app=queue-writer"},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "data-init", Image: "datenbetrieb/azcopy"}},
			Containers:     []corev1.Container{{Name: "my-app", Image: "nginx"}},
		},
	}
	require.NoError(t, env.Client.Create(ctx, pod))

	want := map[string]string{"data-init": blobReader, "my-app": queueWriter}
	headers := map[string]string{}
	for name, clientID := range want {
		c, err := localenv.Container(pod, name)
		require.NoError(t, err)
		got, n := envValue(c, names.EnvAzureClientID)
		assert.Equal(t, 1, n)
		assert.Equal(t, clientID, got, "%s: AZURE_CLIENT_ID", name)
		headers[name], _ = envValue(c, names.EnvIdentityHeader)
		require.NotEmpty(t, headers[name])
	}
	assert.NotEqual(t, headers["data-init"], headers["my-app"], "each container has a header of its own")
	sc, err := localenv.Container(pod, names.SidecarContainerName)
	require.NoError(t, err)
	_, n := envValue(sc, names.EnvIdentityHeader)
	assert.Zero(t, n, "the sidecar holds no pod-wide header")

	for _, clientID := range want {
		env.DeclareFederatedCredential(clientID, ns, "default")
	}
	sidecar, err := env.RunSidecar(ctx, pod)
	require.NoError(t, err)
	t.Cleanup(sidecar.Stop)

	// gettoken runs azidentity in a container's environment; extra
	// variables come last and so win.
	getToken := func(t *testing.T, container string, flags []string, extra ...string) (map[string]any, error) {
		t.Helper()
		cenv, err := localenv.ContainerEnv(pod, container)
		require.NoError(t, err)
		cmd := exec.Command(filepath.Join(binDir, "gettoken"), append([]string{"--resource=https://storage.azure.com"}, flags...)...)
		cmd.Env = append(append(cenv, "HOME="+t.TempDir()), extra...)
		out, err := cmd.Output()
		if err != nil {
			return nil, err
		}
		var got struct {
			Claims map[string]any `json:"claims"`
		}
		require.NoError(t, json.Unmarshal(out, &got))
		return got.Claims, nil
	}
	for container, clientID := range want {
		t.Run(container+" gets its own identity", func(t *testing.T) {
			claims, err := getToken(t, container, []string{"--credential=default"})
			require.NoError(t, err, "gettoken: %s\nsidecar log:\n%s", exitStderr(err), sidecar.Logs())
			assert.Equal(t, clientID, claims["appid"])
		})
	}
	t.Run("data-init cannot get my-app's identity", func(t *testing.T) {
		for name, c := range map[string]struct {
			flags []string
			env   []string
		}{
			"ManagedIdentityCredential with its client ID":          {flags: []string{"--credential=managed", "--client-id=" + queueWriter}},
			"DefaultAzureCredential with AZURE_CLIENT_ID set to it": {flags: []string{"--credential=default"}, env: []string{names.EnvAzureClientID + "=" + queueWriter}},
		} {
			t.Run(name, func(t *testing.T) {
				_, err := getToken(t, "data-init", c.flags, c.env...)
				require.Error(t, err)
				assert.Contains(t, exitStderr(err), "may not use AzureIdentity per-container/queue-writer")
				assert.NotContains(t, exitStderr(err), headers["my-app"])
			})
		}
	})
	t.Run("no header in the sidecar's logs", func(t *testing.T) {
		for _, h := range headers {
			assert.NotContains(t, sidecar.Logs(), h)
		}
		assert.True(t, strings.Contains(sidecar.Logs(), `"status":403`), "the refusal is logged")
	})
}
