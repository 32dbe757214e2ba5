package decision

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// Errors of resolution. Each deny wraps one of them; the handler counts
// them by reason and tests use errors.Is.
var (
	// ErrNoBinding: no AzureIdentityBinding in the pod's namespace has the
	// pod's selector.
	ErrNoBinding = errors.New("no matching AzureIdentityBinding")
	// ErrInvalidBinding: a matching binding is broken or half-written.
	ErrInvalidBinding = errors.New("invalid AzureIdentityBinding")
	// ErrIdentityNotFound: a binding names an AzureIdentity that does not
	// exist in the pod's namespace.
	ErrIdentityNotFound = errors.New("AzureIdentity not found")
	// ErrInvalidIdentity: the AzureIdentity cannot be served as written.
	ErrInvalidIdentity = errors.New("invalid AzureIdentity")
	// ErrLookup: the cache and the API server could not be read. It is
	// transient, unlike the errors above.
	ErrLookup = errors.New("lookup failed")
)

// reasonError is a message for the user that also matches a sentinel
// under errors.Is, without the sentinel's text in the message: kubectl
// shows the sentence, metrics and tests use the reason.
type reasonError struct {
	reason error
	err    error
}

func (e *reasonError) Error() string { return e.err.Error() }

// Unwrap gives both the reason and what the message wraps.
func (e *reasonError) Unwrap() []error { return []error{e.reason, e.err} }

// reasonf formats a message that errors.Is matches against reason.
func reasonf(reason error, format string, args ...any) error {
	return &reasonError{reason: reason, err: fmt.Errorf(format, args...)}
}

// Defaults fill in what an AzureIdentity leaves out.
type Defaults struct {
	// TenantID is used when spec.tenantID is empty.
	TenantID string
	// AuthorityHost is used when spec.adEndpoint is empty.
	AuthorityHost string
	// AllowedAuthorityHosts are the hosts spec.adEndpoint may name (see
	// sidecarconfig.AllowedHost); empty means
	// sidecarconfig.PublicAuthorityHosts. It must contain AuthorityHost.
	AllowedAuthorityHosts []string
	// TokenSource is the source of type 0 identities without the
	// names.TokenSourceAnnotation: names.TokenSourceFederated or
	// names.TokenSourceIMDS.
	TokenSource string
}

// Resolution is what a selector resolves to.
type Resolution struct {
	// Identities are the bound identities, sorted by name.
	Identities []inject.Identity
	// Warnings name legacy spellings in the objects used.
	Warnings []string
	// BoundBy names, per identity, the bindings that bound it, for
	// explaining the choice.
	BoundBy map[string][]string
}

// Resolve returns the identities that the bindings with selector in
// namespace name. Every error names the namespace, the selector and the
// object at fault, and says what to do.
//
// As aad-pod-identity did, a binding whose AzureIdentity does not exist is
// skipped when another binding of the selector still gives the pod an
// identity: the pod gets the rest, and a warning names the binding. Only
// when no identity is left is the pod denied. A binding whose selector
// cannot be read matches no pod; it is named in a warning, and in the
// denial when the pod finds no binding, since it may be the one meant.
func (r *Planner) Resolve(ctx context.Context, namespace, selector string) (Resolution, error) {
	var res Resolution
	bindings, unreadable, err := r.matchingBindings(ctx, namespace, selector)
	if err != nil {
		return res, err
	}
	var unreadableErrs []string
	for i := range unreadable {
		unreadableErrs = append(unreadableErrs, unreadable[i].SelectorErr().Error())
	}
	if len(bindings) == 0 {
		if len(unreadable) > 0 {
			return res, reasonf(ErrInvalidBinding, "no AzureIdentityBinding in namespace %s has selector %q, but %s: %s; a binding whose selector cannot be read matches no pod, so fix it, or create a binding with selector %q",
				namespace, selector, unreadableWhat(len(unreadable)), strings.Join(unreadableErrs, "; "), selector)
		}
		return res, reasonf(ErrNoBinding, "no AzureIdentityBinding in namespace %s has selector %q; create one or fix the pod label %s",
			namespace, selector, names.BindingLabel)
	}
	for _, e := range unreadableErrs {
		res.Warnings = append(res.Warnings, e+"; it binds no pod until fixed")
	}
	byName := map[string]int{} // identity name -> index in res.Identities
	var missing []error
	for i := range bindings {
		b := &bindings[i]
		res.Warnings = append(res.Warnings, b.Warnings()...)
		if err := b.Validate(); err != nil {
			return res, reasonf(ErrInvalidBinding, "selector %q: %w", selector, err)
		}
		weight := b.Spec.Weight
		if res.BoundBy == nil {
			res.BoundBy = map[string][]string{}
		}
		res.BoundBy[b.Spec.AzureIdentity] = append(res.BoundBy[b.Spec.AzureIdentity], b.Name)
		if at, ok := byName[b.Spec.AzureIdentity]; ok {
			res.Identities[at].Weight = max(res.Identities[at].Weight, weight)
			continue
		}
		id, warnings, err := r.identity(ctx, namespace, selector, b)
		res.Warnings = append(res.Warnings, warnings...)
		if errors.Is(err, ErrIdentityNotFound) {
			missing = append(missing, err)
			continue
		}
		if err != nil {
			return res, err
		}
		id.Weight = weight
		byName[id.Name] = len(res.Identities)
		res.Identities = append(res.Identities, id)
	}
	if len(res.Identities) == 0 {
		if len(missing) == 1 {
			return res, missing[0]
		}
		msgs := make([]string, len(missing))
		for i, err := range missing {
			msgs[i] = err.Error()
		}
		return res, reasonf(ErrIdentityNotFound, "%s", strings.Join(msgs, "; "))
	}
	for _, err := range missing {
		res.Warnings = append(res.Warnings, err.Error()+"; the pod gets the other identities of selector "+strconv.Quote(selector)+" without it")
	}
	slices.SortFunc(res.Identities, func(a, b inject.Identity) int { return strings.Compare(a.Name, b.Name) })
	return res, nil
}

// unreadableWhat introduces the list of unreadable bindings.
func unreadableWhat(n int) string {
	if n == 1 {
		return "one binding's selector cannot be read"
	}
	return strconv.Itoa(n) + " bindings' selectors cannot be read"
}

// matchingBindings lists the bindings of namespace whose selector equals
// selector, and those whose selector cannot be read.
func (r *Planner) matchingBindings(ctx context.Context, namespace, selector string) (found, unreadable []aadv1.AzureIdentityBinding, err error) {
	items, err := r.Lookup.Bindings(ctx, namespace, selector)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: list AzureIdentityBindings in namespace %s: %w", ErrLookup, namespace, err)
	}
	found, unreadable = filterBindings(items, selector)
	return found, unreadable, nil
}

// filterBindings keeps the bindings whose selector equals selector exactly,
// as aad-pod-identity compared them, and apart those whose selector cannot
// be read, each sorted by name for determinism.
func filterBindings(items []aadv1.AzureIdentityBinding, selector string) (found, unreadable []aadv1.AzureIdentityBinding) {
	for i := range items {
		switch {
		case items[i].SelectorErr() != nil:
			unreadable = append(unreadable, items[i])
		case items[i].Spec.Selector == selector:
			found = append(found, items[i])
		}
	}
	byName := func(a, b aadv1.AzureIdentityBinding) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(found, byName)
	slices.SortFunc(unreadable, byName)
	return found, unreadable
}

// identity fetches and converts the AzureIdentity that b names. The
// identity is looked up in the binding's namespace, which is the pod's: a
// name can never reach into another namespace.
func (r *Planner) identity(ctx context.Context, namespace, selector string, b *aadv1.AzureIdentityBinding) (inject.Identity, []string, error) {
	ai, err := r.Lookup.Identity(ctx, namespace, b.Spec.AzureIdentity)
	switch {
	case err == nil:
	case apierrors.IsNotFound(err):
		return inject.Identity{}, nil, reasonf(ErrIdentityNotFound, "AzureIdentityBinding %s/%s (selector %q) names AzureIdentity %q, which does not exist in namespace %s; create it there (identities are never looked up in other namespaces) or fix spec.azureIdentity",
			namespace, b.Name, selector, b.Spec.AzureIdentity, namespace)
	case err != nil:
		return inject.Identity{}, nil, fmt.Errorf("%w: get AzureIdentity %s/%s: %w", ErrLookup, namespace, b.Spec.AzureIdentity, err)
	}
	warnings := ai.Warnings()
	if w := names.DeprecationWarning(fmt.Sprintf("AzureIdentity %s/%s", ai.Namespace, ai.Name), "annotation", ai.Annotations, names.TokenSourceAnnotation); w != "" {
		warnings = append(warnings, w)
	}
	id, err := r.convert(ai)
	if err != nil {
		return inject.Identity{}, warnings, reasonf(ErrInvalidIdentity, "selector %q: %w", selector, err)
	}
	return id, warnings, nil
}

// convert turns a valid AzureIdentity into what inject needs, applying the
// defaults.
func (r *Planner) convert(ai *aadv1.AzureIdentity) (inject.Identity, error) {
	ref := fmt.Sprintf("AzureIdentity %s/%s", ai.Namespace, ai.Name)
	// The authority first: it decides where the credentials go.
	authority := cmp.Or(ai.Spec.ADEndpoint, r.Defaults.AuthorityHost)
	if authority != "" {
		allowed := r.Defaults.AllowedAuthorityHosts
		if len(allowed) == 0 {
			allowed = sidecarconfig.PublicAuthorityHosts
		}
		if err := sidecarconfig.CheckAuthority(authority, allowed); err != nil {
			return inject.Identity{}, fmt.Errorf("%s: spec.adEndpoint %q may not receive this identity's credentials: %w; use an https authority on the webhook's --allowed-authority-hosts, or ask the cluster operator to add its host there",
				ref, authority, err)
		}
	}
	if err := ai.Validate(); err != nil {
		return inject.Identity{}, err
	}
	id := inject.Identity{Identity: sidecarconfig.Identity{
		Name:                       ai.Name,
		Namespace:                  ai.Namespace,
		ClientID:                   ai.Spec.ClientID,
		TenantID:                   cmp.Or(ai.Spec.TenantID, r.Defaults.TenantID),
		ResourceID:                 ai.Spec.ResourceID,
		AuthorityHost:              authority,
		AdditionallyAllowedTenants: ai.Spec.AuxiliaryTenantIDs,
	}}
	// Discovery is the library's own refusal of an unknown host; it is
	// turned off only for a host that passed the allow-list above.
	id.DisableInstanceDiscovery = authority != "" && !sidecarconfig.IsPublicAuthority(authority)
	// The type chooses the source; a type 0 identity's annotation, else
	// the webhook's default, chooses among type 0's (sidecarconfig.Sources).
	chosen, _ := names.Lookup(ai.Annotations, names.TokenSourceAnnotation)
	chosen = cmp.Or(chosen, r.Defaults.TokenSource, names.TokenSourceFederated)
	spec, ok := sidecarconfig.SourceForType(int(ai.Spec.Type), chosen)
	if !ok {
		return inject.Identity{}, fmt.Errorf("%s: annotation %s is %q; set it to one of %s",
			ref, names.TokenSourceAnnotation, chosen, sidecarconfig.SourceNames(int(ai.Spec.Type)))
	}
	id.Source = spec.Name
	if spec.Secret {
		id.SecretName = ai.Spec.ClientPassword.Name
	}
	if spec.Tenant && id.TenantID == "" {
		return inject.Identity{}, fmt.Errorf("%s has no spec.tenantID and the webhook has no --default-tenant-id; set spec.tenantID to the identity's Entra tenant", ref)
	}
	return id, nil
}
