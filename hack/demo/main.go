// Command demo is `make demo`: the product's main job, end to end, on a
// real one-node cluster (package nodeenv, the one the e2e suite e2e/node
// runs on): etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// a kubelet with containerd and runc, the webhook as manifests/' two-replica
// Deployment, images built here and served from a local registry, Azurite
// for the seed's storage account, and a fake Entra ID (the only fake). It
// applies the blog-era seed manifests verbatim and tells what happened from
// the real pod: as the webhook injected it, its container states, its
// events and its `kubectl logs`.
//
// It first builds the tools that are missing, then re-runs itself under
// `unshare --net --mount` (nodeparts.Reexec), since the cluster lives in a
// network and mount namespace of its own: no packet leaves it. It needs
// root. It tears everything down at the end or on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podidentity/injector/e2e/framework/nodeenv"
	"github.com/podidentity/injector/e2e/framework/nodeparts"
	"github.com/podidentity/injector/examples"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code, err := run(ctx, os.Args[1:])
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case err == nil:
		os.Exit(code)
	case interrupted:
		// Whatever step was cut short reports its own way (a killed
		// kubectl, a cancelled request); the cause is the signal.
		fmt.Fprintln(os.Stderr, "demo: interrupted; everything it started has been stopped")
		os.Exit(130)
	default:
		fmt.Fprintln(os.Stderr, "demo: FAILED:", err)
		os.Exit(1)
	}
}

// seedFiles are the blog-era manifests, in the order they are applied.
var seedFiles = examples.BlogFiles

// Config is the demo's command line.
type Config struct {
	// RepoRoot is the repository, for manifests/, certs/, cmd/ and hack/.
	RepoRoot string
	// SeedDir holds the seed manifests; empty means the repository's own
	// copy, examples/aad-pod-identity-blog.
	SeedDir string
	// KeepRunning leaves the cluster up after the demo, until Ctrl-C.
	KeepRunning bool
}

// AddFlags registers the Config's flags.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.RepoRoot, "repo", ".", "the repository root")
	fs.StringVar(&c.SeedDir, "seed", "", "directory of the seed manifests (default <repo>/examples/aad-pod-identity-blog)")
	fs.BoolVar(&c.KeepRunning, "keep-running", false, "leave the cluster up until Ctrl-C, to poke at it with kubectl")
}

// Seed is the seed directory the demo applies.
func (c *Config) Seed() string {
	if c.SeedDir != "" {
		return c.SeedDir
	}
	return examples.BlogPath(c.RepoRoot)
}

// Validate checks that the repository and every seed manifest are there,
// so that a missing file is named before minutes go into starting a
// cluster.
func (c *Config) Validate() error {
	if _, err := os.Stat(filepath.Join(c.RepoRoot, "manifests", "kustomization.yaml")); err != nil {
		return fmt.Errorf("--repo %s is not this repository (no manifests/kustomization.yaml); run from the repository root or pass --repo: %w", c.RepoRoot, err)
	}
	for _, f := range seedFiles {
		if _, err := os.Stat(filepath.Join(c.Seed(), f)); err != nil {
			return fmt.Errorf("seed manifest %s is missing: the demo applies the blog-era manifests from %s ; restore it with git checkout or pass --seed: %w", f, c.Seed(), err)
		}
	}
	return nil
}

// run parses the flags; outside the cluster's namespaces it builds the
// missing tools and re-runs the demo inside them, returning its exit code.
func run(ctx context.Context, args []string) (int, error) {
	// Clients log through controller-runtime; keep only its warnings.
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	var cfg Config
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 0, err
	}
	// Absolute paths, so that what the demo prints can be pasted anywhere.
	for _, p := range []*string{&cfg.RepoRoot, &cfg.SeedDir} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return 0, err
		}
		*p = abs
	}
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	if nodeparts.InNamespace() {
		return 0, (&demo{cfg: cfg, out: os.Stdout}).run(ctx)
	}
	// The namespace has no network: build first, with the module proxy and
	// npm at hand.
	if err := nodeenv.EnsureTools(ctx, cfg.RepoRoot, os.Stdout); err != nil {
		return 0, err
	}
	return nodeparts.Reexec()
}
