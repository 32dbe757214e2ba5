package webhook

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/inject/injecttest"
	"github.com/podidentity/injector/internal/names"
)

// bloat gives an object what a real apiserver and kubectl add and the
// handler never reads, and the legacy spelling beside every key the handler
// reads (which it warns about).
func bloat(m *metav1.ObjectMeta) {
	for _, kv := range []map[string]string{m.Annotations, m.Labels} {
		for _, k := range []string{names.InjectAnnotation, names.TokenSourceAnnotation} {
			if v, ok := kv[k]; ok {
				kv[names.LegacyKey(k)] = v
			}
		}
	}
	m.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:clientID":{}}}`)}}}
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations["kubectl.kubernetes.io/last-applied-configuration"] = `{"apiVersion":"v1","kind":"Whatever","spec":{}}`
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	m.Labels["app.kubernetes.io/managed-by"] = "Helm"
	m.Finalizers = []string{"example.test/keep"}
	m.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "owner", UID: "u"}}
}

// slimmed runs every object through the transform of its kind, as the
// informer does before storing it. A namespace goes through the
// metadata-only transform and comes back as a Namespace for the fake client.
func slimmed(t *testing.T, objs []client.Object) []client.Object {
	t.Helper()
	var out []client.Object
	for _, o := range objs {
		var (
			got any
			err error
		)
		switch o := o.(type) {
		case *corev1.Namespace:
			pom := &metav1.PartialObjectMetadata{ObjectMeta: *o.ObjectMeta.DeepCopy()}
			got, err = transformNamespace(pom)
			require.NoError(t, err)
			got = &corev1.Namespace{ObjectMeta: got.(*metav1.PartialObjectMetadata).ObjectMeta}
		case *aadv1.AzureIdentity:
			got, err = transformIdentity(o.DeepCopy())
		case *aadv1.AzureIdentityBinding:
			got, err = transformBinding(o.DeepCopy())
		case *aadv1.AzurePodIdentityException:
			got, err = transformException(o.DeepCopy())
		default:
			t.Fatalf("no transform for %T", o)
		}
		require.NoError(t, err)
		out = append(out, got.(client.Object))
	}
	return out
}

// TestCacheTransformKeepsReads admits every golden case's pod twice, from a
// cache of the full objects and from one of the transformed objects: the
// responses must be the same, so the transforms drop nothing the handler
// reads.
func TestCacheTransformKeepsReads(t *testing.T) {
	dir := injecttest.Dir()
	cases, err := injecttest.Names(dir)
	require.NoError(t, err)
	require.NotEmpty(t, cases)
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := injecttest.Load(dir, name)
			require.NoError(t, err)
			ns := c.Pod.Namespace
			selector := c.Pod.Labels[names.BindingLabel]
			objs := append(objectsFor(c, selector), optedIn(ns), &aadv1.AzurePodIdentityException{
				ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: ns},
				Spec:       aadv1.AzurePodIdentityExceptionSpec{PodLabels: map[string]string{"never": "matches"}},
			})
			for _, o := range objs {
				bloat(o.(metav1.ObjectMetaAccessor).GetObjectMeta().(*metav1.ObjectMeta))
			}
			full := newTestHandler(t, fakeReader(t, objs...), nil, c.Config, c.Secret).Handle(context.Background(), podRequest(t, ns, c.PodJSON))
			slim := newTestHandler(t, fakeReader(t, slimmed(t, objs)...), nil, c.Config, c.Secret).Handle(context.Background(), podRequest(t, ns, c.PodJSON))
			require.True(t, full.Allowed, "%+v", full.Result)
			assert.Empty(t, cmp.Diff(full, slim), "response from the transformed cache differs")
		})
	}
}

// TestCacheTransformsDrop checks what each transform drops and keeps.
func TestCacheTransformsDrop(t *testing.T) {
	meta := func(annotations, labels map[string]string) metav1.ObjectMeta {
		m := metav1.ObjectMeta{Name: "n", Namespace: "team-a", UID: "uid-1", ResourceVersion: "42", Generation: 3, Annotations: annotations, Labels: labels}
		bloat(&m)
		return m
	}
	want := func(annotations, labels map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: "n", Namespace: "team-a", ResourceVersion: "42", Generation: 3, Annotations: annotations, Labels: labels}
	}
	optIn := map[string]string{names.InjectAnnotation: names.InjectEnabled, names.LegacyKey(names.InjectAnnotation): names.InjectEnabled}
	source := map[string]string{names.TokenSourceAnnotation: names.TokenSourceIMDS, names.LegacyKey(names.TokenSourceAnnotation): names.TokenSourceIMDS}
	tests := map[string]struct {
		in, want  any
		transform func(any) (any, error)
	}{
		"namespace keeps the opt-in annotation and label": {
			in:        &metav1.PartialObjectMetadata{ObjectMeta: meta(map[string]string{names.InjectAnnotation: names.InjectEnabled}, map[string]string{names.InjectAnnotation: names.InjectEnabled})},
			want:      &metav1.PartialObjectMetadata{ObjectMeta: want(optIn, optIn)},
			transform: transformNamespace,
		},
		"identity keeps its spec and token source annotation, drops status": {
			in: &aadv1.AzureIdentity{
				ObjectMeta: meta(map[string]string{names.TokenSourceAnnotation: names.TokenSourceIMDS}, nil),
				Spec:       aadv1.AzureIdentitySpec{ClientID: "c", TenantID: "t"},
				Status:     aadv1.AzureIdentityStatus{AvailableReplicas: 2},
			},
			want:      &aadv1.AzureIdentity{ObjectMeta: want(source, nil), Spec: aadv1.AzureIdentitySpec{ClientID: "c", TenantID: "t"}},
			transform: transformIdentity,
		},
		"binding keeps its spec": {
			in:        &aadv1.AzureIdentityBinding{ObjectMeta: meta(nil, nil), Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "s"}},
			want:      &aadv1.AzureIdentityBinding{ObjectMeta: want(nil, nil), Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "s"}},
			transform: transformBinding,
		},
		"exception keeps its spec": {
			in:        &aadv1.AzurePodIdentityException{ObjectMeta: meta(nil, nil), Spec: aadv1.AzurePodIdentityExceptionSpec{PodLabels: map[string]string{"a": "b"}}},
			want:      &aadv1.AzurePodIdentityException{ObjectMeta: want(nil, nil), Spec: aadv1.AzurePodIdentityExceptionSpec{PodLabels: map[string]string{"a": "b"}}},
			transform: transformException,
		},
		"pod keeps its selector label, service account and phase": {
			in: &corev1.Pod{
				ObjectMeta: meta(nil, map[string]string{names.BindingLabel: "reader"}),
				Spec: corev1.PodSpec{ServiceAccountName: "sa", NodeName: "node-1",
					Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{{Name: "TOKEN", Value: "never kept"}}}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
			},
			want: &corev1.Pod{ObjectMeta: want(nil, map[string]string{names.BindingLabel: "reader"}),
				Spec: corev1.PodSpec{ServiceAccountName: "sa"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}},
			transform: transformPod,
		},
		"another type passes through": {
			in:        "tombstone",
			want:      "tombstone",
			transform: transformBinding,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := tc.transform(tc.in)
			require.NoError(t, err)
			assert.Empty(t, cmp.Diff(tc.want, got))
		})
	}
}

// TestCacheByObjectCoversReads: every kind warmCache watches has a
// transform.
func TestCacheByObjectCoversReads(t *testing.T) {
	kinds := map[string]bool{}
	for obj, by := range CacheByObject() {
		require.NotNil(t, by.Transform, "%T", obj)
		kind := obj.GetObjectKind().GroupVersionKind().Kind
		if kind == "" {
			kind = typeName(obj)
		}
		kinds[kind] = true
	}
	assert.Equal(t, map[string]bool{"Namespace": true, "AzureIdentity": true, "AzureIdentityBinding": true, "AzurePodIdentityException": true, "Pod": true}, kinds)
}

func typeName(obj client.Object) string {
	switch obj.(type) {
	case *aadv1.AzureIdentity:
		return "AzureIdentity"
	case *aadv1.AzureIdentityBinding:
		return "AzureIdentityBinding"
	case *aadv1.AzurePodIdentityException:
		return "AzurePodIdentityException"
	case *corev1.Pod:
		return "Pod"
	}
	return ""
}
