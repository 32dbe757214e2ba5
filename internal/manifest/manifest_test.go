package manifest_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/examples"
	"github.com/podidentity/injector/internal/manifest"
)

func TestReadsTheBlogSeed(t *testing.T) {
	var s manifest.Set
	for _, f := range examples.BlogFiles {
		data, err := examples.Blog(f)
		require.NoError(t, err)
		require.NoError(t, s.Read(f, bytes.NewReader(data), "default"))
	}
	require.Len(t, s.Workloads, 1)
	w := s.Workloads[0]
	assert.Equal(t, "Deployment default/my-app", w.Ref())
	assert.Equal(t, "my-app", w.Pod.Labels["aadpodidbinding"], "the template's labels become the pod's")
	assert.Equal(t, "default", w.Pod.Namespace)
	assert.Equal(t, "my-app-", w.Pod.GenerateName)
	require.Len(t, w.Pod.Spec.InitContainers, 1)
	assert.Equal(t, manifest.Source{File: "deployment.yaml", Document: 1}, w.Source)

	require.Len(t, s.Identities, 1)
	assert.Equal(t, "11111111-2222-3333-4444-555555555555", s.Identities[0].Spec.ClientID, "the legacy key ClientID decodes")
	assert.Equal(t, "default", s.Identities[0].Namespace, "an object without a namespace gets the default")
	require.Len(t, s.Bindings, 1)
	assert.Equal(t, "my-app", s.Bindings[0].Spec.Selector)
	require.Len(t, s.Namespaces, 1)
	assert.Equal(t, "enabled", s.Namespaces[0].Annotations["aadpodidentity.k8s.io/inject"])
}

func TestReadsEveryWorkloadKindAndLists(t *testing.T) {
	const in = `
# a comment-only document is skipped
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: s, namespace: a}
  spec: {template: {metadata: {labels: {aadpodidbinding: x}}, spec: {containers: [{name: c, image: i}]}}}
- apiVersion: apps/v1
  kind: DaemonSet
  metadata: {name: d}
  spec: {template: {spec: {containers: [{name: c, image: i}]}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cj}
spec: {schedule: "* * * * *", jobTemplate: {spec: {template: {spec: {containers: [{name: c, image: i}], restartPolicy: Never}}}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec: {template: {spec: {containers: [{name: c, image: i}], restartPolicy: Never}}}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: b}
spec: {containers: [{name: c, image: i}]}
`
	var s manifest.Set
	require.NoError(t, s.Read("in.yaml", strings.NewReader(in), "dflt"))
	var refs []string
	for _, w := range s.Workloads {
		refs = append(refs, w.Ref())
	}
	assert.Equal(t, []string{"StatefulSet a/s", "DaemonSet dflt/d", "CronJob dflt/cj", "Job dflt/j", "Pod b/p"}, refs)
	assert.Equal(t, "x", s.Workloads[0].Pod.Labels["aadpodidbinding"])
}

func TestBadInputNamesFileDocumentAndField(t *testing.T) {
	tests := map[string]struct {
		in   string
		want []string
	}{
		"broken YAML": {
			in:   "apiVersion: v1\nkind: Pod\n---\nkind: [unclosed\n",
			want: []string{"f.yaml: document 2", "not YAML or JSON"},
		},
		"a workload of a retired apiVersion": {
			in:   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\napiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: x}\n",
			want: []string{"f.yaml: document 2", "Deployment", `field apiVersion "extensions/v1beta1"`, "use apps/v1"},
		},
		"no kind": {
			in:   "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: []}\n---\napiVersion: v1\nmetadata: {name: x}\n",
			want: []string{"f.yaml: document 2", "field kind is missing", "every object needs apiVersion and kind"},
		},
		"no apiVersion": {
			in:   "kind: Pod\nmetadata: {name: x}\n",
			want: []string{"f.yaml: document 1", "field apiVersion is missing in a Pod"},
		},
		"unknown field of a pod": {
			in:   "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containerz: []}\n",
			want: []string{"f.yaml: document 1", "Pod", "containerz"},
		},
		"wrong field in a list item": {
			in:   "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n- apiVersion: v1\n  kind: Pod\n  spec: {containerz: []}\n",
			want: []string{"f.yaml: document 1, item 2", "containerz"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var s manifest.Set
			err := s.Read("f.yaml", strings.NewReader(tc.in), "default")
			require.Error(t, err)
			assert.ErrorIs(t, err, manifest.ErrInput)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestCountsTheKindsItDoesNotRead(t *testing.T) {
	const in = `
# Source: chart/templates/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata: {name: app}
---
# Source: chart/templates/service.yaml
apiVersion: v1
kind: Service
metadata: {name: app, namespace: web}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: other}
---
apiVersion: example.com/v1
kind: AzureIdentity
metadata: {name: not-aad-pod-identity}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec: {template: {spec: {serviceAccountName: app, containers: [{name: c, image: i}]}}}
`
	var s manifest.Set
	require.NoError(t, s.Read("chart.yaml", strings.NewReader(in), "web"))
	require.Len(t, s.Workloads, 1)
	assert.Equal(t, manifest.Source{File: "chart.yaml", Document: 5}, s.Workloads[0].Source, "documents are counted as kubectl counts objects")
	assert.Empty(t, s.Identities, "an AzureIdentity of another group is not aad-pod-identity's")
	require.Len(t, s.Others, 4)
	assert.Equal(t, manifest.Other{APIVersion: "v1", Kind: "Service", Namespace: "web", Name: "app",
		Object: s.Others[1].Object, Source: manifest.Source{File: "chart.yaml", Document: 2}}, s.Others[1])
	assert.Equal(t, "1 AzureIdentity, 1 Service, 2 ServiceAccount", s.OtherKinds())
}

func TestAMissingKindDoesNotQuoteTheDocument(t *testing.T) {
	// The decoder's own message for it quotes the document: a Secret's
	// data would end in a CI log.
	var s manifest.Set
	err := s.Read("s.yaml", strings.NewReader("apiVersion: v1\nmetadata: {name: s}\ndata: {password: c2VjcmV0LXZhbHVl}\n"), "default")
	require.ErrorIs(t, err, manifest.ErrInput)
	assert.Contains(t, err.Error(), "s.yaml: document 1: field kind is missing")
	assert.NotContains(t, err.Error(), "c2VjcmV0LXZhbHVl")
}

func TestBoundsADocument(t *testing.T) {
	big := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: " + strings.Repeat("x", 3<<20) + "}\n"
	var s manifest.Set
	err := s.Read("big.yaml", strings.NewReader(big), "default")
	require.ErrorIs(t, err, manifest.ErrInput)
	assert.Contains(t, err.Error(), "big.yaml: document 1: a document is larger than")
}

// tree writes files under a new directory and returns it.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	}
	return dir
}

func deployment(name string) string {
	return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: " + name + "}\nspec: {template: {spec: {containers: [{name: c, image: i}]}}}\n"
}

func refs(s *manifest.Set) []string {
	var out []string
	for _, w := range s.Workloads {
		out = append(out, w.Ref())
	}
	return out
}

func TestLoadWalksDirectoriesWithRecursive(t *testing.T) {
	dir := tree(t, map[string]string{
		"top.yaml":           deployment("top"),
		"apps/a/deploy.yml":  deployment("a"),
		"apps/b/deploy.json": `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "b"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}`,
		"apps/b/README.md":   "not a manifest",
	})
	flat, err := manifest.Load(manifest.Options{Filenames: []string{dir}, Namespace: "ns"})
	require.NoError(t, err)
	assert.Equal(t, []string{"Deployment ns/top"}, refs(flat), "without -R, as kubectl, a directory is its own files")

	all, err := manifest.Load(manifest.Options{Filenames: []string{dir}, Recursive: true, Namespace: "ns"})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"Deployment ns/top", "Deployment ns/a", "Deployment ns/b"}, refs(all))
	for _, w := range all.Workloads {
		if w.Name == "a" {
			assert.Equal(t, manifest.Source{File: filepath.Join(dir, "apps/a/deploy.yml"), Document: 1}, w.Source)
		}
	}
}

func TestLoadBuildsAKustomization(t *testing.T) {
	dir := tree(t, map[string]string{
		"base/kustomization.yaml": "resources: [deploy.yaml, sa.yaml]\n",
		"base/deploy.yaml":        deployment("app"),
		"base/sa.yaml":            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app}\n",
		"prod/kustomization.yaml": "resources: [../base]\nnamespace: prod\nnamePrefix: prod-\nlabels:\n- pairs: {aadpodidbinding: reader}\n  includeTemplates: true\n",
	})
	s, err := manifest.Load(manifest.Options{Kustomize: filepath.Join(dir, "prod"), Namespace: "ignored"})
	require.NoError(t, err)
	assert.Equal(t, []string{"Deployment prod/prod-app"}, refs(s), "the overlay's namespace and prefix apply")
	assert.Equal(t, "reader", s.Workloads[0].Pod.Labels["aadpodidbinding"], "the overlay's label reaches the pod template")
	assert.Equal(t, "kustomize build "+filepath.Join(dir, "prod"), s.Workloads[0].Source.File)
	assert.Equal(t, "1 ServiceAccount", s.OtherKinds())
}

func TestLoadReadsStandardInputAndLegacyKeys(t *testing.T) {
	const in = `apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: id}
spec: {type: 0, ClientID: 11111111-2222-3333-4444-555555555555, ResourceID: /subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: b}
spec: {AzureIdentity: id, Selector: app}
`
	s, err := manifest.Load(manifest.Options{Filenames: []string{"-"}, Stdin: strings.NewReader(in), Namespace: "team"})
	require.NoError(t, err)
	require.Len(t, s.Identities, 1)
	assert.Equal(t, "11111111-2222-3333-4444-555555555555", s.Identities[0].Spec.ClientID, "the legacy key ClientID decodes")
	assert.Equal(t, "team", s.Identities[0].Namespace)
	require.Len(t, s.Bindings, 1)
	assert.Equal(t, "app", s.Bindings[0].Spec.Selector)
	assert.Equal(t, manifest.Source{File: "-", Document: 2}, s.BindingSources[0])
}

func TestLoadRefusals(t *testing.T) {
	dir := tree(t, map[string]string{"k/kustomization.yaml": "resources: [missing.yaml]\n", "a.yaml": deployment("a")})
	tests := map[string]manifest.Options{
		"nothing":             {},
		"-f and -k":           {Filenames: []string{filepath.Join(dir, "a.yaml")}, Kustomize: filepath.Join(dir, "k")},
		"-R with -k":          {Recursive: true, Kustomize: filepath.Join(dir, "k")},
		"stdin twice":         {Filenames: []string{"-", "-"}, Stdin: strings.NewReader("")},
		"missing file":        {Filenames: []string{filepath.Join(dir, "nope.yaml")}},
		"broken kustomize":    {Kustomize: filepath.Join(dir, "k")},
		"not a kustomization": {Kustomize: dir},
	}
	for name, o := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := manifest.Load(o)
			require.ErrorIs(t, err, manifest.ErrInput)
		})
	}
}
