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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podidentity/injector/e2e/framework/node"
	"github.com/podidentity/injector/e2e/framework/nodeenv"
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

// schedulingGate holds the node mode's pods back from the scheduler.
const schedulingGate = names.Prefix + "/benche2e"

// runNodeMode re-runs benche2e in the node's own namespaces (node.Reexec),
// after building the tools the namespace, which has no network, cannot,
// and there runs the benchmark.
func runNodeMode(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	if !node.InNamespace() {
		if err := nodeenv.EnsureTools(ctx, cfg.RepoRoot, stderr); err != nil {
			return err
		}
		code, err := node.Reexec()
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("the run in the node's namespaces exited %d (its output is above)", code)
		}
		return nil
	}
	rep, err := runBench(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	s := rep.Summarize()
	s.WriteText(stdout)
	if cfg.Markdown {
		fmt.Fprintln(stdout)
		s.WriteMarkdown(stdout)
	}
	return s.Failure()
}

// startNodeBench brings up the real node (nodeenv.Start) and the clients.
func startNodeBench(ctx context.Context, cfg Config, log io.Writer) (*bench, func(), error) {
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn})))
	var envLog io.Writer = io.Discard
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
	return b, cluster.Stop, nil
}

// webhookContainers are the container ids of the webhook Deployment's
// running pods, whose processes cpuTimes counts as the webhook's; none
// outside node mode, where the webhook is this process's child.
func (b *bench) webhookContainers(ctx context.Context) ([]string, error) {
	if b.cluster == nil {
		return nil, nil
	}
	pods, err := b.cs.CoreV1().Pods(nodeenv.WebhookKey.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=pod-identity-webhook"})
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
