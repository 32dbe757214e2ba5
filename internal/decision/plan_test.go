package decision

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/podidentity/injector/internal/manifest"
	"github.com/podidentity/injector/internal/names"
)

// planFiles is the Planner of the kubectl plugin over objects, a stream of
// YAML documents: the in-memory Lookup, the flags' defaults, and a fixed
// header secret.
func planFiles(t *testing.T, objects string, mutate ...func(*Flags)) (*Planner, *manifest.Set) {
	t.Helper()
	var set manifest.Set
	require.NoError(t, set.Read("objects.yaml", strings.NewReader(objects), "team-a"))
	flags := DefaultFlags()
	flags.SidecarImage = "example.test/sidecar:v1"
	flags.DefaultTenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	for _, m := range mutate {
		m(&flags)
	}
	lookup := NewMemoryLookup(&set)
	p, err := flags.NewPlanner(lookup, lookup, true)
	require.NoError(t, err)
	p.NewSecret = func() (string, error) { return "test-secret", nil }
	return p, &set
}

const (
	optedInNS = `
apiVersion: v1
kind: Namespace
metadata: {name: team-a, annotations: {podidentity.github.io/inject: enabled}}
`
	legacyOptedInNS = `
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {aadpodidentity.k8s.io/inject: enabled}}
`
	plainNS = `
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
`
	readerIdentity = `
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: reader, namespace: team-a}
spec: {type: 0, clientID: 11111111-2222-3333-4444-555555555555}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: reader-binding, namespace: team-a}
spec: {azureIdentity: reader, selector: reader}
`
	webPod = `
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team-a, labels: {aadpodidbinding: reader, app: web}}
spec: {containers: [{name: app, image: nginx}]}
`
)

// TestPlanOptIn: a pod is injected only where its namespace opted in
// (annotation or label, the legacy spelling with a warning), unless the
// flag turns opt-in off, and never when the pod opts out.
func TestPlanOptIn(t *testing.T) {
	tests := map[string]struct {
		objects  string
		noOptIn  bool
		want     Outcome
		message  string // part of Message
		warnings []string
	}{
		"opted in":                 {objects: optedInNS + readerIdentity + webPod, want: OutcomeInjected},
		"legacy label":             {objects: legacyOptedInNS + readerIdentity + webPod, want: OutcomeInjected, warnings: []string{"Namespace team-a", "aadpodidentity.k8s.io/inject"}},
		"not opted in":             {objects: plainNS + readerIdentity + webPod, want: OutcomeSkipped, message: "namespace team-a has not opted in; annotate it podidentity.github.io/inject=enabled"},
		"not opted in, flag off":   {objects: plainNS + readerIdentity + webPod, noOptIn: true, want: OutcomeInjected},
		"namespace not in files":   {objects: readerIdentity + webPod, want: OutcomeSkipped, message: "has not opted in"},
		"pod opts out":             {objects: optedInNS + readerIdentity + strings.Replace(webPod, "app: web}", "app: web}, annotations: {podidentity.github.io/inject: disabled}", 1), want: OutcomeSkipped, message: "opted out"},
		"pod without the label":    {objects: optedInNS + readerIdentity + strings.Replace(webPod, "aadpodidbinding: reader, ", "", 1), want: OutcomeSkipped, message: "has no aadpodidbinding label"},
		"pod opts out, legacy key": {objects: optedInNS + readerIdentity + strings.Replace(webPod, "app: web}", "app: web}, annotations: {aadpodidentity.k8s.io/inject: disabled}", 1), want: OutcomeSkipped, warnings: []string{"aadpodidentity.k8s.io/inject"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, set := planFiles(t, tc.objects, func(f *Flags) { f.RequireNamespaceOptIn = !tc.noOptIn })
			require.Len(t, set.Workloads, 1)
			d := p.Plan(context.Background(), set.Workloads[0].Pod)
			assert.Equal(t, tc.want, d.Outcome, "%s %v", d.Message, d.Err)
			assert.Contains(t, d.Message, tc.message)
			for _, w := range tc.warnings {
				assert.True(t, containsPart(d.Warnings, w), "a warning names %q: %q", w, d.Warnings)
			}
			if tc.warnings == nil {
				assert.Empty(t, d.Warnings)
			}
			assert.Equal(t, tc.want == OutcomeInjected, d.Injection != nil, "only an injection carries one")
		})
	}
}

// TestPlanExceptions: an AzurePodIdentityException whose podLabels the pod
// carries skips it; one that does not match, or cannot be read, does not,
// and a broken one is named in a warning.
func TestPlanExceptions(t *testing.T) {
	exception := func(podLabels string) string {
		return `
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzurePodIdentityException
metadata: {name: exempt, namespace: team-a}
spec: {podLabels: ` + podLabels + `}
`
	}
	tests := map[string]struct {
		exception string
		want      Outcome
		message   string
		warning   string
	}{
		"matches":             {exception("{app: web}"), OutcomeSkipped, "matches AzurePodIdentityException team-a/exempt", ""},
		"another value":       {exception("{app: api}"), OutcomeInjected, "", ""},
		"no podLabels":        {exception("{}"), OutcomeInjected, "", "AzurePodIdentityException team-a/exempt"},
		"legacy key, matches": {strings.Replace(exception("{app: web}"), "podLabels", "PodLabels", 1), OutcomeSkipped, "matches", "PodLabels"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, set := planFiles(t, optedInNS+readerIdentity+webPod+tc.exception)
			d := p.Plan(context.Background(), set.Workloads[0].Pod)
			assert.Equal(t, tc.want, d.Outcome, "%s %v", d.Message, d.Err)
			assert.Contains(t, d.Message, tc.message)
			if tc.warning != "" {
				assert.True(t, containsPart(d.Warnings, tc.warning), "a warning names %q: %q", tc.warning, d.Warnings)
			}
		})
	}
}

// TestPlanResolution: the selector resolves to the identities its bindings
// name in the pod's namespace, the heaviest first; every failure is a deny
// that names the namespace, the selector or the object at fault, and
// ResolveReason classifies it for the metrics.
func TestPlanResolution(t *testing.T) {
	identity := func(name, spec string) string {
		return "\n---\napiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentity\nmetadata: {name: " + name + ", namespace: team-a}\nspec: " + spec + "\n"
	}
	binding := func(name, identity, selector, extra string) string {
		return "\n---\napiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentityBinding\nmetadata: {name: " + name + ", namespace: team-a}\nspec: {azureIdentity: " + identity + ", selector: " + selector + extra + "}\n"
	}
	const cid1, cid2 = "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000"
	tests := map[string]struct {
		objects    string
		want       Outcome
		identities []string // names, for an injection
		def        string   // the default identity
		reason     string   // ResolveReason, for a deny
		message    []string
	}{
		"one binding": {
			objects: identity("reader", "{clientID: "+cid1+"}") + binding("b", "reader", "reader", ""),
			want:    OutcomeInjected, identities: []string{"reader"}, def: "reader",
		},
		"two bindings, the heavier is the default": {
			objects: identity("reader", "{clientID: "+cid1+"}") + identity("writer", "{clientID: "+cid2+"}") +
				binding("b1", "reader", "reader", ", weight: 1") + binding("b2", "writer", "reader", ", weight: 5"),
			want: OutcomeInjected, identities: []string{"reader", "writer"}, def: "writer",
		},
		"a binding of another selector": {
			objects: identity("reader", "{clientID: "+cid1+"}") + binding("b", "reader", "writer", ""),
			want:    OutcomeDenied, reason: "no_binding",
			message: []string{"pod team-a/web", `no AzureIdentityBinding in namespace team-a has selector "reader"`, "aadpodidbinding"},
		},
		"the identity is missing": {
			objects: binding("b", "gone", "reader", ""),
			want:    OutcomeDenied, reason: "identity_not_found",
			message: []string{"team-a", "gone"},
		},
		"one of two identities is missing": {
			objects: identity("reader", "{clientID: "+cid1+"}") + binding("b1", "reader", "reader", "") + binding("b2", "gone", "reader", ""),
			want:    OutcomeInjected, identities: []string{"reader"}, def: "reader",
		},
		"an identity without clientID": {
			objects: identity("reader", "{type: 0}") + binding("b", "reader", "reader", ""),
			want:    OutcomeDenied, reason: "invalid_identity",
			message: []string{"AzureIdentity team-a/reader", "clientID"},
		},
		"an authority off the allow-list": {
			objects: identity("reader", "{clientID: "+cid1+", adEndpoint: 'https://evil.example/'}") + binding("b", "reader", "reader", ""),
			want:    OutcomeDenied, reason: "invalid_identity",
			message: []string{"AzureIdentity team-a/reader", "spec.adEndpoint", "--allowed-authority-hosts"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, set := planFiles(t, optedInNS+webPod+tc.objects)
			d := p.Plan(context.Background(), set.Workloads[0].Pod)
			require.Equal(t, tc.want, d.Outcome, "%s %v", d.Message, d.Err)
			reason, ok := d.ResolveReason()
			assert.Equal(t, tc.reason, reason)
			assert.Equal(t, tc.reason != "", ok)
			for _, m := range tc.message {
				assert.Contains(t, d.Message, m)
			}
			if tc.want != OutcomeInjected {
				assert.Nil(t, d.Injection)
				return
			}
			require.NotNil(t, d.Injection)
			got := sets.New[string]()
			for _, id := range d.Injection.Identities {
				got.Insert(id.Name)
			}
			assert.Equal(t, sets.New(tc.identities...), got)
			assert.Equal(t, tc.def, d.Injection.DefaultIdentity)
			assert.Equal(t, "test-secret", envValue(d.Injection.Mutated, names.EnvIdentityHeader), "the Planner's secret reaches the pod")
		})
	}
}

// TestPlanNamespace: a namespace that is not a DNS-1123 label is an error
// before anything is read; one the Lookup does not find is a deny; a read
// over the live-read rate is a deny that says to retry.
func TestPlanNamespace(t *testing.T) {
	p, set := planFiles(t, optedInNS+readerIdentity+webPod)
	pod := set.Workloads[0].Pod.DeepCopy()
	pod.Namespace = "Team_A"
	d := p.Plan(context.Background(), pod)
	assert.Equal(t, OutcomeErrored, d.Outcome)
	assert.ErrorIs(t, d.Err, ErrInvalidNamespace)
	assert.False(t, d.NamespaceFound)

	p.Lookup = missingNamespace{Lookup: p.Lookup}
	d = p.Plan(context.Background(), set.Workloads[0].Pod)
	assert.Equal(t, OutcomeDenied, d.Outcome)
	assert.ErrorIs(t, d.Err, ErrNamespaceNotFound)
	assert.Equal(t, "pod team-a/web: namespace team-a does not exist; create the namespace before its pods", d.Message)
	assert.False(t, d.NamespaceFound)

	p.Lookup = limitedNamespace{Lookup: p.Lookup}
	d = p.Plan(context.Background(), set.Workloads[0].Pod)
	assert.Equal(t, OutcomeDenied, d.Outcome)
	reason, _ := d.ResolveReason()
	assert.Equal(t, "live_read_limited", reason)
	assert.Contains(t, d.Message, "retry in a few seconds")
}

// missingNamespace finds no namespace.
type missingNamespace struct{ Lookup }

func (missingNamespace) Namespace(context.Context, string) (*metav1.PartialObjectMetadata, error) {
	return nil, apierrors.NewNotFound(corev1.Resource("namespaces"), "team-a")
}

// limitedNamespace is over the live-read rate.
type limitedNamespace struct{ Lookup }

func (limitedNamespace) Namespace(context.Context, string) (*metav1.PartialObjectMetadata, error) {
	return nil, errors.Join(ErrLiveReadLimited)
}

func containsPart(list []string, part string) bool {
	for _, s := range list {
		if strings.Contains(s, part) {
			return true
		}
	}
	return false
}

// envValue is the value of env var name in the pod's first app container.
func envValue(pod *corev1.Pod, name string) string {
	for _, e := range pod.Spec.Containers[0].Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// crossNamespaceObjects is an estate shaped as aad-pod-identity allowed by
// default: the identities and bindings live in namespace shared, and the
// pod in team-a carries their selectors.
func crossNamespaceObjects(objects ...string) string {
	return optedInNS + strings.Join(objects, "")
}

func nsIdentity(ns, name, annotations, spec string) string {
	return "\n---\napiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentity\nmetadata: {name: " + name + ", namespace: " + ns + ", annotations: {" + annotations + "}}\nspec: " + spec + "\n"
}

func nsBinding(ns, name, identity, selector, extra string) string {
	return "\n---\napiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentityBinding\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec: {azureIdentity: " + identity + ", selector: " + selector + extra + "}\n"
}

func podWith(selector string) string {
	return "\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: team-a, labels: {aadpodidbinding: " + selector + "}}\nspec: {containers: [{name: app, image: nginx}]}\n"
}

// TestPlanCrossNamespace: by default a pod's selector matches the
// bindings of its own namespace only, and a pod that only another
// namespace's binding would serve is denied with a message that names
// the bindings and identities to copy and the mode. In the mode, the
// bindings of every namespace match, each names an identity of its own
// namespace, and every pod resolved that way gets a warning naming that
// namespace; identities annotated Behavior: namespaced, and identities
// with a Secret, do not serve another namespace's pods.
func TestPlanCrossNamespace(t *testing.T) {
	const cid1, cid2, cid3 = "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	shared := nsIdentity("shared", "reader", "", "{clientID: "+cid1+"}") + nsBinding("shared", "reader-binding", "reader", "reader", "")
	tests := map[string]struct {
		objects    string
		mode       bool
		want       Outcome
		err        error  // errors.Is, for a deny
		reason     string // ResolveReason, for a deny
		identities []string
		def        string
		injected   string   // the injected-identities annotation
		message    []string // parts of Message
		warnings   []string // parts of some warning
		noWarning  string   // in no warning
	}{
		"default mode: only another namespace's binding": {
			objects: shared + podWith("reader"),
			want:    OutcomeDenied, err: ErrCrossNamespaceBinding, reason: "cross_namespace_binding",
			message: []string{`pod team-a/web: no AzureIdentityBinding in namespace team-a has selector "reader"`,
				"copy AzureIdentityBinding shared/reader-binding with AzureIdentity shared/reader into namespace team-a",
				"--aad-pod-identity-cross-namespace"},
		},
		"default mode: the pod's own binding, the other namespace's ignored": {
			objects: shared + nsIdentity("team-a", "writer", "", "{clientID: "+cid2+"}") + nsBinding("team-a", "b", "writer", "reader", "") + podWith("reader"),
			want:    OutcomeInjected, identities: []string{"writer"}, def: "writer", injected: "team-a/writer",
			noWarning: "shared",
		},
		"default mode: no binding anywhere": {
			objects: shared + podWith("writer"),
			want:    OutcomeDenied, err: ErrNoBinding, reason: "no_binding",
			message: []string{`no AzureIdentityBinding in namespace team-a has selector "writer"; create one`},
		},
		"default mode: many namespaces are counted, not all listed": {
			objects: shared + nsBinding("s1", "b", "reader", "reader", "") + nsBinding("s2", "b", "reader", "reader", "") +
				nsBinding("s3", "b", "reader", "reader", "") + nsBinding("s4", "b", "reader", "reader", "") +
				nsBinding("s5", "b", "reader", "reader", "") + podWith("reader"),
			want: OutcomeDenied, err: ErrCrossNamespaceBinding, reason: "cross_namespace_binding",
			message: []string{"AzureIdentityBinding s1/b with AzureIdentity s1/reader, ", "s5/b", ", and 1 more into namespace team-a"},
		},
		"mode: another namespace's binding serves, with a warning": {
			objects: shared + podWith("reader"), mode: true,
			want: OutcomeInjected, identities: []string{"reader"}, def: "reader", injected: "shared/reader",
			warnings: []string{`selector "reader" in namespace team-a resolves to AzureIdentity shared/reader through AzureIdentityBinding shared/reader-binding of namespace shared`,
				"--aad-pod-identity-cross-namespace"},
		},
		"mode: the binding's identity is looked up in the binding's namespace": {
			objects: nsBinding("shared", "b", "reader", "reader", "") + nsIdentity("team-a", "reader", "", "{clientID: "+cid1+"}") + podWith("reader"), mode: true,
			want: OutcomeDenied, err: ErrIdentityNotFound, reason: "identity_not_found",
			message: []string{`AzureIdentityBinding shared/b (selector "reader") names AzureIdentity "reader", which does not exist in namespace shared, the binding's`},
		},
		"mode: Behavior namespaced is not served to another namespace": {
			objects: nsIdentity("shared", "reader", "aadpodidentity.k8s.io/Behavior: namespaced", "{clientID: "+cid1+"}") +
				nsBinding("shared", "reader-binding", "reader", "reader", "") + podWith("reader"), mode: true,
			want: OutcomeDenied, err: ErrCrossNamespaceIdentity, reason: "cross_namespace_identity",
			message: []string{"AzureIdentity shared/reader, which is annotated aadpodidentity.k8s.io/Behavior: namespaced", "serves only pods of namespace shared, not of team-a",
				"copy both into namespace team-a"},
		},
		"mode: Behavior namespaced is skipped when another identity is left": {
			objects: nsIdentity("shared", "reader", "aadpodidentity.k8s.io/Behavior: namespaced", "{clientID: "+cid1+"}") +
				nsBinding("shared", "reader-binding", "reader", "reader", "") +
				nsIdentity("team-a", "own", "", "{clientID: "+cid2+"}") + nsBinding("team-a", "own", "own", "reader", "") + podWith("reader"), mode: true,
			want: OutcomeInjected, identities: []string{"own"}, def: "own", injected: "team-a/own",
			warnings: []string{"aadpodidentity.k8s.io/Behavior: namespaced", "the pod gets the other identities"},
		},
		"mode: Behavior namespaced serves its own namespace": {
			objects: nsIdentity("team-a", "reader", "aadpodidentity.k8s.io/Behavior: namespaced", "{clientID: "+cid1+"}") +
				nsBinding("team-a", "b", "reader", "reader", "") + podWith("reader"), mode: true,
			want: OutcomeInjected, identities: []string{"reader"}, def: "reader", injected: "team-a/reader",
		},
		"mode: another value of Behavior is no restriction": {
			objects: nsIdentity("shared", "reader", "aadpodidentity.k8s.io/Behavior: Namespaced", "{clientID: "+cid1+"}") +
				nsBinding("shared", "reader-binding", "reader", "reader", "") + podWith("reader"), mode: true,
			want: OutcomeInjected, identities: []string{"reader"}, def: "reader", injected: "shared/reader",
		},
		"mode: a type 1 identity of another namespace is refused": {
			objects: nsIdentity("shared", "sp", "", "{type: 1, clientID: "+cid1+", clientPassword: {name: sp-secret}}") +
				nsBinding("shared", "sp-binding", "sp", "reader", "") + podWith("reader"), mode: true,
			want: OutcomeDenied, err: ErrCrossNamespaceIdentity, reason: "cross_namespace_identity",
			message: []string{"AzureIdentity shared/sp of spec.type 1", "Secret shared/sp-secret (spec.clientPassword)",
				"copy AzureIdentityBinding shared/sp-binding, AzureIdentity shared/sp and Secret shared/sp-secret into namespace team-a"},
		},
		"mode: a type 2 identity of another namespace is refused beside a good one": {
			objects: shared + nsIdentity("certs", "cert", "", "{type: 2, clientID: "+cid2+", clientPassword: {name: c}}") +
				nsBinding("certs", "cert-binding", "cert", "reader", "") + podWith("reader"), mode: true,
			want: OutcomeDenied, err: ErrCrossNamespaceIdentity, reason: "cross_namespace_identity",
			message: []string{"AzureIdentity certs/cert of spec.type 2", "Secret certs/c"},
		},
		"mode: a type 1 identity of the pod's own namespace is served": {
			objects: nsIdentity("team-a", "sp", "", "{type: 1, clientID: "+cid1+", clientPassword: {name: sp-secret}}") +
				nsBinding("team-a", "b", "sp", "reader", "") + podWith("reader"), mode: true,
			want: OutcomeInjected, identities: []string{"sp"}, def: "sp", injected: "team-a/sp",
		},
		"mode: the bindings of every namespace, heaviest the default": {
			objects: shared + nsIdentity("team-a", "writer", "", "{clientID: "+cid2+"}") + nsBinding("team-a", "b", "writer", "reader", ", weight: 1") +
				nsIdentity("other", "admin", "", "{clientID: "+cid3+"}") + nsBinding("other", "b", "admin", "reader", ", weight: 5") + podWith("reader"), mode: true,
			want: OutcomeInjected, identities: []string{"admin", "reader", "writer"}, def: "admin", injected: "other/admin,shared/reader,team-a/writer",
			warnings: []string{"through AzureIdentityBinding other/b of namespace other", "through AzureIdentityBinding shared/reader-binding of namespace shared"},
		},
		"mode: on a weight tie the smallest identity name is the default": {
			objects: nsIdentity("z", "alpha", "", "{clientID: "+cid1+"}") + nsBinding("z", "b", "alpha", "reader", "") +
				nsIdentity("team-a", "beta", "", "{clientID: "+cid2+"}") + nsBinding("team-a", "b", "beta", "reader", "") + podWith("reader"), mode: true,
			want: OutcomeInjected, identities: []string{"alpha", "beta"}, def: "alpha", injected: "team-a/beta,z/alpha",
		},
		"mode: one identity name, the pod's own namespace wins": {
			objects: shared + nsIdentity("team-a", "reader", "", "{clientID: "+cid2+"}") + nsBinding("team-a", "mine", "reader", "reader", "") + podWith("reader"), mode: true,
			want: OutcomeInjected, identities: []string{"reader"}, def: "reader", injected: "team-a/reader",
			warnings: []string{"AzureIdentityBinding shared/reader-binding (selector \"reader\") binds AzureIdentity shared/reader, but the pod already gets AzureIdentity team-a/reader of the same name, which wins"},
		},
		"mode: one identity name in two other namespaces, the first namespace wins": {
			objects: nsIdentity("zz", "reader", "", "{clientID: "+cid2+"}") + nsBinding("zz", "b", "reader", "reader", ", weight: 9") + shared + podWith("reader"), mode: true,
			want: OutcomeInjected, identities: []string{"reader"}, def: "reader", injected: "shared/reader",
			warnings: []string{"AzureIdentityBinding zz/b (selector \"reader\") binds AzureIdentity zz/reader, but the pod already gets AzureIdentity shared/reader"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, set := planFiles(t, crossNamespaceObjects(tc.objects), func(f *Flags) { f.AADPodIdentityCrossNamespace = tc.mode })
			require.Len(t, set.Workloads, 1)
			d := p.Plan(context.Background(), set.Workloads[0].Pod)
			require.Equal(t, tc.want, d.Outcome, "%s %v", d.Message, d.Err)
			reason, _ := d.ResolveReason()
			assert.Equal(t, tc.reason, reason)
			if tc.err != nil {
				assert.ErrorIs(t, d.Err, tc.err)
			}
			for _, m := range tc.message {
				assert.Contains(t, d.Message, m)
			}
			for _, w := range tc.warnings {
				assert.True(t, containsPart(d.Warnings, w), "a warning names %q: %q", w, d.Warnings)
			}
			if tc.noWarning != "" {
				assert.False(t, containsPart(d.Warnings, tc.noWarning), "no warning names %q: %q", tc.noWarning, d.Warnings)
			}
			if tc.want != OutcomeInjected {
				assert.Nil(t, d.Injection)
				return
			}
			require.NotNil(t, d.Injection)
			var got []string
			for _, id := range d.Injection.Identities {
				got = append(got, id.Name)
			}
			assert.Equal(t, tc.identities, got)
			assert.Equal(t, tc.def, d.Injection.DefaultIdentity)
			assert.Equal(t, tc.injected, d.Injection.Mutated.Annotations[names.InjectedAnnotation])
		})
	}
}

// TestCrossNamespaceErrorNamesTheCopies: the default mode's denial says,
// as data, which bindings and identities to copy, sorted, for a caller
// that plans a migration.
func TestCrossNamespaceErrorNamesTheCopies(t *testing.T) {
	objects := optedInNS + nsBinding("zz", "b2", "id2", "reader", "") + nsBinding("aa", "b1", "id1", "reader", "") + nsBinding("aa", "b0", "id0", "other", "") + podWith("reader")
	p, set := planFiles(t, objects)
	d := p.Plan(context.Background(), set.Workloads[0].Pod)
	var cross *CrossNamespaceError
	require.ErrorAs(t, d.Err, &cross)
	assert.Equal(t, "team-a", cross.Namespace)
	assert.Equal(t, "reader", cross.Selector)
	assert.ErrorIs(t, d.Err, ErrNoBinding, "the pod's namespace has no binding")
	assert.Equal(t, []ForeignBinding{
		{Binding: types.NamespacedName{Namespace: "aa", Name: "b1"}, Identity: types.NamespacedName{Namespace: "aa", Name: "id1"}},
		{Binding: types.NamespacedName{Namespace: "zz", Name: "b2"}, Identity: types.NamespacedName{Namespace: "zz", Name: "id2"}},
	}, cross.Bindings)
}

// TestCrossNamespaceDenialDocumented: docs/migration.md quotes the
// default mode's denial as the webhook words it.
func TestCrossNamespaceDenialDocumented(t *testing.T) {
	p, set := planFiles(t, strings.ReplaceAll(optedInNS, "team-a", "team-b")+nsBinding("default", "reader-binding", "reader", "reader", "")+
		strings.ReplaceAll(podWith("reader"), "team-a", "team-b"))
	d := p.Plan(context.Background(), set.Workloads[0].Pod)
	require.ErrorIs(t, d.Err, ErrCrossNamespaceBinding)
	doc, err := os.ReadFile("../../docs/migration.md")
	require.NoError(t, err)
	assert.Contains(t, string(doc), "\n  "+d.Message+"\n")
}
