//go:build e2e

// Package e2e proves admission on a real control plane: a real etcd and
// kube-apiserver built from Go modules, and the webhook as a real HTTPS
// process with its own ServiceAccount. No pod runs here: the suite e2e/node
// runs the injected pods, and the token clients in them, on a real node.
// Run it with `make e2e` (part of `make test`).
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podidentity/injector/e2e/framework/webhookenv"
)

var (
	env      *webhookenv.Env
	repoRoot string
	binDir   string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// Clients log through controller-runtime; keep only its warnings.
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(file))
	var err error
	if binDir, err = os.MkdirTemp("", "pod-identity-e2e-bin-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(binDir)
	for name, pkg := range map[string]string{
		"pod-identity-webhook": "./cmd/webhook",
		"kubectl-pod_identity": "./cmd/kubectl-pod_identity",
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(binDir, name), pkg)
		cmd.Dir, cmd.Env = repoRoot, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	env, err = webhookenv.Start(ctx, webhookenv.Options{
		RepoRoot:      repoRoot,
		WebhookBinary: filepath.Join(binDir, "pod-identity-webhook"),
		Log:           os.Stderr,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start local environment:", err)
		return 1
	}
	defer env.Stop()
	fmt.Fprintf(os.Stderr, ">> environment ready in %s\n", time.Since(start).Round(time.Millisecond))
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "---- webhook log (tail) ----\n%s\n", env.WebhookLogTail(40))
	}
	return code
}
