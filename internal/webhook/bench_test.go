package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/podidentity/injector/examples"
	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/names"
)

// indexerReader is a warm informer cache as controller-runtime's reader
// serves it to the webhook: a client-go Indexer with a namespace index,
// whose reads hand out the stored objects without a deep copy, as
// cmd/webhook configures its cache (DefaultUnsafeDisableDeepCopy). The
// benchmark uses it so that "resolve against a warm cache" costs what it
// costs in the webhook, without an API server.
type indexerReader struct {
	byKind map[string]cache.Indexer
}

func newIndexerReader(objs ...client.Object) *indexerReader {
	r := &indexerReader{byKind: map[string]cache.Indexer{}}
	for _, o := range objs {
		kind := kindOf(o)
		idx, ok := r.byKind[kind]
		if !ok {
			idx = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
			r.byKind[kind] = idx
		}
		if err := idx.Add(o); err != nil {
			panic(err)
		}
	}
	return r
}

// kindOf keys the indexers: the Go type, or the kind of metadata-only
// objects, which share one Go type.
func kindOf(o runtime.Object) string {
	if pom, ok := o.(*metav1.PartialObjectMetadata); ok {
		return pom.Kind
	}
	return fmt.Sprintf("%T", o)
}

func (r *indexerReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	kind := kindOf(obj)
	idx := r.byKind[kind]
	if idx == nil {
		return apierrors.NewNotFound(aadv1.Resource(kind), key.Name)
	}
	item, ok, err := idx.GetByKey(cache.NewObjectName(key.Namespace, key.Name).String())
	if err != nil || !ok {
		return apierrors.NewNotFound(aadv1.Resource(kind), key.Name)
	}
	// As controller-runtime's cache reader does without deep copies:
	// a shallow copy of the stored struct into the caller's object.
	switch dst := obj.(type) {
	case *metav1.PartialObjectMetadata:
		*dst = *item.(*metav1.PartialObjectMetadata)
	case *aadv1.AzureIdentity:
		*dst = *item.(*aadv1.AzureIdentity)
	default:
		return fmt.Errorf("indexerReader: unsupported %T", obj)
	}
	return nil
}

func (r *indexerReader) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	lo := (&client.ListOptions{}).ApplyOptions(opts)
	var kind string
	switch list.(type) {
	case *aadv1.AzureIdentityBindingList:
		kind = fmt.Sprintf("%T", &aadv1.AzureIdentityBinding{})
	case *aadv1.AzurePodIdentityExceptionList:
		kind = fmt.Sprintf("%T", &aadv1.AzurePodIdentityException{})
	default:
		return fmt.Errorf("indexerReader: unsupported %T", list)
	}
	var items []runtime.Object
	if idx := r.byKind[kind]; idx != nil {
		objs, err := idx.ByIndex(cache.NamespaceIndex, lo.Namespace)
		if err != nil {
			return err
		}
		for _, o := range objs {
			items = append(items, o.(runtime.Object))
		}
	}
	return meta.SetList(list, items)
}

// benchInputs are the pods the admission benchmarks run on: the seed
// Deployment's template as a bare pod, and the same pod as the API server
// really sends it once a ReplicaSet made it and the admission plugins before
// the webhook ran.
var benchInputs = []struct {
	name       string
	controller bool
}{{"seed", false}, {"controller-made", true}}

// controllerMade dresses pod as the API server sends a ReplicaSet's pod to
// a mutating webhook: owner reference, managed fields, the service account
// token volume, default tolerations and the defaulted fields.
func controllerMade(pod *corev1.Pod) {
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "my-app-7c9d8b6f5",
		UID: "6f1c1a52-3a38-4c39-9d0b-1f4e2d3c4b5a", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
		APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:aadpodidbinding":{},"f:pod-template-hash":{},"f:run":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"6f1c1a52-3a38-4c39-9d0b-1f4e2d3c4b5a\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"my-app\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},"f:volumeMounts":{".":{},"k:{\"mountPath\":\"/var/data\"}":{".":{},"f:mountPath":{},"f:name":{}}}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:initContainers":{".":{},"k:{\"name\":\"data-init\"}":{".":{},"f:args":{},"f:command":{},"f:image":{},"f:name":{}}},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{},"f:volumes":{".":{},"k:{\"name\":\"data-init\"}":{".":{},"f:emptyDir":{},"f:name":{}}}}}`)}}
	pod.Labels["pod-template-hash"] = "7c9d8b6f5"
	pod.Spec.ServiceAccountName, pod.Spec.DeprecatedServiceAccount = "default", "default"
	pod.Spec.RestartPolicy, pod.Spec.DNSPolicy, pod.Spec.SchedulerName = corev1.RestartPolicyAlways, corev1.DNSClusterFirst, corev1.DefaultSchedulerName
	pod.Spec.TerminationGracePeriodSeconds, pod.Spec.EnableServiceLinks = ptr.To[int64](30), ptr.To(true)
	pod.Spec.SecurityContext, pod.Spec.Priority, pod.Spec.PreemptionPolicy = &corev1.PodSecurityContext{}, ptr.To[int32](0), ptr.To(corev1.PreemptLowerPriority)
	pod.Spec.Tolerations = []corev1.Toleration{
		{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
		{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](420),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr.To[int64](3607), Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		},
	}}})
	mount := corev1.VolumeMount{Name: "kube-api-access-x7k2p", ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			c := &cs[i]
			c.VolumeMounts = append(c.VolumeMounts, mount)
			c.TerminationMessagePath, c.TerminationMessagePolicy = corev1.TerminationMessagePathDefault, corev1.TerminationMessageReadFile
			c.ImagePullPolicy = corev1.PullAlways
		}
	}
}

// seedRequest builds the AdmissionReview the API server sends for the seed
// Deployment's pod, dressed as a controller's pod when controller is set,
// and a warm cache holding the seed's objects.
func seedRequest(b *testing.B, controller bool) ([]byte, client.Reader) {
	b.Helper()
	var dep struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	data, err := examples.Blog("deployment.yaml")
	require.NoError(b, err)
	require.NoError(b, yaml.Unmarshal(data, &dep))
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: dep.Spec.Template.ObjectMeta,
		Spec:       dep.Spec.Template.Spec,
	}
	pod.GenerateName, pod.Namespace = "my-app-7c9d8b6f5-", "default"
	if controller {
		controllerMade(&pod)
	}
	raw, err := json.Marshal(&pod)
	require.NoError(b, err)
	req := podRequest(b, "default", raw)
	review, err := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	})
	require.NoError(b, err)

	var objs []client.Object
	for _, f := range []string{"azureidentity.yaml", "azureidentitybinding.yaml"} {
		data, err := examples.Blog(f)
		require.NoError(b, err)
		js, err := yaml.YAMLToJSON(data)
		require.NoError(b, err)
		obj, _, err := codecs(b).Decode(js, nil, nil)
		require.NoError(b, err)
		co := obj.(client.Object)
		co.SetNamespace("default")
		objs = append(objs, co)
	}
	ns := &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: "default", Annotations: map[string]string{names.InjectAnnotation: names.InjectEnabled}},
	}
	objs = append(objs, ns)
	return review, newIndexerReader(objs...)
}

func codecs(b testing.TB) runtime.Decoder {
	return newWireReader(b, nil).codec
}

// BenchmarkFloor is what any webhook pays: decode the AdmissionReview that
// carries the seed pod, decode the pod, and marshal it again.
func BenchmarkFloor(b *testing.B) {
	for _, in := range benchInputs {
		b.Run(in.name, func(b *testing.B) { benchFloor(b, in.controller) })
	}
}

func benchFloor(b *testing.B, controller bool) {
	review, _ := seedRequest(b, controller)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var ar admissionv1.AdmissionReview
		if err := json.Unmarshal(review, &ar); err != nil {
			b.Fatal(err)
		}
		var pod corev1.Pod
		if err := json.Unmarshal(ar.Request.Object.Raw, &pod); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(&pod); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAdmission is the whole admission path for the same request:
// decode the review, resolve against a warm cache, inject, build the patch
// and encode the response review.
func BenchmarkAdmission(b *testing.B) {
	for _, in := range benchInputs {
		b.Run(in.name, func(b *testing.B) { benchAdmission(b, in.controller) })
	}
}

func benchAdmission(b *testing.B, controller bool) {
	review, reader := seedRequest(b, controller)
	h := newTestHandler(b, reader, nil, testInjectConfig(), testSecret)
	h.metrics = nil
	// The seed's identity names no tenant; the operator's flag supplies it.
	h.planner.Defaults.TenantID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var ar admissionv1.AdmissionReview
		if err := json.Unmarshal(review, &ar); err != nil {
			b.Fatal(err)
		}
		resp := h.Handle(ctx, admission.Request{AdmissionRequest: *ar.Request})
		if !resp.Allowed || len(resp.Patch) == 0 {
			b.Fatalf("not injected: %+v", resp.Result)
		}
		if err := resp.Complete(admission.Request{AdmissionRequest: *ar.Request}); err != nil {
			b.Fatal(err)
		}
		out := admissionv1.AdmissionReview{TypeMeta: ar.TypeMeta, Response: &resp.AdmissionResponse}
		if _, err := json.Marshal(&out); err != nil {
			b.Fatal(err)
		}
	}
}
