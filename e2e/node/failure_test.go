//go:build e2e

package node_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podidentity/injector/e2e/framework/nodeenv"
	"github.com/podidentity/injector/e2e/framework/nodeparts"
	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/internal/names"
)

// optInNamespace creates an opted-in namespace with AzureIdentity "id"
// (type 0, clientID) bound to selector "app", and waits for its default
// ServiceAccount.
func optInNamespace(ctx context.Context, t *testing.T, ns, clientID string) {
	t.Helper()
	require.NoError(t, cluster.OptInNamespace(ctx, ns, clientID, "app"))
	require.Eventually(t, func() bool {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "default ServiceAccount in %s", ns)
}

// azcopyPod is the seed's pod shape: data-init runs the seed's own azcopy
// login for clientID, then the nginx stand-in.
func azcopyPod(ns, clientID string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns, Labels: map[string]string{names.BindingLabel: "app"}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{
				Name:    "data-init",
				Image:   nodeparts.AzcopyImage,
				Command: []string{"/bin/sh", "-c"},
				Args:    []string{"azcopy login --identity --identity-client-id " + clientID},
			}},
			Containers: []corev1.Container{{Name: "app", Image: nodeparts.AppImage}},
		},
	}
}

// TestSidecarImageMissing: when the registry does not have the sidecar
// image, the pod's events say which image could not be pulled. It runs
// first, before any pod has put the image in containerd's store.
func TestSidecarImageMissing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	local, err := reg.Local(nodeenv.SidecarImage)
	require.NoError(t, err)
	img, err := remote.Image(local, remote.WithContext(ctx))
	require.NoError(t, err)
	// Keep the image's content in memory to push it back afterwards.
	layers, err := img.Layers()
	require.NoError(t, err)
	for _, l := range layers {
		rc, err := l.Compressed()
		require.NoError(t, err)
		rc.Close()
	}
	require.NoError(t, reg.Delete(ctx, nodeenv.SidecarImage))
	t.Cleanup(func() { require.NoError(t, reg.Push(context.Background(), nodeenv.SidecarImage, img)) })

	const ns = "node-sidecar-missing"
	optInNamespace(ctx, t, ns, seedClientID)
	pod, err := cs.CoreV1().Pods(ns).Create(ctx, azcopyPod(ns, seedClientID), metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cs.CoreV1().Pods(ns).Delete(context.Background(), pod.Name, *metav1.NewDeleteOptions(0)) })
	var evs string
	require.Eventually(t, func() bool {
		evs = events(ns, pod.Name)
		return strings.Contains(evs, "Failed to pull image \""+nodeenv.SidecarImage+"\"")
	}, 90*time.Second, 500*time.Millisecond, "the pod's events name the sidecar image that cannot be pulled")
	t.Logf("events of %s/%s:\n%s", ns, pod.Name, evs)
}

// TestUnknownClientUpstream: the identity's client ID has no federated
// credential in Entra ID. The sidecar still starts (it is up; the upstream
// refused), data-init's azcopy login fails with the upstream's reason in
// its log, and the pod's events show the init container failing.
func TestUnknownClientUpstream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns, unknown = "node-unknown-client", "99999999-8888-7777-6666-555555555555"
	optInNamespace(ctx, t, ns, unknown)
	pod, err := cs.CoreV1().Pods(ns).Create(ctx, azcopyPod(ns, unknown), metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cs.CoreV1().Pods(ns).Delete(context.Background(), pod.Name, *metav1.NewDeleteOptions(0)) })

	var status corev1.ContainerStatus
	var started bool
	require.Eventually(t, func() bool {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, s := range p.Status.InitContainerStatuses {
			switch s.Name {
			case names.SidecarContainerName:
				started = s.Started != nil && *s.Started
			case "data-init":
				status = s
			}
		}
		return started && status.LastTerminationState.Terminated != nil
	}, 90*time.Second, 500*time.Millisecond, "data-init fails after the sidecar started")
	assert.NotEqual(t, int32(0), status.LastTerminationState.Terminated.ExitCode)

	out, _ := env.Cluster.Kubectl(ctx, "logs", "-n", ns, pod.Name, "-c", "data-init", "--previous")
	t.Logf("kubectl logs -c data-init --previous (azcopy stand-in image):\n%s", out)
	assert.Contains(t, string(out), "Failed to perform login command")
	assert.Contains(t, string(out), "upstream_refused", "the sidecar says Entra ID refused")
	assert.Contains(t, string(out), "AADSTS70021", "and passes Entra ID's reason on")
	// The kubelet reports the back-off once data-init has failed twice.
	var evs string
	assert.Eventually(t, func() bool {
		evs = events(ns, pod.Name)
		return strings.Contains(evs, "Back-off restarting failed container data-init")
	}, 60*time.Second, 500*time.Millisecond, "the pod's events show data-init failing")
	t.Logf("events of %s/%s:\n%s", ns, pod.Name, evs)
}

// TestWebhookDown: with no webhook replica, a labelled pod in an opted-in
// namespace is refused (failurePolicy Fail) with a message that names the
// webhook, and a pod in kube-system, which the webhook's namespaceSelector
// leaves out, still starts.
func TestWebhookDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns = "node-webhook-down"
	optInNamespace(ctx, t, ns, seedClientID)
	scaleWebhook(ctx, t, 0)
	t.Cleanup(func() { scaleWebhook(context.Background(), t, 2) })

	_, err := cs.CoreV1().Pods(ns).Create(ctx, azcopyPod(ns, seedClientID), metav1.CreateOptions{})
	require.Error(t, err, "a labelled pod is not admitted uninjected")
	t.Logf("labelled pod refused: %v", err)
	assert.Contains(t, err.Error(), `failed calling webhook "pod-identity-injector.podidentity.github.io"`)

	sys, err := cs.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "still-starts", Labels: map[string]string{names.BindingLabel: "app"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: nodeparts.PauseImage}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err, "kube-system is never sent to the webhook")
	t.Cleanup(func() {
		_ = cs.CoreV1().Pods("kube-system").Delete(context.Background(), sys.Name, *metav1.NewDeleteOptions(0))
	})
	waitRunning(ctx, t, "kube-system", sys.Name)
}

func scaleWebhook(ctx context.Context, t *testing.T, replicas int32) {
	t.Helper()
	key := client.ObjectKey{Namespace: webhookenv.WebhookNamespace, Name: "pod-identity-webhook"}
	s, err := cs.AppsV1().Deployments(key.Namespace).GetScale(ctx, key.Name, metav1.GetOptions{})
	require.NoError(t, err)
	s.Spec.Replicas = replicas
	_, err = cs.AppsV1().Deployments(key.Namespace).UpdateScale(ctx, key.Name, s, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, cluster.WaitDeployment(ctx, key, replicas))
	if replicas == 0 {
		// The endpoints must be empty too, or the apiserver still dials the old pods.
		require.Eventually(t, func() bool {
			pods, err := cs.CoreV1().Pods(key.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=pod-identity-webhook"})
			return err == nil && len(pods.Items) == 0
		}, time.Minute, 250*time.Millisecond)
	}
}

// TestReplicaKilledDuringBurst: 100 labelled pods are created, 8 at a time,
// while one webhook replica is killed. A creation may fail (failurePolicy
// Fail), but no pod is admitted without the sidecar. The pods name a node
// that does not exist, so that nothing runs them.
func TestReplicaKilledDuringBurst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns, total, workers = "node-burst", 100, 8
	optInNamespace(ctx, t, ns, seedClientID)
	webhookPods, err := cs.CoreV1().Pods(webhookenv.WebhookNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=pod-identity-webhook"})
	require.NoError(t, err)
	require.Len(t, webhookPods.Items, 2)
	victim := webhookPods.Items[0].Name

	var mu sync.Mutex
	var created, refused int
	var refusals []string
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				pod := azcopyPod(ns, seedClientID)
				pod.Name = fmt.Sprintf("burst-%03d", i)
				pod.Spec.NodeName = "nowhere"
				_, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
				mu.Lock()
				if err == nil {
					created++
				} else {
					refused++
					refusals = append(refusals, err.Error())
				}
				mu.Unlock()
			}
		}()
	}
	for i := range total {
		if i == total/4 {
			require.NoError(t, cs.CoreV1().Pods(webhookenv.WebhookNamespace).Delete(ctx, victim, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}))
		}
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("replica %s killed after %d of %d creations: %d admitted, %d refused", victim, total/4, total, created, refused)
	for _, r := range refusals {
		t.Logf("refused: %s", r)
	}

	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, pods.Items, created)
	uninjected := 0
	for _, p := range pods.Items {
		if !hasSidecar(&p) {
			uninjected++
		}
	}
	assert.Zero(t, uninjected, "pods admitted without the sidecar")
	for _, r := range refusals {
		assert.Contains(t, r, "pod-identity-injector.podidentity.github.io", "a refusal names the webhook")
	}
	require.NoError(t, cs.CoreV1().Pods(ns).DeleteCollection(context.Background(), *metav1.NewDeleteOptions(0), metav1.ListOptions{}))
	if err := cluster.WaitDeployment(ctx, client.ObjectKey{Namespace: webhookenv.WebhookNamespace, Name: "pod-identity-webhook"}, 2); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

func hasSidecar(p *corev1.Pod) bool {
	for _, c := range append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...) {
		if c.Name == names.SidecarContainerName {
			return true
		}
	}
	return false
}
