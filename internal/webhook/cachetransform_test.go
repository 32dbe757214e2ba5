package webhook

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"unique"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/decision/decisiontest"
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
	m.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:clientID":{}}}`)}}
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
			objs := append(objectsFor(c, selector), decisiontest.OptedIn(ns), &aadv1.AzurePodIdentityException{
				ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: ns},
				Spec:       aadv1.AzurePodIdentityExceptionSpec{PodLabels: map[string]string{"never": "matches"}},
			})
			for _, o := range objs {
				bloat(o.(metav1.ObjectMetaAccessor).GetObjectMeta().(*metav1.ObjectMeta))
			}
			full := newTestHandler(t, decisiontest.FakeReader(t, objs...), nil, c.Config, c.Secret).Handle(context.Background(), podRequest(t, ns, c.PodJSON))
			slim := newTestHandler(t, decisiontest.FakeReader(t, slimmed(t, objs)...), nil, c.Config, c.Secret).Handle(context.Background(), podRequest(t, ns, c.PodJSON))
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
		"identity keeps aad-pod-identity's Behavior annotation": {
			in:        &aadv1.AzureIdentity{ObjectMeta: meta(map[string]string{names.BehaviorAnnotation: names.BehaviorNamespaced}, nil)},
			want:      &aadv1.AzureIdentity{ObjectMeta: want(map[string]string{names.BehaviorAnnotation: names.BehaviorNamespaced}, nil)},
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

// TestTransformPodKeeps: of a pod, the cache keeps its name, namespace,
// resourceVersion, selector, service account and whether it has finished,
// in a cachedPod that the informer's store can key; a cachedPod passes
// through again unchanged.
func TestTransformPodKeeps(t *testing.T) {
	m := metav1.ObjectMeta{Name: "writer-1", Namespace: "team-a", UID: "uid-1", ResourceVersion: "42", Labels: map[string]string{names.BindingLabel: "reader"}}
	bloat(&m)
	tests := map[string]struct {
		pod  *corev1.Pod
		want cachedPod
	}{
		"running": {
			pod: &corev1.Pod{ObjectMeta: m, Spec: corev1.PodSpec{ServiceAccountName: "sa", NodeName: "node-1",
				Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{{Name: "TOKEN", Value: "never kept"}}}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"}},
			want: cachedPod{name: "writer-1", namespace: unique.Make("team-a"), serviceAccount: unique.Make("sa"), selector: unique.Make("reader"),
				resourceVersion: "42", labelled: true},
		},
		"finished, no service account named": {
			pod:  &corev1.Pod{ObjectMeta: m, Status: corev1.PodStatus{Phase: corev1.PodSucceeded}},
			want: cachedPod{name: "writer-1", namespace: unique.Make("team-a"), serviceAccount: unique.Make("default"), selector: unique.Make("reader"), resourceVersion: "42", labelled: true, finished: true},
		},
		"no selector label": {
			pod:  &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team-a"}, Status: corev1.PodStatus{Phase: corev1.PodFailed}},
			want: cachedPod{name: "web", namespace: unique.Make("team-a"), serviceAccount: unique.Make("default"), finished: true},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := transformPod(tc.pod)
			require.NoError(t, err)
			require.IsType(t, &cachedPod{}, got)
			assert.Equal(t, tc.want, *got.(*cachedPod))
			key, err := toolscache.DeletionHandlingMetaNamespaceKeyFunc(got)
			require.NoError(t, err)
			assert.Equal(t, tc.pod.Namespace+"/"+tc.pod.Name, key)
			again, err := transformPod(got)
			require.NoError(t, err)
			assert.Same(t, got, again)
		})
	}
}

// TestCacheByObjectCoversReads: every kind warmCache watches has a
// transform; pods are not among them.
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
	assert.Equal(t, map[string]bool{"Namespace": true, "AzureIdentity": true, "AzureIdentityBinding": true, "AzurePodIdentityException": true}, kinds)
}

func typeName(obj client.Object) string {
	switch obj.(type) {
	case *aadv1.AzureIdentity:
		return "AzureIdentity"
	case *aadv1.AzureIdentityBinding:
		return "AzureIdentityBinding"
	case *aadv1.AzurePodIdentityException:
		return "AzurePodIdentityException"
	}
	return ""
}

// apiPodJSON is pod i of namespace ns as the API server sends it to the
// informer: a Deployment's pod, injected, running, with the labels,
// annotations, managedFields, owner, containers, volumes and status of a
// real pod: 4.8 KB of JSON. Pods of a namespace share 5
// selectors and service accounts.
func apiPodJSON(ns string, i int) []byte {
	app := fmt.Sprintf("app-%d", i%5)
	name := fmt.Sprintf("%s-7d9f8c6b5-%05d", app, i)
	return fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Pod","metadata":{
"name":%[2]q,"generateName":"%[3]s-7d9f8c6b5-","namespace":%[1]q,"uid":"6f1c2a4e-0b7d-4c3e-9a51-%012[4]d","resourceVersion":"%[5]d",
"creationTimestamp":"2026-11-28T09:03:11Z",
"labels":{"app":%[3]q,"pod-template-hash":"7d9f8c6b5","aadpodidbinding":"%[3]s-reader","app.kubernetes.io/part-of":"shop"},
"annotations":{"podidentity.github.io/injected-identities":"%[3]s-reader","kubectl.kubernetes.io/restartedAt":"2026-11-28T09:00:00Z","prometheus.io/scrape":"true"},
"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"%[3]s-7d9f8c6b5","uid":"0e9b8c7d-6a5f-4e3d-2c1b-0a9f8e7d6c5b","controller":true,"blockOwnerDeletion":true}],
"managedFields":[{"manager":"kube-controller-manager","operation":"Update","apiVersion":"v1","time":"2026-11-28T09:03:11Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:aadpodidbinding":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"0e9b8c7d-6a5f-4e3d-2c1b-0a9f8e7d6c5b\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{},"f:resources":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:serviceAccount":{},"f:serviceAccountName":{},"f:terminationGracePeriodSeconds":{}}}},
{"manager":"kubelet","operation":"Update","apiVersion":"v1","time":"2026-11-28T09:03:14Z","fieldsType":"FieldsV1","subresource":"status","fieldsV1":{"f:status":{"f:conditions":{"k:{\"type\":\"Ready\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}}},"f:containerStatuses":{},"f:hostIP":{},"f:phase":{},"f:podIP":{},"f:podIPs":{},"f:startTime":{}}}}]},
"spec":{"serviceAccountName":"%[3]s","serviceAccount":"%[3]s","nodeName":"node-%[6]d","restartPolicy":"Always","dnsPolicy":"ClusterFirst","schedulerName":"default-scheduler","terminationGracePeriodSeconds":30,
"volumes":[{"name":"kube-api-access-x2kqz","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},{"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}}]}},{"name":"azure-identity-token","projected":{"sources":[{"serviceAccountToken":{"audience":"api://AzureADTokenExchange","expirationSeconds":3600,"path":"token"}}]}}],
"initContainers":[{"name":"pod-identity-sidecar","image":"registry.example/pod-identity-sidecar:v1.4.0","restartPolicy":"Always","args":["--config=/etc/pod-identity/config.json"],"env":[{"name":"IDENTITY_HEADER","valueFrom":{"secretKeyRef":{"name":"x","key":"y"}}}],"resources":{"requests":{"cpu":"10m","memory":"16Mi"},"limits":{"memory":"32Mi"}},"volumeMounts":[{"name":"azure-identity-token","mountPath":"/var/run/secrets/azure/tokens","readOnly":true}]}],
"containers":[{"name":"app","image":"registry.example/shop/%[3]s:2.3.1","ports":[{"containerPort":8080,"protocol":"TCP"}],"env":[{"name":"IDENTITY_ENDPOINT","value":"http://127.0.0.1:2579/msi/token"},{"name":"AZURE_CLIENT_ID","value":"c0ffee00-1111-2222-3333-444455556666"}],"resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"volumeMounts":[{"name":"kube-api-access-x2kqz","mountPath":"/var/run/secrets/kubernetes.io/serviceaccount","readOnly":true}],"imagePullPolicy":"IfNotPresent"},
{"name":"log-shipper","image":"registry.example/fluent-bit:3.1","resources":{"requests":{"cpu":"10m","memory":"32Mi"}},"imagePullPolicy":"IfNotPresent"}]},
"status":{"phase":"Running","hostIP":"192.0.2.%[6]d","podIP":"198.51.100.%[7]d","podIPs":[{"ip":"198.51.100.%[7]d"}],"startTime":"2026-11-28T09:03:11Z","qosClass":"Burstable",
"conditions":[{"type":"Initialized","status":"True","lastTransitionTime":"2026-11-28T09:03:12Z"},{"type":"Ready","status":"True","lastTransitionTime":"2026-11-28T09:03:14Z"},{"type":"ContainersReady","status":"True","lastTransitionTime":"2026-11-28T09:03:14Z"},{"type":"PodScheduled","status":"True","lastTransitionTime":"2026-11-28T09:03:11Z"}],
"containerStatuses":[{"name":"app","ready":true,"restartCount":0,"image":"registry.example/shop/%[3]s:2.3.1","imageID":"registry.example/shop/%[3]s@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","containerID":"containerd://4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b49fce","started":true,"state":{"running":{"startedAt":"2026-11-28T09:03:13Z"}}},
{"name":"log-shipper","ready":true,"restartCount":0,"image":"registry.example/fluent-bit:3.1","imageID":"registry.example/fluent-bit@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","containerID":"containerd://ef2d127de37b942baad06145e54b0c619a1f22327b2ebbcfbec78f5564afe39d","started":true,"state":{"running":{"startedAt":"2026-11-28T09:03:13Z"}}}]}}`,
		ns, name, app, i, 100000+i, i%250, i%254+1)
}

// podCacheHeap fills the store of a real NewPodInformer with n pods of
// n/100 namespaces, each decoded from the JSON the API server sends and
// put through the informer's transform, as the informer does, and returns
// the Go heap the store holds per pod: the live heap after a collection,
// less the same before the pods came. The decoded pods are garbage by
// then; what is left is the cached pods, their keys and the index.
func podCacheHeap(tb testing.TB, n int) float64 {
	tb.Helper()
	decoder := clientgoscheme.Codecs.UniversalDeserializer()
	inf, err := NewPodInformer(kubefake.NewClientset(), nil)
	require.NoError(tb, err)
	idx := inf.GetIndexer()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		obj, _, err := decoder.Decode(apiPodJSON(fmt.Sprintf("team-%03d", i/100), i), nil, nil)
		require.NoError(tb, err)
		slim, err := transformPod(obj)
		require.NoError(tb, err)
		require.NoError(tb, idx.Add(slim))
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.Len(tb, idx.ListKeys(), n)
	runtime.KeepAlive(idx)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// TestPodCacheMemory bounds the heap of the pod informer per labelled
// pod at twice the 300 bytes measured by BenchmarkPodCacheMemory: a wide
// margin for the heap's noise, which still fails by far a cache of
// corev1.Pods (1,941 bytes per pod).
func TestPodCacheMemory(t *testing.T) {
	perPod := podCacheHeap(t, 5_000)
	t.Logf("%.0f bytes per pod", perPod)
	assert.Less(t, perPod, 600.0)
}

// BenchmarkPodCacheMemory reports the Go heap that the webhook's pod
// informer holds per labelled pod (BENCHMARKS.md, "The pod informer's
// memory"): go test -run '^$' -bench PodCacheMemory -benchtime 1x ./internal/webhook/
func BenchmarkPodCacheMemory(b *testing.B) {
	const pods = 10_000
	var perPod float64
	for b.Loop() {
		perPod = podCacheHeap(b, pods)
	}
	b.ReportMetric(perPod, "B/pod")
}
