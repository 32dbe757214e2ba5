package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/webhook"
)

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestWatchHealth: a watch that fails as client-go's reflector retries it
// makes the webhook not ready once the failures outlast the grace period,
// and ready again once they have stopped; a single blip does not.
func TestWatchHealth(t *testing.T) {
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	h := newWatchHealth(clock.Now, "so the cache may serve deleted or stale bindings")
	down := errors.New("connection refused")
	require.NoError(t, h.check(nil), "no failure yet")

	// A blip: one failure, then quiet.
	h.failed("*v1.AzureIdentityBinding", down)
	require.NoError(t, h.check(nil))
	clock.Advance(watchRecovered)
	require.NoError(t, h.check(nil))

	// A broken watch: the reflector's backoff, 0.8 s doubling to 30 s, and
	// up to twice that with jitter.
	for _, d := range []time.Duration{800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond} {
		h.failed("*v1.AzureIdentityBinding", down)
		require.NoError(t, h.check(nil), "still within the grace period")
		clock.Advance(d)
	}
	h.failed("*v1.AzureIdentityBinding", down)
	err := h.check(nil)
	require.Error(t, err, "failing for 12 s")
	assert.Contains(t, err.Error(), "*v1.AzureIdentityBinding")
	assert.Contains(t, err.Error(), "connection refused")
	for range 5 {
		clock.Advance(59 * time.Second)
		h.failed("*v1.AzureIdentityBinding", down)
		require.Error(t, h.check(nil), "still broken")
	}

	// It comes back: ready once no failure came for watchRecovered.
	clock.Advance(watchRecovered - time.Second)
	require.Error(t, h.check(nil))
	clock.Advance(time.Second)
	require.NoError(t, h.check(nil))
}

// failing is a clientset whose every watch of what fails, and every list
// too unless lists is true.
func failing(what string, lists bool) *kubefake.Clientset {
	c := kubefake.NewClientset()
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: what}, "", errors.New("RBAC rule missing"))
	if !lists {
		c.PrependReactor("list", what, func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, forbidden })
	}
	c.PrependWatchReactor(what, func(k8stesting.Action) (bool, watch.Interface, error) { return true, nil, forbidden })
	return c
}

// failures waits until h has recorded n failures of the informer's
// watch, as client-go's reflector retries it (0.8 s, then 1.6 s), and
// advances the clock past the grace period after the first; it gives up
// after 20 s.
func failures(t *testing.T, h *watchHealth, clock *testClock, n int) {
	t.Helper()
	seen := 0
	var last time.Time
	for deadline := time.Now().Add(20 * time.Second); seen < n; time.Sleep(10 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "the reflector reported %d of %d failures", seen, n)
		h.mu.Lock()
		for _, s := range h.streaks {
			if s.last != last {
				last = s.last
				seen++
				clock.Advance(watchGrace)
			}
		}
		h.mu.Unlock()
	}
}

// TestPodsWatchFailureLeavesAdmissionReady: a real pod informer whose
// watch keeps failing after it has synced, or whose list fails as when the
// RBAC rule on pods is missing, leaves readiness alone, turns the shared
// service account warning off with ErrPeersUnavailable, sets the gauge to
// 0 and logs once why.
func TestPodsWatchFailureLeavesAdmissionReady(t *testing.T) {
	for name, lists := range map[string]bool{"watch fails": true, "list fails": false} {
		t.Run(name, func(t *testing.T) { testPodsWatchFailure(t, lists) })
	}
}

func testPodsWatchFailure(t *testing.T, lists bool) {
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	var mu sync.Mutex
	var lines []string
	log := funcr.New(func(prefix, args string) { mu.Lock(); defer mu.Unlock(); lines = append(lines, args) }, funcr.Options{})
	required := newWatchHealth(clock.Now, "so the cache may serve deleted or stale bindings")
	pods, err := newPodsWatch(failing("pods", lists), clock.Now, log)
	require.NoError(t, err)
	gauge := pods.healthyGauge()
	assert.Equal(t, 0.0, testutil.ToFloat64(gauge), "not synced yet")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pods.informer.RunWithContext(ctx) }()
	defer func() { cancel(); <-done }()
	failures(t, pods.health, clock, 2)

	assert.Equal(t, lists, pods.informer.HasSynced())
	assert.NoError(t, required.check(nil), "readiness reads only the watches admission needs")
	assert.ErrorContains(t, pods.health.check(nil), "RBAC rule missing")
	assert.Equal(t, 0.0, testutil.ToFloat64(gauge))
	peers, err := pods.peers().OtherSelectors(ctx, "team-a", "default", "reader")
	assert.ErrorIs(t, err, webhook.ErrPeersUnavailable)
	assert.Empty(t, peers)
	mu.Lock()
	defer mu.Unlock()
	var broken []string
	for _, l := range lines {
		if strings.Contains(l, "the watch of labelled pods is failing") {
			broken = append(broken, l)
		}
	}
	require.Len(t, broken, 1, "one line per broken streak: %q", lines)
	assert.Contains(t, broken[0], "RBAC rule missing")
}

// TestPodsWatchHealthy: once the pod informer has synced, the gauge is 1
// and the warning reads its pods.
func TestPodsWatchHealthy(t *testing.T) {
	c := kubefake.NewClientset(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "writer-1", Namespace: "team-a", Labels: map[string]string{names.BindingLabel: "writer"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "default"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	})
	pods, err := newPodsWatch(c, time.Now, logr.Discard())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pods.informer.RunWithContext(ctx) }()
	defer func() { cancel(); <-done }()
	require.True(t, toolscache.WaitForCacheSync(ctx.Done(), pods.informer.HasSynced))

	assert.Equal(t, 1.0, testutil.ToFloat64(pods.healthyGauge()))
	peers, err := pods.peers().OtherSelectors(ctx, "team-a", "default", "reader")
	require.NoError(t, err)
	assert.Equal(t, []decision.Peer{{Ref: "pod writer-1", Selector: "writer"}}, peers)
}

// TestRequiredWatchFailureMakesNotReady: an informer of a kind admission
// reads, here namespaces, with the readiness watchHealth as its watch
// error handler (main gives it to the manager's cache as
// DefaultWatchErrorHandler), makes the webhook not ready when its list
// keeps failing.
func TestRequiredWatchFailureMakesNotReady(t *testing.T) {
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	required := newWatchHealth(clock.Now, "so the cache may serve deleted or stale bindings")
	c := failing("namespaces", false)
	inf := toolscache.NewSharedIndexInformer(toolscache.ToListWatcherWithWatchListSemantics(&toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return c.CoreV1().Namespaces().List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return c.CoreV1().Namespaces().Watch(ctx, opts)
		},
	}, c), &corev1.Namespace{}, 0, nil)
	require.NoError(t, inf.SetWatchErrorHandlerWithContext(required.handler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); inf.RunWithContext(ctx) }()
	defer func() { cancel(); <-done }()
	failures(t, required, clock, 2)

	err := required.check(nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "RBAC rule missing")
	assert.Contains(t, err.Error(), "stale bindings")
}
