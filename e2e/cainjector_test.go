//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/internal/names"
)

// TestCAInjection runs the path a cluster takes: the webhook configuration
// from manifests/ carries no caBundle, only cert-manager.io/inject-ca-from;
// cert-manager's own cainjector, run from its library, fills it from the
// serving Certificate's Secret; then admissions succeed through it.
func TestCAInjection(t *testing.T) {
	ctx := context.Background()
	createNamespace(t, "cainjected", true)
	bindIdentity(t, "cainjected", "77777777-0000-0000-0000-000000000000")

	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: webhookenv.WebhookConfigName}, &mwc))
	require.Equal(t, "pod-identity-system/pod-identity-webhook", mwc.Annotations["cert-manager.io/inject-ca-from"],
		"the configuration generated from manifests/ keeps the inject-ca-from annotation")
	want := env.CABundle()
	// Restore the bundle whatever happens, so later tests can admit pods.
	t.Cleanup(func() {
		var cur admissionregistrationv1.MutatingWebhookConfiguration
		if env.Client.Get(ctx, client.ObjectKey{Name: webhookenv.WebhookConfigName}, &cur) == nil {
			cur.Webhooks[0].ClientConfig.CABundle = want
			_ = env.Client.Update(ctx, &cur)
		}
	})
	mwc.Webhooks[0].ClientConfig.CABundle = nil
	require.NoError(t, env.Client.Update(ctx, &mwc))

	startCAInjector(t)
	require.Eventually(t, func() bool {
		var cur admissionregistrationv1.MutatingWebhookConfiguration
		return env.Client.Get(ctx, client.ObjectKey{Name: webhookenv.WebhookConfigName}, &cur) == nil &&
			bytes.Contains(cur.Webhooks[0].ClientConfig.CABundle, bytes.TrimSpace(want))
	}, 90*time.Second, 250*time.Millisecond, "cainjector fills caBundle from Secret pod-identity-system/pod-identity-webhook-tls")

	// The API server picks the new bundle up from its informer; until then
	// it cannot verify the webhook and the create fails (failurePolicy Fail).
	var p = labelledPod("cainjected", "after-injection", "app")
	require.Eventually(t, func() bool {
		p = labelledPod("cainjected", "after-injection", "app")
		return env.Client.Create(ctx, p) == nil
	}, 30*time.Second, 200*time.Millisecond, "admission succeeds through the injected caBundle")
	require.NotEmpty(t, p.Spec.InitContainers)
	assert.Equal(t, names.SidecarContainerName, p.Spec.InitContainers[0].Name)
}

// startCAInjector runs cert-manager's cainjector until the test ends.
func startCAInjector(t *testing.T) {
	t.Helper()
	var log bytes.Buffer
	// One writer for stdout and stderr: exec then calls it from one
	// goroutine at a time, and stop waits for the process before it is read.
	stop, err := webhookenv.RunCAInjector(repoRoot, env.Cluster.KubeconfigPath(), &log)
	require.NoError(t, err)
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("cainjector log:\n%s", log.String())
		}
	})
}
