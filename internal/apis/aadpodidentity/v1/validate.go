package v1

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/podidentity/injector/internal/names"
)

// Warnings returns one admission warning per legacy spelling the identity's
// spec uses, such as
// `AzureIdentity default/blob-reader: spec key "ResourceID" is a legacy spelling; rename it to "resourceID"`.
func (a *AzureIdentity) Warnings() []string {
	return a.Spec.Decoding.warnings(KindAzureIdentity, &a.ObjectMeta)
}

// DecodeErr returns nil, or an error wrapping ErrLegacyConflict or
// ErrInvalidField for each key of the spec that could not be used.
func (a *AzureIdentity) DecodeErr() error {
	return joinErrors(a.Spec.Decoding.fieldErrors(KindAzureIdentity, &a.ObjectMeta))
}

// Validate returns nil when the webhook can give this identity to a pod.
// Otherwise its error lists every problem, each a *FieldError wrapping one
// of ErrLegacyConflict, ErrInvalidField, ErrMissingField, ErrUnknownType or
// ErrCrossNamespaceSecret. spec.adEndpoint must be an https URL; whether its
// host is allowed is the webhook's policy, not the type's. The tenant is not checked here, because the
// webhook may supply a default.
func (a *AzureIdentity) Validate() error {
	s := &a.Spec
	errs := s.Decoding.fieldErrors(KindAzureIdentity, &a.ObjectMeta)
	fail := func(field string, reason error, format string, args ...any) {
		errs = append(errs, newFieldError(KindAzureIdentity, &a.ObjectMeta, field, reason, fmt.Sprintf(format, args...)))
	}
	if !s.Type.Known() && !s.Decoding.errorFor("type") {
		fail("type", ErrUnknownType,
			"spec.type is %d, which is not an identity type; set it to %d (%s), %d (%s) or %d (%s)",
			int(s.Type),
			IdentityTypeUserAssignedMSI, IdentityTypeUserAssignedMSI,
			IdentityTypeServicePrincipal, IdentityTypeServicePrincipal,
			IdentityTypeServicePrincipalCertificate, IdentityTypeServicePrincipalCertificate)
	}
	if s.ClientID == "" && !s.Decoding.errorFor("clientID") {
		fail("clientID", ErrMissingField,
			"spec.clientID is empty; set it to the client ID of the managed identity or service principal")
	}
	needsSecret := s.Type == IdentityTypeServicePrincipal || s.Type == IdentityTypeServicePrincipalCertificate
	if needsSecret && s.ClientPassword.Name == "" && !s.Decoding.errorFor("clientPassword") {
		fail("clientPassword.name", ErrMissingField,
			"spec.type %d (%s) needs spec.clientPassword.name; set it to the name of a Secret in %s that holds the %s",
			int(s.Type), s.Type, inNamespace(a.Namespace, "identity"), secretContent(s.Type))
	}
	if ns := s.ClientPassword.Namespace; ns != "" && a.Namespace != "" && ns != a.Namespace {
		fail("clientPassword.namespace", ErrCrossNamespaceSecret,
			"spec.clientPassword.namespace is %q, but the Secret must live in the identity's namespace %q; move Secret %q there and set clientPassword.namespace to %q or remove it",
			ns, a.Namespace, s.ClientPassword.Name, a.Namespace)
	}
	if s.ADEndpoint != "" && !s.Decoding.errorFor("adEndpoint") && !httpsURL(s.ADEndpoint) {
		fail("adEndpoint", ErrInvalidField,
			"spec.adEndpoint is %q, which is not an https URL with a host; set it to the Entra authority, such as https://login.microsoftonline.us/, or remove it for the webhook's default",
			s.ADEndpoint)
	}
	return joinErrors(errs)
}

// httpsURL reports whether s is an https URL with a host and nothing that
// could hide another host: no user info, query or fragment. Credentials go
// to this URL, so http is never accepted.
func httpsURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && u.Hostname() != "" && u.User == nil && u.RawQuery == "" && u.Fragment == "" && u.Opaque == ""
}

func secretContent(t IdentityType) string {
	if t == IdentityTypeServicePrincipalCertificate {
		return "certificate"
	}
	return "client secret"
}

// inNamespace is "namespace team-a", or "the identity's namespace" when
// the object's namespace is not known, as for a manifest not yet applied.
func inNamespace(ns, owner string) string {
	if ns == "" {
		return "the " + owner + "'s namespace"
	}
	return "namespace " + ns
}

// Warnings returns one admission warning per legacy spelling the binding's
// spec uses, such as
// `AzureIdentityBinding default/x: spec key "Selector" is a legacy spelling; rename it to "selector"`.
func (b *AzureIdentityBinding) Warnings() []string {
	return b.Spec.Decoding.warnings(KindAzureIdentityBinding, &b.ObjectMeta)
}

// DecodeErr returns nil, or an error wrapping ErrLegacyConflict or
// ErrInvalidField for each key of the spec that could not be used.
func (b *AzureIdentityBinding) DecodeErr() error {
	return joinErrors(b.Spec.Decoding.fieldErrors(KindAzureIdentityBinding, &b.ObjectMeta))
}

// SelectorErr returns nil, or the error that made spec.selector unusable:
// a value that is not a string (`selector: 1234`, the map-form `Selector:`
// of 2019-era manifests) or spellings that disagree. Such a binding matches
// no pod, so the webhook names it when a pod finds no binding.
func (b *AzureIdentityBinding) SelectorErr() error {
	var errs []error
	for _, err := range b.Spec.Decoding.fieldErrors(KindAzureIdentityBinding, &b.ObjectMeta) {
		var fe *FieldError
		if errors.As(err, &fe) && fe.Field == "selector" {
			errs = append(errs, err)
		}
	}
	return joinErrors(errs)
}

// Validate returns nil when the binding names an identity and a selector.
// Otherwise its error lists every problem, each a *FieldError wrapping one
// of ErrLegacyConflict, ErrInvalidField or ErrMissingField.
func (b *AzureIdentityBinding) Validate() error {
	s := &b.Spec
	errs := s.Decoding.fieldErrors(KindAzureIdentityBinding, &b.ObjectMeta)
	if s.AzureIdentity == "" && !s.Decoding.errorFor("azureIdentity") {
		errs = append(errs, newFieldError(KindAzureIdentityBinding, &b.ObjectMeta, "azureIdentity", ErrMissingField,
			fmt.Sprintf("spec.azureIdentity is empty; set it to the name of an AzureIdentity in %s", inNamespace(b.Namespace, "binding"))))
	}
	if s.Selector == "" && !s.Decoding.errorFor("selector") {
		errs = append(errs, newFieldError(KindAzureIdentityBinding, &b.ObjectMeta, "selector", ErrMissingField,
			fmt.Sprintf("spec.selector is empty; set it to the value of the %s label of the pods that should get this identity", names.BindingLabel)))
	}
	return joinErrors(errs)
}

// Warnings returns one admission warning per legacy spelling the
// exception's spec uses.
func (e *AzurePodIdentityException) Warnings() []string {
	return e.Spec.Decoding.warnings(KindAzurePodIdentityException, &e.ObjectMeta)
}

// DecodeErr returns nil, or an error wrapping ErrLegacyConflict or
// ErrInvalidField for each key of the spec that could not be used.
func (e *AzurePodIdentityException) DecodeErr() error {
	return joinErrors(e.Spec.Decoding.fieldErrors(KindAzurePodIdentityException, &e.ObjectMeta))
}

// Validate returns nil when the exception has pod labels to match. An
// exception without them would exempt every pod of its namespace, so it is
// an error (ErrMissingField) that the caller should treat as "this exception
// matches nothing" rather than as "exempt everything".
func (e *AzurePodIdentityException) Validate() error {
	s := &e.Spec
	errs := s.Decoding.fieldErrors(KindAzurePodIdentityException, &e.ObjectMeta)
	if len(s.PodLabels) == 0 && !s.Decoding.errorFor("podLabels") {
		errs = append(errs, newFieldError(KindAzurePodIdentityException, &e.ObjectMeta, "podLabels", ErrMissingField,
			"spec.podLabels is empty, which would exempt every pod of the namespace; list the labels of the pods to exempt"))
	}
	return joinErrors(errs)
}

// Exempts reports whether the exception exempts a pod with these labels:
// when the pod carries any one of spec.podLabels, with the label key equal
// and the value equal ignoring case. These are aad-pod-identity's
// semantics (its labelInExceptionList), whose docs told users to "include
// at least one of the labels"; an exception that carried over with them
// must exempt the same pods. An exception whose podLabels are empty exempts
// nothing (see Validate).
func (e *AzurePodIdentityException) Exempts(labels map[string]string) bool {
	for k, want := range e.Spec.PodLabels {
		if have, ok := labels[k]; ok && strings.EqualFold(have, want) {
			return true
		}
	}
	return false
}
