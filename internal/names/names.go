// Package names is the whole naming contract of the project in one place:
// the labels, annotations, environment variables, container, volume and path
// names that the webhook writes into pods and that the sidecar, the Azure SDKs
// and azcopy read back. A reader who wants to know what this project puts
// into a pod starts here.
package names

import (
	"fmt"
	"strings"
)

// Prefix is the annotation and label prefix the project owns: the GitHub
// Pages domain of the project's organisation. New pod and namespace
// annotations live under it, never under the reserved k8s.io domain. The
// aadpodidentity.k8s.io spellings of the keys below (LegacyKey) stay
// accepted, with a deprecation warning, because users have them.
const Prefix = "podidentity.github.io"

// The sidecar's dedicated user and group. It is not 65532 (distroless's
// nonroot), which many app images also run as: a container of the same uid
// could otherwise read the sidecar's files through /proc/<pid>/root when
// the pod shares its process namespace. The sidecar image's /etc/passwd
// names this user.
const (
	SidecarUID  = 65190
	SidecarGID  = 65190
	SidecarUser = "pod-identity-sidecar"
)

// WebhookUID is the webhook image's non-root user (distroless's nonroot).
const WebhookUID = 65532

// Labels and annotations read by the webhook.
const (
	// BindingLabel is the pod label carried over from aad-pod-identity. Its
	// value is compared, by exact string equality, with an
	// AzureIdentityBinding's spec.selector.
	BindingLabel = "aadpodidbinding"

	// Group is the API group of the CRDs, kept from aad-pod-identity.
	Group = "aadpodidentity.k8s.io"

	// InjectAnnotation opts a Namespace in when it is "enabled" (as an
	// annotation or a label), and opts a Pod out when it is "disabled". As
	// a namespace label it is also what the label-opt-in kustomize
	// component's namespaceSelector matches.
	InjectAnnotation = Prefix + "/inject"
	// InjectEnabled and InjectDisabled are the values of InjectAnnotation.
	InjectEnabled  = "enabled"
	InjectDisabled = "disabled"

	// SkipContainersAnnotation on a Pod lists, separated by "," or ";",
	// containers that get no identity environment.
	SkipContainersAnnotation = Prefix + "/skip-containers"

	// TokenPortAnnotation on a Pod overrides the sidecar's loopback port.
	TokenPortAnnotation = Prefix + "/token-port"

	// BehaviorAnnotation on an AzureIdentity, set to BehaviorNamespaced,
	// keeps it to the pods of its own namespace when the webhook resolves
	// bindings across namespaces (decision.Flags.AADPodIdentityCrossNamespace).
	// It is aad-pod-identity's own key and value (its BehaviorKey and
	// BehaviorNamespaced), compared exactly as it compared them, and it has
	// no Prefix spelling: it only means something to that compatibility
	// mode.
	BehaviorAnnotation = Group + "/Behavior"
	// BehaviorNamespaced is the value of BehaviorAnnotation that keeps an
	// identity to its namespace.
	BehaviorNamespaced = "namespaced"

	// TokenSourceAnnotation on an AzureIdentity of type 0 chooses how the
	// sidecar gets its tokens: TokenSourceFederated or TokenSourceIMDS.
	TokenSourceAnnotation = Prefix + "/token-source"

	// ContainerIdentitiesAnnotation on a Pod gives containers identities of
	// their own: "data-init=blob-reader,my-app=queue-writer" (',' or ';'
	// between entries) maps each named container to one AzureIdentity that
	// the pod's selector resolves to. Containers it does not name get the
	// default identity. Each container then gets its own IDENTITY_HEADER,
	// and the sidecar serves it only its own identity. See
	// docs/security.md.
	ContainerIdentitiesAnnotation = Prefix + "/container-identities"

	// InjectContainersAnnotation on a Pod lists (',' or ';' between names)
	// the only containers that get the identity environment; the others
	// get none. It may be combined with SkipContainersAnnotation, which
	// then removes names from it.
	InjectContainersAnnotation = Prefix + "/inject-containers"

	// TokenAudienceAnnotation on a Pod overrides TokenAudience, the
	// audience of the projected service account token (federated
	// identities only).
	TokenAudienceAnnotation = Prefix + "/token-audience"

	// TokenExpirationAnnotation on a Pod overrides TokenExpirationSeconds,
	// in seconds, within MinTokenExpirationSeconds and
	// MaxTokenExpirationSeconds.
	TokenExpirationAnnotation = Prefix + "/token-expiration"

	// Sidecar*Annotation on a Pod override the sidecar's CPU and memory
	// requests and limits that the operator configured, as Kubernetes
	// quantities within the ranges below.
	SidecarCPURequestAnnotation    = Prefix + "/sidecar-cpu-request"
	SidecarCPULimitAnnotation      = Prefix + "/sidecar-cpu-limit"
	SidecarMemoryRequestAnnotation = Prefix + "/sidecar-memory-request"
	SidecarMemoryLimitAnnotation   = Prefix + "/sidecar-memory-limit"
	// AllowSharedProcessNamespaceAnnotation on a Pod, set to "true",
	// accepts the risk of spec.shareProcessNamespace: every container of the
	// pod can then see the sidecar's process. Without it such a pod is
	// denied. See docs/security.md.
	AllowSharedProcessNamespaceAnnotation = Prefix + "/allow-shared-process-namespace"

	// IMDSRequiresHeaderAnnotation on a Pod, "true" or "false", decides
	// whether the sidecar's IMDS path (names.PathIMDS) also requires
	// HeaderIdentity, which "Metadata: true" alone does not prove: a
	// port-forward or an ephemeral container reaches the pod's loopback
	// too. It is always on with ContainerIdentitiesAnnotation, and off by
	// default otherwise. See docs/security.md.
	IMDSRequiresHeaderAnnotation = Prefix + "/imds-requires-header"

	// InjectedAnnotation is written on every injected Pod. Its value names
	// the AzureIdentity objects the sidecar serves, so that an operator can
	// see at a glance what a pod was given. Unlike the keys above, its
	// LegacyKey is neither read nor written: a pod that carries it (copied
	// from an old manifest) gets a warning to remove it.
	InjectedAnnotation = Prefix + "/injected-identities"
)

// LegacyKey is the aadpodidentity.k8s.io/ spelling that key, one of the
// Prefix keys above, replaces. Users have these on their namespaces, pods
// and AzureIdentity objects, so they are still read, with a deprecation
// warning (see Lookup). Only the Prefix key is ever written.
func LegacyKey(key string) string {
	if legacy, ok := legacyKeys[key]; ok {
		return legacy
	}
	if rest, ok := strings.CutPrefix(key, Prefix+"/"); ok {
		return Group + "/" + rest
	}
	return key
}

// legacyKeys holds LegacyKey of the keys the webhook reads on every
// admission, so that reading them allocates nothing.
var legacyKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{InjectAnnotation, SkipContainersAnnotation, TokenPortAnnotation, TokenSourceAnnotation} {
		m[k] = Group + "/" + strings.TrimPrefix(k, Prefix+"/")
	}
	return m
}()

// Lookup reads key from m (the annotations or labels of an object) and
// falls back to LegacyKey(key). The key wins when both are set;
// DeprecationWarning says what to tell the user about the legacy one.
func Lookup(m map[string]string, key string) (value string, ok bool) {
	if v, found := m[key]; found {
		return v, true
	}
	if legacy := LegacyKey(key); legacy != key {
		v, found := m[legacy]
		return v, found
	}
	return "", false
}

// DeprecationWarning is the admission warning for an object that carries
// the legacy spelling of key. object is "Kind namespace/name" (or "Kind
// name" for a cluster-scoped object); kind says "annotation" or "label".
func DeprecationWarning(object, kind string, m map[string]string, key string) string {
	legacy := LegacyKey(key)
	if _, ok := m[legacy]; !ok || legacy == key {
		return ""
	}
	if _, ok := m[key]; ok {
		return fmt.Sprintf("%s: %s %q is deprecated and ignored, because %q is set too; remove %q",
			object, kind, legacy, key, legacy)
	}
	return fmt.Sprintf("%s: %s %q is deprecated; rename it to %q (the old key keeps working until then)",
		object, kind, legacy, key)
}

// Token sources, as they appear in the annotation and in the sidecar config.
const (
	// TokenSourceFederated is workload identity federation with the pod's
	// projected service account token (type 0, the default).
	TokenSourceFederated = "federated"
	// TokenSourceIMDS asks the node's IMDS for the user-assigned identity
	// (type 0, opt-in; no isolation between pods on one node).
	TokenSourceIMDS = "imds"
	// TokenSourceClientSecret is a service principal with a client secret
	// (type 1).
	TokenSourceClientSecret = "clientSecret"
	// TokenSourceClientCertificate is a service principal with a
	// certificate (type 2).
	TokenSourceClientCertificate = "clientCertificate"
)

// Environment variables set on app and init containers. Values the user set
// are never overwritten.
const (
	// EnvIdentityEndpoint is the App Service 2019-08-01 token endpoint that
	// azidentity's ManagedIdentityCredential detects.
	EnvIdentityEndpoint = "IDENTITY_ENDPOINT"
	// EnvIdentityHeader is the per-pod secret sent back as
	// HeaderIdentity. It is also set on the sidecar, which checks it. With
	// ContainerIdentitiesAnnotation every container gets a secret of its
	// own instead, and the sidecar holds only their SHA-256 sums, in its
	// config.
	EnvIdentityHeader = "IDENTITY_HEADER"
	// EnvAzureClientID names the default identity for the SDKs and azcopy.
	EnvAzureClientID = "AZURE_CLIENT_ID"
	// EnvAuthorityHost is honoured by the JS, Python, .NET and Java SDKs for
	// IMDS-style requests.
	EnvAuthorityHost = "AZURE_POD_IDENTITY_AUTHORITY_HOST"
	// EnvAzcopyAutoLoginType and EnvAzcopyMSIClientID let `azcopy copy`
	// authenticate without a login step, whose keyring a seccomp profile may
	// refuse.
	EnvAzcopyAutoLoginType = "AZCOPY_AUTO_LOGIN_TYPE"
	EnvAzcopyMSIClientID   = "AZCOPY_MSI_CLIENT_ID"
	// AzcopyAutoLoginMSI is the value of EnvAzcopyAutoLoginType.
	AzcopyAutoLoginMSI = "MSI"

	// EnvSidecarConfig carries the sidecar's versioned JSON configuration
	// (see package sidecarconfig).
	EnvSidecarConfig = "POD_IDENTITY_SIDECAR_CONFIG"
)

// The sidecar container and what it mounts.
const (
	// SidecarContainerName is the name of the injected token server.
	SidecarContainerName = "pod-identity-sidecar"
	// SidecarBinary is where the sidecar image puts the binary; the
	// container names it explicitly rather than relying on an entrypoint.
	SidecarBinary = "/pod-identity-sidecar"
	// SidecarServeCommand and SidecarProbeCommand are its subcommands.
	SidecarServeCommand = "serve"
	SidecarProbeCommand = "probe"

	// DefaultTokenPort is the sidecar's loopback port unless overridden.
	DefaultTokenPort = 8181

	// TokenVolumeName is the projected service account token volume, mounted
	// only into the sidecar at TokenMountPath.
	TokenVolumeName = "pod-identity-token"
	TokenMountPath  = "/var/run/secrets/pod-identity/serviceaccount"
	TokenFileName   = "token"
	// TokenAudience is the audience Azure AD expects of a federated token.
	TokenAudience = "api://AzureADTokenExchange"
	// TokenExpirationSeconds is the requested lifetime of the projected
	// token; the kubelet rotates it at 80 % of that.
	TokenExpirationSeconds = 3600
	// MinTokenExpirationSeconds and MaxTokenExpirationSeconds bound
	// TokenExpirationAnnotation: the API server refuses less than 600 s,
	// and Entra ID's federated credentials accept tokens up to a day old.
	MinTokenExpirationSeconds = 600
	MaxTokenExpirationSeconds = 86400
	// MaxTokenAudienceLength bounds TokenAudienceAnnotation.
	MaxTokenAudienceLength = 253

	// The ranges of the Sidecar*Annotation overrides: below the minimum the
	// sidecar cannot start, above the maximum it is a typo (a token server
	// on loopback needs a few MiB and millicores).
	MinSidecarCPU    = "1m"
	MaxSidecarCPU    = "2"
	MinSidecarMemory = "8Mi"
	MaxSidecarMemory = "1Gi"

	// NoAPITokenVolumeName is an empty volume that the sidecar mounts at
	// APITokenMountPath. The ServiceAccount admission plugin skips a
	// container that already has a mount there, so the sidecar, which never
	// talks to the API server, gets no API token; and since the plugin then
	// leaves the injected pod unchanged, the API server does not call the
	// webhook a second time (reinvocationPolicy IfNeeded).
	NoAPITokenVolumeName = "pod-identity-no-api-token"
	// APITokenMountPath is where the ServiceAccount admission plugin mounts
	// the Kubernetes API token.
	APITokenMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

	// SecretVolumePrefix + identity name is the volume of a type 1 or 2
	// identity's Secret, mounted only into the sidecar at
	// SecretMountRoot/<identity name>.
	SecretVolumePrefix = "pod-identity-secret-"
	SecretMountRoot    = "/var/run/secrets/pod-identity/identities"
)

// Secret keys of type 1 and type 2 identities.
const (
	// SecretKeyClientSecret is the key of a type 1 Secret. A Secret with
	// exactly one key is accepted too, for aad-pod-identity compatibility.
	SecretKeyClientSecret = "clientSecret"
	// SecretKeyCertificate and SecretKeyPassword hold a PKCS#12 bundle and
	// its password (type 2).
	SecretKeyCertificate = "certificate"
	SecretKeyPassword    = "password"
	// SecretKeyTLSCert and SecretKeyTLSKey hold a PEM certificate and key
	// (type 2), as in a kubernetes.io/tls Secret.
	SecretKeyTLSCert = "tls.crt"
	SecretKeyTLSKey  = "tls.key"
)

// HTTP protocol names served by the sidecar.
const (
	// HeaderIdentity carries IDENTITY_HEADER on App Service requests.
	HeaderIdentity = "X-IDENTITY-HEADER"
	// HeaderMetadata must be "true" on IMDS-style requests.
	HeaderMetadata = "Metadata"
	// PathAppService is the App Service 2019-08-01 token path.
	PathAppService = "/msi/token"
	// PathIMDS is the IMDS token path (also served with a trailing slash).
	PathIMDS = "/metadata/identity/oauth2/token"
	// PathHealth answers the probe subcommand.
	PathHealth = "/healthz"
)
