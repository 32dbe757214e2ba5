package inject

import (
	"cmp"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// Identity is one AzureIdentity, resolved and validated by the webhook, as
// the mutation needs it: the identity of the sidecar's config document, so
// that the webhook and the sidecar share one Identity type, and the weight
// that chose the default. Inject fills in the mount paths (TokenFile,
// SecretDir) itself. It carries no Kubernetes client types, so that the
// mutation stays a pure function of its arguments.
type Identity struct {
	sidecarconfig.Identity
	// Weight is the highest weight among the bindings that bound it.
	Weight int `json:"weight,omitempty"`
}

// Config is what the operator chose for every injected pod.
type Config struct {
	// SidecarImage is the token-server image.
	SidecarImage string `json:"sidecarImage"`
	// ImagePullPolicy of the sidecar; empty leaves the API server's default.
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// Port is the sidecar's loopback port unless the pod overrides it with
	// names.TokenPortAnnotation.
	Port int `json:"port"`
	// Resources of the sidecar container.
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
	// NativeSidecar is true when the API server supports init containers
	// with restartPolicy Always (1.29 and later).
	NativeSidecar bool `json:"nativeSidecar,omitempty"`
	// AllowedAuthorityHosts is the webhook's --allowed-authority-hosts,
	// written into the sidecar config; empty means the public clouds.
	AllowedAuthorityHosts []string `json:"allowedAuthorityHosts,omitempty"`
	// TokenAudience and TokenExpirationSeconds are the cluster's defaults
	// for the projected service account token, which a pod may override
	// with names.TokenAudienceAnnotation and
	// names.TokenExpirationAnnotation; empty and 0 mean
	// names.TokenAudience and names.TokenExpirationSeconds.
	TokenAudience          string `json:"tokenAudience,omitempty"`
	TokenExpirationSeconds int64  `json:"tokenExpirationSeconds,omitempty"`
}

// audience and expiration are the cluster's token defaults.
func (c Config) audience() string { return cmp.Or(c.TokenAudience, names.TokenAudience) }
func (c Config) expiration() int64 {
	return cmp.Or(c.TokenExpirationSeconds, int64(names.TokenExpirationSeconds))
}

// Validate checks the operator's choices once, at start, so that a bad flag
// fails the webhook rather than every admission. Inject checks them again.
func (c Config) Validate() error {
	if c.SidecarImage == "" {
		return fmt.Errorf("%w: the sidecar image is empty; set the webhook's sidecar image flag", ErrInvalidConfig)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("%w: the token port %d is not in 1-65535; set the webhook's port flag to a free port", ErrInvalidConfig, c.Port)
	}
	if a := c.audience(); len(a) > names.MaxTokenAudienceLength || strings.ContainsAny(a, " \t\r\n,;") || !isPrintableASCII(a) {
		return fmt.Errorf("%w: the token audience %q is not 1-%d printable ASCII characters without spaces, ',' or ';'; fix the webhook's token audience flag", ErrInvalidConfig, a, names.MaxTokenAudienceLength)
	}
	if e := c.expiration(); e < names.MinTokenExpirationSeconds || e > names.MaxTokenExpirationSeconds {
		return fmt.Errorf("%w: the token expiration %ds is not in %d-%d; fix the webhook's token expiration flag", ErrInvalidConfig, e, names.MinTokenExpirationSeconds, names.MaxTokenExpirationSeconds)
	}
	// The API server refuses a container whose request exceeds its limit,
	// and it would blame the sidecar of every pod.
	for r, req := range c.Resources.Requests {
		if lim, ok := c.Resources.Limits[r]; ok && req.Cmp(lim) > 0 {
			return fmt.Errorf("%w: the sidecar requests %s of %s, above its limit %s; lower the webhook's sidecar request or raise the limit", ErrInvalidConfig, req.String(), r, lim.String())
		}
	}
	return nil
}

// Result says what Inject did.
type Result struct {
	// Changed is false when the pod already had everything (idempotency).
	Changed bool
	// DefaultIdentity is the Name of the identity whose client ID the
	// containers got as AZURE_CLIENT_ID.
	DefaultIdentity string
	// Warnings are returned to the user as admission warnings.
	Warnings []string
}

// Errors that deny the pod. Inject wraps them with the pod and field at
// fault; test with errors.Is.
var (
	// ErrHostNetwork: on the node's loopback the sidecar would serve every
	// pod of the node.
	ErrHostNetwork = errors.New("hostNetwork pods cannot be injected")
	// ErrSharedProcessNamespace: with one process namespace, app
	// containers can reach the sidecar's files through /proc.
	ErrSharedProcessNamespace = errors.New("pods that share their process namespace cannot be injected without opting in")
	// ErrHostPID: in the node's process namespace, the pod's containers and
	// every other hostPID pod of the node see the sidecar's process.
	ErrHostPID = errors.New("hostPID pods cannot be injected")
	// ErrWindowsPod: the sidecar is a Linux image; on a Windows node the
	// pod could not start.
	ErrWindowsPod = errors.New("Windows pods cannot be injected") //nolint:staticcheck // "Windows" is a proper noun; docs/troubleshooting.md quotes the message
	// ErrPortCollision: a container already uses the sidecar's port.
	ErrPortCollision = errors.New("container port collides with the token sidecar port")
	// ErrBadPortAnnotation: the token-port annotation is not a valid port.
	ErrBadPortAnnotation = errors.New("invalid token-port annotation")
	// ErrNoIdentities: nothing to inject.
	ErrNoIdentities = errors.New("no identities to inject")
	// ErrInvalidIdentity: an identity cannot be written into the sidecar
	// config (an empty or malformed name, a missing client or tenant ID).
	// The webhook validates identities first, so this is a bug upstream.
	ErrInvalidIdentity = errors.New("invalid identity")
	// ErrInvalidConfig: the operator's Config or the per-pod secret is
	// unusable.
	ErrInvalidConfig = errors.New("invalid injection config")
	// ErrNameConflict: the pod already uses a container or volume name that
	// the injection needs, and it is not ours.
	ErrNameConflict = errors.New("name already used in the pod")
	// ErrBadOverride: a per-pod override annotation (token audience or
	// expiration, sidecar resources, inject-containers) is out of range.
	ErrBadOverride = errors.New("invalid override annotation")
	// ErrContainerIdentities: the container-identities annotation names a
	// container or identity the pod does not have, or the pod shares its
	// process namespace, which would let containers read each other's
	// headers.
	ErrContainerIdentities = errors.New("invalid per-container identities")
	// ErrUserIdentityHeader: a container sets IDENTITY_HEADER itself. The
	// header is generated per pod at admission, so a value in a manifest
	// can never match the sidecar's.
	ErrUserIdentityHeader = errors.New("container sets IDENTITY_HEADER")
	// ErrPodResources: the pod-level resources (spec.resources) leave no
	// room for the token sidecar's requests or limits.
	ErrPodResources = errors.New("pod-level resources leave no room for the token sidecar")
)
