package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/decision/decisiontest"
	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/inject/injecttest"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

const testSecret = "test-identity-header-secret"

func testInjectConfig() inject.Config {
	return inject.Config{SidecarImage: "example.test/pod-identity-sidecar:v1", Port: names.DefaultTokenPort, NativeSidecar: true}
}

// newTestHandler serves from a fake cache holding objs; live, if not nil,
// stands for the API server behind the cache.
func newTestHandler(t testing.TB, cache, live client.Reader, cfg inject.Config, secret string) *Handler {
	t.Helper()
	h, err := NewHandler(&decision.Planner{
		Lookup: decision.CacheThenLive(cache, live, 1e9, nil),
		// The webhook gives the resolver and the sidecar one allow-list.
		Defaults:     decision.Defaults{TokenSource: names.TokenSourceFederated, AllowedAuthorityHosts: cfg.AllowedAuthorityHosts},
		Inject:       cfg,
		RequireOptIn: true,
		NewSecret:    func() (string, error) { return secret, nil },
	}, NewMetrics())
	require.NoError(t, err)
	return h
}

func podRequest(t testing.TB, namespace string, raw []byte) admission.Request {
	t.Helper()
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "req-1",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

// applyPatch applies a response's JSON patch to the raw request object, as
// the API server does.
func applyPatch(t testing.TB, raw []byte, resp admission.Response) []byte {
	t.Helper()
	if len(resp.Patch) == 0 {
		return raw
	}
	require.Equal(t, admissionv1.PatchTypeJSONPatch, *resp.PatchType)
	var ops []struct{ Op, Path string }
	require.NoError(t, json.Unmarshal(resp.Patch, &ops))
	for _, op := range ops {
		require.Equal(t, "add", op.Op, "the patch only adds: %s %s", op.Op, op.Path)
	}
	b := resp.Patch
	p, err := jsonpatch.DecodePatch(b)
	require.NoError(t, err)
	out, err := p.Apply(raw)
	require.NoError(t, err, "apply patch %s", b)
	return out
}

// objectsFor returns the AzureIdentity and AzureIdentityBinding objects
// that resolve to exactly the case's identities for selector.
func objectsFor(c *injecttest.Case, selector string) []client.Object {
	var objs []client.Object
	for _, id := range c.Identities {
		ai := &aadv1.AzureIdentity{
			ObjectMeta: metav1.ObjectMeta{Name: id.Name, Namespace: id.Namespace},
			Spec: aadv1.AzureIdentitySpec{
				ClientID: id.ClientID, TenantID: id.TenantID, ResourceID: id.ResourceID,
				ADEndpoint: id.AuthorityHost, AuxiliaryTenantIDs: id.AdditionallyAllowedTenants,
			},
		}
		switch id.Source {
		case names.TokenSourceIMDS:
			ai.Annotations = map[string]string{names.TokenSourceAnnotation: names.TokenSourceIMDS}
		case names.TokenSourceClientSecret:
			ai.Spec.Type = aadv1.IdentityTypeServicePrincipal
			ai.Spec.ClientPassword = corev1.SecretReference{Name: id.SecretName, Namespace: id.Namespace}
		case names.TokenSourceClientCertificate:
			ai.Spec.Type = aadv1.IdentityTypeServicePrincipalCertificate
			ai.Spec.ClientPassword = corev1.SecretReference{Name: id.SecretName}
		}
		objs = append(objs, ai, &aadv1.AzureIdentityBinding{
			ObjectMeta: metav1.ObjectMeta{Name: id.Name + "-binding", Namespace: id.Namespace},
			Spec:       aadv1.AzureIdentityBindingSpec{AzureIdentity: id.Name, Selector: selector, Weight: id.Weight},
		})
	}
	return objs
}

// TestHandlerGolden sends every golden case of package inject through the
// admission path: the patch applied to the raw request must give the same
// golden pod, and a second pass over that pod must give no patch.
func TestHandlerGolden(t *testing.T) {
	dir := injecttest.Dir()
	cases, err := injecttest.Names(dir)
	require.NoError(t, err)
	require.NotEmpty(t, cases)
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := injecttest.Load(dir, name)
			require.NoError(t, err)
			goldenPod, _, err := injecttest.LoadGolden(dir, name)
			require.NoError(t, err)
			ns := c.Pod.Namespace
			selector := c.Pod.Labels[names.BindingLabel]
			require.NotEmpty(t, selector, "case pod needs the %s label", names.BindingLabel)

			objs := append(objectsFor(c, selector), decisiontest.OptedIn(ns))
			cache := decisiontest.FakeReader(t, objs...)
			defaults := decision.Defaults{TokenSource: names.TokenSourceFederated, AllowedAuthorityHosts: c.Config.AllowedAuthorityHosts}
			res, err := (&decision.Planner{Lookup: decision.ReaderLookup{Reader: cache}, Defaults: defaults}).Resolve(context.Background(), ns, selector)
			require.NoError(t, err)
			want := slices.Clone(c.Identities)
			slices.SortFunc(want, func(a, b inject.Identity) int { return strings.Compare(a.Name, b.Name) })
			require.Empty(t, cmp.Diff(want, res.Identities), "the case's identities must be what its objects resolve to")

			h := newTestHandler(t, cache, nil, c.Config, c.Secret)
			resp := h.Handle(context.Background(), podRequest(t, ns, c.PodJSON))
			require.True(t, resp.Allowed, "response: %+v", resp.Result)
			patched := applyPatch(t, c.PodJSON, resp)
			got, err := injecttest.DecodePod(patched)
			require.NoError(t, err)
			assert.Empty(t, cmp.Diff(goldenPod, got), "patched request differs from %s", injecttest.GoldenPath(dir, name))

			again := h.Handle(context.Background(), podRequest(t, ns, patched))
			require.True(t, again.Allowed)
			assert.Empty(t, again.Patch, "a second pass must not patch")
		})
	}
}

// TestHandlerKeepsUnknownFields: fields that our k8s.io/api does not know
// must survive, which a whole-object diff or replace would lose.
func TestHandlerKeepsUnknownFields(t *testing.T) {
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"web-","namespace":"team-a","labels":{"aadpodidbinding":"reader"}},
"spec":{"futureSpecField":{"a":1},
"initContainers":[{"name":"init","image":"busybox","futureContainerField":"keep-init"}],
"containers":[{"name":"app","image":"nginx","futureContainerField":"keep-app","env":[{"name":"X","value":"1"}]}]}}`)
	c := &injecttest.Case{Identities: []inject.Identity{{Identity: sidecarconfig.Identity{Name: "reader", Namespace: "team-a", Source: names.TokenSourceFederated, ClientID: "cid", TenantID: "tid"}}}}
	cache := decisiontest.FakeReader(t, append(objectsFor(c, "reader"), decisiontest.OptedIn("team-a"))...)
	resp := newTestHandler(t, cache, nil, testInjectConfig(), testSecret).Handle(context.Background(), podRequest(t, "team-a", raw))
	require.True(t, resp.Allowed, "%+v", resp.Result)
	require.NotEmpty(t, resp.Patch)

	var out map[string]any
	require.NoError(t, json.Unmarshal(applyPatch(t, raw, resp), &out))
	spec := out["spec"].(map[string]any)
	assert.Equal(t, map[string]any{"a": float64(1)}, spec["futureSpecField"])
	inits := spec["initContainers"].([]any)
	require.Len(t, inits, 2)
	assert.Equal(t, names.SidecarContainerName, inits[0].(map[string]any)["name"])
	assert.Equal(t, "keep-init", inits[1].(map[string]any)["futureContainerField"])
	app := spec["containers"].([]any)[0].(map[string]any)
	assert.Equal(t, "keep-app", app["futureContainerField"])
	assert.Equal(t, map[string]any{"name": "X", "value": "1"}, app["env"].([]any)[0], "user env stays first and unchanged")
}

// TestHandlerDecisions is the table of skips and denials, each asserting the
// message that the user reads in kubectl.
func TestHandlerDecisions(t *testing.T) {
	const ns = "team-a"
	identity := func(name string, mut func(*aadv1.AzureIdentity)) *aadv1.AzureIdentity {
		ai := &aadv1.AzureIdentity{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       aadv1.AzureIdentitySpec{ClientID: "11111111-2222-3333-4444-555555555555", TenantID: "tenant"},
		}
		if mut != nil {
			mut(ai)
		}
		return ai
	}
	binding := func(name, idName, selector string) *aadv1.AzureIdentityBinding {
		return &aadv1.AzureIdentityBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       aadv1.AzureIdentityBindingSpec{AzureIdentity: idName, Selector: selector},
		}
	}
	pod := func(mut func(*corev1.Pod)) []byte {
		p := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Labels: map[string]string{names.BindingLabel: "reader"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
		}
		if mut != nil {
			mut(p)
		}
		b, err := json.Marshal(p)
		require.NoError(t, err)
		return b
	}
	good := []client.Object{decisiontest.OptedIn(ns), identity("reader-id", nil), binding("reader-binding", "reader-id", "reader")}

	tests := []struct {
		name    string
		objs    []client.Object
		req     func() admission.Request
		allowed bool
		patched bool
		code    int32
		message []string // substrings of the message the user reads
		reason  error
		// warnings are substrings of the admission warnings, joined.
		warnings []string
	}{
		{
			name: "injects", objs: good, allowed: true, patched: true,
			req: func() admission.Request { return podRequest(t, ns, pod(nil)) },
		},
		{
			name: "namespace not opted in",
			objs: []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, identity("reader-id", nil), binding("b", "reader-id", "reader")},
			req:  func() admission.Request { return podRequest(t, ns, pod(nil)) }, allowed: true,
			message: []string{"namespace team-a has not opted in", "podidentity.github.io/inject=enabled"},
		},
		{
			name: "namespace opted in by the legacy annotation, with a deprecation warning",
			objs: []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Annotations: map[string]string{"aadpodidentity.k8s.io/inject": names.InjectEnabled}}}, identity("reader-id", nil), binding("b", "reader-id", "reader")},
			req:  func() admission.Request { return podRequest(t, ns, pod(nil)) }, allowed: true, patched: true,
			warnings: []string{`Namespace team-a: annotation "aadpodidentity.k8s.io/inject" is deprecated; rename it to "podidentity.github.io/inject"`},
		},
		{
			name: "namespace opted in by the legacy label, with a deprecation warning",
			objs: []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"aadpodidentity.k8s.io/inject": names.InjectEnabled}}}, identity("reader-id", nil), binding("b", "reader-id", "reader")},
			req:  func() admission.Request { return podRequest(t, ns, pod(nil)) }, allowed: true, patched: true,
			warnings: []string{`Namespace team-a: label "aadpodidentity.k8s.io/inject" is deprecated; rename it to "podidentity.github.io/inject"`},
		},
		{
			name: "the new namespace annotation wins over the legacy one",
			objs: []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Annotations: map[string]string{"aadpodidentity.k8s.io/inject": names.InjectEnabled, names.InjectAnnotation: "no"}}}, identity("reader-id", nil), binding("b", "reader-id", "reader")},
			req:  func() admission.Request { return podRequest(t, ns, pod(nil)) }, allowed: true,
			message:  []string{"namespace team-a has not opted in"},
			warnings: []string{`Namespace team-a: annotation "aadpodidentity.k8s.io/inject" is deprecated and ignored, because "podidentity.github.io/inject" is set too`},
		},
		{
			name: "pod opted out by the legacy annotation", objs: good, allowed: true,
			req: func() admission.Request {
				return podRequest(t, ns, pod(func(p *corev1.Pod) {
					p.Annotations = map[string]string{"aadpodidentity.k8s.io/inject": names.InjectDisabled}
				}))
			},
			message:  []string{"pod team-a/web opted out"},
			warnings: []string{`Pod team-a/web: annotation "aadpodidentity.k8s.io/inject" is deprecated; rename it to "podidentity.github.io/inject"`},
		},
		{
			name: "legacy skip-containers and token-port on the pod are read, with warnings", objs: good, allowed: true, patched: true,
			req: func() admission.Request {
				return podRequest(t, ns, pod(func(p *corev1.Pod) {
					p.Annotations = map[string]string{"aadpodidentity.k8s.io/skip-containers": "app", "aadpodidentity.k8s.io/token-port": "9000"}
				}))
			},
			warnings: []string{
				`Pod team-a/web: annotation "aadpodidentity.k8s.io/skip-containers" is deprecated; rename it to "podidentity.github.io/skip-containers"`,
				`Pod team-a/web: annotation "aadpodidentity.k8s.io/token-port" is deprecated; rename it to "podidentity.github.io/token-port"`,
			},
		},
		{
			name: "legacy token-source on the identity is read, with a warning",
			objs: []client.Object{decisiontest.OptedIn(ns), binding("b", "reader-id", "reader"), identity("reader-id", func(a *aadv1.AzureIdentity) {
				a.Annotations = map[string]string{"aadpodidentity.k8s.io/token-source": "magic"}
			})},
			req:  func() admission.Request { return podRequest(t, ns, pod(nil)) },
			code: http.StatusForbidden, message: []string{"token-source is \"magic\""},
			reason:   decision.ErrInvalidIdentity,
			warnings: []string{`AzureIdentity team-a/reader-id: annotation "aadpodidentity.k8s.io/token-source" is deprecated; rename it to "podidentity.github.io/token-source"`},
		},
		{
			name: "Windows pod by spec.os.name", objs: good,
			req: func() admission.Request {
				return podRequest(t, ns, pod(func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }))
			},
			code: http.StatusForbidden, message: []string{"spec.os.name is windows", "Linux image", "run the workload on Linux nodes"}, reason: inject.ErrWindowsPod,
		},
		{
			name: "Windows pod by nodeSelector", objs: good,
			req: func() admission.Request {
				return podRequest(t, ns, pod(func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{corev1.LabelOSStable: "windows"} }))
			},
			code: http.StatusForbidden, message: []string{`spec.nodeSelector["kubernetes.io/os"] is windows`, "remove its aadpodidbinding label"}, reason: inject.ErrWindowsPod,
		},
		{
			name: "namespace opted in by label",
			objs: []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{names.InjectAnnotation: names.InjectEnabled}}}, identity("reader-id", nil), binding("b", "reader-id", "reader")},
			req:  func() admission.Request { return podRequest(t, ns, pod(nil)) }, allowed: true, patched: true,
		},
		{
			name: "pod opted out", objs: good, allowed: true,
			req: func() admission.Request {
				return podRequest(t, ns, pod(func(p *corev1.Pod) { p.Annotations = map[string]string{names.InjectAnnotation: names.InjectDisabled} }))
			},
			message: []string{"pod team-a/web opted out"},
		},
		{
			name: "exception matches",
			objs: append([]client.Object{&aadv1.AzurePodIdentityException{ObjectMeta: metav1.ObjectMeta{Name: "skip-web", Namespace: ns}, Spec: aadv1.AzurePodIdentityExceptionSpec{PodLabels: map[string]string{"app": "web"}}}}, good...),
			req: func() admission.Request {
				return podRequest(t, ns, pod(func(p *corev1.Pod) { p.Labels["app"] = "web" }))
			},
			allowed: true, message: []string{"AzurePodIdentityException team-a/skip-web"},
		},
		{
			name: "exception in another namespace does not match",
			objs: append([]client.Object{&aadv1.AzurePodIdentityException{ObjectMeta: metav1.ObjectMeta{Name: "skip-web", Namespace: "other"}, Spec: aadv1.AzurePodIdentityExceptionSpec{PodLabels: map[string]string{"app": "web"}}}}, good...),
			req: func() admission.Request {
				return podRequest(t, ns, pod(func(p *corev1.Pod) { p.Labels["app"] = "web" }))
			},
			allowed: true, patched: true,
		},
		{
			name: "no label", objs: good, allowed: true,
			req: func() admission.Request {
				return podRequest(t, ns, pod(func(p *corev1.Pod) { p.Labels = nil }))
			},
			message: []string{"has no aadpodidbinding label"},
		},
		{
			name: "update is ignored", objs: good, allowed: true,
			req: func() admission.Request {
				r := podRequest(t, ns, pod(nil))
				r.Operation = admissionv1.Update
				return r
			},
			message: []string{"CREATE only"},
		},
		{
			name: "no binding", objs: []client.Object{decisiontest.OptedIn(ns), identity("reader-id", nil), binding("b", "reader-id", "other")},
			req:     func() admission.Request { return podRequest(t, ns, pod(nil)) },
			code:    http.StatusForbidden,
			message: []string{`no AzureIdentityBinding in namespace team-a has selector "reader"; create one or fix the pod label aadpodidbinding`},
			reason:  decision.ErrNoBinding,
		},
		{
			name: "binding names a missing identity", objs: []client.Object{decisiontest.OptedIn(ns), binding("reader-binding", "ghost", "reader")},
			req:  func() admission.Request { return podRequest(t, ns, pod(nil)) },
			code: http.StatusForbidden,
			message: []string{`AzureIdentityBinding team-a/reader-binding (selector "reader") names AzureIdentity "ghost", which does not exist in namespace team-a`,
				"identities are never looked up in other namespaces"},
			reason: decision.ErrIdentityNotFound,
		},
		{
			name: "identity in another namespace never resolves",
			objs: []client.Object{decisiontest.OptedIn(ns), binding("reader-binding", "reader-id", "reader"),
				&aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Name: "reader-id", Namespace: "team-b"}, Spec: aadv1.AzureIdentitySpec{ClientID: "c", TenantID: "t"}}},
			req:     func() admission.Request { return podRequest(t, ns, pod(nil)) },
			code:    http.StatusForbidden,
			message: []string{`names AzureIdentity "reader-id", which does not exist in namespace team-a`},
			reason:  decision.ErrIdentityNotFound,
		},
		{
			name: "identity without clientID",
			objs: []client.Object{decisiontest.OptedIn(ns), binding("b", "reader-id", "reader"), identity("reader-id", func(a *aadv1.AzureIdentity) { a.Spec.ClientID = "" })},
			req:  func() admission.Request { return podRequest(t, ns, pod(nil)) },
			code: http.StatusForbidden, message: []string{"AzureIdentity team-a/reader-id", "spec.clientID is empty"},
			reason: decision.ErrInvalidIdentity,
		},
		{
			name: "unknown identity type",
			objs: []client.Object{decisiontest.OptedIn(ns), binding("b", "reader-id", "reader"), identity("reader-id", func(a *aadv1.AzureIdentity) { a.Spec.Type = 7 })},
			req:  func() admission.Request { return podRequest(t, ns, pod(nil)) },
			code: http.StatusForbidden, message: []string{"AzureIdentity team-a/reader-id", "spec.type is 7"},
			reason: decision.ErrInvalidIdentity,
		},
		{
			name: "type 1 secret in another namespace",
			objs: []client.Object{decisiontest.OptedIn(ns), binding("b", "reader-id", "reader"), identity("reader-id", func(a *aadv1.AzureIdentity) {
				a.Spec.Type = aadv1.IdentityTypeServicePrincipal
				a.Spec.ClientPassword = corev1.SecretReference{Name: "sp", Namespace: "kube-system"}
			})},
			req:  func() admission.Request { return podRequest(t, ns, pod(nil)) },
			code: http.StatusForbidden, message: []string{"AzureIdentity team-a/reader-id", `spec.clientPassword.namespace is "kube-system"`},
			reason: decision.ErrInvalidIdentity,
		},
		{
			name: "federated identity without tenant",
			objs: []client.Object{decisiontest.OptedIn(ns), binding("b", "reader-id", "reader"), identity("reader-id", func(a *aadv1.AzureIdentity) { a.Spec.TenantID = "" })},
			req:  func() admission.Request { return podRequest(t, ns, pod(nil)) },
			code: http.StatusForbidden, message: []string{"AzureIdentity team-a/reader-id has no spec.tenantID", "--default-tenant-id"},
			reason: decision.ErrInvalidIdentity,
		},
		{
			name: "bad token-source annotation",
			objs: []client.Object{decisiontest.OptedIn(ns), binding("b", "reader-id", "reader"), identity("reader-id", func(a *aadv1.AzureIdentity) {
				a.Annotations = map[string]string{names.TokenSourceAnnotation: "magic"}
			})},
			req:  func() admission.Request { return podRequest(t, ns, pod(nil)) },
			code: http.StatusForbidden, message: []string{"annotation podidentity.github.io/token-source is \"magic\""},
			reason: decision.ErrInvalidIdentity,
		},
		{
			name: "hostNetwork", objs: good,
			req: func() admission.Request {
				return podRequest(t, ns, pod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }))
			},
			code: http.StatusForbidden, message: []string{"hostNetwork"}, reason: inject.ErrHostNetwork,
		},
		{
			name: "port collision", objs: good,
			req: func() admission.Request {
				return podRequest(t, ns, pod(func(p *corev1.Pod) {
					p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: names.DefaultTokenPort}}
				}))
			},
			code: http.StatusForbidden, message: []string{"8181", names.TokenPortAnnotation}, reason: inject.ErrPortCollision,
		},
		{
			name: "per-container identity the selector does not resolve to", objs: good,
			req: func() admission.Request {
				return podRequest(t, ns, pod(func(p *corev1.Pod) {
					p.Annotations = map[string]string{names.ContainerIdentitiesAnnotation: "app=writer-id"}
				}))
			},
			code: http.StatusForbidden, reason: inject.ErrContainerIdentities,
			message: []string{names.ContainerIdentitiesAnnotation, `container "app" is given AzureIdentity "writer-id"`, `label "reader" resolves to in namespace team-a (reader-id)`},
		},
		{
			name: "per-container identities", objs: good, allowed: true, patched: true,
			req: func() admission.Request {
				return podRequest(t, ns, pod(func(p *corev1.Pod) {
					p.Annotations = map[string]string{names.ContainerIdentitiesAnnotation: "app=reader-id"}
				}))
			},
		},
		{
			name: "token expiration out of range", objs: good,
			req: func() admission.Request {
				return podRequest(t, ns, pod(func(p *corev1.Pod) {
					p.Annotations = map[string]string{names.TokenExpirationAnnotation: "100000"}
				}))
			},
			code: http.StatusForbidden, reason: inject.ErrBadOverride,
			message: []string{names.TokenExpirationAnnotation, "from 600 to 86400"},
		},
		{
			name: "malformed pod", objs: good,
			req:  func() admission.Request { return podRequest(t, ns, []byte(`{"spec": [}`)) },
			code: http.StatusBadRequest, message: []string{"decode pod"}, reason: errBadRequest,
		},
		{
			name: "empty object", objs: good,
			req:  func() admission.Request { return podRequest(t, ns, nil) },
			code: http.StatusBadRequest, message: []string{"no object"}, reason: errBadRequest,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, decisiontest.FakeReader(t, tc.objs...), nil, testInjectConfig(), testSecret)
			resp := h.Handle(context.Background(), tc.req())
			assert.Equal(t, tc.allowed, resp.Allowed, "%+v", resp.Result)
			assert.Equal(t, tc.patched, len(resp.Patch) > 0, "patched")
			if tc.code != 0 {
				assert.Equal(t, tc.code, resp.Result.Code)
			}
			for _, m := range tc.message {
				assert.Contains(t, resp.Result.Message, m)
			}
			for _, w := range tc.warnings {
				assert.Contains(t, strings.Join(resp.Warnings, "\n"), w)
			}
			if tc.warnings == nil {
				assert.NotContains(t, strings.Join(resp.Warnings, "\n"), "deprecated", "new keys draw no deprecation warning")
			}
			if tc.reason != nil {
				d, _ := h.decide(context.Background(), tc.req())
				assert.ErrorIs(t, d.Err, tc.reason)
				assert.True(t, strings.HasSuffix(resp.Result.Message, d.Err.Error()), "the message is the error: %q", resp.Result.Message)
				prefix := "pod team-a/web: "
				if tc.code == http.StatusBadRequest {
					prefix = "bad admission request req-1 for pod team-a/: "
				}
				assert.True(t, strings.HasPrefix(resp.Result.Message, prefix), "the message names the pod: %q", resp.Result.Message)
			}
		})
	}
}

// TestHandlerLegacyKeys: the seed's capitalised keys inject, with a warning
// per key naming the object and the key to rename.
func TestHandlerLegacyKeys(t *testing.T) {
	cache := newWireReader(t, decisiontest.FakeReader(t, decisiontest.OptedIn("default")),
		`{"apiVersion":"aadpodidentity.k8s.io/v1","kind":"AzureIdentity","metadata":{"name":"blob-reader","namespace":"default"},
"spec":{"type":0,"ResourceID":"/subscriptions/x/rg/userAssignedIdentities/blob-reader","ClientID":"11111111-2222-3333-4444-555555555555","tenantID":"t"}}`,
		`{"apiVersion":"aadpodidentity.k8s.io/v1","kind":"AzureIdentityBinding","metadata":{"name":"blob-reader-to-my-app","namespace":"default"},
"spec":{"AzureIdentity":"blob-reader","Selector":"my-app"}}`)
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default","labels":{"aadpodidbinding":"my-app"}},"spec":{"containers":[{"name":"app","image":"nginx"}]}}`)
	resp := newTestHandler(t, cache, nil, testInjectConfig(), testSecret).Handle(context.Background(), podRequest(t, "default", raw))
	require.True(t, resp.Allowed, "%+v", resp.Result)
	require.NotEmpty(t, resp.Patch)
	for _, key := range []string{`"ResourceID"`, `"ClientID"`, `"AzureIdentity"`, `"Selector"`} {
		assert.True(t, containsAny(resp.Warnings, key), "a warning names %s: %q", key, resp.Warnings)
	}
	assert.True(t, containsAny(resp.Warnings, "AzureIdentity default/blob-reader"))
	assert.True(t, containsAny(resp.Warnings, "AzureIdentityBinding default/blob-reader-to-my-app"))
}

// TestHandlerExceptions: an exception with a legacy key still exempts, with
// a warning; a broken one exempts nothing and says so.
func TestHandlerExceptions(t *testing.T) {
	const identity = `{"apiVersion":"aadpodidentity.k8s.io/v1","kind":"AzureIdentity","metadata":{"name":"id","namespace":"team-a"},"spec":{"clientID":"c","tenantID":"t"}}`
	const binding = `{"apiVersion":"aadpodidentity.k8s.io/v1","kind":"AzureIdentityBinding","metadata":{"name":"b","namespace":"team-a"},"spec":{"azureIdentity":"id","selector":"reader"}}`
	raw := []byte(`{"metadata":{"name":"p","namespace":"team-a","labels":{"aadpodidbinding":"reader","app":"web"}},"spec":{"containers":[{"name":"app","image":"nginx"}]}}`)
	tests := map[string]struct {
		exception string
		exempt    bool
		warning   string
	}{
		"legacy key exempts with a warning": {
			exception: `{"apiVersion":"aadpodidentity.k8s.io/v1","kind":"AzurePodIdentityException","metadata":{"name":"skip-web","namespace":"team-a"},"spec":{"PodLabels":{"app":"web"}}}`,
			exempt:    true,
			warning:   `AzurePodIdentityException team-a/skip-web: spec key "PodLabels" is a legacy spelling`,
		},
		"empty podLabels exempts nothing": {
			exception: `{"apiVersion":"aadpodidentity.k8s.io/v1","kind":"AzurePodIdentityException","metadata":{"name":"everything","namespace":"team-a"},"spec":{}}`,
			warning:   "AzurePodIdentityException team-a/everything",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cache := newWireReader(t, decisiontest.FakeReader(t, decisiontest.OptedIn("team-a")), identity, binding, tc.exception)
			resp := newTestHandler(t, cache, nil, testInjectConfig(), testSecret).Handle(context.Background(), podRequest(t, "team-a", raw))
			require.True(t, resp.Allowed, "%+v", resp.Result)
			assert.Equal(t, !tc.exempt, len(resp.Patch) > 0, "injected")
			assert.True(t, containsAny(resp.Warnings, tc.warning), "warnings %q", resp.Warnings)
		})
	}
}

// TestHandlerLegacyConflict: two spellings with different values deny.
func TestHandlerLegacyConflict(t *testing.T) {
	cache := newWireReader(t, decisiontest.FakeReader(t, decisiontest.OptedIn("team-a")),
		`{"apiVersion":"aadpodidentity.k8s.io/v1","kind":"AzureIdentity","metadata":{"name":"reader-id","namespace":"team-a"},
"spec":{"clientID":"aaaa","ClientID":"bbbb","tenantID":"t"}}`,
		`{"apiVersion":"aadpodidentity.k8s.io/v1","kind":"AzureIdentityBinding","metadata":{"name":"b","namespace":"team-a"},
"spec":{"azureIdentity":"reader-id","selector":"reader"}}`)
	raw := []byte(`{"metadata":{"name":"p","namespace":"team-a","labels":{"aadpodidbinding":"reader"}},"spec":{"containers":[{"name":"app","image":"nginx"}]}}`)
	resp := newTestHandler(t, cache, nil, testInjectConfig(), testSecret).Handle(context.Background(), podRequest(t, "team-a", raw))
	require.False(t, resp.Allowed)
	assert.Contains(t, resp.Result.Message, "AzureIdentity team-a/reader-id")
	assert.Contains(t, resp.Result.Message, `"ClientID"`)
}

// TestHandlerLiveReadOnCacheMiss: objects created a moment before the pod
// are found by one live read when the cache has not seen them yet.
func TestHandlerLiveReadOnCacheMiss(t *testing.T) {
	c := &injecttest.Case{Identities: []inject.Identity{{Identity: sidecarconfig.Identity{Name: "reader", Namespace: "team-a", Source: names.TokenSourceFederated, ClientID: "cid", TenantID: "tid"}}}}
	cache := decisiontest.FakeReader(t, decisiontest.OptedIn("team-a"))
	live := decisiontest.FakeReader(t, append(objectsFor(c, "reader"), decisiontest.OptedIn("team-a"))...)
	raw := []byte(`{"metadata":{"name":"p","namespace":"team-a","labels":{"aadpodidbinding":"reader"}},"spec":{"containers":[{"name":"app","image":"nginx"}]}}`)

	withoutLive := newTestHandler(t, cache, nil, testInjectConfig(), testSecret).Handle(context.Background(), podRequest(t, "team-a", raw))
	assert.False(t, withoutLive.Allowed, "without a live read the cache miss denies")

	resp := newTestHandler(t, cache, live, testInjectConfig(), testSecret).Handle(context.Background(), podRequest(t, "team-a", raw))
	assert.True(t, resp.Allowed, "%+v", resp.Result)
	assert.NotEmpty(t, resp.Patch)
}

// TestHandlerLookupError: a cache that cannot be read is an internal error
// (the API server then applies failurePolicy), not a denial that blames the
// user's objects.
func TestHandlerLookupError(t *testing.T) {
	broken := fake.NewClientBuilder().WithScheme(decisiontest.Scheme(t)).WithObjects(decisiontest.OptedIn("team-a")).
		WithInterceptorFuncs(interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			return errors.New("etcd is on fire")
		}}).Build()
	raw := []byte(`{"metadata":{"name":"p","namespace":"team-a","labels":{"aadpodidbinding":"reader"}},"spec":{"containers":[{"name":"app","image":"nginx"}]}}`)
	resp := newTestHandler(t, broken, nil, testInjectConfig(), testSecret).Handle(context.Background(), podRequest(t, "team-a", raw))
	assert.False(t, resp.Allowed)
	assert.Equal(t, int32(http.StatusInternalServerError), resp.Result.Code)
	assert.Contains(t, resp.Result.Message, "etcd is on fire")
}

// wireReader serves AzureIdentity and AzureIdentityBinding objects from
// their JSON as the API server stores it, spelling and all, decoding on each
// read with the scheme's codec as an informer does. The fake client cannot:
// it stores typed objects, which lose the legacy keys and their notes.
// Everything else comes from the embedded fake client.
type wireReader struct {
	client.Reader
	codec runtime.Decoder
	raw   [][]byte
}

func newWireReader(t testing.TB, base client.Reader, objs ...string) *wireReader {
	return &wireReader{Reader: base, codec: serializer.NewCodecFactory(decisiontest.Scheme(t)).UniversalDeserializer(), raw: toBytes(objs)}
}

func toBytes(objs []string) [][]byte {
	var out [][]byte
	for _, o := range objs {
		out = append(out, []byte(o))
	}
	return out
}

func (w *wireReader) decodeAll() ([]client.Object, error) {
	var out []client.Object
	for _, b := range w.raw {
		obj, _, err := w.codec.Decode(b, nil, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, obj.(client.Object))
	}
	return out, nil
}

func (w *wireReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	want, ok := obj.(*aadv1.AzureIdentity)
	if !ok {
		return w.Reader.Get(ctx, key, obj, opts...)
	}
	all, err := w.decodeAll()
	if err != nil {
		return err
	}
	for _, o := range all {
		if ai, ok := o.(*aadv1.AzureIdentity); ok && ai.Namespace == key.Namespace && ai.Name == key.Name {
			ai.DeepCopyInto(want)
			return nil
		}
	}
	return apierrors.NewNotFound(aadv1.Resource(aadv1.ResourceAzureIdentities), key.Name)
}

func (w *wireReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	lo := (&client.ListOptions{}).ApplyOptions(opts)
	all, err := w.decodeAll()
	if err != nil {
		return err
	}
	switch want := list.(type) {
	case *aadv1.AzureIdentityBindingList:
		for _, o := range all {
			if b, ok := o.(*aadv1.AzureIdentityBinding); ok && b.Namespace == lo.Namespace {
				want.Items = append(want.Items, *b.DeepCopy())
			}
		}
	case *aadv1.AzurePodIdentityExceptionList:
		for _, o := range all {
			if e, ok := o.(*aadv1.AzurePodIdentityException); ok && e.Namespace == lo.Namespace {
				want.Items = append(want.Items, *e.DeepCopy())
			}
		}
	default:
		return w.Reader.List(ctx, list, opts...)
	}
	return nil
}

func containsAny(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestNewHandlerChecksPlanner(t *testing.T) {
	cache := decisiontest.FakeReader(t)
	tests := map[string]struct {
		planner *decision.Planner
		want    string
	}{
		"no planner":       {nil, "a Planner is required"},
		"no lookup":        {&decision.Planner{Inject: testInjectConfig()}, "needs a Lookup"},
		"no sidecar image": {&decision.Planner{Lookup: decision.ReaderLookup{Reader: cache}, Inject: inject.Config{Port: 8181}}, "sidecar image"},
		"bad port":         {&decision.Planner{Lookup: decision.ReaderLookup{Reader: cache}, Inject: inject.Config{SidecarImage: "x", Port: 0}}, "token port 0"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := NewHandler(tc.planner, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestMetricsByNamespace: the decision and resolve-error counters carry the
// pod's namespace, so that an alert can name the team.
func TestMetricsByNamespace(t *testing.T) {
	objs := []client.Object{decisiontest.OptedIn("team-a"), decisiontest.OptedIn("team-b"),
		&aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Name: "id", Namespace: "team-a"}, Spec: aadv1.AzureIdentitySpec{ClientID: "c", TenantID: "t"}},
		&aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "team-a"}, Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "reader"}},
	}
	h := newTestHandler(t, decisiontest.FakeReader(t, objs...), nil, testInjectConfig(), testSecret)
	for _, ns := range []string{"team-a", "team-b", "team-b"} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Labels: map[string]string{names.BindingLabel: "reader"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}
		raw, err := json.Marshal(p)
		require.NoError(t, err)
		h.Handle(context.Background(), podRequest(t, ns, raw))
	}
	m := h.metrics
	assert.Equal(t, 1.0, testutil.ToFloat64(m.Decisions.WithLabelValues("team-a", string(decision.OutcomeInjected))))
	assert.Equal(t, 2.0, testutil.ToFloat64(m.Decisions.WithLabelValues("team-b", string(decision.OutcomeDenied))))
	// team-b has no binding of its own; team-a's is named in the denial.
	assert.Equal(t, 2.0, testutil.ToFloat64(m.ResolveErrors.WithLabelValues("team-b", "cross_namespace_binding")))
	assert.Equal(t, 0.0, testutil.ToFloat64(m.ResolveErrors.WithLabelValues("team-a", "no_binding")))
}
