// Package sidecarconfig is the versioned JSON document that the webhook
// writes into the sidecar container (env var names.EnvSidecarConfig) and that
// the sidecar reads at start. It is the only channel between the two: the
// sidecar never reads identities from the API server.
package sidecarconfig

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// APIVersion is the version of the document. A sidecar refuses a document of
// another version rather than guess at its meaning.
//
// Fields are added to v1 only when they are optional and an older sidecar
// fails closed on them: Parse refuses unknown fields, so an older sidecar
// that meets Containers refuses to start instead of serving every identity
// to every container. A document without the new fields means what it
// meant before. A change that an older sidecar would misread silently gets
// a new version.
const APIVersion = "sidecar.aadpodidentity.k8s.io/v1"

// Config is the whole sidecar configuration.
type Config struct {
	// APIVersion must equal APIVersion.
	APIVersion string `json:"apiVersion"`
	// Port is the loopback port the sidecar listens on.
	Port int `json:"port"`
	// DefaultIdentity is the Name of the identity served when a request
	// names none.
	DefaultIdentity string `json:"defaultIdentity"`
	// Identities are the AzureIdentity objects bound to the pod, at least one.
	Identities []Identity `json:"identities"`
	// AllowedAuthorityHosts are the hosts an identity's authority may name
	// (see AllowedHost); empty means PublicAuthorityHosts. The webhook
	// writes its --allowed-authority-hosts here, so that a sidecar refuses
	// an authority the webhook would have refused.
	AllowedAuthorityHosts []string `json:"allowedAuthorityHosts,omitempty"`
	// Containers, when set, gives each container its own IDENTITY_HEADER
	// and the identities it may use (names.ContainerIdentitiesAnnotation).
	// The sidecar then has no pod-wide header: a request is served only
	// with a header listed here, and only the identities of its container.
	// Empty means one pod-wide header that may use every identity.
	Containers []Container `json:"containers,omitempty"`
	// IMDSRequiresHeader makes the IMDS path require X-IDENTITY-HEADER as
	// the App Service path does (names.IMDSRequiresHeaderAnnotation). The
	// webhook sets it for every pod with Containers. Optional and added to
	// v1 as Containers was: an older sidecar refuses a document that sets
	// it, and a document without it means what it meant before.
	IMDSRequiresHeader bool `json:"imdsRequiresHeader,omitempty"`
}

// Container is what one container may ask the sidecar for.
type Container struct {
	// Name is the container's name, for messages and logs.
	Name string `json:"name"`
	// HeaderSHA256 is the hex SHA-256 of the container's IDENTITY_HEADER.
	// The sidecar keeps no plaintext: the config is readable by whoever can
	// read the pod spec, and the hash of a 256-bit random secret does not
	// give it away. The sidecar hashes what a request sends and compares
	// the sums in constant time.
	HeaderSHA256 string `json:"headerSHA256"`
	// Identities are the names of the identities the container may use;
	// the first is what it gets when a request names none.
	Identities []string `json:"identities"`
}

// Identity is one resolved AzureIdentity and where its credentials are.
type Identity struct {
	// Name is the AzureIdentity's metadata.name; Namespace its namespace.
	// They appear in the sidecar's logs and error messages.
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Source is one of names.TokenSource*.
	Source string `json:"source"`
	// ClientID is the application (client) ID of the identity.
	ClientID string `json:"clientID"`
	// TenantID is the Entra tenant; empty only for source imds.
	TenantID string `json:"tenantID,omitempty"`
	// ResourceID is the ARM ID of a user-assigned identity, if known, so
	// that requests naming mi_res_id/msi_res_id can select it.
	ResourceID string `json:"resourceID,omitempty"`
	// AuthorityHost is the Entra endpoint, for example
	// https://login.microsoftonline.com/. Empty means azidentity's default.
	AuthorityHost string `json:"authorityHost,omitempty"`
	// DisableInstanceDiscovery skips Entra instance discovery, which
	// non-public clouds and test authorities need. It is honoured only for
	// an authority on the allow-list, which Validate checks.
	DisableInstanceDiscovery bool `json:"disableInstanceDiscovery,omitempty"`
	// AdditionallyAllowedTenants are aad-pod-identity's auxiliaryTenantIDs.
	AdditionallyAllowedTenants []string `json:"additionallyAllowedTenants,omitempty"`
	// TokenFile is the projected service account token (source federated).
	TokenFile string `json:"tokenFile,omitempty"`
	// SecretDir is where the identity's Secret is mounted (sources
	// clientSecret and clientCertificate). The sidecar picks the keys:
	// see names.SecretKey*.
	SecretDir string `json:"secretDir,omitempty"`
	// SecretName is the Secret's name, for error messages.
	SecretName string `json:"secretName,omitempty"`
}

// Parse decodes and validates a document.
func Parse(data []byte) (*Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode sidecar config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Marshal encodes the document. Its output is deterministic, so that
// injecting the same pod twice writes the same bytes.
func (c *Config) Marshal() (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode sidecar config: %w", err)
	}
	return string(b), nil
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid sidecar config")

// Validate checks what the sidecar needs to start.
func (c *Config) Validate() error {
	if c.APIVersion != APIVersion {
		return fmt.Errorf("%w: apiVersion %q, want %q", ErrInvalid, c.APIVersion, APIVersion)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("%w: port %d is not in 1-65535", ErrInvalid, c.Port)
	}
	if len(c.Identities) == 0 {
		return fmt.Errorf("%w: no identities", ErrInvalid)
	}
	for _, a := range c.AllowedAuthorityHosts {
		if _, err := AllowedHost(a); err != nil {
			return fmt.Errorf("%w: allowedAuthorityHosts: %w", ErrInvalid, err)
		}
	}
	seen := map[string]bool{}
	foundDefault := false
	for i, id := range c.Identities {
		if id.Name == "" {
			return fmt.Errorf("%w: identities[%d].name is empty", ErrInvalid, i)
		}
		if seen[id.Name] {
			return fmt.Errorf("%w: identity %q is listed twice", ErrInvalid, id.Name)
		}
		seen[id.Name] = true
		foundDefault = foundDefault || id.Name == c.DefaultIdentity
		if id.ClientID == "" {
			return fmt.Errorf("%w: identity %q has no clientID", ErrInvalid, id.Name)
		}
		if id.AuthorityHost != "" {
			if err := CheckAuthority(id.AuthorityHost, c.AllowedAuthorities()); err != nil {
				return fmt.Errorf("%w: AzureIdentity %s/%s: authorityHost (from spec.adEndpoint): %w; the webhook's --allowed-authority-hosts decides which hosts may receive credentials",
					ErrInvalid, id.Namespace, id.Name, err)
			}
		}
		spec, ok := LookupSource(id.Source)
		switch {
		case !ok:
			return fmt.Errorf("%w: identity %q has unknown source %q; want %s", ErrInvalid, id.Name, id.Source, SourceNames(-1))
		case spec.Tenant && id.TenantID == "":
			return fmt.Errorf("%w: %s identity %q needs tenantID", ErrInvalid, id.Source, id.Name)
		case spec.TokenFile && id.TokenFile == "":
			return fmt.Errorf("%w: %s identity %q needs tokenFile", ErrInvalid, id.Source, id.Name)
		case spec.Secret && id.SecretDir == "":
			return fmt.Errorf("%w: %s identity %q needs secretDir", ErrInvalid, id.Source, id.Name)
		}
	}
	if !foundDefault {
		return fmt.Errorf("%w: defaultIdentity %q is not among the identities", ErrInvalid, c.DefaultIdentity)
	}
	return c.validateContainers(seen)
}

// validateContainers checks Containers against the identities in ids.
func (c *Config) validateContainers(ids map[string]bool) error {
	names, sums := map[string]bool{}, map[string]bool{}
	for i, ct := range c.Containers {
		if ct.Name == "" {
			return fmt.Errorf("%w: containers[%d].name is empty", ErrInvalid, i)
		}
		if names[ct.Name] {
			return fmt.Errorf("%w: container %q is listed twice", ErrInvalid, ct.Name)
		}
		names[ct.Name] = true
		if b, err := hex.DecodeString(ct.HeaderSHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("%w: container %q: headerSHA256 is not a hex SHA-256 sum", ErrInvalid, ct.Name)
		}
		if sums[ct.HeaderSHA256] {
			return fmt.Errorf("%w: container %q: headerSHA256 is another container's too; every container needs its own header", ErrInvalid, ct.Name)
		}
		sums[ct.HeaderSHA256] = true
		if len(ct.Identities) == 0 {
			return fmt.Errorf("%w: container %q has no identities", ErrInvalid, ct.Name)
		}
		for _, id := range ct.Identities {
			if !ids[id] {
				return fmt.Errorf("%w: container %q names identity %q, which is not among the identities", ErrInvalid, ct.Name, id)
			}
		}
	}
	return nil
}

// HeaderSum is the HeaderSHA256 of a container's IDENTITY_HEADER value.
func HeaderSum(header string) string {
	sum := sha256.Sum256([]byte(header))
	return hex.EncodeToString(sum[:])
}

// Default returns the default identity. Call only on a validated Config.
func (c *Config) Default() *Identity {
	for i := range c.Identities {
		if c.Identities[i].Name == c.DefaultIdentity {
			return &c.Identities[i]
		}
	}
	return nil
}
