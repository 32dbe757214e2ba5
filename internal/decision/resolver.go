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
	"k8s.io/apimachinery/pkg/types"

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
	// ErrCrossNamespaceBinding: no AzureIdentityBinding in the pod's
	// namespace has the pod's selector, but bindings of other namespaces
	// do, and the webhook resolves in the pod's namespace only (the
	// default). The error is a *CrossNamespaceError, which names them, and
	// matches ErrNoBinding too.
	ErrCrossNamespaceBinding = errors.New("AzureIdentityBinding only in other namespaces")
	// ErrCrossNamespaceIdentity: in the aad-pod-identity compatibility
	// mode, a binding of another namespace binds an AzureIdentity that
	// cannot serve the pod: one of type 1 or 2, whose Secret the sidecar
	// could not mount, or, when the pod is left with no identity, one
	// annotated Behavior: namespaced.
	ErrCrossNamespaceIdentity = errors.New("AzureIdentity of another namespace cannot serve the pod")
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

// Resolve returns the identities that the bindings with selector give a
// pod of namespace. Every error names the namespace, the selector and the
// object at fault, and says what to do.
//
// The bindings are those of namespace, and, in the aad-pod-identity
// compatibility mode (CrossNamespace), those of every other namespace
// too; each binding's AzureIdentity is looked up in the binding's own
// namespace (see crossNamespace for what a binding of another namespace
// may bind). Without that mode, a pod that only other namespaces' bindings
// would serve is denied with a message that names them and the mode.
//
// As aad-pod-identity did, a binding whose AzureIdentity does not exist is
// skipped when another binding of the selector still gives the pod an
// identity: the pod gets the rest, and a warning names the binding. Only
// when no identity is left is the pod denied. A binding whose selector
// cannot be read matches no pod; it is named in a warning, and in the
// denial when the pod finds no binding, since it may be the one meant.
func (r *Planner) Resolve(ctx context.Context, namespace, selector string) (Resolution, error) {
	var res Resolution
	var bindings, unreadable, foreign []aadv1.AzureIdentityBinding
	var err error
	if r.CrossNamespace {
		// Every namespace's bindings first. When only other namespaces
		// have the selector, the pod's own namespace is not listed: a
		// lookup with a fallback would count that as a miss and read it
		// live at every admission of such a pod.
		var local bool
		if foreign, local, err = r.foreignBindings(ctx, namespace, selector); err != nil {
			return res, err
		}
		if local || len(foreign) == 0 {
			bindings, unreadable, err = r.matchingBindings(ctx, namespace, selector)
		}
	} else {
		bindings, unreadable, err = r.matchingBindings(ctx, namespace, selector)
		if err == nil && len(bindings)+len(unreadable) == 0 {
			// Only to name them in the denial: a failed read costs the
			// denial those names, not the pod a decision.
			foreign, _, _ = r.foreignBindings(ctx, namespace, selector)
		}
	}
	if err != nil {
		return res, err
	}
	var unreadableErrs []string
	for i := range unreadable {
		unreadableErrs = append(unreadableErrs, unreadable[i].SelectorErr().Error())
	}
	if len(bindings) == 0 && (len(foreign) == 0 || len(unreadable) > 0 && !r.CrossNamespace) {
		if len(unreadable) > 0 {
			return res, reasonf(ErrInvalidBinding, "no AzureIdentityBinding in namespace %s has selector %q, but %s: %s; a binding whose selector cannot be read matches no pod, so fix it, or create a binding with selector %q",
				namespace, selector, unreadableWhat(len(unreadable)), strings.Join(unreadableErrs, "; "), selector)
		}
		return res, reasonf(ErrNoBinding, "no AzureIdentityBinding in namespace %s has selector %q; create one or fix the pod label %s",
			namespace, selector, names.BindingLabel)
	}
	if len(bindings) == 0 && !r.CrossNamespace {
		return res, newCrossNamespaceError(namespace, selector, foreign)
	}
	for _, e := range unreadableErrs {
		res.Warnings = append(res.Warnings, e+"; it binds no pod until fixed")
	}
	// The pod's own bindings come first, then those of the other
	// namespaces in the order of their namespace, then name: when two
	// identities of one name are bound, the first one wins.
	all := slices.Concat(bindings, foreign)
	at := map[types.NamespacedName]int{} // identity -> index in res.Identities
	holder := map[string]string{}        // identity name -> its namespace
	var skipped []error                  // identities that are missing or may not serve the pod
	for i := range all {
		b := &all[i]
		res.Warnings = append(res.Warnings, b.Warnings()...)
		if err := b.Validate(); err != nil {
			return res, reasonf(ErrInvalidBinding, "selector %q: %w", selector, err)
		}
		weight := b.Spec.Weight
		bindingRef := b.Name
		if b.Namespace != namespace {
			bindingRef = b.Namespace + "/" + b.Name
		}
		key := types.NamespacedName{Namespace: b.Namespace, Name: b.Spec.AzureIdentity}
		if i, ok := at[key]; ok {
			res.BoundBy[key.Name] = append(res.BoundBy[key.Name], bindingRef)
			res.Identities[i].Weight = max(res.Identities[i].Weight, weight)
			continue
		}
		if ns, ok := holder[key.Name]; ok {
			// A pod's identities are told apart by name (the default, the
			// container-identities annotation, the sidecar's config).
			res.Warnings = append(res.Warnings, fmt.Sprintf("AzureIdentityBinding %s/%s (selector %q) binds AzureIdentity %s, but the pod already gets AzureIdentity %s/%s of the same name, which wins (the pod's own namespace first, then the others in alphabetical order); rename one of them to give the pod both",
				b.Namespace, b.Name, selector, key, ns, key.Name))
			continue
		}
		id, warnings, err := r.identity(ctx, namespace, selector, b)
		res.Warnings = append(res.Warnings, warnings...)
		if errors.Is(err, ErrIdentityNotFound) || errors.Is(err, errOwnNamespaceOnly) {
			skipped = append(skipped, err)
			continue
		}
		if err != nil {
			return res, err
		}
		if b.Namespace != namespace {
			res.Warnings = append(res.Warnings, fmt.Sprintf("selector %q in namespace %s resolves to AzureIdentity %s/%s through AzureIdentityBinding %s/%s of namespace %s, because the webhook runs with --%s as aad-pod-identity did; copy both into namespace %s to keep this pod working without that mode",
				selector, namespace, b.Namespace, id.Name, b.Namespace, b.Name, b.Namespace, CrossNamespaceFlag, namespace))
		}
		id.Weight = weight
		if res.BoundBy == nil {
			res.BoundBy = map[string][]string{}
		}
		res.BoundBy[id.Name] = append(res.BoundBy[id.Name], bindingRef)
		at[key] = len(res.Identities)
		holder[key.Name] = b.Namespace
		res.Identities = append(res.Identities, id)
	}
	if len(res.Identities) == 0 {
		if len(skipped) == 1 {
			return res, skipped[0]
		}
		reason := ErrIdentityNotFound
		msgs := make([]string, len(skipped))
		for i, err := range skipped {
			msgs[i] = err.Error()
			if errors.Is(err, ErrCrossNamespaceIdentity) {
				reason = ErrCrossNamespaceIdentity
			}
		}
		return res, reasonf(reason, "%s", strings.Join(msgs, "; "))
	}
	for _, err := range skipped {
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

// foreignBindings lists the bindings of the other namespaces whose
// selector is selector, sorted by namespace, then name, and says whether
// the pod's namespace has one too. The compatibility mode resolves them;
// the default mode reads them only when the pod's namespace has no binding
// of the selector at all, to name them in the denial.
func (r *Planner) foreignBindings(ctx context.Context, namespace, selector string) (foreign []aadv1.AzureIdentityBinding, local bool, err error) {
	items, err := r.Lookup.BindingsWithSelector(ctx, selector)
	if err != nil {
		return nil, false, fmt.Errorf("%w: list AzureIdentityBindings with selector %q in every namespace: %w", ErrLookup, selector, err)
	}
	for i := range items {
		if items[i].Namespace == namespace {
			local = true
			continue
		}
		foreign = append(foreign, items[i])
	}
	return foreign, local, nil
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

// identity fetches and converts the AzureIdentity that b names, in b's
// namespace: a name never reaches into a third namespace. For a binding
// of another namespace than the pod's, crossNamespace says whether the
// identity may serve the pod.
func (r *Planner) identity(ctx context.Context, podNamespace, selector string, b *aadv1.AzureIdentityBinding) (inject.Identity, []string, error) {
	ns := b.Namespace
	ai, err := r.Lookup.Identity(ctx, ns, b.Spec.AzureIdentity)
	switch {
	case err == nil:
	case apierrors.IsNotFound(err) && ns == podNamespace:
		return inject.Identity{}, nil, reasonf(ErrIdentityNotFound, "AzureIdentityBinding %s/%s (selector %q) names AzureIdentity %q, which does not exist in namespace %s; create it there (identities are never looked up in other namespaces) or fix spec.azureIdentity",
			ns, b.Name, selector, b.Spec.AzureIdentity, ns)
	case apierrors.IsNotFound(err):
		return inject.Identity{}, nil, reasonf(ErrIdentityNotFound, "AzureIdentityBinding %s/%s (selector %q) names AzureIdentity %q, which does not exist in namespace %s, the binding's (an identity is looked up in its binding's namespace); create it there or fix spec.azureIdentity",
			ns, b.Name, selector, b.Spec.AzureIdentity, ns)
	case err != nil:
		return inject.Identity{}, nil, fmt.Errorf("%w: get AzureIdentity %s/%s: %w", ErrLookup, ns, b.Spec.AzureIdentity, err)
	}
	warnings := ai.Warnings()
	if w := names.DeprecationWarning(fmt.Sprintf("AzureIdentity %s/%s", ai.Namespace, ai.Name), "annotation", ai.Annotations, names.TokenSourceAnnotation); w != "" {
		warnings = append(warnings, w)
	}
	id, err := r.convert(ai)
	if err != nil {
		return inject.Identity{}, warnings, reasonf(ErrInvalidIdentity, "selector %q: %w", selector, err)
	}
	if ns != podNamespace {
		return id, warnings, crossNamespace(ai, b, id, podNamespace)
	}
	return id, warnings, nil
}

// errOwnNamespaceOnly marks an identity annotated Behavior: namespaced that
// a binding of another namespace binds: aad-pod-identity ignored such a
// binding for the pod, and so does Resolve, as it skips a missing
// identity.
var errOwnNamespaceOnly = errors.New("identity serves only its own namespace")

// crossNamespace says whether ai, bound by b of another namespace than
// podNamespace, may serve a pod of podNamespace in the compatibility mode:
//   - not if it is annotated names.BehaviorAnnotation=BehaviorNamespaced,
//     which keeps it to its own namespace in aad-pod-identity too
//     (errOwnNamespaceOnly, a skip);
//   - not if its source needs a Secret (types 1 and 2): the sidecar mounts
//     Secrets of the pod's namespace only, so it could never read the
//     identity's (a deny, since aad-pod-identity served it);
//   - type 0 otherwise: with a federated credential, Entra ID checks the
//     pod's own namespace and service account in the token's subject.
func crossNamespace(ai *aadv1.AzureIdentity, b *aadv1.AzureIdentityBinding, id inject.Identity, podNamespace string) error {
	if ai.Annotations[names.BehaviorAnnotation] == names.BehaviorNamespaced {
		return reasonf(ErrCrossNamespaceIdentity, "AzureIdentityBinding %s/%s binds AzureIdentity %s/%s, which is annotated %s: %s and so serves only pods of namespace %s, not of %s; copy both into namespace %s to give its pods this identity: %w",
			b.Namespace, b.Name, ai.Namespace, ai.Name, names.BehaviorAnnotation, names.BehaviorNamespaced, ai.Namespace, podNamespace, podNamespace, errOwnNamespaceOnly)
	}
	if id.SecretName != "" {
		return reasonf(ErrCrossNamespaceIdentity, "AzureIdentityBinding %s/%s binds AzureIdentity %s/%s of spec.type %d, whose Secret %s/%s (spec.clientPassword) the sidecar of a pod of namespace %s cannot mount: a pod mounts Secrets of its own namespace only; copy AzureIdentityBinding %s/%s, AzureIdentity %s/%s and Secret %s/%s into namespace %s",
			b.Namespace, b.Name, ai.Namespace, ai.Name, ai.Spec.Type, ai.Namespace, id.SecretName, podNamespace,
			b.Namespace, b.Name, ai.Namespace, ai.Name, ai.Namespace, id.SecretName, podNamespace)
	}
	return nil
}

// maxForeignListed is how many bindings of other namespaces a denial
// names; the rest are counted.
const maxForeignListed = 5

// ForeignBinding is an AzureIdentityBinding of another namespace than the
// pod's, and the AzureIdentity it names in its own namespace.
type ForeignBinding struct {
	Binding, Identity types.NamespacedName
}

// CrossNamespaceError is the denial of a pod that only bindings of other
// namespaces would serve, in the default (namespaced) mode. errors.Is
// matches it against ErrCrossNamespaceBinding; callers that plan a
// migration read what to copy from it.
type CrossNamespaceError struct {
	// Namespace and Selector are the pod's.
	Namespace, Selector string
	// Bindings are the bindings with Selector, sorted by namespace, then
	// name.
	Bindings []ForeignBinding
}

func newCrossNamespaceError(namespace, selector string, foreign []aadv1.AzureIdentityBinding) *CrossNamespaceError {
	e := &CrossNamespaceError{Namespace: namespace, Selector: selector}
	for i := range foreign {
		b := &foreign[i]
		e.Bindings = append(e.Bindings, ForeignBinding{
			Binding:  types.NamespacedName{Namespace: b.Namespace, Name: b.Name},
			Identity: types.NamespacedName{Namespace: b.Namespace, Name: b.Spec.AzureIdentity},
		})
	}
	return e
}

// Error names at most maxForeignListed of the bindings, what to copy, and
// the mode.
func (e *CrossNamespaceError) Error() string {
	var copies []string
	for i, f := range e.Bindings {
		if i == maxForeignListed {
			copies = append(copies, fmt.Sprintf("and %d more", len(e.Bindings)-i))
			break
		}
		copies = append(copies, fmt.Sprintf("AzureIdentityBinding %s with AzureIdentity %s", f.Binding, f.Identity))
	}
	return fmt.Sprintf("no AzureIdentityBinding in namespace %s has selector %q, and the webhook resolves a pod's bindings in its own namespace only; other namespaces have one: copy %s into namespace %s (with the Secret its spec.clientPassword names, for spec.type 1 or 2), "+
		"or run the webhook with --%s to resolve bindings of every namespace as aad-pod-identity did",
		e.Namespace, e.Selector, strings.Join(copies, ", "), e.Namespace, CrossNamespaceFlag)
}

// Is matches ErrCrossNamespaceBinding, and ErrNoBinding, since the pod's
// namespace has none; ResolveReason names the former.
func (e *CrossNamespaceError) Is(target error) bool {
	return target == ErrCrossNamespaceBinding || target == ErrNoBinding
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
