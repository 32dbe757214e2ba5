//go:build e2e

// Package node_test runs pods on a real node: the control plane of package
// testcluster, and containerd, runc, a kubelet and kube-scheduler from
// package node, all inside a network and mount namespace that TestMain makes
// for the suite (it re-runs the test binary under `unshare --net --mount`).
// It needs root, as CI runs it.
package node_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/podidentity/injector/e2e/framework/node"
	"github.com/podidentity/injector/e2e/framework/testcluster"
)

var (
	repoRoot string
	cluster  *testcluster.Cluster
	reg      *node.Registry
	theNode  *node.Node
	cs       kubernetes.Interface
)

func TestMain(m *testing.M) {
	if !node.InNamespace() {
		code, err := node.Reexec()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(code)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(filepath.Dir(file)))
	if err := node.SetupNamespace(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	begin := time.Now()
	var err error
	if reg, err = node.StartRegistry(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer reg.Close()
	if err := reg.PushPause(ctx, repoRoot); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cluster, err = testcluster.Start(ctx, testcluster.Options{NodeAddress: node.Address, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cluster.Stop()
	theNode, err = node.Start(ctx, node.Options{Cluster: cluster, RegistryHost: reg.Host, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer theNode.Stop()
	if cs, err = kubernetes.NewForConfig(cluster.RESTConfig()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, ">> node ready in %s\n", time.Since(begin).Round(time.Millisecond))
	code := m.Run()
	if code != 0 {
		fmt.Fprint(os.Stderr, theNode.LogTails(40))
	}
	return code
}
