package webhook

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/names"
)

// The informer cache holds every namespace and every AzureIdentity,
// AzureIdentityBinding and AzurePodIdentityException of the cluster, and,
// unless --warn-shared-service-account=false, every labelled pod. The
// transforms below keep, of each object, only what the handler and the
// resolver read, so that the cache grows with the cluster by a few hundred
// bytes per object instead of by the whole object with its managedFields
// and kubectl's last-applied-configuration. A new read of a field that is
// dropped here must keep that field here too; TestCacheTransformKeepsReads
// reads through the transforms to catch it.

// CacheByObject is the cache configuration of every kind the handler reads,
// for cache.Options.ByObject. Namespaces are the metadata-only kind that
// warmCache and the handler use.
func CacheByObject() map[client.Object]cache.ByObject {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return map[client.Object]cache.ByObject{
		ns:                                 {Transform: transformNamespace},
		&aadv1.AzureIdentity{}:             {Transform: transformIdentity},
		&aadv1.AzureIdentityBinding{}:      {Transform: transformBinding},
		&aadv1.AzurePodIdentityException{}: {Transform: transformException},
		&corev1.Pod{}:                      {Label: CachePodSelector, Transform: transformPod},
	}
}

// CachePodSelector limits the pods the cache holds to labelled ones: the
// webhook reads pods only to compare a pod's selector with those of the
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

// transformIdentity keeps the spec and the token source annotation
// (Resolver.convert); the status, written by aad-pod-identity's controller,
// is never read.
func transformIdentity(obj any) (any, error) {
	ai, ok := obj.(*aadv1.AzureIdentity)
	if !ok {
		return obj, nil
	}
	ai.ObjectMeta = slimMeta(&ai.ObjectMeta, names.TokenSourceAnnotation)
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

// transformPod keeps the selector label, the service account and the phase
// (IndexerPeers): nothing of the pod's containers, env or volumes stays in
// the webhook's memory.
func transformPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		ObjectMeta: slimMeta(&pod.ObjectMeta, names.BindingLabel),
		Spec:       corev1.PodSpec{ServiceAccountName: pod.Spec.ServiceAccountName},
		Status:     corev1.PodStatus{Phase: pod.Status.Phase},
	}, nil
}
