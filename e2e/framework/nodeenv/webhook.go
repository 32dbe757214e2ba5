package nodeenv

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

	"github.com/podidentity/injector/e2e/framework/nodeparts"
	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/internal/names"
)

// probeClientID is the client of the AzureIdentity that waitInjects'
// dry-run pods bind; nothing asks Entra ID for it.
const probeClientID = "11111111-2222-3333-4444-555555555555"

// WebhookKey is the webhook Deployment that manifests/ applies.
var WebhookKey = client.ObjectKey{Namespace: webhookenv.WebhookNamespace, Name: "pod-identity-webhook"}

// deployWebhook moves the webhook into the cluster: the Deployment that
// webhookenv applied from manifests/ (two replicas, TLS from the Secret of
// certs/' Certificate) gets the image built here and the flags this
// environment needs, and the MutatingWebhookConfiguration calls its Service,
// as manifests/ writes it, with the CA bundle the cainjector would set. The
// apiserver reaches the Service through its endpoints
// (--enable-aggregator-routing; no kube-proxy runs), and the webhook
// reaches the apiserver at the node's address, since without a kube-proxy
// the kubernetes Service's ClusterIP leads nowhere. The host-process webhook
// is stopped, so that every admission from here on goes through the pods.
func (e *Env) deployWebhook(ctx context.Context) error {
	if err := e.Registry.PushWebhookImage(ctx, e.opts.RepoRoot, WebhookImage); err != nil {
		return err
	}
	apiserver, err := url.Parse(e.Local.Cluster.Host())
	if err != nil {
		return err
	}
	var d appsv1.Deployment
	if err := e.Local.Client.Get(ctx, WebhookKey, &d); err != nil {
		return err
	}
	c := &d.Spec.Template.Spec.Containers[0]
	if c.Image != WebhookImage {
		return fmt.Errorf("manifests/ renders the webhook image as %q, want %q", c.Image, WebhookImage)
	}
	c.Args = append(c.Args, e.Local.WebhookArgs()...)
	if err := e.requireClientCert(ctx, &d); err != nil {
		return err
	}
	c.Env = append(c.Env,
		corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: nodeparts.Address},
		corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: apiserver.Port()},
	)
	if err := e.Local.Client.Update(ctx, &d); err != nil {
		return fmt.Errorf("update the webhook Deployment: %w", err)
	}
	if err := e.WaitDeployment(ctx, WebhookKey, 2); err != nil {
		return err
	}
	mwc, err := e.Local.WebhookConfiguration(ctx, "", e.Local.CABundle())
	if err != nil {
		return err
	}
	current := mwc.DeepCopy()
	if err := e.Local.Client.Get(ctx, client.ObjectKeyFromObject(mwc), current); err != nil {
		return err
	}
	mwc.ResourceVersion = current.ResourceVersion
	if err := e.Local.Client.Update(ctx, mwc); err != nil {
		return fmt.Errorf("point the MutatingWebhookConfiguration at the Service: %w", err)
	}
	e.Local.StopWebhook()
	return e.waitInjects(ctx)
}

// ClientCAConfigMap holds the CA of the apiserver's webhook client
// certificate, which the Deployment mounts for --client-ca-file.
const ClientCAConfigMap = "pod-identity-webhook-client-ca"

// requireClientCert makes the webhook Deployment accept only the
// apiserver's client certificate, as docs/security.md shows: the CA in a
// ConfigMap, mounted, and named by --client-ca-file.
func (e *Env) requireClientCert(ctx context.Context, d *appsv1.Deployment) error {
	ca := e.Local.Cluster.WebhookClientCA()
	if ca == nil {
		return fmt.Errorf("the control plane presents no client certificate to webhooks")
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ClientCAConfigMap, Namespace: d.Namespace}, Data: map[string]string{"ca.crt": string(ca)}}
	if err := e.Local.Client.Create(ctx, cm); err != nil {
		return fmt.Errorf("create ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	const dir = "/etc/pod-identity-webhook/client-ca"
	spec := &d.Spec.Template.Spec
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "client-ca", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: ClientCAConfigMap}}}})
	c := &spec.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "client-ca", MountPath: dir, ReadOnly: true})
	c.Args = append(c.Args, "--client-ca-file="+dir+"/ca.crt")
	return nil
}

// WaitDeployment waits until the Deployment's rollout has want ready,
// updated replicas.
func (e *Env) WaitDeployment(ctx context.Context, key client.ObjectKey, want int32) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		var d appsv1.Deployment
		err := e.Local.Client.Get(ctx, key, &d)
		if err == nil && d.Status.ObservedGeneration == d.Generation && d.Status.UpdatedReplicas == want &&
			d.Status.ReadyReplicas == want && d.Status.Replicas == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for Deployment %s: %d of %d replicas ready (%v): %w", key, d.Status.ReadyReplicas, want, err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// OptInNamespace creates namespace ns, opted in, with a type 0
// AzureIdentity "id" of clientID bound to selector.
func (e *Env) OptInNamespace(ctx context.Context, ns, clientID, selector string) error {
	return e.ApplyManifest(ctx, fmt.Sprintf(`
apiVersion: v1
kind: Namespace
metadata: {name: %[1]s, annotations: {%[2]q: %[3]q}}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: id, namespace: %[1]s}
spec: {type: 0, clientID: %[4]s}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: b, namespace: %[1]s}
spec: {azureIdentity: id, selector: %[5]s}
`, ns, names.InjectAnnotation, names.InjectEnabled, clientID, selector))
}

// waitInjects dry-runs a labelled pod in an opted-in namespace until the
// webhook, now reached only through its Service, injects the sidecar.
func (e *Env) waitInjects(ctx context.Context) error {
	const ns = "node-webhook-readiness"
	if err := e.OptInNamespace(ctx, ns, probeClientID, "probe"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	for {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Namespace: ns, Labels: map[string]string{names.BindingLabel: "probe"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: nodeparts.PauseImage}}},
		}
		last = e.Local.Client.Create(ctx, pod, client.DryRunAll)
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

// ApplyManifest runs kubectl apply on a YAML document.
func (e *Env) ApplyManifest(ctx context.Context, manifest string) error {
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
	out, err := e.Local.Cluster.Kubectl(ctx, "apply", "-f", f.Name())
	if err != nil {
		return fmt.Errorf("kubectl apply: %w: %s", err, out)
	}
	return nil
}
