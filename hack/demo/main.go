// Command demo is `make demo`: the product's main job, end to end, on an
// embedded local control plane. It applies the blog-era seed manifests
// verbatim to a real kube-apiserver with the webhook registered, shows the
// pod that kube-controller-manager creates as the webhook injected it, runs
// that pod's sidecar as a real process, and gets tokens with nothing but
// the injected environment: azidentity in the app container, the real
// azcopy in the init container. Only Entra ID is a fake, on loopback. It
// tears everything down at the end or on Ctrl-C.
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

	"github.com/podidentity/injector/examples"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case err == nil:
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
	// RepoRoot is the repository, for manifests/, certs/ and hack/.
	RepoRoot string
	// SeedDir holds the seed manifests; empty means the repository's own
	// copy, examples/aad-pod-identity-blog.
	SeedDir string
	// BinDir holds pod-identity-webhook, pod-identity-sidecar and gettoken;
	// empty means RepoRoot/bin.
	BinDir string
	// KeepRunning leaves the environment up after the demo, until Ctrl-C.
	KeepRunning bool
}

// AddFlags registers the Config's flags.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.RepoRoot, "repo", ".", "the repository root")
	fs.StringVar(&c.SeedDir, "seed", "", "directory of the seed manifests (default <repo>/examples/aad-pod-identity-blog)")
	fs.StringVar(&c.BinDir, "bin", "", "directory of pod-identity-webhook, pod-identity-sidecar and gettoken (default <repo>/bin)")
	fs.BoolVar(&c.KeepRunning, "keep-running", false, "leave the environment up until Ctrl-C, to poke at it with kubectl")
}

// Seed is the seed directory the demo applies.
func (c *Config) Seed() string {
	if c.SeedDir != "" {
		return c.SeedDir
	}
	return examples.BlogPath(c.RepoRoot)
}

// Bin is the directory of the built binaries.
func (c *Config) Bin() string {
	if c.BinDir != "" {
		return c.BinDir
	}
	return filepath.Join(c.RepoRoot, "bin")
}

// Validate checks that the repository and every seed manifest are there,
// so that a missing file is named before minutes go into starting a
// control plane.
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

func run(ctx context.Context, args []string) error {
	// Clients log through controller-runtime; keep only its warnings.
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	var cfg Config
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Absolute paths, so that what the demo prints can be pasted anywhere.
	for _, p := range []*string{&cfg.RepoRoot, &cfg.SeedDir, &cfg.BinDir} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	return (&demo{cfg: cfg, out: os.Stdout}).run(ctx)
}
