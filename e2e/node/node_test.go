//go:build e2e

package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podidentity/injector/e2e/framework/node"
)

// TestPodRuns: a pod whose only container is the pause image reaches Running
// on the real node, with an address from the pod CIDR.
func TestPodRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pod, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: node.PauseImage}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	pod = waitRunning(ctx, t, pod.Namespace, pod.Name)
	require.Contains(t, pod.Status.PodIP, "10.88.")
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
			t.Fatalf("pod %s/%s failed: %+v", ns, name, pod.Status)
		}
		select {
		case <-ctx.Done():
			events, _ := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
			for _, e := range events.Items {
				t.Logf("event %s %s: %s", e.Type, e.Reason, e.Message)
			}
			t.Fatalf("pod %s/%s not Running: %+v", ns, name, pod.Status)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
