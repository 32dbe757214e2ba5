//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// sharedWarnings are the warnings of a dry-run create of pod that say the
// label is no boundary.
func sharedWarnings(t *testing.T, pod *corev1.Pod) []string {
	t.Helper()
	warnings, err := env.DryRunWarnings(context.Background(), pod)
	require.NoError(t, err)
	var out []string
	for _, w := range warnings {
		if strings.Contains(w, "no boundary") {
			out = append(out, w)
		}
	}
	return out
}

// TestSharedServiceAccountWarning: the webhook, running with manifests/'
// RBAC, watches labelled pods and warns when a pod's selector differs from
// that of a running pod of its service account; a pod of its own service
// account, or with the same selector, gets no such warning.
func TestSharedServiceAccountWarning(t *testing.T) {
	ctx := context.Background()
	createNamespace(t, "shared-sa", true)
	bindIdentity(t, "shared-sa", "00000000-0000-0000-0000-0000000000aa")
	out, err := applyYAML(t, "apply", `
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: writer, namespace: shared-sa}
spec: {azureIdentity: id, selector: writer}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: own, namespace: shared-sa}
`)
	require.NoError(t, err, out)

	writer := labelledPod("shared-sa", "writer", "writer")
	require.NoError(t, env.Client.Create(ctx, writer))
	require.NotEmpty(t, writer.Spec.InitContainers, "the writer pod is injected")

	reader := labelledPod("shared-sa", "reader", "app")
	var got []string
	require.Eventually(t, func() bool {
		got = sharedWarnings(t, reader.DeepCopy())
		return len(got) == 1
	}, 30*time.Second, 200*time.Millisecond, "a warning once the webhook's cache holds the writer pod")
	assert.Contains(t, got[0], `pod shared-sa/reader (aadpodidbinding="app") shares service account "default" with pod writer, whose aadpodidbinding selectors differ ("writer")`)

	own := labelledPod("shared-sa", "own", "app")
	own.Spec.ServiceAccountName = "own"
	assert.Empty(t, sharedWarnings(t, own), "a pod of its own service account")
	assert.Empty(t, sharedWarnings(t, labelledPod("shared-sa", "writer-2", "writer")), "a pod with the same selector")

	// Once the writer pod is gone, the warning goes too.
	require.NoError(t, env.Client.Delete(ctx, writer, &client.DeleteOptions{GracePeriodSeconds: new(int64)}))
	require.Eventually(t, func() bool { return len(sharedWarnings(t, reader.DeepCopy())) == 0 },
		30*time.Second, 200*time.Millisecond, "no warning once the writer pod is deleted")
}
