package sidecarconfig

import (
	"strings"

	"github.com/podidentity/injector/internal/names"
)

// SourceSpec is one credential source of the sidecar and what it needs.
// Sources is the one table of them: the webhook's resolver chooses a
// source and checks the tenant with it, inject mounts what it says,
// Validate checks what it says, and the sidecar's LoadSource refuses a
// source that is not in it. Adding a source starts here.
type SourceSpec struct {
	// Name is the source as the config and the token-source annotation
	// spell it (names.TokenSource*).
	Name string
	// IdentityType is the aad-pod-identity spec.type it serves: 0
	// (user-assigned managed identity), 1 (service principal with a client
	// secret) or 2 (service principal with a certificate).
	IdentityType int
	// Annotated is true for a type 0 source chosen by the token-source
	// annotation or the webhook's default, rather than by spec.type alone.
	Annotated bool
	// Tenant: the identity needs a tenant ID.
	Tenant bool
	// TokenFile: the sidecar mounts the projected service account token.
	TokenFile bool
	// Secret: the sidecar mounts the identity's Secret.
	Secret bool
}

// Sources are the credential sources, in the order messages list them.
var Sources = []SourceSpec{
	{Name: names.TokenSourceFederated, IdentityType: 0, Annotated: true, Tenant: true, TokenFile: true},
	{Name: names.TokenSourceIMDS, IdentityType: 0, Annotated: true},
	{Name: names.TokenSourceClientSecret, IdentityType: 1, Tenant: true, Secret: true},
	{Name: names.TokenSourceClientCertificate, IdentityType: 2, Tenant: true, Secret: true},
}

// LookupSource returns the spec of a source.
func LookupSource(name string) (SourceSpec, bool) {
	for _, s := range Sources {
		if s.Name == name {
			return s, true
		}
	}
	return SourceSpec{}, false
}

// SourceForType is the source of an identity of aad-pod-identity type t.
// chosen is the token-source annotation, else the webhook's default; only a
// type with more than one source reads it. ok is false when t has no source
// or chosen is not one of t's.
func SourceForType(t int, chosen string) (SourceSpec, bool) {
	for _, s := range Sources {
		if s.IdentityType == t && (!s.Annotated || s.Name == chosen) {
			return s, true
		}
	}
	return SourceSpec{}, false
}

// SourceNames lists the sources of type t (or all for t < 0) for messages:
// "federated or imds".
func SourceNames(t int) string {
	var out []string
	for _, s := range Sources {
		if t < 0 || s.IdentityType == t {
			out = append(out, s.Name)
		}
	}
	switch len(out) {
	case 0:
		return ""
	case 1:
		return out[0]
	}
	return strings.Join(out[:len(out)-1], ", ") + " or " + out[len(out)-1]
}
