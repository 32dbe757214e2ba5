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
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"github.com/podidentity/injector/internal/decision/decisiontest"
	"github.com/podidentity/injector/internal/inject/injecttest"
	"github.com/podidentity/injector/internal/names"
)

// FuzzAdmission sends a pod and an AzureIdentity, AzureIdentityBinding and
// AzurePodIdentityException of the fuzzer's making through the whole
// handler, patch path included, and holds every answer to what the API
// server and the user need:
//
//   - never an internal error (a 500 is a bug: "mutation is not additive"
//     or a panic on hostile input), and a malformed pod gets a 400;
//   - a denial has a message, and no message or warning carries the
//     IDENTITY_HEADER value;
//   - a patch only adds, applies to the raw request, leaves exactly one
//     sidecar, keeps a well-formed pod well formed (unique container
//     names, unique env names per container, mounts of existing volumes,
//     requests within limits), and a second admission of the patched pod
//     patches nothing.
func FuzzAdmission(f *testing.F) {
	dir := injecttest.Dir()
	cases, err := injecttest.Names(dir)
	if err != nil {
		f.Fatal(err)
	}
	const id = `{"type":0,"clientID":"11111111-2222-3333-4444-555555555555","tenantID":"t"}`
	for _, name := range cases {
		c, err := injecttest.Load(dir, name)
		if err != nil {
			f.Fatal(err)
		}
		sel, _ := json.Marshal(c.Pod.Labels[names.BindingLabel])
		f.Add(string(c.PodJSON), id, `{"azureIdentity":"reader","selector":`+string(sel)+`}`, `{"podLabels":{"app":"none"}}`)
	}
	pod := `{"metadata":{"name":"p","labels":{"aadpodidbinding":"reader","app":"web"}},"spec":{"containers":[{"name":"app","image":"nginx","env":[{"name":"U","value":"$(IDENTITY_ENDPOINT)"}]}]}}`
	f.Add(pod, `{"type":"1","clientID":"c","tenantID":"t","clientPassword":{"name":"sp"},"adEndpoint":"https://login.microsoftonline.us/"}`, `{"AzureIdentity":"reader","Selector":"reader","weight":"10"}`, `{"podLabels":{"app":"WEB"}}`)
	f.Add(pod, `{"type":2,"ClientID":"c","clientID":"d","tenantID":"t"}`, `{"azureIdentity":"reader","selector":{"matchLabels":{"a":"b"}}}`, `{}`)
	f.Add(`{"metadata":{"name":"p","labels":{"aadpodidbinding":"reader"},"annotations":{"`+names.InjectedAnnotation+`":"x/y","`+names.TokenPortAnnotation+`":"9000"}},"spec":{"resources":{"requests":{"cpu":"5m"}},"containers":[{"name":"app","ports":[{"containerPort":9000}],"envFrom":[{"configMapRef":{"name":"c"}}]}]}}`, id, `{"azureIdentity":"reader","selector":"reader"}`, `{"podLabels":{"x":"y"}}`)
	f.Add(`{"spec": [}`, id, `{}`, `{}`)

	scheme := decisiontest.Scheme(f)
	codec := serializer.NewCodecFactory(scheme).UniversalDeserializer()
	base := decisiontest.FakeReader(f, decisiontest.OptedIn("team-a"))
	cfg := testInjectConfig()
	f.Fuzz(func(t *testing.T, podJSON, identitySpec, bindingSpec, exceptionSpec string) {
		var objs [][]byte
		for _, o := range []struct{ kind, spec string }{
			{"AzureIdentity", identitySpec}, {"AzureIdentityBinding", bindingSpec}, {"AzurePodIdentityException", exceptionSpec},
		} {
			// The CRD schema makes spec an object; anything else never
			// reaches the webhook's cache.
			if !json.Valid([]byte(o.spec)) || !strings.HasPrefix(strings.TrimSpace(o.spec), "{") {
				continue
			}
			objs = append(objs, []byte(`{"apiVersion":"aadpodidentity.k8s.io/v1","kind":"`+o.kind+`","metadata":{"name":"reader","namespace":"team-a"},"spec":`+o.spec+`}`))
		}
		h := newTestHandler(t, &wireReader{Reader: base, codec: codec, raw: objs}, nil, cfg, testSecret)

		// The API server sends the pod as it encodes it; a body that does
		// not decode as a pod stands for a broken request.
		var typed corev1.Pod
		raw := []byte(podJSON)
		wellFormedJSON := json.Unmarshal(raw, &typed) == nil
		if wellFormedJSON {
			raw, err = json.Marshal(&typed)
			if err != nil {
				t.Fatalf("marshal pod: %v", err)
			}
		}
		resp := h.Handle(context.Background(), podRequest(t, "team-a", raw))
		checkNoSecret(t, resp.Result.Message, resp.Warnings)
		if !wellFormedJSON {
			if resp.Allowed || resp.Result.Code != http.StatusBadRequest {
				t.Fatalf("a malformed pod got allowed=%v code=%d", resp.Allowed, resp.Result.Code)
			}
			return
		}
		if resp.Result.Code == http.StatusInternalServerError {
			t.Fatalf("internal error: %s", resp.Result.Message)
		}
		if !resp.Allowed {
			if resp.Result.Code != http.StatusForbidden || resp.Result.Message == "" {
				t.Fatalf("denial without a message, or code %d: %q", resp.Result.Code, resp.Result.Message)
			}
			return
		}
		if len(resp.Patch) == 0 {
			return
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
		sidecars := 0
		for _, cs := range [][]corev1.Container{out.Spec.InitContainers, out.Spec.Containers} {
			for _, c := range cs {
				if c.Name == names.SidecarContainerName {
					sidecars++
				}
			}
		}
		if sidecars != 1 {
			t.Fatalf("%d sidecars after the patch", sidecars)
		}
		if injecttest.CheckStructure(&typed) == nil {
			if err := injecttest.CheckStructure(&out); err != nil {
				t.Fatalf("a well-formed pod became malformed: %v", err)
			}
		}
		again := h.Handle(context.Background(), podRequest(t, "team-a", patched))
		if !again.Allowed || len(again.Patch) != 0 {
			t.Fatalf("second admission: allowed=%v patch=%s message=%q", again.Allowed, again.Patch, again.Result.Message)
		}
	})
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
