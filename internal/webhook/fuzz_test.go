package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podidentity/injector/internal/decision/decisiontest"
	"github.com/podidentity/injector/internal/inject/injecttest"
	"github.com/podidentity/injector/internal/names"
)

// FuzzAdmission sends a pod and an AzureIdentity, AzureIdentityBinding and
// AzurePodIdentityException of the fuzzer's making, in a namespace of its
// making (an invalid or overlong name included), through the whole handler,
// patch path included, and holds every answer to what the API server and
// the user need:
//
//   - never an internal error (a 500 is a bug: "mutation is not additive"
//     or a panic on hostile input), and a malformed pod gets a 400;
//   - a denial (or a 400 for a request without a namespace) has a
//     message, and no message or warning carries the
//     IDENTITY_HEADER value;
//   - a patch only adds, applies to the raw request, leaves exactly one
//     sidecar, keeps a well-formed pod well formed (unique container
//     names, unique env names per container, mounts of existing volumes,
//     requests within limits), and a second admission of the patched pod
//     patches nothing.
//
// The API server calls every mutating webhook again when a later one
// changed the pod (reinvocationPolicy: IfNeeded). So the injected pod is
// also changed as another webhook would change it (chosen by change: add
// an env var everywhere, move every image to another registry, add a
// container or an init container, add a volume and mount it) and admitted
// again under the same rules.
//
// The handler is built once per fuzzing process: only the objects and the
// namespace change between inputs, so an input costs one admission or a
// few, not a handler's and a fake client's setup.
func FuzzAdmission(f *testing.F) {
	dir := injecttest.Dir()
	cases, err := injecttest.Names(dir)
	if err != nil {
		f.Fatal(err)
	}
	const id = `{"type":0,"clientID":"11111111-2222-3333-4444-555555555555","tenantID":"t"}`
	for i, name := range cases {
		c, err := injecttest.Load(dir, name)
		if err != nil {
			f.Fatal(err)
		}
		sel, _ := json.Marshal(c.Pod.Labels[names.BindingLabel])
		f.Add("team-a", string(c.PodJSON), id, `{"azureIdentity":"reader","selector":`+string(sel)+`}`, `{"podLabels":{"app":"none"}}`, uint8(i))
	}
	pod := `{"metadata":{"name":"p","labels":{"aadpodidbinding":"reader","app":"web"}},"spec":{"containers":[{"name":"app","image":"nginx","env":[{"name":"U","value":"$(IDENTITY_ENDPOINT)"}]}]}}`
	f.Add("team-a", pod, `{"type":"1","clientID":"c","tenantID":"t","clientPassword":{"name":"sp"},"adEndpoint":"https://login.microsoftonline.us/"}`, `{"AzureIdentity":"reader","Selector":"reader","weight":"10"}`, `{"podLabels":{"app":"WEB"}}`, uint8(0))
	f.Add("team-a", pod, `{"type":2,"ClientID":"c","clientID":"d","tenantID":"t"}`, `{"azureIdentity":"reader","selector":{"matchLabels":{"a":"b"}}}`, `{}`, uint8(0))
	f.Add("team-a", `{"metadata":{"name":"p","labels":{"aadpodidbinding":"reader"},"annotations":{"`+names.InjectedAnnotation+`":"x/y","`+names.TokenPortAnnotation+`":"9000"}},"spec":{"resources":{"requests":{"cpu":"5m"}},"containers":[{"name":"app","ports":[{"containerPort":9000}],"envFrom":[{"configMapRef":{"name":"c"}}]}]}}`, id, `{"azureIdentity":"reader","selector":"reader"}`, `{"podLabels":{"x":"y"}}`, uint8(3))
	f.Add("team-a", `{"spec": [}`, id, `{}`, `{}`, uint8(0))
	// Namespaces the API server would never send, and one that has not
	// opted in.
	for i, ns := range []string{"", "Team_A", "kube-system", strings.Repeat("n", 300), "a/b\n\"c", "closed"} {
		f.Add(ns, pod, id, `{"azureIdentity":"reader","selector":"reader"}`, `{}`, uint8(i))
	}

	scheme := decisiontest.Scheme(f)
	codec := serializer.NewCodecFactory(scheme).UniversalDeserializer()
	ns := &fuzzNamespace{}
	cache := &wireReader{Reader: ns, codec: codec}
	h := newTestHandler(f, cache, nil, testInjectConfig(), testSecret)
	f.Fuzz(func(t *testing.T, namespace, podJSON, identitySpec, bindingSpec, exceptionSpec string, change uint8) {
		// "closed" stands for every namespace that has not opted in.
		ns.name, ns.optedIn = namespace, namespace != "closed"
		nsJSON, _ := json.Marshal(namespace)
		cache.raw = cache.raw[:0]
		for _, o := range []struct{ kind, spec string }{
			{"AzureIdentity", identitySpec}, {"AzureIdentityBinding", bindingSpec}, {"AzurePodIdentityException", exceptionSpec},
		} {
			// The CRD schema makes spec an object; anything else never
			// reaches the webhook's cache.
			if !json.Valid([]byte(o.spec)) || !strings.HasPrefix(strings.TrimSpace(o.spec), "{") {
				continue
			}
			cache.raw = append(cache.raw, []byte(`{"apiVersion":"aadpodidentity.k8s.io/v1","kind":"`+o.kind+`","metadata":{"name":"reader","namespace":`+string(nsJSON)+`},"spec":`+o.spec+`}`))
		}

		// The API server sends the pod as it encodes it; a body that does
		// not decode as a pod stands for a broken request.
		var typed corev1.Pod
		raw := []byte(podJSON)
		if json.Unmarshal(raw, &typed) != nil {
			resp := h.Handle(context.Background(), podRequest(t, namespace, raw))
			checkNoSecret(t, resp.Result.Message, resp.Warnings)
			if resp.Allowed || resp.Result.Code != http.StatusBadRequest {
				t.Fatalf("a malformed pod got allowed=%v code=%d", resp.Allowed, resp.Result.Code)
			}
			return
		}
		raw, err := json.Marshal(&typed)
		if err != nil {
			t.Fatalf("marshal pod: %v", err)
		}
		injected := admitChecked(t, h, namespace, &typed, raw)
		if injected == nil {
			return
		}
		// Another webhook changes the injected pod; the API server calls
		// this one again.
		changed := otherWebhook(injected, change)
		changedRaw, err := json.Marshal(changed)
		if err != nil {
			t.Fatalf("marshal changed pod: %v", err)
		}
		admitChecked(t, h, namespace, changed, changedRaw)
	})
}

// admitChecked admits raw (typed is the same pod) in namespace, holds the
// answer to FuzzAdmission's rules, and returns the pod as patched, or nil
// when nothing was patched.
func admitChecked(t *testing.T, h *Handler, namespace string, typed *corev1.Pod, raw []byte) *corev1.Pod {
	t.Helper()
	resp := h.Handle(context.Background(), podRequest(t, namespace, raw))
	checkNoSecret(t, resp.Result.Message, resp.Warnings)
	if resp.Result.Code == http.StatusInternalServerError {
		t.Fatalf("internal error: %s", resp.Result.Message)
	}
	if !resp.Allowed {
		// A denial, or a request no API server sends (no namespace).
		code := resp.Result.Code
		if code != http.StatusForbidden && code != http.StatusBadRequest || resp.Result.Message == "" {
			t.Fatalf("denial without a message, or code %d: %q", code, resp.Result.Message)
		}
		return nil
	}
	if len(resp.Patch) == 0 {
		return nil
	}
	var ops []struct{ Op, Path string }
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatalf("patch does not decode: %v", err)
	}
	for _, op := range ops {
		if op.Op != "add" {
			t.Fatalf("patch op %s %s: the patch only adds", op.Op, op.Path)
		}
	}
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	patched, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("apply patch %s: %v", resp.Patch, err)
	}
	var out corev1.Pod
	if err := json.Unmarshal(patched, &out); err != nil {
		t.Fatalf("patched pod does not decode: %v", err)
	}
	if n := countSidecars(&out); n != 1 {
		t.Fatalf("%d sidecars after the patch", n)
	}
	if injecttest.CheckStructure(typed) == nil {
		if err := injecttest.CheckStructure(&out); err != nil {
			t.Fatalf("a well-formed pod became malformed: %v", err)
		}
	}
	again := h.Handle(context.Background(), podRequest(t, namespace, patched))
	if !again.Allowed || len(again.Patch) != 0 {
		t.Fatalf("second admission: allowed=%v patch=%s message=%q", again.Allowed, again.Patch, again.Result.Message)
	}
	return &out
}

func countSidecars(pod *corev1.Pod) int {
	n := 0
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == names.SidecarContainerName {
				n++
			}
		}
	}
	return n
}

// otherWebhook changes a copy of an injected pod as another mutating
// webhook might: a service mesh, a registry mirror, a config injector.
func otherWebhook(pod *corev1.Pod, change uint8) *corev1.Pod {
	pod = pod.DeepCopy()
	each := func(fn func(c *corev1.Container)) {
		for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for i := range cs {
				fn(&cs[i])
			}
		}
	}
	switch change % 6 {
	case 0: // an env var in every container, the sidecar's too
		each(func(c *corev1.Container) {
			c.Env = append(c.Env, corev1.EnvVar{Name: "HTTPS_PROXY", Value: "http://proxy.example:3128"})
		})
	case 1: // every image moved to a mirror, the sidecar's too
		each(func(c *corev1.Container) {
			c.Image = "mirror.example/" + c.Image
		})
	case 2: // a mesh proxy container
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "mesh-proxy", Image: "mesh/proxy:1"})
	case 3: // an init container in front of every other
		pod.Spec.InitContainers = append([]corev1.Container{{Name: "mesh-init", Image: "mesh/init:1"}}, pod.Spec.InitContainers...)
	case 4: // a volume mounted everywhere
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "other-webhook", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		each(func(c *corev1.Container) {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "other-webhook", MountPath: "/other-webhook"})
		})
	case 5: // labels and annotations of its own
		if pod.Labels == nil {
			pod.Labels = map[string]string{}
		}
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Labels["mesh.example/rev"] = "1"
		pod.Annotations["mesh.example/status"] = "injected"
	}
	return pod
}

// fuzzNamespace is the namespace of the input being fuzzed, as the
// webhook's namespace cache would hold it; every other namespace does not
// exist. It stands in for a fake client, whose setup per input cost more
// than the admission.
type fuzzNamespace struct {
	name    string
	optedIn bool
}

func (n *fuzzNamespace) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	meta, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok || key.Name != n.name || key.Namespace != "" {
		return apierrors.NewNotFound(corev1.Resource("namespaces"), key.Name)
	}
	meta.ObjectMeta = metav1.ObjectMeta{Name: n.name}
	if n.optedIn {
		meta.Annotations = map[string]string{names.InjectAnnotation: names.InjectEnabled}
	}
	return nil
}

func (n *fuzzNamespace) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return nil
}

// checkNoSecret fails when the per-pod header value reaches the user.
func checkNoSecret(t *testing.T, message string, warnings []string) {
	t.Helper()
	for _, s := range append([]string{message}, warnings...) {
		if bytes.Contains([]byte(s), []byte(testSecret)) {
			t.Fatalf("the IDENTITY_HEADER value reached the user: %q", s)
		}
	}
}
