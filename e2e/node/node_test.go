//go:build e2e

package node_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podidentity/injector/examples"
	"github.com/podidentity/injector/internal/names"
)

const seedClientID = "11111111-2222-3333-4444-555555555555"

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := env.Cluster.Kubectl(ctx, args...)
	require.NoError(t, err, string(out))
	return string(out)
}

// TestSeedRuns applies the blog-era manifests verbatim and lets the real
// node run the pod: the injected native sidecar starts first, its
// startupProbe gates data-init, whose own `azcopy login --identity && azcopy
// copy` exits 0 against the blob emulator, and the app container (the nginx
// stand-in) gets a token through the injected env.
func TestSeedRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := examples.BlogPath(repoRoot)
	env.DeclareFederatedCredential(seedClientID, "default", "default")
	for _, f := range examples.BlogFiles {
		kubectl(t, "apply", "-f", filepath.Join(dir, f))
	}
	pod := waitForPod(ctx, t, "default", "run=my-app")
	pod = waitRunning(ctx, t, pod.Namespace, pod.Name)

	statuses := map[string]corev1.ContainerStatus{}
	for _, s := range append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		statuses[s.Name] = s
	}
	sidecar, dataInit := statuses[names.SidecarContainerName], statuses["data-init"]
	require.NotNil(t, sidecar.State.Running, "the sidecar runs: %+v", sidecar.State)
	require.NotNil(t, sidecar.Started)
	assert.True(t, *sidecar.Started, "the sidecar's startupProbe passed")
	require.NotNil(t, dataInit.State.Terminated, "data-init ran to completion: %+v", dataInit.State)
	assert.Equal(t, int32(0), dataInit.State.Terminated.ExitCode, "data-init's azcopy login && azcopy copy exits 0")
	assert.False(t, dataInit.State.Terminated.StartedAt.Before(&sidecar.State.Running.StartedAt),
		"data-init starts after the sidecar (sidecar %s, data-init %s)", sidecar.State.Running.StartedAt, dataInit.State.Terminated.StartedAt)

	initLog := kubectl(t, "logs", pod.Name, "-c", "data-init")
	t.Logf("kubectl logs %s -c data-init (azcopy stand-in image):\n%s", pod.Name, initLog)
	assert.Contains(t, initLog, "Login with identity succeeded")
	assert.Contains(t, initLog, "Number of File Transfers Completed: 1")

	appLog := kubectl(t, "logs", pod.Name, "-c", "my-app")
	t.Logf("kubectl logs %s -c my-app (nginx stand-in image):\n%s", pod.Name, appLog)
	assert.Contains(t, appLog, "token claims")
	assert.Contains(t, appLog, seedClientID)
}

func waitForPod(ctx context.Context, t *testing.T, ns, selector string) *corev1.Pod {
	t.Helper()
	for {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		require.NoError(t, err)
		if len(pods.Items) > 0 {
			return &pods.Items[0]
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no pod %s in %s", selector, ns)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func waitRunning(ctx context.Context, t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	for {
		pod, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		if pod.Status.Phase == corev1.PodRunning {
			return pod
		}
		if pod.Status.Phase == corev1.PodFailed {
			t.Fatalf("pod %s/%s failed: %+v\n%s", ns, name, pod.Status, events(ns, name))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s not Running: %+v\n%s", ns, name, pod.Status, events(ns, name))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// events lists the pod's events, one per line, as kubectl describe shows them.
func events(ns, name string) string {
	list, err := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range list.Items {
		b.WriteString(e.Type + " " + e.Reason + ": " + e.Message + "\n")
	}
	return b.String()
}
