package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podidentity/injector/e2e/framework/controlplane"
	"github.com/podidentity/injector/e2e/framework/nodeenv"
	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/fakeaad"
)

// The seed's values, as the fixtures' README fills in its placeholders.
const (
	// seedClientID is ${identity_client_id}: the AzureIdentity's ClientID,
	// and the --identity-client-id the init container passes to azcopy.
	seedClientID = "11111111-2222-3333-4444-555555555555"
	// seedNamespace is the article's namespace; the Deployment's pods run
	// as its default ServiceAccount.
	seedNamespace      = "default"
	seedServiceAccount = "default"
	seedAppLabel       = "my-app" // the template's run= label
	appContainer       = "my-app"
	initContainer      = "data-init"
)

// stepTimeout bounds each step after the cluster is up: generous for a busy
// 2-core machine, but a hang still ends with a message rather than a silent
// wait.
const stepTimeout = 3 * time.Minute

// demo runs the steps and owns the cluster.
type demo struct {
	cfg     Config
	out     io.Writer
	cluster *nodeenv.Env
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// step prints a heading, so the output reads as the path a user takes.
func (d *demo) step(format string, args ...any) { d.say("\n== "+format, args...) }

func (d *demo) run(ctx context.Context) (err error) {
	d.say("pod-identity-injector demo: the blog-era manifests from %s, unchanged,", d.cfg.Seed())
	d.say("on a real one-node cluster in a network namespace of its own: etcd, kube-apiserver,")
	d.say("kube-controller-manager, kube-scheduler, a kubelet with containerd and runc, the webhook")
	d.say("as manifests/' Deployment, images built here, Azurite as the storage account, and a fake")
	d.say("Entra ID (the only fake).")

	d.step("1. start the cluster (every image is built from this checkout and pushed to a local registry)")
	begin := time.Now()
	d.cluster, err = nodeenv.Start(ctx, nodeenv.Options{RepoRoot: d.cfg.RepoRoot, Log: d.out})
	if err != nil {
		return fmt.Errorf("start the one-node cluster: %w", err)
	}
	defer d.stop()
	d.say(">> ready in %s", time.Since(begin).Round(100*time.Millisecond))

	pod, err := d.applySeed(ctx)
	if err != nil {
		return err
	}

	d.step("3. the pod %s/%s that kube-controller-manager created, as the webhook injected it", pod.Namespace, pod.Name)
	writeContainers(d.out, pod)

	d.step("4. the kubelet runs it")
	if pod, err = d.waitRunning(ctx, pod); err != nil {
		return err
	}
	writeStatuses(d.out, pod)
	d.say("its events (kubectl describe pod %s):", pod.Name)
	if err := d.writeEvents(ctx, pod); err != nil {
		return err
	}

	d.step("5. what the containers got with nothing but the injected environment (kubectl logs)")
	secrets := headerValues(pod)
	for _, c := range []struct {
		name, what string
		keep       []string
	}{
		{initContainer, "the azcopy stand-in image: the real azcopy " + controlplane.AzcopyVersion + " runs the seed's own command", azcopyStory},
		{appContainer, "the nginx stand-in image: azidentity with the injected env; it prints the token's decoded claims, never the token", nil},
	} {
		out, err := d.kubectl(ctx, "logs", "-n", pod.Namespace, pod.Name, "-c", c.name)
		if err != nil {
			return err
		}
		lines, total := storyLines(redact(out, secrets), c.keep)
		d.say("$ kubectl logs %s -c %s   # %s", pod.Name, c.name, c.what)
		if len(lines) < total {
			d.say("  (%d of its %d lines: those that say how it went)", len(lines), total)
		}
		for _, line := range lines {
			d.say("  %s", line)
		}
	}
	n := d.cluster.Local.Issued(fakeaad.GrantAssertion, seedClientID)
	d.say("the fake Entra ID issued %d token(s) to client %s, each for the pod's service account token, verified against the apiserver's JWKS", n, seedClientID)

	if d.cfg.KeepRunning {
		d.keepRunning(ctx, pod)
	}
	return nil
}

// stop tears the cluster down. Every path out of run, Ctrl-C included,
// comes through here.
func (d *demo) stop() {
	d.say("\n>> tearing down")
	begin := time.Now()
	d.cluster.Stop()
	d.say(">> stopped the node, the webhook, Azurite, the registry, the fake Entra ID and the control plane, and removed their files, in %s",
		time.Since(begin).Round(100*time.Millisecond))
}

// kubectl runs the cluster's kubectl, naming the command in its error.
func (d *demo) kubectl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	out, err := d.cluster.Local.Cluster.Kubectl(ctx, args...)
	if err != nil {
		return "", fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// applySeed declares the seed identity's federated credential, applies the
// seed manifests verbatim, shows the warnings the webhook returns for their
// pod template, and returns the Deployment's pod.
func (d *demo) applySeed(ctx context.Context) (*corev1.Pod, error) {
	d.step("2. apply the seed manifests verbatim")
	d.cluster.Local.DeclareFederatedCredential(seedClientID, seedNamespace, seedServiceAccount)
	d.say("federated credential declared in the fake Entra ID (what `az identity federated-credential create` does):")
	d.say("  client %s trusts issuer %s, subject %s", seedClientID, d.cluster.Local.Cluster.Issuer(), fakeaad.ServiceAccountSubject(seedNamespace, seedServiceAccount))
	for _, f := range seedFiles {
		if f == "deployment.yaml" {
			if err := d.showWarnings(ctx, filepath.Join(d.cfg.Seed(), f)); err != nil {
				return nil, err
			}
		}
		out, err := d.kubectl(ctx, "apply", "-f", filepath.Join(d.cfg.Seed(), f))
		if err != nil {
			return nil, fmt.Errorf("apply seed manifest %s: %w", f, err)
		}
		d.say("$ kubectl apply -f %s\n  %s", f, strings.TrimSpace(out))
	}
	return d.waitForPod(ctx)
}

// showWarnings creates the Deployment's pod template once as a dry run and
// prints the warnings the webhook returns for the legacy keys: for the
// Deployment's own pods they go to kube-controller-manager, which nobody
// reads.
func (d *demo) showWarnings(ctx context.Context, deployment string) error {
	pod, err := webhookenv.SeedPodTemplate(deployment, seedNamespace)
	if err != nil {
		return err
	}
	pod.Name = "seed-dry-run"
	warnings, err := d.cluster.Local.DryRunWarnings(ctx, pod)
	if err != nil {
		return err
	}
	d.say("the webhook's warnings for the Deployment's pod template (a dry-run create; kube-controller-manager gets them for the real pods):")
	for _, w := range warnings {
		d.say("  Warning: %s", w)
	}
	return nil
}

// poll calls get every interval until it returns a pod or an error, or
// stepTimeout passes; what names what was awaited.
func poll(ctx context.Context, interval time.Duration, what string, get func() (*corev1.Pod, error)) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	for {
		pod, err := get()
		if pod != nil || err != nil {
			return pod, err
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return nil, fmt.Errorf("%s: not within %s", what, stepTimeout)
			}
			return nil, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// waitForPod waits for kube-controller-manager to create the Deployment's
// pod, through the webhook.
func (d *demo) waitForPod(ctx context.Context) (*corev1.Pod, error) {
	return poll(ctx, 200*time.Millisecond, fmt.Sprintf("kube-controller-manager creates a pod for Deployment %s/%s", seedNamespace, seedAppLabel), func() (*corev1.Pod, error) {
		pods, err := d.cluster.Clientset.CoreV1().Pods(seedNamespace).List(ctx, metav1.ListOptions{LabelSelector: "run=" + seedAppLabel})
		if err != nil || len(pods.Items) == 0 {
			return nil, nil // a list error is retried until the step times out
		}
		return &pods.Items[0], nil
	})
}

// waitRunning waits for the kubelet to run the pod; a pod that fails, or
// does not run in time, is reported with its events.
func (d *demo) waitRunning(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	ns, name := pod.Namespace, pod.Name
	begin := time.Now()
	got, err := poll(ctx, 100*time.Millisecond, fmt.Sprintf("pod %s/%s Running", ns, name), func() (*corev1.Pod, error) {
		p, err := d.cluster.Clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case err != nil:
			return nil, nil // a get error is retried until the step times out
		case p.Status.Phase == corev1.PodFailed:
			return nil, fmt.Errorf("pod %s/%s failed: %s %s", ns, name, p.Status.Reason, p.Status.Message)
		case p.Status.Phase == corev1.PodRunning:
			return p, nil
		}
		return nil, nil
	})
	if err != nil {
		var events strings.Builder
		_ = d.eventsTo(context.Background(), &events, ns, name)
		return nil, fmt.Errorf("%w\nits events:\n%s", err, events.String())
	}
	d.say("pod %s Running %s after kube-controller-manager created it (polled every 100 ms)", name, time.Since(begin).Round(100*time.Millisecond))
	return got, nil
}

// writeEvents prints the pod's events, as kubectl describe shows them.
func (d *demo) writeEvents(ctx context.Context, pod *corev1.Pod) error {
	return d.eventsTo(ctx, d.out, pod.Namespace, pod.Name)
}

func (d *demo) eventsTo(ctx context.Context, w io.Writer, ns, name string) error {
	list, err := d.cluster.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return fmt.Errorf("list the events of pod %s/%s: %w", ns, name, err)
	}
	writeEvents(w, list.Items)
	return nil
}

// keepRunning leaves the cluster up until Ctrl-C and says how to reach it:
// the apiserver listens only inside this process's network namespace, so
// kubectl enters it with nsenter.
func (d *demo) keepRunning(ctx context.Context, pod *corev1.Pod) {
	bins, _ := controlplane.FindBinaries()
	enter := fmt.Sprintf("nsenter --net=/proc/%d/ns/net", os.Getpid())
	kubectl := fmt.Sprintf("%s %s --kubeconfig=%s", enter, bins.Kubectl, d.cluster.Local.Cluster.KubeconfigPath())
	d.step("left running until Ctrl-C; from another shell on this machine, as root:")
	d.say("  %s get pods -A", kubectl)
	d.say("  %s describe pod -n %s %s", kubectl, pod.Namespace, pod.Name)
	d.say("  %s logs -n %s %s -c %s", kubectl, pod.Namespace, pod.Name, appContainer)
	d.say("(the apiserver and the node listen only inside the demo's network namespace; %s enters it)", enter)
	<-ctx.Done()
}

// headerValues are the pod's IDENTITY_HEADER values: per-pod secrets that
// never appear in what the demo prints.
func headerValues(pod *corev1.Pod) []string {
	var out []string
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, ev := range c.Env {
			if ev.Name == names.EnvIdentityHeader && ev.Value != "" {
				out = append(out, ev.Value)
			}
		}
	}
	return out
}
