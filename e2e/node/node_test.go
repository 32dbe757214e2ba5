//go:build e2e

package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podidentity/injector/e2e/framework/nodeparts"
	"github.com/podidentity/injector/examples"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/fakeaad"
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
// stand-in) gets a token through the injected env, which the fake Entra ID
// issued for a service account token it verified. The sidecar's log holds
// neither a token nor a container's header secret.
func TestSeedRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := examples.BlogPath(repoRoot)
	env.DeclareFederatedCredential(seedClientID, "default", "default")
	issued := env.Issued(fakeaad.GrantAssertion, seedClientID)
	var applied time.Time
	for _, f := range examples.BlogFiles {
		if f == "deployment.yaml" {
			applied = time.Now()
		}
		kubectl(t, "apply", "-f", filepath.Join(dir, f))
	}
	pod := waitForPod(ctx, t, "default", "run=my-app")
	pod = waitRunning(ctx, t, pod.Namespace, pod.Name)
	// A measurement for BENCHMARKS.md, not a check: polled every 50 ms.
	t.Logf("measured: seed Deployment applied -> pod Running in %s", time.Since(applied).Round(10*time.Millisecond))

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

	t.Logf("measured: sidecar container started %s, data-init started %s (kubelet times, 1 s resolution)",
		sidecar.State.Running.StartedAt.Format(time.RFC3339), dataInit.State.Terminated.StartedAt.Format(time.RFC3339))
	// Finer, from containerd's log timestamps (nanoseconds): the sidecar's
	// first log line, written as it starts, to its log line of the first
	// token request, which is data-init's azcopy login (my-app starts only
	// after data-init ends). The span holds the startupProbe's gate,
	// data-init's container start and azcopy's own start: an upper bound on
	// what the sidecar adds before data-init.
	first, request, err := sidecarStartToFirstRequest(kubectl(t, "logs", "--timestamps", pod.Name, "-c", names.SidecarContainerName))
	require.NoError(t, err)
	t.Logf("measured: sidecar's first log line -> data-init's first token request %s (containerd log timestamps; an upper bound on what the sidecar adds)",
		request.Sub(first).Round(time.Millisecond))
	logSidecarMemory(ctx, t, pod.Namespace, pod.Name)

	initLog := kubectl(t, "logs", pod.Name, "-c", "data-init")
	t.Logf("kubectl logs %s -c data-init (azcopy stand-in image):\n%s", pod.Name, initLog)
	assert.Contains(t, initLog, "Login with identity succeeded")
	assert.Contains(t, initLog, "Number of File Transfers Completed: 1")

	appLog := kubectl(t, "logs", pod.Name, "-c", "my-app")
	t.Logf("kubectl logs %s -c my-app (nginx stand-in image):\n%s", pod.Name, appLog)
	_, claimsJSON, ok := strings.Cut(appLog, "token claims ")
	require.True(t, ok, "the app container printed its token's claims")
	claimsJSON, _, _ = strings.Cut(claimsJSON, "\n")
	var claims map[string]any
	require.NoError(t, json.Unmarshal([]byte(claimsJSON), &claims), claimsJSON)
	assertStorageToken(t, claims, seedClientID)
	assert.Greater(t, env.Issued(fakeaad.GrantAssertion, seedClientID), issued,
		"the fake Entra ID issued the tokens for a service account assertion it verified against the apiserver's JWKS")

	sidecarLog := kubectl(t, "logs", pod.Name, "-c", names.SidecarContainerName)
	for _, c := range []string{"data-init", "my-app"} {
		assert.NotContains(t, sidecarLog, envOf(t, pod, c, names.EnvIdentityHeader), "no header secret of %s in the sidecar's log", c)
	}
	assert.NotContains(t, sidecarLog, "eyJ", "no JWT in the sidecar's log")
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
		case <-time.After(50 * time.Millisecond):
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

// logSidecarMemory logs the sidecar container's working set from the
// kubelet's /stats/summary (through the apiserver's node proxy).
func logSidecarMemory(ctx context.Context, t *testing.T, namespace, podName string) {
	t.Helper()
	// The kubelet's stats refresh every few seconds; wait for the sidecar.
	for range 40 {
		m, err := theNode.ContainerMemory(ctx, namespace, podName, names.SidecarContainerName)
		if err == nil {
			t.Logf("measured: sidecar working set %.1f MiB (kubelet /stats/summary)", float64(*m.WorkingSetBytes)/(1<<20))
			return
		}
		require.ErrorIs(t, err, nodeparts.ErrNoStats)
		time.Sleep(500 * time.Millisecond)
	}
	t.Log("the kubelet's /stats/summary had no memory figure for the sidecar within 20 s")
}

// sidecarStartToFirstRequest reads `kubectl logs --timestamps` of the
// sidecar: the timestamps of its first line and of its first token request.
func sidecarStartToFirstRequest(log string) (first, request time.Time, err error) {
	for line := range strings.Lines(log) {
		stamp, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		at, perr := time.Parse(time.RFC3339Nano, stamp)
		if perr != nil {
			return first, request, fmt.Errorf("sidecar log line %q: %w", line, perr)
		}
		if first.IsZero() {
			first = at
		}
		if strings.Contains(rest, `"msg":"token request"`) {
			return first, at, nil
		}
	}
	return first, request, fmt.Errorf("no token request in the sidecar's log:\n%s", log)
}
