package webhook

import (
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/names"
)

// The informer cache holds every namespace and every AzureIdentity,
// AzureIdentityBinding and AzurePodIdentityException of the cluster, and,
// unless --warn-shared-service-account=false, the pod informer of
// NewPodInformer holds every labelled pod. The transforms below keep, of
// each object, only what the handler and the resolver read, instead of the
// whole object with its managedFields and kubectl's
// last-applied-configuration: 3.5-3.7 KB of Go heap per namespace with
// one identity and one binding (BENCHMARKS.md, "The webhook at scale"), and
// 292 bytes per labelled pod (BENCHMARKS.md, "The pod informer's memory"). A new read of a field that is dropped here must keep that
// field here too; TestCacheTransformKeepsReads reads through the transforms
// to catch it.

// CacheByObject is the cache configuration of every kind the handler reads,
// for cache.Options.ByObject. Namespaces are the metadata-only kind that
// warmCache and the handler use. Pods are not in it: they have an informer
// of their own (NewPodInformer), which admission does not wait for.
func CacheByObject() map[client.Object]cache.ByObject {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return map[client.Object]cache.ByObject{
		ns:                                 {Transform: transformNamespace},
		&aadv1.AzureIdentity{}:             {Transform: transformIdentity},
		&aadv1.AzureIdentityBinding{}:      {Transform: transformBinding},
		&aadv1.AzurePodIdentityException{}: {Transform: transformException},
	}
}

// CachePodSelector limits the pods NewPodInformer holds to labelled ones:
// the webhook reads pods only to compare a pod's selector with those of the
// pods that share its service account (Peers).
var CachePodSelector = labels.NewSelector().Add(*must(labels.NewRequirement(names.BindingLabel, selection.Exists, nil)))

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// CacheDefaultTransform strips managedFields from any other kind that a
// later change may cache.
var CacheDefaultTransform toolscache.TransformFunc = cache.TransformStripManagedFields()

// slimMeta is the metadata the handler reads: the name and namespace that
// messages cite and the informer keys objects by, the resourceVersion and
// generation that client-go's store and event handlers compare, and the
// annotations and labels named in keep, in their names.Prefix and legacy
// spellings (names.Lookup reads both); the others are dropped.
func slimMeta(m *metav1.ObjectMeta, keep ...string) metav1.ObjectMeta {
	for _, k := range keep {
		if legacy := names.LegacyKey(k); legacy != k {
			keep = append(keep, legacy)
		}
	}
	return metav1.ObjectMeta{
		Name:            m.Name,
		Namespace:       m.Namespace,
		ResourceVersion: m.ResourceVersion,
		Generation:      m.Generation,
		Labels:          only(m.Labels, keep),
		Annotations:     only(m.Annotations, keep),
	}
}

// only returns the entries of m whose key is in keys, or nil.
func only(m map[string]string, keys []string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := m[k]; ok {
			if out == nil {
				out = make(map[string]string, len(keys))
			}
			out[k] = v
		}
	}
	return out
}

// transformNamespace keeps the opt-in annotation and label (optedIn).
func transformNamespace(obj any) (any, error) {
	ns, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	ns.ObjectMeta = slimMeta(&ns.ObjectMeta, names.InjectAnnotation)
	return ns, nil
}

// transformIdentity keeps the spec, the token source annotation
// (Resolver.convert) and aad-pod-identity's Behavior annotation (the
// cross-namespace mode); the status, written by aad-pod-identity's
// controller, is never read.
func transformIdentity(obj any) (any, error) {
	ai, ok := obj.(*aadv1.AzureIdentity)
	if !ok {
		return obj, nil
	}
	ai.ObjectMeta = slimMeta(&ai.ObjectMeta, names.TokenSourceAnnotation, names.BehaviorAnnotation)
	ai.Status = aadv1.AzureIdentityStatus{}
	return ai, nil
}

// transformBinding keeps the spec (Resolver.matchingBindings).
func transformBinding(obj any) (any, error) {
	b, ok := obj.(*aadv1.AzureIdentityBinding)
	if !ok {
		return obj, nil
	}
	b.ObjectMeta = slimMeta(&b.ObjectMeta)
	b.Status = aadv1.AzureIdentityBindingStatus{}
	return b, nil
}

// transformException keeps the spec (Handler.exception).
func transformException(obj any) (any, error) {
	e, ok := obj.(*aadv1.AzurePodIdentityException)
	if !ok {
		return obj, nil
	}
	e.ObjectMeta = slimMeta(&e.ObjectMeta)
	e.Status = aadv1.AzurePodIdentityExceptionStatus{}
	return e, nil
}

// transformPod keeps, of a pod, the selector label, the service account
// and whether it has finished (IndexerPeers), in a cachedPod: nothing of
// the pod's containers, env or volumes stays in the webhook's memory.
// client-go's informer stores whatever its transform returns, keyed by
// meta.Accessor, so the cache holds no corev1.Pod, whose empty struct
// alone is over 1 KB. A cachedPod passes through unchanged, as client-go
// requires of a transform.
func transformPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	c := &cachedPod{
		name:            pod.Name,
		namespace:       unique.Make(pod.Namespace),
		serviceAccount:  unique.Make(decision.ServiceAccountOf(pod)),
		resourceVersion: pod.ResourceVersion,
		finished:        decision.PodFinished(pod.Status.Phase),
	}
	if s, ok := pod.Labels[names.BindingLabel]; ok {
		c.selector, c.labelled = unique.Make(s), true
	}
	return c, nil
}

// cachedPod is a labelled pod as the webhook's pod informer stores it. The
// namespace, service account and selector repeat across pods, so they are
// interned (unique.Handle, one pointer each). The resourceVersion stays:
// client-go's store records the last one it saw and its informer tells an
// update from a resync by it.
type cachedPod struct {
	name                                string
	namespace, serviceAccount, selector unique.Handle[string]
	resourceVersion                     string
	// labelled tells an empty selector from none; finished is the
	// pod's phase as finished reads it.
	labelled, finished bool
}

// cachedPod implements metav1.Object, the interface meta.Accessor needs
// to key it: its getters give the name, the namespace and the
// resourceVersion, the rest are empty, and its setters are never called
// on a stored object (the informer never writes to what it stores).
var _ metav1.Object = (*cachedPod)(nil)

func (p *cachedPod) GetNamespace() string                        { return p.namespace.Value() }
func (p *cachedPod) GetName() string                             { return p.name }
func (p *cachedPod) GetResourceVersion() string                  { return p.resourceVersion }
func (*cachedPod) SetNamespace(string)                           {}
func (*cachedPod) SetName(string)                                {}
func (*cachedPod) GetGenerateName() string                       { return "" }
func (*cachedPod) SetGenerateName(string)                        {}
func (*cachedPod) GetUID() types.UID                             { return "" }
func (*cachedPod) SetUID(types.UID)                              {}
func (*cachedPod) SetResourceVersion(string)                     {}
func (*cachedPod) GetGeneration() int64                          { return 0 }
func (*cachedPod) SetGeneration(int64)                           {}
func (*cachedPod) GetSelfLink() string                           { return "" }
func (*cachedPod) SetSelfLink(string)                            {}
func (*cachedPod) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (*cachedPod) SetCreationTimestamp(metav1.Time)              {}
func (*cachedPod) GetDeletionTimestamp() *metav1.Time            { return nil }
func (*cachedPod) SetDeletionTimestamp(*metav1.Time)             {}
func (*cachedPod) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (*cachedPod) SetDeletionGracePeriodSeconds(*int64)          {}
func (*cachedPod) GetLabels() map[string]string                  { return nil }
func (*cachedPod) SetLabels(map[string]string)                   {}
func (*cachedPod) GetAnnotations() map[string]string             { return nil }
func (*cachedPod) SetAnnotations(map[string]string)              {}
func (*cachedPod) GetFinalizers() []string                       { return nil }
func (*cachedPod) SetFinalizers([]string)                        {}
func (*cachedPod) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (*cachedPod) SetOwnerReferences([]metav1.OwnerReference)    {}
func (*cachedPod) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (*cachedPod) SetManagedFields([]metav1.ManagedFieldsEntry)  {}
