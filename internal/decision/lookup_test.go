package decision

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/decision/decisiontest"
	"github.com/podidentity/injector/internal/manifest"
	"github.com/podidentity/injector/internal/names"
)

func binding(ns, name, selector string) *aadv1.AzureIdentityBinding {
	return &aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: selector}}
}

func identity(ns, name string) *aadv1.AzureIdentity {
	return &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: aadv1.AzureIdentitySpec{ClientID: "c"}}
}

func TestFallbackLookupReadsLiveOnlyOnAMiss(t *testing.T) {
	ctx := context.Background()
	cache := decisiontest.FakeReader(t, decisiontest.OptedIn("a"), identity("a", "cached"), binding("a", "b1", "reader"))
	apiServer := &decisiontest.CountingReader{Reader: decisiontest.FakeReader(t, decisiontest.OptedIn("a"), decisiontest.OptedIn("new"), identity("a", "cached"), identity("a", "fresh"),
		binding("a", "b1", "reader"), binding("a", "b2", "writer"))}
	l := CacheThenLive(cache, apiServer, 1e9, nil)

	_, err := l.Identity(ctx, "a", "cached")
	require.NoError(t, err)
	_, err = l.Namespace(ctx, "a")
	require.NoError(t, err)
	items, err := l.Bindings(ctx, "a", "reader")
	require.NoError(t, err)
	assert.Len(t, items, 1)
	assert.Zero(t, apiServer.Reads, "hits are served from the cache alone")

	ai, err := l.Identity(ctx, "a", "fresh")
	require.NoError(t, err, "an identity not yet in the cache is read live")
	assert.Equal(t, "fresh", ai.Name)
	_, err = l.Namespace(ctx, "new")
	require.NoError(t, err, "so is a namespace")
	items, err = l.Bindings(ctx, "a", "writer")
	require.NoError(t, err)
	assert.Len(t, items, 2, "bindings without the pod's selector are listed again, live")
	assert.Equal(t, 3, apiServer.Reads)

	_, err = l.Identity(ctx, "a", "nowhere")
	assert.True(t, apierrors.IsNotFound(err), "missing everywhere is NotFound: %v", err)

	_, err = l.Exceptions(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, 4, apiServer.Reads, "exceptions never go live")
}

func TestMemoryLookup(t *testing.T) {
	const objs = `
apiVersion: v1
kind: Namespace
metadata: {name: a, annotations: {podidentity.github.io/inject: enabled}}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: id, namespace: a}
spec: {type: 0, clientID: c}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: bz, namespace: a}
spec: {azureIdentity: id, selector: s}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: by, namespace: a}
spec: {azureIdentity: id, selector: s}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: bx, namespace: b}
spec: {azureIdentity: id, selector: s}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzurePodIdentityException
metadata: {name: e, namespace: a}
spec: {podLabels: {app: x}}
`
	var set manifest.Set
	require.NoError(t, set.Read("objs.yaml", strings.NewReader(objs), "default"))
	l := NewMemoryLookup(&set)
	ctx := context.Background()

	ns, err := l.Namespace(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, "enabled", ns.Annotations["podidentity.github.io/inject"])
	ns, err = l.Namespace(ctx, "elsewhere")
	require.NoError(t, err, "a namespace the files do not hold exists, plain")
	assert.Empty(t, ns.Annotations)

	bs, err := l.Bindings(ctx, "a", "s")
	require.NoError(t, err)
	require.Len(t, bs, 2, "only namespace a's bindings")
	assert.Equal(t, []string{"by", "bz"}, []string{bs[0].Name, bs[1].Name}, "sorted by name, as the API server lists")

	_, err = l.Identity(ctx, "a", "id")
	require.NoError(t, err)
	_, err = l.Identity(ctx, "b", "id")
	assert.True(t, apierrors.IsNotFound(err), "never across namespaces: %v", err)

	es, err := l.Exceptions(ctx, "a")
	require.NoError(t, err)
	assert.Len(t, es, 1)

	bs, err = l.BindingsWithSelector(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, []string{"a/by", "a/bz", "b/bx"}, refs(bs), "every namespace's, sorted by namespace, then name")
	bs, err = l.BindingsWithSelector(ctx, "S")
	require.NoError(t, err)
	assert.Empty(t, bs, "selectors compare exactly")
}

func refs(bs []aadv1.AzureIdentityBinding) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Namespace+"/"+b.Name)
	}
	return out
}

// TestBindingsWithSelector: the cache is read through its index by
// selector, the API server by listing every namespace, and only a
// selector that no cached binding of any namespace has is read live, under
// the live-read limiter.
func TestBindingsWithSelector(t *testing.T) {
	ctx := context.Background()
	cache := &decisiontest.CountingReader{Reader: decisiontest.FakeReader(t, binding("b", "b1", "reader"), binding("a", "b2", "reader"), binding("a", "b3", "writer"))}
	apiServer := &decisiontest.CountingReader{Reader: decisiontest.FakeReader(t, binding("b", "b1", "reader"), binding("a", "b2", "reader"), binding("a", "b3", "writer"),
		binding("c", "fresh", "new"))}
	l := CacheThenLive(indexed{t, cache}, unindexed{t, apiServer}, 1e9, rate.NewLimiter(rate.Every(time.Hour), 1))

	items, err := l.BindingsWithSelector(ctx, "reader")
	require.NoError(t, err)
	assert.Equal(t, []string{"a/b2", "b/b1"}, refs(items))
	assert.Zero(t, apiServer.Reads, "a hit is served from the cache")

	items, err = l.BindingsWithSelector(ctx, "new")
	require.NoError(t, err)
	assert.Equal(t, []string{"c/fresh"}, refs(items), "a selector no cached binding has is read live")
	assert.Equal(t, 1, apiServer.Reads)

	_, err = l.BindingsWithSelector(ctx, "nowhere")
	require.ErrorIs(t, err, ErrLiveReadLimited, "the live read takes a token like any other")
	assert.Equal(t, 1, apiServer.Reads)

	// The live reader has no index: a field selector on a CRD's spec
	// would be refused by the API server, so it lists and filters.
	items, err = ReaderLookup{Reader: unindexed{t, apiServer}}.BindingsWithSelector(ctx, "writer")
	require.NoError(t, err)
	assert.Equal(t, []string{"a/b3"}, refs(items))
}

// indexed fails a list of bindings of every namespace that does not use
// the cache's index.
type indexed struct {
	t testing.TB
	client.Reader
}

func (i indexed) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	var o client.ListOptions
	o.ApplyOptions(opts)
	if _, ok := list.(*aadv1.AzureIdentityBindingList); ok && o.Namespace == "" && (o.FieldSelector == nil || o.FieldSelector.Empty()) {
		i.t.Errorf("the bindings of every namespace were listed without the index")
	}
	return i.Reader.List(ctx, list, opts...)
}

// unindexed fails a list that selects by a field, as the API server does
// for a CRD field it was not told to select by.
type unindexed struct {
	t testing.TB
	client.Reader
}

func (u unindexed) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	var o client.ListOptions
	o.ApplyOptions(opts)
	if o.FieldSelector != nil && !o.FieldSelector.Empty() {
		u.t.Errorf("a field selector reached the API server: %v", o.FieldSelector)
	}
	return u.Reader.List(ctx, list, opts...)
}

// TestBindingSelector: the index holds a binding's selector, and nothing
// for a binding whose selector cannot be read.
func TestBindingSelector(t *testing.T) {
	assert.Equal(t, []string{"reader"}, BindingSelector(binding("a", "b", "reader")))
	assert.Empty(t, BindingSelector(binding("a", "b", "")))
	assert.Empty(t, BindingSelector(identity("a", "id")))
}

// TestCrossNamespaceReadsNothingLive: in the compatibility mode, a pod
// that only another namespace's cached binding serves is decided from the
// cache alone, admission after admission: its own namespace's empty list
// of bindings must not count as a miss that is read live each time.
func TestCrossNamespaceReadsNothingLive(t *testing.T) {
	objs := []client.Object{decisiontest.OptedIn("team-a"), binding("shared", "b", "reader"),
		&aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: "shared", Name: "id"}, Spec: aadv1.AzureIdentitySpec{ClientID: "c", TenantID: "t"}}}
	apiServer := &decisiontest.CountingReader{Reader: decisiontest.FakeReader(t, objs...)}
	flags := DefaultFlags()
	flags.AADPodIdentityCrossNamespace = true
	p, err := flags.NewPlanner(CacheThenLive(decisiontest.FakeReader(t, objs...), apiServer, 1e9, nil), nil, true)
	require.NoError(t, err)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team-a", Labels: map[string]string{names.BindingLabel: "reader"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}
	for range 3 {
		d := p.Plan(context.Background(), pod)
		require.Equal(t, OutcomeInjected, d.Outcome, "%s %v", d.Message, d.Err)
	}
	assert.Zero(t, apiServer.Reads)
}
