package manifest_test

import (
	"bytes"
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
		"unknown kind": {
			in:   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
			want: []string{"f.yaml: document 1", "kind ConfigMap", "is not one this tool reads"},
		},
		"no kind": {
			in:   "apiVersion: v1\nmetadata: {name: x}\n",
			want: []string{"f.yaml: document 1", "field kind is missing"},
		},
		"unknown field of a pod": {
			in:   "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containerz: []}\n",
			want: []string{"f.yaml: document 1", "Pod", "containerz"},
		},
		"wrong type in a list item": {
			in:   "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n",
			want: []string{"f.yaml: document 1, item 1", "kind Secret"},
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
