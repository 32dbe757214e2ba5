package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podidentity/injector/e2e/framework/nodeenv"
	"github.com/podidentity/injector/e2e/framework/nodeparts"
	"github.com/podidentity/injector/internal/names"
)

// The node mode (-node) runs the same phases on the real one-node cluster
// of package nodeenv, the one e2e/node and `make demo` run: the webhook is
// manifests/' two-replica Deployment, which the apiserver calls through
// its Service. A phase "without" deletes the MutatingWebhookConfiguration
// and a phase "with" recreates it as manifests/ writes it; the Deployment
// runs throughout. A further phase per round creates the same labelled
// pods in a namespace that is not opted in: the objectSelector still sends
// them to the webhook, which lets them through unchanged, so it prices
// the call alone. Every pod carries a scheduling gate and stays Pending:
// nothing runs on the kubelet while the phases are timed.

// webhookPodSelector selects the webhook Deployment's pods, as manifests/
// labels them.
const webhookPodSelector = "app.kubernetes.io/name=pod-identity-webhook"

// schedulingGate holds the node mode's pods back from the scheduler.
const schedulingGate = names.Prefix + "/benche2e"

// reexecInNode re-runs benche2e in the node's own namespaces
// (nodeparts.Reexec), where run takes the node mode's path, after building the
// tools that the namespace, which has no network, could not.
func reexecInNode(ctx context.Context, cfg Config, stderr io.Writer) error {
	if err := nodeenv.EnsureTools(ctx, cfg.RepoRoot, stderr); err != nil {
		return err
	}
	code, err := nodeparts.Reexec()
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("the run in the node's namespaces exited %d (its output is above)", code)
	}
	return nil
}

// startNodeBench brings up the real node (nodeenv.Start) and the clients.
func startNodeBench(ctx context.Context, cfg Config, log io.Writer) (*bench, func(), error) {
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn})))
	envLog := io.Discard
	if cfg.Verbose {
		envLog = log
	}
	root, err := filepath.Abs(cfg.RepoRoot)
	if err != nil {
		return nil, nil, err
	}
	start := time.Now()
	cluster, err := nodeenv.Start(ctx, nodeenv.Options{RepoRoot: root, Log: envLog})
	if err != nil {
		return nil, nil, fmt.Errorf("start the real node: %w", err)
	}
	fmt.Fprintf(log, ">> real node ready in %s; the webhook runs as the Deployment %s\n", time.Since(start).Round(time.Millisecond), nodeenv.WebhookKey)
	rc := cluster.Local.Cluster.RESTConfig()
	rc.QPS, rc.Burst, rc.UserAgent = float32(cfg.QPS), cfg.Burst, "benche2e"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		cluster.Stop()
		return nil, nil, err
	}
	b := &bench{cfg: cfg, env: cluster.Local, cs: cs, http: &http.Client{Timeout: 10 * time.Second}, cluster: cluster}
	if err := b.addWebhookArgs(ctx, cfg.WebhookArgs); err != nil {
		cluster.Stop()
		return nil, nil, err
	}
	return b, cluster.Stop, nil
}

// addWebhookArgs appends args to the webhook Deployment's container and
// waits for the new replicas, so that every phase runs against them.
func (b *bench) addWebhookArgs(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return nil
	}
	var d appsv1.Deployment
	if err := b.env.Client.Get(ctx, nodeenv.WebhookKey, &d); err != nil {
		return err
	}
	c := &d.Spec.Template.Spec.Containers[0]
	c.Args = append(c.Args, args...)
	if err := b.env.Client.Update(ctx, &d); err != nil {
		return fmt.Errorf("add %q to the webhook Deployment's args: %w", args, err)
	}
	if err := b.cluster.WaitDeployment(ctx, nodeenv.WebhookKey, 2); err != nil {
		return err
	}
	// Wait until the old replicas are gone and the apiserver's endpoints
	// lead only to the new ones.
	return b.poll(ctx, "the webhook's old replicas to go", func() (bool, error) {
		pods, err := b.cs.CoreV1().Pods(nodeenv.WebhookKey.Namespace).List(ctx, metav1.ListOptions{LabelSelector: webhookPodSelector})
		if err != nil {
			return false, err
		}
		return len(pods.Items) == 2, nil
	})
}

// webhookContainers are the container ids of the webhook Deployment's
// running pods, whose processes cpuTimes counts as the webhook's; none
// outside node mode, where the webhook is this process's child.
func (b *bench) webhookContainers(ctx context.Context) ([]string, error) {
	if b.cluster == nil {
		return nil, nil
	}
	pods, err := b.cs.CoreV1().Pods(nodeenv.WebhookKey.Namespace).List(ctx, metav1.ListOptions{LabelSelector: webhookPodSelector})
	if err != nil {
		return nil, fmt.Errorf("list the webhook's pods: %w", err)
	}
	var ids []string
	for _, p := range pods.Items {
		for _, c := range p.Status.ContainerStatuses {
			if id := containerID(c.ContainerID); id != "" && c.State.Running != nil {
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no running webhook container in namespace %s", nodeenv.WebhookKey.Namespace)
	}
	return ids, nil
}

// containerID strips the runtime's scheme from a status's containerID
// ("containerd://<id>").
func containerID(s string) string {
	if _, id, ok := strings.Cut(s, "://"); ok {
		return id
	}
	return ""
}

// webhookLogTail is the end of the webhook's log, or on the real node of
// the node's and the webhook's logs.
func (b *bench) webhookLogTail(lines int) string {
	if b.cluster != nil {
		return b.cluster.LogTails(lines)
	}
	return b.env.WebhookLogTail(lines)
}
