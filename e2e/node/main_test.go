//go:build e2e

// Package node_test runs the seed on a real node: the one-node cluster of
// package nodeenv (the control plane with the project's manifests, the
// webhook as its Deployment, containerd, runc, a kubelet and kube-scheduler,
// the images built here and served from a registry inside the suite's
// namespace), which `make demo` brings up too. TestMain re-runs the test
// binary under `unshare --net --mount`, so that every server, the pod bridge
// and every mount live in namespaces of the suite's own. It needs root, as
// CI runs it.
package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podidentity/injector/e2e/framework/nodeenv"
	"github.com/podidentity/injector/e2e/framework/nodeparts"
	"github.com/podidentity/injector/e2e/framework/webhookenv"
)

var (
	repoRoot string
	cluster  *nodeenv.Env
	// Short names for the parts of cluster the tests use.
	env     *webhookenv.Env
	reg     *nodeparts.Registry
	theNode *nodeparts.Node
	cs      kubernetes.Interface
)

func TestMain(m *testing.M) {
	if !nodeparts.InNamespace() {
		code, err := nodeparts.Reexec()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(code)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// Clients log through controller-runtime; keep only its warnings.
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(filepath.Dir(file)))
	var err error
	cluster, err = nodeenv.Start(context.Background(), nodeenv.Options{RepoRoot: repoRoot, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start the real node:", err)
		return 1
	}
	env, reg, theNode, cs = cluster.Local, cluster.Registry, cluster.Node, cluster.Clientset
	code := m.Run()
	if code != 0 {
		fmt.Fprint(os.Stderr, cluster.LogTails(40))
	}
	cluster.Stop()
	return code
}
