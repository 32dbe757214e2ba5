package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/podidentity/injector/internal/sidecarconfig"
	"github.com/podidentity/injector/internal/tokenserver"
)

// Config is the sidecar's command line. The identities themselves come from
// the sidecar config document (names.EnvSidecarConfig), not from flags.
type Config struct {
	// ConfigFile, when set, is read instead of the environment variable.
	ConfigFile string
	// Port overrides the config document's port; for probe without a
	// config, and for local runs.
	Port int
	// AuthorityHost is the Entra endpoint for identities whose config names
	// none (the AzureIdentity had no adEndpoint).
	AuthorityHost string
	// CAFile is a PEM bundle trusted for upstream TLS in addition to the
	// system roots, for a private cloud's or a test's Entra endpoint.
	CAFile string
	// IMDSEndpoint replaces http://169.254.169.254 for the imds source; for
	// tests and local runs against a fake IMDS.
	IMDSEndpoint string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// ShutdownTimeout bounds the graceful shutdown after SIGTERM.
	ShutdownTimeout time.Duration
	// ProbeTimeout bounds the probe's health request.
	ProbeTimeout time.Duration
	// MaxResourcesPerIdentity bounds the token cache.
	MaxResourcesPerIdentity int
	// MaxConnections caps the server's open connections.
	MaxConnections int
	// UpstreamRate and UpstreamBurst bound each identity's upstream calls.
	UpstreamRate  float64
	UpstreamBurst int
}

// DefaultConfig is the configuration with no flags given.
func DefaultConfig() Config {
	return Config{
		LogLevel:        "info",
		ShutdownTimeout: 5 * time.Second,
		// Under the kubelet's 1s exec timeout, so that a slow server fails
		// the probe with our message rather than a killed process.
		ProbeTimeout:            900 * time.Millisecond,
		MaxResourcesPerIdentity: 64,
		MaxConnections:          tokenserver.DefaultMaxConnections,
		UpstreamRate:            0.5,
		UpstreamBurst:           30,
	}
}

// AddFlags binds the fields to fs, with the current values as defaults.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ConfigFile, "config-file", c.ConfigFile, "read the sidecar config document from this file instead of $POD_IDENTITY_SIDECAR_CONFIG")
	fs.IntVar(&c.Port, "port", c.Port, "loopback port, overriding the config document's (0: use the document's)")
	fs.StringVar(&c.AuthorityHost, "authority-host", c.AuthorityHost, "Entra ID authority host for identities without one (default: the public cloud, "+sidecarconfig.DefaultAuthorityHost+"); it must be on the config's allowedAuthorityHosts")
	fs.StringVar(&c.CAFile, "ca-file", c.CAFile, "PEM file of extra CA certificates trusted for upstream TLS, in addition to the system roots")
	fs.StringVar(&c.IMDSEndpoint, "imds-endpoint", c.IMDSEndpoint, "send the imds source's requests to this http(s) URL instead of 169.254.169.254 (tests and local runs)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long to let requests in flight finish after SIGTERM")
	fs.DurationVar(&c.ProbeTimeout, "probe-timeout", c.ProbeTimeout, "timeout of the probe subcommand's health request")
	fs.IntVar(&c.MaxResourcesPerIdentity, "max-resources-per-identity", c.MaxResourcesPerIdentity, "distinct resources whose tokens are cached per identity")
	fs.Float64Var(&c.UpstreamRate, "upstream-rate", c.UpstreamRate, "upstream calls per second per identity once --upstream-burst is spent")
	fs.IntVar(&c.UpstreamBurst, "upstream-burst", c.UpstreamBurst, "upstream calls per identity at once")
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "open connections the server keeps; past it the one idle longest is closed")
}

// Validate checks the values that flags alone can get wrong.
func (c *Config) Validate() error {
	var errs []error
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d is not in 0-65535", c.Port))
	}
	if _, err := c.level(); err != nil {
		errs = append(errs, err)
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout %s must be positive", c.ShutdownTimeout))
	}
	if c.ProbeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--probe-timeout %s must be positive", c.ProbeTimeout))
	}
	if c.MaxResourcesPerIdentity < 1 {
		errs = append(errs, fmt.Errorf("--max-resources-per-identity %d must be at least 1", c.MaxResourcesPerIdentity))
	}
	if c.UpstreamRate <= 0 {
		errs = append(errs, fmt.Errorf("--upstream-rate %g must be positive", c.UpstreamRate))
	}
	if c.UpstreamBurst < 1 {
		errs = append(errs, fmt.Errorf("--upstream-burst %d must be at least 1", c.UpstreamBurst))
	}
	if c.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("--max-connections %d must be at least 1", c.MaxConnections))
	}
	if c.AuthorityHost != "" {
		if u, err := url.Parse(c.AuthorityHost); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("--authority-host %q must be an https URL such as https://login.microsoftonline.com/", c.AuthorityHost))
		}
	}
	if c.IMDSEndpoint != "" {
		if u, err := url.Parse(c.IMDSEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--imds-endpoint %q must be an http(s) URL such as http://127.0.0.1:8080", c.IMDSEndpoint))
		}
	}
	return errors.Join(errs...)
}

func (c *Config) level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("--log-level %q is not debug, info, warn or error", c.LogLevel)
	}
	return l, nil
}
