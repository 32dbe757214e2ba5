package decision

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/manifest"
)

// Lookup reads the objects that a decision needs. The webhook reads its
// informer cache and, on a miss, the API server (CacheThenLive); the kubectl
// plugin reads files (NewMemoryLookup) or the API server (ReaderLookup).
// Objects it returns are shared: callers must not modify them.
type Lookup interface {
	// Namespace returns a namespace's metadata, or an error that
	// apierrors.IsNotFound matches.
	Namespace(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error)
	// Bindings returns the AzureIdentityBindings of namespace. selector
	// is the pod's: a lookup with a fallback reads again when none of the
	// bindings it has is for it.
	Bindings(ctx context.Context, namespace, selector string) ([]aadv1.AzureIdentityBinding, error)
	// BindingsWithSelector returns the AzureIdentityBindings of every
	// namespace whose spec.selector is selector, sorted by namespace,
	// then name. Resolution reads them only in the aad-pod-identity
	// compatibility mode (Planner.CrossNamespace), or to name them when
	// nothing in the pod's namespace matches. A lookup with a fallback
	// reads again when it has none.
	BindingsWithSelector(ctx context.Context, selector string) ([]aadv1.AzureIdentityBinding, error)
	// Identity returns an AzureIdentity, or an error that
	// apierrors.IsNotFound matches.
	Identity(ctx context.Context, namespace, name string) (*aadv1.AzureIdentity, error)
	// Exceptions returns the AzurePodIdentityExceptions of namespace.
	Exceptions(ctx context.Context, namespace string) ([]aadv1.AzurePodIdentityException, error)
}

// ReaderLookup reads through a controller-runtime reader: an informer
// cache or a live client.
type ReaderLookup struct {
	Reader client.Reader
	// SelectorIndexed says that Reader is an informer cache with the index
	// IndexBindingSelector adds, so BindingsWithSelector reads that index
	// instead of listing the bindings of every namespace. The API server
	// has no such index (a CRD's spec fields are no field selectors).
	SelectorIndexed bool
}

var _ Lookup = ReaderLookup{}

// Namespace implements Lookup; namespaces are read as metadata only.
func (l ReaderLookup) Namespace(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error) {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := l.Reader.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		return nil, err
	}
	return ns, nil
}

// Bindings implements Lookup.
func (l ReaderLookup) Bindings(ctx context.Context, namespace, _ string) ([]aadv1.AzureIdentityBinding, error) {
	var list aadv1.AzureIdentityBindingList
	if err := l.Reader.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// BindingSelectorField is the name of the index of AzureIdentityBindings
// by spec.selector in the webhook's informer cache.
const BindingSelectorField = "spec.selector"

// BindingSelector is the value of the BindingSelectorField index for obj:
// its spec.selector, or none when the selector cannot be read (such a
// binding matches no pod).
func BindingSelector(obj client.Object) []string {
	b, ok := obj.(*aadv1.AzureIdentityBinding)
	if !ok || b.SelectorErr() != nil || b.Spec.Selector == "" {
		return nil
	}
	return []string{b.Spec.Selector}
}

// IndexBindingSelector adds the BindingSelectorField index to an informer
// cache, before it starts: the webhook then finds the bindings of a
// selector in every namespace without listing them all.
func IndexBindingSelector(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &aadv1.AzureIdentityBinding{}, BindingSelectorField, BindingSelector); err != nil {
		return fmt.Errorf("index AzureIdentityBindings by %s: %w", BindingSelectorField, err)
	}
	return nil
}

// BindingsWithSelector implements Lookup: through the index when Reader
// has it, else by listing the bindings of every namespace.
func (l ReaderLookup) BindingsWithSelector(ctx context.Context, selector string) ([]aadv1.AzureIdentityBinding, error) {
	var list aadv1.AzureIdentityBindingList
	var opts []client.ListOption
	if l.SelectorIndexed {
		opts = append(opts, client.MatchingFields{BindingSelectorField: selector})
	}
	if err := l.Reader.List(ctx, &list, opts...); err != nil {
		return nil, err
	}
	return withSelector(list.Items, selector), nil
}

// withSelector keeps the bindings whose selector is selector exactly,
// sorted by namespace, then name.
func withSelector(items []aadv1.AzureIdentityBinding, selector string) []aadv1.AzureIdentityBinding {
	var out []aadv1.AzureIdentityBinding
	for i := range items {
		if items[i].SelectorErr() == nil && items[i].Spec.Selector == selector {
			out = append(out, items[i])
		}
	}
	slices.SortFunc(out, func(a, b aadv1.AzureIdentityBinding) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}

// Identity implements Lookup.
func (l ReaderLookup) Identity(ctx context.Context, namespace, name string) (*aadv1.AzureIdentity, error) {
	var ai aadv1.AzureIdentity
	if err := l.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &ai); err != nil {
		return nil, err
	}
	return &ai, nil
}

// Exceptions implements Lookup.
func (l ReaderLookup) Exceptions(ctx context.Context, namespace string) ([]aadv1.AzurePodIdentityException, error) {
	var list aadv1.AzurePodIdentityExceptionList
	if err := l.Reader.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// ErrLiveReadLimited means a cache miss could not be read live because the
// webhook's live reads are over their rate (FallbackLookup.Limiter). It is
// transient; the decision denies the pod with a message that says to retry.
var ErrLiveReadLimited = errors.New("too many live reads")

// FallbackLookup reads Primary and, on a miss, Live once, under Timeout: an
// object created a moment before the pod may not have reached the informer
// cache yet (a `kubectl apply -f dir/` race; the EKS webhook learned this in
// its issue #174). A miss is a namespace or an identity that is not found,
// or bindings none of which has the pod's selector. Exceptions are read
// from Primary alone: a missed exception injects a pod that asked not to
// be, which a restart mends, while reading live for every labelled pod would
// cost an API call per admission.
//
// Anyone who reaches the admission endpoint can name a namespace, a
// selector or an identity that no cache holds, so every live read takes a
// token from Limiter first: past its rate a miss fails with
// ErrLiveReadLimited instead of becoming an API call.
type FallbackLookup struct {
	Primary, Live Lookup
	Timeout       time.Duration
	// Limiter bounds the live reads; nil means unbounded.
	Limiter *rate.Limiter
}

var _ Lookup = FallbackLookup{}

// CacheThenLive is the webhook's lookup: its informer cache, which must
// have the index IndexBindingSelector adds, then the API server, at most
// limit's rate. live may be nil for no fallback, and limit nil for no
// bound.
func CacheThenLive(cache, live client.Reader, timeout time.Duration, limit *rate.Limiter) Lookup {
	primary := ReaderLookup{Reader: cache, SelectorIndexed: true}
	if live == nil {
		return primary
	}
	return FallbackLookup{Primary: primary, Live: ReaderLookup{Reader: live}, Timeout: timeout, Limiter: limit}
}

// live runs read against Live under Timeout, if Limiter has a token.
func live[T any](ctx context.Context, l FallbackLookup, read func(context.Context, Lookup) (T, error)) (T, error) {
	if l.Limiter != nil && !l.Limiter.Allow() {
		var zero T
		return zero, fmt.Errorf("%w: the webhook reads objects that are not in its cache yet at most %g times a second (burst %d)",
			ErrLiveReadLimited, float64(l.Limiter.Limit()), l.Limiter.Burst())
	}
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	return read(ctx, l.Live)
}

// Namespace implements Lookup.
func (l FallbackLookup) Namespace(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error) {
	ns, err := l.Primary.Namespace(ctx, name)
	if apierrors.IsNotFound(err) {
		return live(ctx, l, func(ctx context.Context, lk Lookup) (*metav1.PartialObjectMetadata, error) {
			return lk.Namespace(ctx, name)
		})
	}
	return ns, err
}

// Bindings implements Lookup.
func (l FallbackLookup) Bindings(ctx context.Context, namespace, selector string) ([]aadv1.AzureIdentityBinding, error) {
	items, err := l.Primary.Bindings(ctx, namespace, selector)
	if err != nil || slices.ContainsFunc(items, func(b aadv1.AzureIdentityBinding) bool { return b.Spec.Selector == selector }) {
		return items, err
	}
	return live(ctx, l, func(ctx context.Context, lk Lookup) ([]aadv1.AzureIdentityBinding, error) {
		return lk.Bindings(ctx, namespace, selector)
	})
}

// BindingsWithSelector implements Lookup. A miss is a selector that no
// cached binding of any namespace has; it is read live, which lists the
// bindings of every namespace, so it takes a token from Limiter like any
// live read.
func (l FallbackLookup) BindingsWithSelector(ctx context.Context, selector string) ([]aadv1.AzureIdentityBinding, error) {
	items, err := l.Primary.BindingsWithSelector(ctx, selector)
	if err != nil || len(items) > 0 {
		return items, err
	}
	return live(ctx, l, func(ctx context.Context, lk Lookup) ([]aadv1.AzureIdentityBinding, error) {
		return lk.BindingsWithSelector(ctx, selector)
	})
}

// Identity implements Lookup.
func (l FallbackLookup) Identity(ctx context.Context, namespace, name string) (*aadv1.AzureIdentity, error) {
	ai, err := l.Primary.Identity(ctx, namespace, name)
	if apierrors.IsNotFound(err) {
		return live(ctx, l, func(ctx context.Context, lk Lookup) (*aadv1.AzureIdentity, error) {
			return lk.Identity(ctx, namespace, name)
		})
	}
	return ai, err
}

// Exceptions implements Lookup.
func (l FallbackLookup) Exceptions(ctx context.Context, namespace string) ([]aadv1.AzurePodIdentityException, error) {
	return l.Primary.Exceptions(ctx, namespace)
}

// MemoryLookup serves the objects of a manifest.Set, as the kubectl plugin
// reads them from files.
type MemoryLookup struct {
	set *manifest.Set
}

var _ Lookup = MemoryLookup{}

// NewMemoryLookup serves set. Namespaces that set does not hold are
// found with no labels and no annotations, the way `kubectl create
// namespace` makes them.
func NewMemoryLookup(set *manifest.Set) MemoryLookup { return MemoryLookup{set: set} }

// Namespace implements Lookup.
func (l MemoryLookup) Namespace(_ context.Context, name string) (*metav1.PartialObjectMetadata, error) {
	for i := range l.set.Namespaces {
		if l.set.Namespaces[i].Name == name {
			return &l.set.Namespaces[i], nil
		}
	}
	ns := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: name}}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return ns, nil
}

// Bindings implements Lookup.
func (l MemoryLookup) Bindings(_ context.Context, namespace, _ string) ([]aadv1.AzureIdentityBinding, error) {
	return inNamespace(l.set.Bindings, namespace), nil
}

// BindingsWithSelector implements Lookup.
func (l MemoryLookup) BindingsWithSelector(_ context.Context, selector string) ([]aadv1.AzureIdentityBinding, error) {
	return withSelector(l.set.Bindings, selector), nil
}

// Identity implements Lookup.
func (l MemoryLookup) Identity(_ context.Context, namespace, name string) (*aadv1.AzureIdentity, error) {
	for i := range l.set.Identities {
		if ai := &l.set.Identities[i]; ai.Namespace == namespace && ai.Name == name {
			return ai, nil
		}
	}
	return nil, apierrors.NewNotFound(aadv1.Resource(aadv1.ResourceAzureIdentities), name)
}

// Exceptions implements Lookup.
func (l MemoryLookup) Exceptions(_ context.Context, namespace string) ([]aadv1.AzurePodIdentityException, error) {
	return inNamespace(l.set.Exceptions, namespace), nil
}

// inNamespace keeps the items of one namespace, sorted by name as a List
// from the API server is.
func inNamespace[T any, PT interface {
	*T
	metav1.Object
}](items []T, namespace string) []T {
	var out []T
	for i := range items {
		if PT(&items[i]).GetNamespace() == namespace {
			out = append(out, items[i])
		}
	}
	slices.SortStableFunc(out, func(a, b T) int { return strings.Compare(PT(&a).GetName(), PT(&b).GetName()) })
	return out
}
