package decision

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"

	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
	buildinfo "github.com/podidentity/injector/internal/version"
)

// Flags are the operator's choices that shape every decision: the sidecar
// that is injected and the defaults of identities. The webhook binary and
// the kubectl plugin bind the same flags, on a pflag.FlagSet beside their
// own (and, in the plugin, kubectl's), and build their Planner with
// NewPlanner, so that the plugin explains a pod with exactly the settings
// the webhook runs with.
type Flags struct {
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
	// TokenAudience and TokenExpiration are the projected service account
	// token's defaults, which pods may override by annotation.
	TokenAudience   string
	TokenExpiration int64

	// DefaultTenantID is used for identities without spec.tenantID.
	DefaultTenantID string
	// AuthorityHost is used for identities without spec.adEndpoint.
	AuthorityHost string
	// AllowedAuthorityHosts are the hosts an identity's spec.adEndpoint may
	// name, because the sidecar sends the identity's credentials there.
	// Empty means the public clouds plus AuthorityHost's host; see
	// AllowedHosts.
	AllowedAuthorityHosts string
	// DefaultTokenSource is the source of type 0 identities without the
	// token-source annotation.
	DefaultTokenSource string
	// RequireNamespaceOptIn, when false, injects every labelled pod.
	RequireNamespaceOptIn bool
	// AADPodIdentityCrossNamespace is the aad-pod-identity compatibility
	// mode (Planner.CrossNamespace): a pod's selector matches bindings of
	// every namespace, not only of its own.
	AADPodIdentityCrossNamespace bool
	// WarnSharedServiceAccount warns when a pod's selector differs from
	// that of other labelled pods of its service account (Peers); the
	// webhook then caches labelled pods, stripped to what it compares.
	WarnSharedServiceAccount bool
}

// CrossNamespaceFlag is the name of the flag of the aad-pod-identity
// compatibility mode, which messages name. It says whose behaviour it
// brings back: resolving across namespaces is no feature of this webhook,
// only a way to switch an estate over before its objects are copied into
// each namespace (docs/migration.md).
const CrossNamespaceFlag = "aad-pod-identity-cross-namespace"

// DefaultFlags are the defaults, which the flags override.
func DefaultFlags() Flags {
	return Flags{
		SidecarImage:          buildinfo.DefaultSidecarImage,
		SidecarPullPolicy:     string(corev1.PullIfNotPresent),
		TokenPort:             names.DefaultTokenPort,
		SidecarCPURequest:     "10m",
		SidecarMemoryRequest:  "10Mi",
		SidecarCPULimit:       "200m",
		SidecarMemoryLimit:    "64Mi",
		NativeSidecar:         "auto",
		TokenAudience:         names.TokenAudience,
		TokenExpiration:       names.TokenExpirationSeconds,
		DefaultTokenSource:    names.TokenSourceFederated,
		RequireNamespaceOptIn: true,

		WarnSharedServiceAccount: true,
	}
}

// AddFlags binds the flags to fs.
func (c *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.SidecarImage, "sidecar-image", c.SidecarImage, "image of the token-server sidecar; the default is this release's")
	fs.StringVar(&c.SidecarPullPolicy, "sidecar-image-pull-policy", c.SidecarPullPolicy, "Always, IfNotPresent or Never")
	fs.IntVar(&c.TokenPort, "token-port", c.TokenPort, "loopback port of the sidecar; pods may override it with the "+names.TokenPortAnnotation+" annotation")
	fs.StringVar(&c.SidecarCPURequest, "sidecar-cpu-request", c.SidecarCPURequest, "CPU request of the sidecar")
	fs.StringVar(&c.SidecarMemoryRequest, "sidecar-memory-request", c.SidecarMemoryRequest, "memory request of the sidecar")
	fs.StringVar(&c.SidecarCPULimit, "sidecar-cpu-limit", c.SidecarCPULimit, "CPU limit of the sidecar; empty for none")
	fs.StringVar(&c.SidecarMemoryLimit, "sidecar-memory-limit", c.SidecarMemoryLimit, "memory limit of the sidecar; empty for none")
	fs.StringVar(&c.NativeSidecar, "native-sidecar", c.NativeSidecar, "inject a native sidecar: auto (by API server version), true or false")
	fs.StringVar(&c.TokenAudience, "token-audience", c.TokenAudience, "audience of the projected service account token, as the identities' federated credentials name it; pods may override it with the "+names.TokenAudienceAnnotation+" annotation")
	fs.Int64Var(&c.TokenExpiration, "token-expiration-seconds", c.TokenExpiration, fmt.Sprintf("lifetime of the projected service account token, %d-%d; pods may override it with the %s annotation", names.MinTokenExpirationSeconds, names.MaxTokenExpirationSeconds, names.TokenExpirationAnnotation))
	fs.StringVar(&c.DefaultTenantID, "default-tenant-id", c.DefaultTenantID, "Entra tenant of identities without spec.tenantID")
	fs.StringVar(&c.AuthorityHost, "authority-host", c.AuthorityHost, "Entra authority of identities without spec.adEndpoint; empty means the public cloud")
	fs.StringVar(&c.AllowedAuthorityHosts, "allowed-authority-hosts", c.AllowedAuthorityHosts,
		"comma-separated hosts (host, host:port or https URL) that spec.adEndpoint may name; the sidecar sends the identity's credentials there. "+
			"Default: "+strings.Join(sidecarconfig.PublicAuthorityHosts, ", ")+" and the host of --authority-host")
	fs.StringVar(&c.DefaultTokenSource, "default-token-source", c.DefaultTokenSource, "token source of type 0 identities: federated or imds")
	fs.BoolVar(&c.RequireNamespaceOptIn, "require-namespace-opt-in", c.RequireNamespaceOptIn, "inject only in namespaces annotated "+names.InjectAnnotation+"="+names.InjectEnabled)
	fs.BoolVar(&c.AADPodIdentityCrossNamespace, CrossNamespaceFlag, c.AADPodIdentityCrossNamespace,
		"resolve as aad-pod-identity did by default: a pod's "+names.BindingLabel+" selector matches AzureIdentityBindings of every namespace, each binding's AzureIdentity is looked up in the binding's namespace, "+
			"and identities annotated "+names.BehaviorAnnotation+"="+names.BehaviorNamespaced+" serve only their own namespace; every pod resolved through another namespace's binding gets a warning (docs/security.md)")
	fs.BoolVar(&c.WarnSharedServiceAccount, "warn-shared-service-account", c.WarnSharedServiceAccount,
		"warn when a pod's "+names.BindingLabel+" selector differs from that of other labelled pods of its service account (the webhook then needs to list and watch pods)")
}

// Validate reports every flag that is wrong, at once.
func (c *Flags) Validate() error {
	var errs []error
	if c.SidecarImage == "" {
		errs = append(errs, errors.New("--sidecar-image is required"))
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
		} else if err := sidecarconfig.CheckAuthority(c.AuthorityHost, c.AllowedHosts()); err != nil {
			errs = append(errs, fmt.Errorf("--authority-host %q is not on --allowed-authority-hosts; add its host there: %w", c.AuthorityHost, err))
		}
	}
	if c.AllowedAuthorityHosts != "" {
		for _, h := range c.AllowedHosts() {
			if _, err := sidecarconfig.AllowedHost(h); err != nil {
				errs = append(errs, fmt.Errorf("--allowed-authority-hosts: %w", err))
			}
		}
	}
	if _, err := c.Resources(); err != nil {
		errs = append(errs, err)
	} else if len(errs) == 0 {
		// What only the whole inject.Config can check: requests within
		// limits, the token's audience and lifetime.
		if _, err := c.InjectConfig(true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Resources parses the sidecar's requests and limits.
func (c *Flags) Resources() (corev1.ResourceRequirements, error) {
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

// InjectConfig is the inject.Config these flags choose. native is
// NativeSidecar resolved: with "auto", the caller asks the API server.
func (c *Flags) InjectConfig(native bool) (inject.Config, error) {
	rr, err := c.Resources()
	if err != nil {
		return inject.Config{}, err
	}
	cfg := inject.Config{
		SidecarImage:    c.SidecarImage,
		ImagePullPolicy: corev1.PullPolicy(c.SidecarPullPolicy),
		Port:            c.TokenPort,
		Resources:       rr,
		NativeSidecar:   native,
		TokenAudience:   c.TokenAudience,
		// The sidecar checks every authority against the same list.
		AllowedAuthorityHosts: c.AllowedHosts(),
	}
	cfg.TokenExpirationSeconds = c.TokenExpiration
	return cfg, cfg.Validate()
}

// NewPlanner is the Planner these flags choose, reading through lookup.
// native is NativeSidecar resolved; peers is used only when the
// shared-service-account warning is on. Both binaries build their Planner
// here, so that no setting is copied by hand.
func (c *Flags) NewPlanner(lookup Lookup, peers Peers, native bool) (*Planner, error) {
	injectCfg, err := c.InjectConfig(native)
	if err != nil {
		return nil, err
	}
	p := &Planner{Lookup: lookup, Defaults: c.Defaults(), Inject: injectCfg, RequireOptIn: c.RequireNamespaceOptIn, CrossNamespace: c.AADPodIdentityCrossNamespace}
	if c.WarnSharedServiceAccount {
		p.Peers = peers
	}
	return p, p.Validate()
}

// Defaults are the identity defaults these flags choose.
func (c *Flags) Defaults() Defaults {
	return Defaults{TenantID: c.DefaultTenantID, AuthorityHost: c.AuthorityHost, AllowedAuthorityHosts: c.AllowedHosts(), TokenSource: c.DefaultTokenSource}
}

// AllowedHosts is the allow-list of authority hosts: the flag's entries,
// or by default the public clouds and the host of --authority-host.
func (c *Flags) AllowedHosts() []string {
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

// NativeSidecar decides whether to inject a native sidecar. With "auto" it
// asks the API server for its version: native sidecars need 1.29.
func NativeSidecar(mode string, cfg *rest.Config) (bool, string, error) {
	if mode != "auto" {
		return mode == "true", "not asked", nil
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false, "", fmt.Errorf("discovery client: %w", err)
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return false, "", fmt.Errorf("get API server version: %w", err)
	}
	ok, err := SupportsNativeSidecar(v)
	return ok, v.GitVersion, err
}

// SupportsNativeSidecar reports whether v is 1.29 or later. Minor versions
// of some distributions carry a "+" suffix.
func SupportsNativeSidecar(v *version.Info) (bool, error) {
	major, err1 := strconv.Atoi(strings.TrimSuffix(v.Major, "+"))
	minor, err2 := strconv.Atoi(strings.TrimSuffix(v.Minor, "+"))
	if err := errors.Join(err1, err2); err != nil {
		return false, fmt.Errorf("parse API server version %q.%q (set --native-sidecar): %w", v.Major, v.Minor, err)
	}
	return major > 1 || (major == 1 && minor >= 29), nil
}
