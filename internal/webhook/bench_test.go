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

// seedRequest builds the AdmissionReview the API server sends for the seed
// Deployment's pod, and a warm cache holding the seed's objects.
func seedRequest(b *testing.B) ([]byte, client.Reader) {
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
	review, _ := seedRequest(b)
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
	review, reader := seedRequest(b)
	h := newTestHandler(b, reader, nil, testInjectConfig(), testSecret)
	h.metrics = nil
	// The seed's identity names no tenant; the operator's flag supplies it.
	h.planner.Resolver.Defaults.TenantID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
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
