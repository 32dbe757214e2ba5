package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/decision/decisiontest"
	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/inject/injecttest"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// peerPod is a pod of team-a, as the API server stores it: its service
// account set, and running.
func peerPod(name, selector, serviceAccount string, phase corev1.PodPhase) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-a", Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{ServiceAccountName: serviceAccount, Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
		Status:     corev1.PodStatus{Phase: phase},
	}
	if selector != "" {
		p.Labels[names.BindingLabel] = selector
	}
	return p
}

// peersHandler serves identity "reader" to selector "reader" in team-a,
// and reads the pods that share a service account from objs, through a
// reader with the webhook's field index.
func peersHandler(t *testing.T, peers decision.Peers) *Handler {
	t.Helper()
	c := &injecttest.Case{Identities: []inject.Identity{{Identity: sidecarconfig.Identity{Name: "reader", Namespace: "team-a", Source: names.TokenSourceFederated, ClientID: "cid", TenantID: "tid"}}}}
	h, err := NewHandler(&decision.Planner{
		Lookup:       decision.ReaderLookup{Reader: decisiontest.FakeReader(t, append(objectsFor(c, "reader"), decisiontest.OptedIn("team-a"))...)},
		Defaults:     decision.Defaults{TokenSource: names.TokenSourceFederated},
		Inject:       testInjectConfig(),
		RequireOptIn: true,
		NewSecret:    func() (string, error) { return testSecret, nil },
		Peers:        peers,
	}, nil)
	require.NoError(t, err)
	return h
}

// indexedPods is the store of the webhook's pod informer holding objs, as
// the informer fills it: through transformPod, into the informer's own
// indexer.
func indexedPods(t testing.TB, objs ...client.Object) IndexerPeers {
	t.Helper()
	inf, err := NewPodInformer(kubefake.NewClientset(), nil)
	require.NoError(t, err)
	idx := inf.GetIndexer()
	for _, o := range objs {
		slim, err := transformPod(o)
		require.NoError(t, err)
		require.NoError(t, idx.Add(slim))
	}
	return IndexerPeers{Indexer: idx}
}

// livePods is the plugin's --live reader: a client that selects by label
// and by spec.serviceAccountName, as the API server does.
func livePods(t *testing.T, objs ...client.Object) decision.ReaderPeers {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(decisiontest.Scheme(t)).WithObjects(objs...).
		WithIndex(&corev1.Pod{}, "spec.serviceAccountName", func(o client.Object) []string { return []string{decision.ServiceAccountOf(o.(*corev1.Pod))} }).Build()
	return decision.ReaderPeers{Reader: c}
}

// TestSharedServiceAccountWarning: a pod whose service account other
// labelled pods run as, with other selectors, is injected with a warning
// that names them, their selectors and what to do; pods of another service
// account, with the same selector, unlabelled, finished, or of another
// namespace are no reason to warn.
func TestSharedServiceAccountWarning(t *testing.T) {
	other := func(p *corev1.Pod) *corev1.Pod { p.Namespace = "team-b"; return p }
	tests := map[string]struct {
		pod   func(*corev1.Pod)
		peers []client.Object
		want  []string // parts of the one warning; nil for none
	}{
		"another selector on the same service account": {
			peers: []client.Object{peerPod("writer-1", "writer", "default", corev1.PodRunning)},
			want: []string{`pod team-a/web (aadpodidbinding="reader") shares service account "default" with pod writer-1,`,
				`selectors differ ("writer")`, "no boundary", "service account of their own", "docs/security.md"},
		},
		"a named service account": {
			pod:   func(p *corev1.Pod) { p.Spec.ServiceAccountName = "shared" },
			peers: []client.Object{peerPod("writer-1", "writer", "shared", corev1.PodPending), peerPod("admin-1", "admin", "shared", corev1.PodRunning)},
			want:  []string{`service account "shared" with pod admin-1, pod writer-1,`, `selectors differ ("admin", "writer")`},
		},
		"more pods than the warning names": {
			peers: []client.Object{
				peerPod("w-1", "writer", "default", corev1.PodRunning), peerPod("w-2", "writer", "default", corev1.PodRunning),
				peerPod("w-3", "writer", "default", corev1.PodRunning), peerPod("w-4", "writer", "default", corev1.PodRunning),
				peerPod("w-5", "writer", "default", corev1.PodRunning),
			},
			want: []string{"with pod w-1, pod w-2, pod w-3 and 2 more,", `selectors differ ("writer"):`},
		},
		"the same selector": {
			peers: []client.Object{peerPod("reader-1", "reader", "default", corev1.PodRunning)},
		},
		"another service account": {
			peers: []client.Object{peerPod("writer-1", "writer", "writer-sa", corev1.PodRunning)},
		},
		"an unlabelled pod": {
			peers: []client.Object{peerPod("plain", "", "default", corev1.PodRunning)},
		},
		"finished pods": {
			peers: []client.Object{peerPod("job-1", "writer", "default", corev1.PodSucceeded), peerPod("job-2", "writer", "default", corev1.PodFailed)},
		},
		"another namespace": {
			peers: []client.Object{other(peerPod("writer-1", "writer", "default", corev1.PodRunning))},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			raw := shapePod(t, func(p *corev1.Pod) {
				p.Spec.ServiceAccountName = "default"
				if tc.pod != nil {
					tc.pod(p)
				}
			})
			for reader, peers := range map[string]decision.Peers{"webhook's informer": indexedPods(t, tc.peers...), "plugin's --live": livePods(t, tc.peers...)} {
				t.Run(reader, func(t *testing.T) {
					resp := peersHandler(t, peers).Handle(context.Background(), podRequest(t, "team-a", raw))
					require.True(t, resp.Allowed, "%+v", resp.Result)
					require.NotEmpty(t, resp.Patch, "the pod is injected either way")
					var shared []string
					for _, w := range resp.Warnings {
						if strings.Contains(w, "no boundary") {
							shared = append(shared, w)
						}
					}
					if tc.want == nil {
						assert.Empty(t, shared)
						return
					}
					require.Len(t, shared, 1, "warnings: %q", resp.Warnings)
					for _, part := range tc.want {
						assert.Contains(t, shared[0], part)
					}
				})
			}
		})
	}
}

// TestSharedServiceAccountThroughTheCacheTransform: the pods as the
// webhook's cache holds them, stripped by transformPod, give the same
// warning as the full pods.
func TestSharedServiceAccountThroughTheCacheTransform(t *testing.T) {
	full := peerPod("writer-1", "writer", "default", corev1.PodRunning)
	full.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "PASSWORD", Value: "hunter2"}}
	bloat(&full.ObjectMeta)
	raw := shapePod(t, func(p *corev1.Pod) { p.Spec.ServiceAccountName = "default" })
	fromFull := peersHandler(t, livePods(t, full)).Handle(context.Background(), podRequest(t, "team-a", raw))
	fromSlim := peersHandler(t, indexedPods(t, full.DeepCopy())).Handle(context.Background(), podRequest(t, "team-a", raw))
	assert.Equal(t, fromFull.Warnings, fromSlim.Warnings)
	assert.True(t, containsAny(fromSlim.Warnings, "no boundary"))
}

// TestCachePodSelectorTakesOnlyLabelledPods: the cache's label selector.
func TestCachePodSelectorTakesOnlyLabelledPods(t *testing.T) {
	assert.True(t, CachePodSelector.Matches(labelSet(peerPod("a", "writer", "default", corev1.PodRunning).Labels)))
	assert.True(t, CachePodSelector.Matches(labelSet(map[string]string{names.BindingLabel: ""})), "an empty selector is still a selector")
	assert.False(t, CachePodSelector.Matches(labelSet(peerPod("b", "", "default", corev1.PodRunning).Labels)))
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool              { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string            { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

// failingPeers cannot read the pods.
type failingPeers struct{}

func (failingPeers) OtherSelectors(context.Context, string, string, string) ([]decision.Peer, error) {
	return nil, errors.New("pods is forbidden")
}

// TestSharedServiceAccountReadFails: a pod is injected when the pods that
// share its service account cannot be read; the decision carries the error
// for the handler's log, and the user gets no warning about it.
func TestSharedServiceAccountReadFails(t *testing.T) {
	h := peersHandler(t, failingPeers{})
	raw := shapePod(t, nil)
	var pod corev1.Pod
	require.NoError(t, json.Unmarshal(raw, &pod))
	d := h.planner.Plan(context.Background(), &pod)
	assert.Equal(t, decision.OutcomeInjected, d.Outcome)
	assert.ErrorContains(t, d.PeersErr, "forbidden")
	resp := h.Handle(context.Background(), podRequest(t, "team-a", raw))
	assert.True(t, resp.Allowed)
	assert.NotEmpty(t, resp.Patch)
}

// BenchmarkIndexerPeers is the webhook's read per admission when n pods run
// as the pod's service account with the same selector (no warning), and
// when one of them has another (a warning naming it).
func BenchmarkIndexerPeers(b *testing.B) {
	for _, n := range []int{10, 2500} {
		for _, other := range []bool{false, true} {
			b.Run(fmt.Sprintf("pods=%d/otherSelector=%t", n, other), func(b *testing.B) {
				var pods []client.Object
				for i := range n {
					sel := "reader"
					if other && i == 0 {
						sel = "writer"
					}
					pods = append(pods, peerPod(fmt.Sprintf("p-%d", i), sel, "default", corev1.PodRunning))
				}
				p := indexedPods(b, pods...)
				b.ReportAllocs()
				for b.Loop() {
					peers, err := p.OtherSelectors(context.Background(), "team-a", "default", "reader")
					if err != nil || (len(peers) == 1) != other {
						b.Fatalf("peers %v, err %v", peers, err)
					}
				}
			})
		}
	}
}

// TestSharedServiceAccountWarningIsLogged: the warning of a pod that a
// controller made reaches no person, so the injection's log line carries
// it.
func TestSharedServiceAccountWarningIsLogged(t *testing.T) {
	var lines []string
	ctx := logr.NewContext(context.Background(), funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{}))
	raw := shapePod(t, func(p *corev1.Pod) { p.Spec.ServiceAccountName = "default" })
	resp := peersHandler(t, indexedPods(t, peerPod("writer-1", "writer", "default", corev1.PodRunning))).Handle(ctx, podRequest(t, "team-a", raw))
	require.True(t, resp.Allowed)
	require.Len(t, lines, 1)
	assert.Contains(t, lines[0], `"msg"="injected pod identity sidecar"`)
	assert.Contains(t, lines[0], `shares service account \"default\" with pod writer-1`)
}

// TestIndexerPeersNotCurrent: while the pod informer is not current, a pod
// whose service account another selector shares is injected without the
// warning, and the decision says why (ErrPeersUnavailable) for the log.
func TestIndexerPeersNotCurrent(t *testing.T) {
	p := indexedPods(t, peerPod("writer-1", "writer", "default", corev1.PodRunning))
	p.Current = func() error { return errors.New("watch failing since 09:00") }
	h := peersHandler(t, p)
	raw := shapePod(t, func(p *corev1.Pod) { p.Spec.ServiceAccountName = "default" })
	var pod corev1.Pod
	require.NoError(t, json.Unmarshal(raw, &pod))
	d := h.planner.Plan(context.Background(), &pod)
	assert.Equal(t, decision.OutcomeInjected, d.Outcome)
	assert.ErrorIs(t, d.PeersErr, ErrPeersUnavailable)
	resp := h.Handle(context.Background(), podRequest(t, "team-a", raw))
	require.True(t, resp.Allowed)
	assert.NotEmpty(t, resp.Patch)
	assert.False(t, containsAny(resp.Warnings, "no boundary"), "no warning from a stale cache: %q", resp.Warnings)

	p.Current = func() error { return nil }
	resp = peersHandler(t, p).Handle(context.Background(), podRequest(t, "team-a", raw))
	assert.True(t, containsAny(resp.Warnings, "no boundary"), "the same cache, current, warns")
}

// TestPodInformerFollowsPods runs NewPodInformer against a clientset: the
// cachedPods it stores follow a pod that is created, changes selector,
// finishes and is deleted, and pods without the label stay out.
func TestPodInformerFollowsPods(t *testing.T) {
	c := kubefake.NewClientset(peerPod("writer-1", "writer", "default", corev1.PodRunning), peerPod("web", "", "default", corev1.PodRunning))
	inf, err := NewPodInformer(c, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); inf.RunWithContext(ctx) }()
	defer func() { cancel(); <-done }()
	require.True(t, toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced))
	p := IndexerPeers{Indexer: inf.GetIndexer()}
	// eventually waits up to 10 s for the informer to see a change.
	eventually := func(want []decision.Peer) {
		t.Helper()
		var got []decision.Peer
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if got, err = p.OtherSelectors(ctx, "team-a", "default", "reader"); err == nil && cmp.Equal(want, got) {
				return
			}
		}
		t.Fatalf("peers %v, err %v; want %v", got, err, want)
	}
	eventually([]decision.Peer{{Ref: "pod writer-1", Selector: "writer"}})
	assert.Equal(t, []string{"team-a/writer-1"}, inf.GetIndexer().ListKeys(), "the fake clientset selects by label, as the API server does")

	pods := c.CoreV1().Pods("team-a")
	_, err = pods.Create(ctx, peerPod("writer-2", "blob", "default", corev1.PodPending), metav1.CreateOptions{})
	require.NoError(t, err)
	eventually([]decision.Peer{{Ref: "pod writer-1", Selector: "writer"}, {Ref: "pod writer-2", Selector: "blob"}})
	_, err = pods.Update(ctx, peerPod("writer-2", "reader", "default", corev1.PodRunning), metav1.UpdateOptions{})
	require.NoError(t, err)
	eventually([]decision.Peer{{Ref: "pod writer-1", Selector: "writer"}})
	_, err = pods.UpdateStatus(ctx, peerPod("writer-1", "writer", "default", corev1.PodSucceeded), metav1.UpdateOptions{})
	require.NoError(t, err)
	eventually(nil)
	require.NoError(t, pods.Delete(ctx, "writer-1", metav1.DeleteOptions{}))
	for deadline := time.Now().Add(10 * time.Second); len(inf.GetIndexer().ListKeys()) != 1 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	assert.Equal(t, []string{"team-a/writer-2"}, inf.GetIndexer().ListKeys())
}
