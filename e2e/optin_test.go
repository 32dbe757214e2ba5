//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/internal/names"
)

// TestOptInOutage is the trade-off of docs/install.md on a real API server:
// a webhook that does not answer, with the failurePolicy Fail of
// manifests/. In the default annotation mode the API server calls the
// webhook for labelled pods in every namespace, so the outage blocks
// namespaces that never opted in. With the label-opt-in component the
// namespaceSelector filters, and only opted-in namespaces are blocked.
//
// Each mode registers its own copy of the rendered configuration, pointed
// at a closed port, and narrowed by an extra object label so that it
// touches this test's pods alone; the running webhook keeps serving the
// other tests.
func TestOptInOutage(t *testing.T) {
	ctx := context.Background()
	const plain, labelled = "outage-not-opted-in", "outage-opted-in-by-label"
	for name, l := range map[string]map[string]string{plain: nil, labelled: {names.InjectAnnotation: names.InjectEnabled}} {
		require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}))
	}

	tests := []struct {
		mode         string
		components   []string
		plainBlocked bool
	}{
		{mode: "annotation", plainBlocked: true},
		{mode: "label", components: []string{"label-opt-in"}, plainBlocked: false},
	}
	for _, tt := range tests {
		t.Run(tt.mode+" mode", func(t *testing.T) {
			mwc := deadWebhookConfiguration(ctx, t, tt.mode, tt.components)
			require.NoError(t, env.Client.Create(ctx, mwc))
			t.Cleanup(func() { assert.NoError(t, env.Client.Delete(ctx, mwc)) })
			failed := fmt.Sprintf("failed calling webhook %q", mwc.Webhooks[0].Name)

			pod := func(ns string) *corev1.Pod {
				p := labelledPod(ns, "outage-"+tt.mode, "app")
				p.Labels["e2e-outage"] = tt.mode
				return p
			}
			// The API server picks the configuration up within moments;
			// the opted-in namespace is blocked in both modes.
			var err error
			require.Eventually(t, func() bool {
				err = env.Client.Create(ctx, pod(labelled), client.DryRunAll)
				return err != nil && strings.Contains(err.Error(), failed)
			}, 30*time.Second, 100*time.Millisecond, "the API server calls the dead webhook for namespace %s (last error: %v)", labelled, err)

			err = env.Client.Create(ctx, pod(plain))
			if tt.plainBlocked {
				require.Error(t, err, "annotation mode: the outage blocks a namespace that never opted in")
				assert.Contains(t, err.Error(), failed)
				return
			}
			require.NoError(t, err, "label mode: a namespace that did not opt in is not blocked by the outage")
			created := &corev1.Pod{}
			require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(pod(plain)), created))
			assert.Empty(t, created.Spec.InitContainers, "nothing injected")
		})
	}
}

// deadWebhookConfiguration renders manifests/ with components, as an
// overlay would, and returns its MutatingWebhookConfiguration renamed for
// mode, calling a port nobody listens on, for pods labelled
// e2e-outage=<mode> only.
func deadWebhookConfiguration(ctx context.Context, t *testing.T, mode string, components []string) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	dir := t.TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(repoRoot, p))
		require.NoError(t, err)
		return r
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [" + rel("manifests") + "]\ncomponents:\n"
	for _, c := range components {
		k += "  - " + rel(filepath.Join("manifests", "components", c)) + "\n"
	}
	if len(components) == 0 {
		k = strings.TrimSuffix(k, "components:\n")
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600))
	out, err := env.Cluster.Kubectl(ctx, "kustomize", dir)
	require.NoError(t, err, "kustomize %s", dir)
	objs, err := webhookenv.DecodeObjects(out)
	require.NoError(t, err)

	var mwc *admissionregistrationv1.MutatingWebhookConfiguration
	for _, o := range objs {
		if o.GetKind() == "MutatingWebhookConfiguration" {
			mwc = &admissionregistrationv1.MutatingWebhookConfiguration{}
			require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, mwc))
		}
	}
	require.NotNil(t, mwc, "the overlay renders a MutatingWebhookConfiguration")
	require.Len(t, mwc.Webhooks, 1)

	// A port that was free a moment ago: connections are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := fmt.Sprintf("https://%s/mutate-v1-pod", l.Addr())
	require.NoError(t, l.Close())

	mwc.ObjectMeta = metav1.ObjectMeta{Name: "e2e-outage-" + mode}
	wh := &mwc.Webhooks[0]
	require.Equal(t, admissionregistrationv1.Fail, *wh.FailurePolicy, "the outage matters because the policy is Fail")
	wh.Name = "outage-" + mode + "." + names.Prefix
	wh.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: ptr.To(dead), CABundle: env.CABundle()}
	wh.TimeoutSeconds = ptr.To(int32(2))
	wh.ObjectSelector.MatchLabels = map[string]string{"e2e-outage": mode}
	return mwc
}
