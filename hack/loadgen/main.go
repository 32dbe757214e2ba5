// Command loadgen measures the pod-identity sidecar over loopback HTTP.
//
//	loadgen load  -url URL [-n N] [-duration D] [-c C] [-rate R]
//	loadgen bench -sidecar bin/pod-identity-sidecar
//
// load sends token requests to a running sidecar: closed-loop with C
// keep-alive workers, or at a fixed rate R with latency measured from each
// request's scheduled start (so a slow server is not hidden by the client
// waiting for it). It only talks to 127.0.0.1, localhost or ::1, and stops
// after N requests or the duration, whichever comes first.
//
// bench does the whole BENCHMARKS.md run against the real binary: it starts
// a fake Entra ID (test/fakeaad), starts the sidecar, and reports start
// to probe success, idle RSS, cached throughput, RSS after the requests and
// latency at a fixed rate.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/fakeaad"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// Config is loadgen's command line.
type Config struct {
	// URL is the full token URL for load.
	URL string
	// IdentityHeader is sent as X-IDENTITY-HEADER; default $IDENTITY_HEADER.
	IdentityHeader string
	// Requests bounds the run; Duration too.
	Requests int
	Duration time.Duration
	// Workers is the number of concurrent keep-alive connections.
	Workers int
	// Rate, when positive, sends at this many requests per second.
	Rate int
	// Sidecar is the binary bench starts.
	Sidecar string
	// RateDuration is how long bench's fixed-rate phase runs.
	RateDuration time.Duration
	// Settle is how long bench leaves the sidecar idle after the load
	// before it reads the RSS once more.
	Settle time.Duration
	// Repeats is how many times bench measures start-up.
	Repeats int
	// LogLevel is passed to the sidecar by bench; "warn" drops the
	// per-request lines, to show what they cost.
	LogLevel string
	// Identities, when set, keeps only these identities of the fake pod
	// (comma-separated fakeaad names), so that bench can show what a pod
	// with one source pays; the first is the default identity.
	Identities string
	// SidecarEnv is extra NAME=value environment for the sidecar in bench,
	// such as GOMEMLIMIT or GOGC, to compare runtime settings.
	SidecarEnv string
}

// DefaultConfig is the configuration with no flags given.
func DefaultConfig() Config {
	return Config{
		IdentityHeader: os.Getenv(names.EnvIdentityHeader),
		Requests:       100000,
		Duration:       time.Minute,
		Workers:        4,
		Sidecar:        "bin/pod-identity-sidecar",
		RateDuration:   10 * time.Second,
		Settle:         12 * time.Second,
		Repeats:        5,
		LogLevel:       "info",
	}
}

// AddFlags binds the fields to fs.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "url", c.URL, "token URL (load), e.g. http://127.0.0.1:8181/msi/token?api-version=2019-08-01&resource=https://vault.azure.net")
	fs.StringVar(&c.IdentityHeader, "identity-header", c.IdentityHeader, "X-IDENTITY-HEADER value (default $IDENTITY_HEADER)")
	fs.IntVar(&c.Requests, "n", c.Requests, "stop after this many requests")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "stop after this long")
	fs.IntVar(&c.Workers, "c", c.Workers, "concurrent keep-alive workers")
	fs.IntVar(&c.Rate, "rate", c.Rate, "fixed rate in requests per second (0: as fast as possible)")
	fs.StringVar(&c.Sidecar, "sidecar", c.Sidecar, "sidecar binary (bench)")
	fs.DurationVar(&c.RateDuration, "rate-duration", c.RateDuration, "length of bench's fixed-rate phase")
	fs.DurationVar(&c.Settle, "settle", c.Settle, "how long bench leaves the sidecar idle after the load before reading its RSS again (0: not read)")
	fs.IntVar(&c.Repeats, "repeats", c.Repeats, "start-up measurements in bench")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "the sidecar's --log-level in bench")
	fs.StringVar(&c.Identities, "identities", c.Identities, "bench: comma-separated identities of the fake pod to configure (default all: "+strings.Join(fakeaad.PodIdentities, ",")+")")
	fs.StringVar(&c.SidecarEnv, "sidecar-env", c.SidecarEnv, "bench: comma-separated NAME=value added to the sidecar's environment, e.g. GOMEMLIMIT=6MiB,GOGC=50")
}

// Validate checks the bounds that keep a run small and local.
func (c *Config) Validate(sub string) error {
	var errs []error
	if c.Requests < 1 || c.Requests > 10_000_000 {
		errs = append(errs, fmt.Errorf("-n %d is not in 1-10000000", c.Requests))
	}
	if c.Duration <= 0 || c.Duration > 10*time.Minute {
		errs = append(errs, fmt.Errorf("-duration %s is not in (0, 10m]", c.Duration))
	}
	if c.Workers < 1 || c.Workers > 1024 {
		errs = append(errs, fmt.Errorf("-c %d is not in 1-1024", c.Workers))
	}
	if c.Rate < 0 || c.Rate > 1_000_000 {
		errs = append(errs, fmt.Errorf("-rate %d is not in 0-1000000", c.Rate))
	}
	if c.Repeats < 1 || c.Repeats > 100 {
		errs = append(errs, fmt.Errorf("-repeats %d is not in 1-100", c.Repeats))
	}
	for _, n := range c.identities() {
		if !slices.Contains(fakeaad.PodIdentities, n) {
			errs = append(errs, fmt.Errorf("-identities: %q is not one of %s", n, strings.Join(fakeaad.PodIdentities, ",")))
		}
	}
	for _, kv := range c.sidecarEnv() {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			errs = append(errs, fmt.Errorf("-sidecar-env: %q is not NAME=value", kv))
		}
	}
	if sub == "load" {
		if err := checkLoopback(c.URL); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Config) identities() []string { return splitList(c.Identities) }
func (c *Config) sidecarEnv() []string { return splitList(c.SidecarEnv) }

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// checkLoopback refuses any target that is not this machine's loopback.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return fmt.Errorf("-url %q must be an http URL", raw)
	}
	switch u.Hostname() {
	case "127.0.0.1", "localhost", "::1":
		return nil
	}
	return fmt.Errorf("-url %q: loadgen only sends to 127.0.0.1, localhost or ::1", raw)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "load" && args[0] != "bench") {
		return errors.New("usage: loadgen load|bench [flags]")
	}
	sub := args[0]
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("loadgen "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.AddFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := cfg.Validate(sub); err != nil {
		return err
	}
	if sub == "bench" {
		return bench(ctx, cfg, stdout)
	}
	res, err := load(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res)
	return nil
}

// Result is the outcome of one load run.
type Result struct {
	Requests, Errors int
	Elapsed          time.Duration
	// Latencies count from each request's due time (in fixed-rate mode)
	// or from its send; Service always from its send. Both sorted.
	Latencies  []time.Duration
	Service    []time.Duration
	FirstError string
}

// Rate is completed requests per second.
func (r Result) Rate() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// Quantile returns the q-quantile of the latencies.
func (r Result) Quantile(q float64) time.Duration { return quantile(r.Latencies, q) }

// ServiceQuantile returns the q-quantile of the send-to-response times.
func (r Result) ServiceQuantile(q float64) time.Duration { return quantile(r.Service, q) }

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

// String is the one-line summary loadgen load prints.
func (r Result) String() string {
	s := fmt.Sprintf("requests %d, errors %d, elapsed %s, %.0f req/s, p50 %s, p90 %s, p99 %s, max %s",
		r.Requests, r.Errors, r.Elapsed.Round(time.Millisecond), r.Rate(),
		r.Quantile(0.50), r.Quantile(0.90), r.Quantile(0.99), r.Quantile(1))
	s += fmt.Sprintf(" (from send: p50 %s, p99 %s)", r.ServiceQuantile(0.50), r.ServiceQuantile(0.99))
	if r.FirstError != "" {
		s += ", first error: " + r.FirstError
	}
	return s
}

// load runs one bounded load test against cfg.URL.
func load(ctx context.Context, cfg Config) (Result, error) {
	tr := &http.Transport{
		MaxIdleConns: cfg.Workers, MaxIdleConnsPerHost: cfg.Workers, MaxConnsPerHost: cfg.Workers,
		DisableCompression: true, Proxy: nil,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	var next atomic.Int64
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Second / time.Duration(cfg.Rate)
	}
	lat := make([][]time.Duration, cfg.Workers)
	svc := make([][]time.Duration, cfg.Workers)
	errCount := make([]int, cfg.Workers)
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL, nil)
			if err != nil {
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			req.Header.Set(names.HeaderIdentity, cfg.IdentityHeader)
			req.Header.Set(names.HeaderMetadata, "true")
			for {
				i := next.Add(1) - 1
				if i >= int64(cfg.Requests) || ctx.Err() != nil {
					return
				}
				// In fixed-rate mode a request's latency counts from when it
				// was due, not from when a worker got to it.
				var due time.Time
				if interval > 0 {
					due = start.Add(time.Duration(i) * interval)
					if d := time.Until(due); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
							return
						}
					}
				}
				sent := time.Now()
				if interval == 0 {
					due = sent
				}
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					errCount[w]++
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				done := time.Now()
				lat[w] = append(lat[w], done.Sub(due))
				svc[w] = append(svc[w], done.Sub(sent))
			}
		})
	}
	wg.Wait()
	res := Result{Elapsed: time.Since(start)}
	for w := range cfg.Workers {
		res.Latencies = append(res.Latencies, lat[w]...)
		res.Service = append(res.Service, svc[w]...)
		res.Errors += errCount[w]
	}
	slices.Sort(res.Latencies)
	slices.Sort(res.Service)
	res.Requests = len(res.Latencies) + res.Errors
	if s, ok := firstErr.Load().(string); ok {
		res.FirstError = s
	}
	if res.Requests == 0 {
		return res, fmt.Errorf("no request completed: %s", strings.TrimSpace(res.FirstError))
	}
	return res, nil
}
