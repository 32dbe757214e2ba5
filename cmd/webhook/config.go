package main

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
	"github.com/podidentity/injector/internal/version"
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

	// SidecarImage and SidecarPullPolicy are the token server's image.
	SidecarImage      string
	SidecarPullPolicy string
	// TokenPort is the sidecar's loopback port.
	TokenPort int
	// Sidecar resources.
	SidecarCPURequest, SidecarMemoryRequest, SidecarCPULimit, SidecarMemoryLimit string
	// NativeSidecar is auto, true or false; auto asks the API server's
	// version once at start (1.29 and later have native sidecars).
	NativeSidecar string

	// DefaultTenantID is used for identities without spec.tenantID.
	DefaultTenantID string
	// AuthorityHost is used for identities without spec.adEndpoint.
	AuthorityHost string
	// AllowedAuthorityHosts are the hosts an identity's spec.adEndpoint may
	// name, because the sidecar sends the identity's credentials there.
	// Empty means the public clouds plus AuthorityHost's host; see
	// allowedAuthorityHosts.
	AllowedAuthorityHosts string
	// DefaultTokenSource is the source of type 0 identities without the
	// token-source annotation.
	DefaultTokenSource string
	// RequireNamespaceOptIn, when false, injects every labelled pod.
	RequireNamespaceOptIn bool
	// LiveReadTimeout bounds the one API read on a cache miss.
	LiveReadTimeout time.Duration
	// LogLevel is the slog level: debug, info, warn or error.
	LogLevel string
}

// defaultConfig returns the defaults, which the flags override.
func defaultConfig() Config {
	return Config{
		Port:                  9443,
		MetricsAddr:           ":8443",
		MetricsSecure:         true,
		ProbeAddr:             ":8081",
		SidecarImage:          version.DefaultSidecarImage,
		SidecarPullPolicy:     string(corev1.PullIfNotPresent),
		TokenPort:             names.DefaultTokenPort,
		SidecarCPURequest:     "10m",
		SidecarMemoryRequest:  "10Mi",
		SidecarCPULimit:       "200m",
		SidecarMemoryLimit:    "64Mi",
		NativeSidecar:         "auto",
		DefaultTokenSource:    names.TokenSourceFederated,
		RequireNamespaceOptIn: true,
		LiveReadTimeout:       2 * time.Second,
		LogLevel:              "info",
	}
}

// AddFlags binds the configuration to fs.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig file; empty means in-cluster config")
	fs.StringVar(&c.CertDir, "cert-dir", c.CertDir, "directory with tls.crt and tls.key (reloaded on change)")
	fs.StringVar(&c.Host, "host", c.Host, "address the HTTPS admission endpoint binds to; empty means all")
	fs.IntVar(&c.Port, "port", c.Port, "port of the HTTPS admission endpoint")
	fs.StringVar(&c.MetricsAddr, "metrics-bind-address", c.MetricsAddr, "address of the Prometheus endpoint; 0 disables it")
	fs.BoolVar(&c.MetricsSecure, "metrics-secure", c.MetricsSecure, "serve metrics over HTTPS, only to callers allowed to get /metrics (see the pod-identity-injector-metrics-reader ClusterRole); false serves plain HTTP to anyone")
	fs.BoolVar(&c.EnableHTTP2, "enable-http2", c.EnableHTTP2, "allow HTTP/2 on the webhook and metrics servers (off because of CVE-2023-44487, HTTP/2 rapid reset)")
	fs.StringVar(&c.ProbeAddr, "health-probe-bind-address", c.ProbeAddr, "address of /healthz and /readyz")
	fs.StringVar(&c.SidecarImage, "sidecar-image", c.SidecarImage, "image of the token-server sidecar; the default is this release's")
	fs.StringVar(&c.SidecarPullPolicy, "sidecar-image-pull-policy", c.SidecarPullPolicy, "Always, IfNotPresent or Never")
	fs.IntVar(&c.TokenPort, "token-port", c.TokenPort, "loopback port of the sidecar; pods may override it with the "+names.TokenPortAnnotation+" annotation")
	fs.StringVar(&c.SidecarCPURequest, "sidecar-cpu-request", c.SidecarCPURequest, "CPU request of the sidecar")
	fs.StringVar(&c.SidecarMemoryRequest, "sidecar-memory-request", c.SidecarMemoryRequest, "memory request of the sidecar")
	fs.StringVar(&c.SidecarCPULimit, "sidecar-cpu-limit", c.SidecarCPULimit, "CPU limit of the sidecar; empty for none")
	fs.StringVar(&c.SidecarMemoryLimit, "sidecar-memory-limit", c.SidecarMemoryLimit, "memory limit of the sidecar; empty for none")
	fs.StringVar(&c.NativeSidecar, "native-sidecar", c.NativeSidecar, "inject a native sidecar: auto (by API server version), true or false")
	fs.StringVar(&c.DefaultTenantID, "default-tenant-id", c.DefaultTenantID, "Entra tenant of identities without spec.tenantID")
	fs.StringVar(&c.AuthorityHost, "authority-host", c.AuthorityHost, "Entra authority of identities without spec.adEndpoint; empty means the public cloud")
	fs.StringVar(&c.AllowedAuthorityHosts, "allowed-authority-hosts", c.AllowedAuthorityHosts,
		"comma-separated hosts (host, host:port or https URL) that spec.adEndpoint may name; the sidecar sends the identity's credentials there. "+
			"Default: "+strings.Join(sidecarconfig.PublicAuthorityHosts, ", ")+" and the host of --authority-host")
	fs.StringVar(&c.DefaultTokenSource, "default-token-source", c.DefaultTokenSource, "token source of type 0 identities: federated or imds")
	fs.BoolVar(&c.RequireNamespaceOptIn, "require-namespace-opt-in", c.RequireNamespaceOptIn, "inject only in namespaces annotated "+names.InjectAnnotation+"="+names.InjectEnabled)
	fs.DurationVar(&c.LiveReadTimeout, "live-read-timeout", c.LiveReadTimeout, "timeout of the one API read on a cache miss")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
}

// Validate reports every flag that is wrong, at once.
func (c *Config) Validate() error {
	var errs []error
	if c.SidecarImage == "" {
		errs = append(errs, errors.New("--sidecar-image is required"))
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d is not in 1-65535", c.Port))
	}
	if c.TokenPort < 1 || c.TokenPort > 65535 {
		errs = append(errs, fmt.Errorf("--token-port %d is not in 1-65535", c.TokenPort))
	}
	switch corev1.PullPolicy(c.SidecarPullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("--sidecar-image-pull-policy %q: want Always, IfNotPresent or Never", c.SidecarPullPolicy))
	}
	switch c.NativeSidecar {
	case "auto", "true", "false":
	default:
		errs = append(errs, fmt.Errorf("--native-sidecar %q: want auto, true or false", c.NativeSidecar))
	}
	switch c.DefaultTokenSource {
	case names.TokenSourceFederated, names.TokenSourceIMDS:
	default:
		errs = append(errs, fmt.Errorf("--default-token-source %q: want %s or %s", c.DefaultTokenSource, names.TokenSourceFederated, names.TokenSourceIMDS))
	}
	if c.AuthorityHost != "" {
		if _, err := sidecarconfig.AuthorityHost(c.AuthorityHost); err != nil {
			errs = append(errs, fmt.Errorf("--authority-host %q: want an https URL such as https://login.microsoftonline.com/", c.AuthorityHost))
		} else if err := sidecarconfig.CheckAuthority(c.AuthorityHost, c.allowedAuthorityHosts()); err != nil {
			errs = append(errs, fmt.Errorf("--authority-host %q is not on --allowed-authority-hosts; add its host there: %w", c.AuthorityHost, err))
		}
	}
	if c.AllowedAuthorityHosts != "" {
		for _, h := range c.allowedAuthorityHosts() {
			if _, err := sidecarconfig.AllowedHost(h); err != nil {
				errs = append(errs, fmt.Errorf("--allowed-authority-hosts: %w", err))
			}
		}
	}
	if c.LiveReadTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--live-read-timeout %s must be positive", c.LiveReadTimeout))
	}
	if _, err := c.resources(); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// resources parses the sidecar's requests and limits.
func (c *Config) resources() (corev1.ResourceRequirements, error) {
	var rr corev1.ResourceRequirements
	var errs []error
	set := func(list *corev1.ResourceList, name corev1.ResourceName, flagName, v string) {
		if v == "" {
			return
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: %w", flagName, v, err))
			return
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = q
	}
	set(&rr.Requests, corev1.ResourceCPU, "sidecar-cpu-request", c.SidecarCPURequest)
	set(&rr.Requests, corev1.ResourceMemory, "sidecar-memory-request", c.SidecarMemoryRequest)
	set(&rr.Limits, corev1.ResourceCPU, "sidecar-cpu-limit", c.SidecarCPULimit)
	set(&rr.Limits, corev1.ResourceMemory, "sidecar-memory-limit", c.SidecarMemoryLimit)
	return rr, errors.Join(errs...)
}

// allowedAuthorityHosts is the allow-list of authority hosts: the flag's
// entries, or by default the public clouds and the host of --authority-host.
func (c *Config) allowedAuthorityHosts() []string {
	if c.AllowedAuthorityHosts != "" {
		var out []string
		for _, h := range strings.Split(c.AllowedAuthorityHosts, ",") {
			out = append(out, strings.TrimSpace(h))
		}
		return out
	}
	out := slices.Clone(sidecarconfig.PublicAuthorityHosts)
	if host, err := sidecarconfig.AuthorityHost(c.AuthorityHost); err == nil && !slices.Contains(out, host) {
		out = append(out, host)
	}
	return out
}
