// Command benche2e measures what the webhook costs pod creation on a real
// control plane, and how long the apiserver waits for it.
//
//	go run ./hack/benche2e [-pods 500] [-workers 8] [-rounds 3] [-markdown]
//
// It starts e2e/framework/webhookenv (etcd, kube-apiserver and
// kube-controller-manager from `make tools`, the webhook binary from `make
// build` as a real HTTPS process), makes an opted-in namespace with an
// AzureIdentity and an AzureIdentityBinding, and then, in each round,
// creates the same labelled pods twice with a fixed number of concurrent
// clients: first with the MutatingWebhookConfiguration deleted, then with
// it registered. It reports pods/s for both, their ratio, the latency of the
// webhook from the apiserver's own
// apiserver_admission_webhook_admission_duration_seconds histogram (the
// delta over the webhook phases), and every admission error the apiserver
// counted. Everything listens on and talks to 127.0.0.1.
//
// Two further measures make the figures readable on a busy machine and
// say where the cost goes. The CPU time of each process over each phase
// (from /proc) gives the cost for a server side bound by its CPU, which
// other programs on the machine distort far less than pods/s. A third
// phase per round (-preinjected, on by default) creates, without the
// webhook, pods already shaped as the webhook leaves them, which splits
// the cost into that of the bigger pod and that of the admission call.
// A last phase per round (-paced-pods) creates pods with the webhook at a
// fixed rate well under saturation: a saturating phase keeps every core
// busy, so the latencies measured in it are mostly queueing for the CPU.
//
// With -node (`make bench-node`, as root) the phases run on the real
// one-node cluster of e2e/framework/nodeenv instead, with the webhook as
// manifests/' two-replica Deployment; see node.go.
//
// A run fails (exit 1) after printing its results if a pod could not be
// created or a created pod lacks the sidecar, since the throughput of a
// failing webhook means nothing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/podidentity/injector/e2e/framework/nodeparts"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benche2e:", err)
		os.Exit(1)
	}
}

// Config is benche2e's command line.
type Config struct {
	// RepoRoot holds manifests/ and certs/.
	RepoRoot string
	// WebhookBinary is what `make build` writes.
	WebhookBinary string
	// Pods is the number of pods created per phase.
	Pods int
	// Workers is the number of concurrent clients creating pods.
	Workers int
	// Rounds is how many times the pair of phases (without, then with the
	// webhook) runs; more rounds average out a busy machine.
	Rounds int
	// Warmup pods are created and deleted before the first round and not
	// measured, so that connections and the apiserver's caches are warm.
	Warmup int
	// QPS and Burst are the client's rate limit; high, so that client-side
	// throttling does not hide the server.
	QPS   float64
	Burst int
	// PhaseTimeout bounds one phase, and each wait between phases.
	PhaseTimeout time.Duration
	// WebhookLogLevel is the webhook's --log-level; at info it writes one
	// line per injected pod.
	WebhookLogLevel string
	// Reinvocation, when set, overrides the webhook configuration's
	// reinvocationPolicy (IfNeeded in manifests/), to price the second call
	// the apiserver makes after its own plugins change the injected pod.
	Reinvocation string
	// Preinjected adds a phase per round that creates, without the
	// webhook, pods already shaped as the webhook leaves them: it tells
	// the cost of the bigger pod from that of the admission call.
	Preinjected bool
	// PacedPods pods are created with the webhook at PacedRate pods/s
	// after each round's saturating phases; 0 skips this phase.
	PacedPods int
	PacedRate float64
	// Scale, when set, runs the scale mode instead (scale.go): increasing
	// counts of namespaces, each with an identity and a binding.
	Scale string
	// WebhookArgs are extra flags for the webhook, locally on its command
	// line and on the real node in the Deployment's args, e.g.
	// --warn-shared-service-account=false to price a feature.
	WebhookArgs []string
	// Node runs the phases on the real one-node cluster (node.go), with
	// the webhook as its Deployment; WebhookBinary and WebhookLogLevel
	// do not apply, since nodeenv builds the images.
	Node bool
	// Markdown also prints a section for BENCHMARKS.md.
	Markdown bool
	// Verbose prints the environment's start-up steps.
	Verbose bool
}

// DefaultConfig is the configuration with no flags given.
func DefaultConfig() Config {
	return Config{
		RepoRoot:        ".",
		WebhookBinary:   filepath.Join("bin", "pod-identity-webhook"),
		Pods:            500,
		Workers:         8,
		Rounds:          3,
		Warmup:          50,
		QPS:             1000,
		Burst:           1000,
		PhaseTimeout:    5 * time.Minute,
		WebhookLogLevel: "info",
		Preinjected:     true,
		PacedPods:       200,
		PacedRate:       20,
	}
}

// AddFlags binds the fields to fs.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.RepoRoot, "repo", c.RepoRoot, "repository root (manifests/, certs/)")
	fs.StringVar(&c.WebhookBinary, "webhook", c.WebhookBinary, "webhook binary (make build)")
	fs.IntVar(&c.Pods, "pods", c.Pods, "pods created per phase")
	fs.IntVar(&c.Workers, "workers", c.Workers, "concurrent clients creating pods")
	fs.IntVar(&c.Rounds, "rounds", c.Rounds, "rounds of (without webhook, with webhook)")
	fs.IntVar(&c.Warmup, "warmup", c.Warmup, "unmeasured pods created before the first round")
	fs.Float64Var(&c.QPS, "qps", c.QPS, "client QPS limit")
	fs.IntVar(&c.Burst, "burst", c.Burst, "client burst limit")
	fs.DurationVar(&c.PhaseTimeout, "phase-timeout", c.PhaseTimeout, "bound on one phase and on each wait")
	fs.StringVar(&c.WebhookLogLevel, "webhook-log-level", c.WebhookLogLevel, "the webhook's --log-level: debug, info, warn or error")
	fs.StringVar(&c.Reinvocation, "reinvocation", c.Reinvocation, "override the webhook's reinvocationPolicy: IfNeeded or Never (empty: as manifests/)")
	fs.BoolVar(&c.Preinjected, "preinjected", c.Preinjected, "add a phase of pre-injected pods without the webhook, to split the cost")
	fs.IntVar(&c.PacedPods, "paced-pods", c.PacedPods, "pods created with the webhook at -paced-rate each round, for unsaturated latencies (0: none)")
	fs.Float64Var(&c.PacedRate, "paced-rate", c.PacedRate, "pods/s of the paced phase")
	fs.StringVar(&c.Scale, "scale", c.Scale, "scale mode: comma-separated increasing namespace counts, e.g. 1,1000,5000 (each with an identity and a binding); reports webhook RSS, admission latency and ready-after-restart per count")
	fs.Var((*stringList)(&c.WebhookArgs), "webhook-arg", "an extra flag for the webhook, e.g. --warn-shared-service-account=false (repeatable; on the real node added to the Deployment's args)")
	fs.BoolVar(&c.Node, "node", c.Node, "run on the real one-node cluster (e2e/framework/nodeenv; needs root), the webhook as manifests/' Deployment, pods held by a scheduling gate")
	fs.BoolVar(&c.Markdown, "markdown", c.Markdown, "also print a section for BENCHMARKS.md")
	fs.BoolVar(&c.Verbose, "v", c.Verbose, "print the environment's start-up steps")
}

// Validate checks the bounds that keep a run small, local and finite.
func (c *Config) Validate() error {
	var errs []error
	if c.Pods < 1 || c.Pods > 10_000 {
		errs = append(errs, fmt.Errorf("-pods %d is not in 1-10000", c.Pods))
	}
	if c.Workers < 1 || c.Workers > 64 {
		errs = append(errs, fmt.Errorf("-workers %d is not in 1-64", c.Workers))
	}
	if c.Rounds < 1 || c.Rounds > 20 {
		errs = append(errs, fmt.Errorf("-rounds %d is not in 1-20", c.Rounds))
	}
	if c.Warmup < 0 || c.Warmup > 10_000 {
		errs = append(errs, fmt.Errorf("-warmup %d is not in 0-10000", c.Warmup))
	}
	if c.PacedPods < 0 || c.PacedPods > 10_000 {
		errs = append(errs, fmt.Errorf("-paced-pods %d is not in 0-10000", c.PacedPods))
	}
	if c.PacedRate <= 0 || c.PacedRate > 1000 {
		errs = append(errs, fmt.Errorf("-paced-rate %v is not in (0, 1000]", c.PacedRate))
	}
	if c.PacedPods > 0 && c.PacedRate > 0 && float64(c.PacedPods)/c.PacedRate > c.PhaseTimeout.Seconds() {
		errs = append(errs, fmt.Errorf("-paced-pods %d at -paced-rate %v take longer than -phase-timeout %s", c.PacedPods, c.PacedRate, c.PhaseTimeout))
	}
	if c.QPS <= 0 || c.Burst < 1 {
		errs = append(errs, fmt.Errorf("-qps %v and -burst %d must be positive", c.QPS, c.Burst))
	}
	if c.PhaseTimeout <= 0 || c.PhaseTimeout > 30*time.Minute {
		errs = append(errs, fmt.Errorf("-phase-timeout %s is not in (0, 30m]", c.PhaseTimeout))
	}
	if c.Scale != "" {
		if _, err := scaleSteps(c.Scale); err != nil {
			errs = append(errs, err)
		}
	}
	switch c.Reinvocation {
	case "", "IfNeeded", "Never":
	default:
		errs = append(errs, fmt.Errorf("-reinvocation %q is not IfNeeded or Never", c.Reinvocation))
	}
	switch c.WebhookLogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("-webhook-log-level %q is not debug, info, warn or error", c.WebhookLogLevel))
	}
	if _, err := os.Stat(filepath.Join(c.RepoRoot, "manifests", "kustomization.yaml")); err != nil {
		errs = append(errs, fmt.Errorf("-repo %s has no manifests/kustomization.yaml; run from the repository root or pass -repo: %w", c.RepoRoot, err))
	}
	for _, a := range c.WebhookArgs {
		if !strings.HasPrefix(a, "--") || strings.ContainsAny(a, " \t\n") {
			errs = append(errs, fmt.Errorf("-webhook-arg %q is not one --flag=value", a))
		}
	}
	if c.Node && c.Scale != "" {
		errs = append(errs, errors.New("-node and -scale do not combine: the scale mode runs on the local control plane"))
	}
	for flagName, path := range map[string]string{"-webhook": c.WebhookBinary} {
		if c.Node {
			break // nodeenv builds its own
		}
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w (run make build)", flagName, path, err))
		}
	}
	return errors.Join(errs...)
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, " ") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// parseConfig is the flag handling of run, separate so that tests use it.
func parseConfig(args []string, stderr io.Writer) (Config, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("benche2e", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q; benche2e takes only flags", fs.Args())
	}
	return cfg, cfg.Validate()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	if cfg.Scale != "" {
		return runScale(ctx, cfg, stdout, stderr)
	}
	if cfg.Node && !nodeparts.InNamespace() {
		return reexecInNode(ctx, cfg, stderr)
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
