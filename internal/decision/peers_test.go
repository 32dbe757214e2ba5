package decision

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/manifest"
)

// TestSharedServiceAccountInFiles: the plugin compares the workloads of
// its files with each other, templates included.
func TestSharedServiceAccountInFiles(t *testing.T) {
	var set manifest.Set
	require.NoError(t, set.Read("apps.yaml", strings.NewReader(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: writer, namespace: team-a}
spec:
  selector: {matchLabels: {app: writer}}
  template:
    metadata: {labels: {app: writer, aadpodidbinding: writer}}
    spec: {containers: [{name: app, image: nginx}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reader, namespace: team-a}
spec:
  selector: {matchLabels: {app: reader}}
  template:
    metadata: {labels: {app: reader, aadpodidbinding: reader}}
    spec: {serviceAccountName: default, containers: [{name: app, image: nginx}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: own-sa, namespace: team-a}
spec:
  selector: {matchLabels: {app: own}}
  template:
    metadata: {labels: {app: own, aadpodidbinding: other}}
    spec: {serviceAccountName: own, containers: [{name: app, image: nginx}]}
`), "default"))
	peers, err := NewMemoryLookup(&set).OtherSelectors(context.Background(), "team-a", "default", "reader")
	require.NoError(t, err)
	assert.Equal(t, []Peer{{Ref: "Deployment team-a/writer", Selector: "writer"}}, peers, "the workload itself, same selector, and the one of another service account are no peers")
	w := sharedServiceAccountWarning(set.Workloads[1].Pod, "reader", peers)
	assert.Contains(t, w, `shares service account "default" with Deployment team-a/writer, whose aadpodidbinding selectors differ ("writer")`)
}
