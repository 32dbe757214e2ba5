//go:build e2e

package node_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podidentity/injector/e2e/framework/localenv"
	"github.com/podidentity/injector/e2e/framework/node"
	"github.com/podidentity/injector/internal/names"
)

// webhookImage is manifests/' webhook image as kustomize renders it.
const webhookImage = "ghcr.io/podidentity/pod-identity-webhook:v0.1.0"

// deployWebhook moves the webhook into the cluster: the Deployment that
// localenv applied from manifests/ (two replicas, TLS from the Secret of
// certs/' Certificate) gets the image built here and the flags this
// environment needs, and the MutatingWebhookConfiguration calls its Service,
// as manifests/ writes it, with the CA bundle the cainjector would set. The
// apiserver reaches the Service through its endpoints
// (--enable-aggregator-routing; no kube-proxy runs), and the webhook
// reaches the apiserver at the node's address, since without a kube-proxy
// the kubernetes Service's ClusterIP leads nowhere. The host-process webhook
// is stopped, so that every admission from here on goes through the pods.
func deployWebhook(ctx context.Context) error {
	if err := reg.PushWebhookImage(ctx, repoRoot, webhookImage); err != nil {
		return err
	}
	apiserver, err := url.Parse(env.Cluster.Host())
	if err != nil {
		return err
	}
	var d appsv1.Deployment
	key := client.ObjectKey{Namespace: localenv.WebhookNamespace, Name: "pod-identity-webhook"}
	if err := env.Client.Get(ctx, key, &d); err != nil {
		return err
	}
	c := &d.Spec.Template.Spec.Containers[0]
	if c.Image != webhookImage {
		return fmt.Errorf("manifests/ renders the webhook image as %q, want %q", c.Image, webhookImage)
	}
	c.Args = append(c.Args, env.WebhookArgs()...)
	c.Env = append(c.Env,
		corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: node.Address},
		corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: apiserver.Port()},
	)
	if err := env.Client.Update(ctx, &d); err != nil {
		return fmt.Errorf("update the webhook Deployment: %w", err)
	}
	if err := waitDeployment(ctx, key, 2); err != nil {
		return err
	}
	mwc, err := env.WebhookConfiguration(ctx, "", env.CABundle())
	if err != nil {
		return err
	}
	current := mwc.DeepCopy()
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(mwc), current); err != nil {
		return err
	}
	mwc.ResourceVersion = current.ResourceVersion
	if err := env.Client.Update(ctx, mwc); err != nil {
		return fmt.Errorf("point the MutatingWebhookConfiguration at the Service: %w", err)
	}
	env.StopWebhook()
	return waitInjects(ctx)
}

// waitDeployment waits until the Deployment's rollout has want ready,
// updated replicas.
func waitDeployment(ctx context.Context, key client.ObjectKey, want int32) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		var d appsv1.Deployment
		err := env.Client.Get(ctx, key, &d)
		if err == nil && d.Status.ObservedGeneration == d.Generation && d.Status.UpdatedReplicas == want &&
			d.Status.ReadyReplicas == want && d.Status.Replicas == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Deployment %s: %d of %d replicas ready (%v): %w", key, d.Status.ReadyReplicas, want, err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitInjects dry-runs a labelled pod in an opted-in namespace until the
// webhook, now reached only through its Service, injects the sidecar.
func waitInjects(ctx context.Context) error {
	const ns = "node-webhook-readiness"
	if err := applyManifest(ctx, fmt.Sprintf(`
apiVersion: v1
kind: Namespace
metadata: {name: %[1]s, annotations: {%[2]q: %[3]q}}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: probe, namespace: %[1]s}
spec: {type: 0, clientID: %[4]s}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: probe, namespace: %[1]s}
spec: {azureIdentity: probe, selector: probe}
`, ns, names.InjectAnnotation, names.InjectEnabled, seedClientID)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	for {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Namespace: ns, Labels: map[string]string{names.BindingLabel: "probe"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: node.PauseImage}}},
		}
		last = env.Client.Create(ctx, pod, client.DryRunAll)
		if last == nil {
			for _, c := range pod.Spec.InitContainers {
				if c.Name == names.SidecarContainerName {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the webhook Service did not inject a labelled pod (last error: %v): %w", last, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// applyManifest runs kubectl apply on a YAML document.
func applyManifest(ctx context.Context, manifest string) error {
	f, err := os.CreateTemp("", "node-manifest-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(manifest); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = env.Cluster.Kubectl(ctx, "apply", "-f", f.Name())
	return err
}
