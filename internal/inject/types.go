package inject

import (
	"errors"

	corev1 "k8s.io/api/core/v1"
)

// Identity is one AzureIdentity, resolved and validated by the webhook, as
// the mutation needs it. It carries no Kubernetes client types so that the
// mutation stays a pure function of its arguments.
type Identity struct {
	// Name and Namespace of the AzureIdentity.
	Name      string
	Namespace string
	// Source is one of names.TokenSource*.
	Source string
	// ClientID, TenantID and ResourceID of the identity. TenantID is already
	// defaulted from the webhook's flag.
	ClientID   string
	TenantID   string
	ResourceID string
	// AuthorityHost is the identity's adEndpoint, else the webhook default.
	AuthorityHost string
	// DisableInstanceDiscovery is set for non-public authorities.
	DisableInstanceDiscovery bool
	// AdditionallyAllowedTenants are the identity's auxiliaryTenantIDs.
	AdditionallyAllowedTenants []string
	// SecretName is the Secret of a type 1 or 2 identity, in Namespace.
	SecretName string
	// Weight is the highest weight among the bindings that bound it.
	Weight int
}

// Config is what the operator chose for every injected pod.
type Config struct {
	// SidecarImage is the token-server image.
	SidecarImage string
	// ImagePullPolicy of the sidecar; empty leaves the API server's default.
	ImagePullPolicy corev1.PullPolicy
	// Port is the sidecar's loopback port unless the pod overrides it with
	// names.TokenPortAnnotation.
	Port int
	// Resources of the sidecar container.
	Resources corev1.ResourceRequirements
	// NativeSidecar is true when the API server supports init containers
	// with restartPolicy Always (1.29 and later).
	NativeSidecar bool
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
	// ErrPortCollision: a container already uses the sidecar's port.
	ErrPortCollision = errors.New("container port collides with the token sidecar port")
	// ErrBadPortAnnotation: the token-port annotation is not a valid port.
	ErrBadPortAnnotation = errors.New("invalid token-port annotation")
	// ErrNoIdentities: nothing to inject.
	ErrNoIdentities = errors.New("no identities to inject")
)
