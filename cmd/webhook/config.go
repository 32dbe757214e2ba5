package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/podidentity/injector/internal/decision"
)

// Config is everything the webhook binary can be told, with defaults.
type Config struct {
	// Kubeconfig is a kubeconfig file; empty means in-cluster.
	Kubeconfig string
	// CertDir holds tls.crt and tls.key, as cert-manager's Secret mounts
	// them. Rotated files are reloaded without a restart.
	CertDir string
	// Host and Port are where the HTTPS admission endpoint listens.
	Host string
	Port int
	// MetricsAddr and ProbeAddr are the Prometheus and health endpoints.
	MetricsAddr string
	ProbeAddr   string
	// MetricsSecure serves metrics over HTTPS to callers whose token may
	// get /metrics (TokenReview and SubjectAccessReview); false serves
	// plain HTTP to anyone, for local runs on 127.0.0.1 only.
	MetricsSecure bool
	// EnableHTTP2 turns HTTP/2 on for the webhook and metrics servers. It
	// is off because of HTTP/2 rapid reset (CVE-2023-44487), and the API
	// server talks HTTP/1.1 to webhooks just as well.
	EnableHTTP2 bool

	// Flags shape every decision: the sidecar and the identity defaults.
	// The kubectl plugin binds the same flags.
	decision.Flags

	// LiveReadTimeout bounds the one API read on a cache miss.
	LiveReadTimeout time.Duration
	// LiveReadsPerSecond and LiveReadBurst bound the API reads of cache
	// misses: whoever reaches the admission endpoint can name objects that
	// no cache holds.
	LiveReadsPerSecond float64
	LiveReadBurst      int
	// ClientCAFile, if set, is the CA bundle that the API server's client
	// certificate must chain to; without one the admission endpoint serves
	// anyone who reaches it.
	ClientCAFile string
	// LogLevel is the slog level: debug, info, warn or error.
	LogLevel string
}

// defaultConfig returns the defaults, which the flags override.
func defaultConfig() Config {
	return Config{
		Port:               9443,
		MetricsAddr:        ":8443",
		MetricsSecure:      true,
		ProbeAddr:          ":8081",
		Flags:              decision.DefaultFlags(),
		LiveReadTimeout:    2 * time.Second,
		LiveReadsPerSecond: 5,
		LiveReadBurst:      20,
		LogLevel:           "info",
	}
}

// AddFlags binds the configuration to fs.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig file; empty means in-cluster config")
	fs.StringVar(&c.CertDir, "cert-dir", c.CertDir, "directory with tls.crt and tls.key (reloaded on change)")
	fs.StringVar(&c.Host, "host", c.Host, "address the HTTPS admission endpoint binds to; empty means all")
	fs.IntVar(&c.Port, "port", c.Port, "port of the HTTPS admission endpoint")
	fs.StringVar(&c.MetricsAddr, "metrics-bind-address", c.MetricsAddr, "address of the Prometheus endpoint; 0 disables it")
	fs.BoolVar(&c.MetricsSecure, "metrics-secure", c.MetricsSecure, "serve metrics over HTTPS, only to callers allowed to get /metrics (see the pod-identity-injector-metrics-reader ClusterRole); false serves plain HTTP to anyone")
	fs.BoolVar(&c.EnableHTTP2, "enable-http2", c.EnableHTTP2, "allow HTTP/2 on the webhook and metrics servers (off because of CVE-2023-44487, HTTP/2 rapid reset)")
	fs.StringVar(&c.ProbeAddr, "health-probe-bind-address", c.ProbeAddr, "address of /healthz and /readyz")
	c.Flags.AddFlags(fs)
	fs.DurationVar(&c.LiveReadTimeout, "live-read-timeout", c.LiveReadTimeout, "timeout of the one API read on a cache miss")
	fs.Float64Var(&c.LiveReadsPerSecond, "live-reads-per-second", c.LiveReadsPerSecond, "API reads of cache misses allowed per second; past it (and the burst) a pod whose objects are not cached yet is denied with a message to retry")
	fs.IntVar(&c.LiveReadBurst, "live-read-burst", c.LiveReadBurst, "API reads of cache misses allowed at once, above --live-reads-per-second")
	fs.StringVar(&c.ClientCAFile, "client-ca-file", c.ClientCAFile, "CA bundle (PEM) that the API server's client certificate must chain to; empty serves any caller (reloaded on change)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
}

// Validate reports every flag that is wrong, at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d is not in 1-65535", c.Port))
	}
	if err := c.Flags.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.LiveReadTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--live-read-timeout %s must be positive", c.LiveReadTimeout))
	}
	if c.LiveReadsPerSecond <= 0 {
		errs = append(errs, fmt.Errorf("--live-reads-per-second %g must be positive", c.LiveReadsPerSecond))
	}
	if c.LiveReadBurst < 1 {
		errs = append(errs, fmt.Errorf("--live-read-burst %d must be at least 1", c.LiveReadBurst))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// clientRates are client-go's client-side throttle for the webhook's API
// client. The live reads of cache misses are bounded by their own limiter
// (--live-reads-per-second, --live-read-burst); client-go's default
// throttle (5 QPS, burst 10) would be a second, tighter bound, in which a
// burst that the limiter admitted waits past --live-read-timeout and fails
// as an error instead of being served or denied with a message. So the
// throttle leaves the limiter's whole budget, and controller-runtime's
// usual 20 QPS, burst 30, for everything else the client does.
func (c *Config) clientRates() (qps float32, burst int) {
	return 20 + float32(c.LiveReadsPerSecond), 30 + c.LiveReadBurst
}
