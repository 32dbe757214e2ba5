// Package migrate plans the move of a cluster off aad-pod-identity: for
// every AzureIdentity, which (namespace, service account) subjects will
// present tokens, the federated identity credentials to create in Azure for
// them, and what blocks a switch.
//
// It decides nothing of its own about a pod: every workload goes through
// the webhook's decision.Planner, and the plan reads the identities, token
// sources, tenants and audiences from the decisions. What the plan adds is
// what only a view of the whole estate sees: Entra's limit of federated
// credentials per managed identity, credential names that are unique per
// cluster, NMI's other clients (Secrets Store CSI SecretProviderClasses),
// and for the workloads that only another namespace's binding serves, both
// ways out (crossnamespace.go), each planned again with the same Planner.
package migrate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/manifest"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// MaxFederatedCredentials is Entra ID's limit of federated identity
// credentials on one user-assigned managed identity.
const MaxFederatedCredentials = 20

// Options are what the planner cannot read from the objects.
type Options struct {
	// Issuer is the cluster's service account issuer URL, the iss of its
	// projected tokens.
	Issuer string
	// ClusterName is the cluster part of every credential name; empty
	// derives one from Issuer (DefaultClusterName).
	ClusterName string
	// Decision are the webhook's flags: the plan decides every workload
	// with the Planner they build, as the webhook and explain do.
	Decision decision.Flags
	// Secrets, when not nil, holds "namespace/name" of every Secret that
	// exists, so that a type 1 or 2 identity whose Secret is missing is a
	// blocker. Nil means unknown, and nothing is checked.
	Secrets map[string]bool
	// SecretProviderClasses are the Secrets Store CSI objects read beside
	// the set (ReadFile, or a live list).
	SecretProviderClasses []SecretProviderClass
}

// Report is the plan.
type Report struct {
	Issuer string `json:"issuer"`
	// Cluster is the cluster part of the credential names.
	Cluster    string     `json:"cluster"`
	Identities []Identity `json:"identities"`
	// SecretProviderClasses are those that get tokens from NMI, and their
	// workload identity form.
	SecretProviderClasses []SecretProviderClassPlan `json:"secretProviderClasses,omitempty"`
	Blockers              []Blocker                 `json:"blockers"`
	// CopyToNamespace and CrossNamespaceMode are the two ways out for the
	// workloads that only other namespaces' bindings serve (blockers of
	// reason ReasonCrossNamespace): copy the objects into each pod's
	// namespace, or run the webhook in the aad-pod-identity compatibility
	// mode. Either way Entra ID checks the pod's own namespace and service
	// account, so both list the same federated credentials.
	CopyToNamespace    []NamespaceCopy     `json:"copyToNamespace,omitempty"`
	CrossNamespaceMode *CrossNamespaceMode `json:"crossNamespaceMode,omitempty"`
}

// Identity is one AzureIdentity and who will use it.
type Identity struct {
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Type       int    `json:"type"`
	ClientID   string `json:"clientID"`
	ResourceID string `json:"resourceID,omitempty"`
	// Source, TenantID and AuthorityHost are the decision's, with the
	// webhook's defaults applied; empty when no workload resolves it.
	Source        string    `json:"source,omitempty"`
	TenantID      string    `json:"tenantID,omitempty"`
	AuthorityHost string    `json:"authorityHost,omitempty"`
	Subjects      []Subject `json:"subjects"`
	// Credentials are the federated identity credentials to create: one per
	// subject of a federated source, and none that another copy of the
	// same managed identity already lists.
	Credentials []Credential `json:"federatedCredentials,omitempty"`
}

// Subject is a service account whose pods will present tokens for an
// identity, and the workloads that make it one.
type Subject struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	// Audience is the projected token's, as the decision injects it.
	Audience  string   `json:"audience"`
	Workloads []string `json:"workloads"`
	// federated: the subject needs a federated credential, because its
	// identity's source reads the projected token or a
	// SecretProviderClass's CSI driver presents one.
	federated bool
}

// Credential is one federated identity credential on a managed identity.
type Credential struct {
	// Name is the credential's name in Azure (CredentialName).
	Name string `json:"name"`
	// Subscription, ResourceGroup and IdentityName come from the
	// identity's resourceID.
	Subscription  string `json:"subscription"`
	ResourceGroup string `json:"resourceGroup"`
	IdentityName  string `json:"identityName"`
	Issuer        string `json:"issuer"`
	Subject       string `json:"subject"`
	Audience      string `json:"audience"`
}

// Blocker is something that must be fixed before the switch.
type Blocker struct {
	// Reason is a stable code, for scripts.
	Reason string `json:"reason"`
	// Object is the object at fault, such as "AzureIdentity team-a/reader".
	Object string `json:"object"`
	// Message says what is wrong, in which field, and what to do.
	Message string `json:"message"`
}

// Blocker reasons. A workload the webhook would deny is blocked with the
// reason of its decision (ResolveReason's, else ReasonDenied) and the
// webhook's own message.
const (
	ReasonTooManySubjects   = "too-many-subjects"
	ReasonAudienceConflict  = "audience-conflict"
	ReasonSecretMissing     = "secret-missing"
	ReasonResourceIDMissing = "resource-id-missing"
	ReasonClientIDInvalid   = "client-id-invalid"
	ReasonTenantIDInvalid   = "tenant-id-invalid"
	ReasonResourceIDInvalid = "resource-id-invalid"
	ReasonBindingUnused     = "binding-unused"
	ReasonPodNeedsRestart   = "pod-needs-restart"
	ReasonNamespaceNotOptIn = "namespace-not-opted-in"
	ReasonSecretProvider    = "secret-provider-class-uses-pod-identity"
	// ReasonCrossNamespace is a workload that only bindings of other
	// namespaces serve, denied in the webhook's default mode; the report's
	// CopyToNamespace and CrossNamespaceMode are the ways out.
	ReasonCrossNamespace = "cross-namespace-binding"
	// ReasonCrossNamespaceIdentity is a workload whose binding of another
	// namespace binds an identity that cannot serve it from there (type 1
	// or 2, or annotated Behavior: namespaced).
	ReasonCrossNamespaceIdentity = "cross-namespace-identity"
	// ReasonCopyConflict is an object of copyToNamespace that the pod's
	// namespace already has under its name, with other contents.
	ReasonCopyConflict = "copy-conflict"
	// ReasonDenied is a workload the webhook would deny for its own shape
	// (hostNetwork, hostPID, Windows, a port collision, an annotation).
	ReasonDenied = "denied"
	// ReasonErrored is a workload the decision could not be made for.
	ReasonErrored = "errored"
	// Reasons of a denied workload whose objects do not resolve.
	ReasonSelectorUnbound = "selector-unbound"
	ReasonBindingInvalid  = "binding-invalid"
	ReasonIdentityMissing = "identity-missing"
	ReasonIdentityInvalid = "identity-invalid"
)

// denyReasons map the decision's sentinels to blocker reasons.
var denyReasons = []struct {
	err    error
	reason string
}{
	{decision.ErrCrossNamespaceBinding, ReasonCrossNamespace},
	{decision.ErrCrossNamespaceIdentity, ReasonCrossNamespaceIdentity},
	{decision.ErrNoBinding, ReasonSelectorUnbound},
	{decision.ErrInvalidBinding, ReasonBindingInvalid},
	{decision.ErrIdentityNotFound, ReasonIdentityMissing},
	{decision.ErrInvalidIdentity, ReasonIdentityInvalid},
}

// headerPlaceholder is the IDENTITY_HEADER of the pods the plan decides
// for: the plan never shows a pod, and needs no random value.
const headerPlaceholder = "(migrate)"

// Plan builds the report. set.Workloads holds the running pods (Kind Pod)
// and the pod templates of workloads; a pod and its Deployment's template
// name the same subject, which is listed once. It fails only when the
// flags in opts cannot make a Planner.
//
// A workload that only other namespaces' bindings serve is a blocker in
// the webhook's default mode, and the report offers both ways out, each
// planned again from the objects: CopyToNamespace and CrossNamespaceMode.
func Plan(ctx context.Context, set *manifest.Set, opts Options) (Report, error) {
	p, err := newPlan(ctx, set, opts)
	if err != nil {
		return Report{}, err
	}
	if err := p.crossNamespaceWays(ctx); err != nil {
		return Report{}, err
	}
	return p.report, nil
}

// newPlan plans set as the webhook with opts.Decision would decide it.
func newPlan(ctx context.Context, set *manifest.Set, opts Options) (*plan, error) {
	memory := decision.NewMemoryLookup(set)
	planner, err := opts.Decision.NewPlanner(memory, memory, opts.Decision.NativeSidecar != "false")
	if err != nil {
		return nil, err
	}
	planner.NewSecret = func() (string, error) { return headerPlaceholder, nil }
	cluster := cmp.Or(opts.ClusterName, DefaultClusterName(opts.Issuer))
	p := &plan{set: set, opts: opts, planner: planner, cluster: cluster,
		copies:  map[string]*copyState{},
		report:  Report{Issuer: opts.Issuer, Cluster: cluster, Identities: []Identity{}, Blockers: []Blocker{}},
		decided: map[string]decided{}}
	p.run(ctx)
	return p, nil
}

// plan is the state of one Plan.
type plan struct {
	set     *manifest.Set
	opts    Options
	planner *decision.Planner
	cluster string
	report  Report
	// copies are the AzureIdentities by namespace/name, with what the
	// decisions resolved them to and the subjects that use them.
	copies map[string]*copyState
	// decided are the workloads' decisions by Ref, for the
	// SecretProviderClasses their pods mount.
	decided map[string]decided
	// crossDenied are the workloads denied because only other namespaces'
	// bindings serve them (the default mode), and crossServed those that
	// such bindings serve (the compatibility mode).
	crossDenied []crossDenial
	crossServed []string
}

// copyState is one AzureIdentity as the plan sees it.
type copyState struct {
	ai *aadv1.AzureIdentity
	// resolved is the identity as a decision resolved it, nil when no
	// workload resolves it.
	resolved *inject.Identity
	subjects map[string]*Subject // namespace/serviceAccount/audience -> subject
}

// decided is a workload's decision, reduced to what the plan reads.
type decided struct {
	identities      []inject.Identity
	defaultIdentity string
}

// key is namespace/name.
func key(ns, name string) string { return ns + "/" + name }

func (p *plan) block(reason, object, format string, args ...any) {
	p.report.Blockers = append(p.report.Blockers, Blocker{Reason: reason, Object: object, Message: fmt.Sprintf(format, args...)})
}

func (p *plan) run(ctx context.Context) {
	for i := range p.set.Identities {
		ai := &p.set.Identities[i]
		p.copies[key(ai.Namespace, ai.Name)] = &copyState{ai: ai, subjects: map[string]*Subject{}}
	}
	// The webhook's answer for a namespace that had opted in: a skip that
	// this planner turns into anything else is the opt-in's doing.
	open := *p.planner
	open.RequireOptIn = false
	notOptedIn := map[string][]string{}
	notOptedInMsg := map[string]string{}
	for _, w := range p.set.Workloads {
		if _, ok := w.Pod.Labels[names.BindingLabel]; !ok {
			continue
		}
		d := p.planner.Plan(ctx, w.Pod)
		switch d.Outcome {
		case decision.OutcomeSkipped:
			if p.planner.RequireOptIn && open.Plan(ctx, w.Pod).Outcome != decision.OutcomeSkipped {
				notOptedIn[w.Namespace] = append(notOptedIn[w.Namespace], w.Ref())
				notOptedInMsg[w.Namespace] = d.Message
			}
		case decision.OutcomeDenied:
			p.deny(w, d.Err, messageOf(d))
		case decision.OutcomeErrored:
			p.block(ReasonErrored, w.Ref(), "%s: the webhook could not decide: %s; fix the objects it names and run the plan again", w.Ref(), messageOf(d))
		case decision.OutcomeNoChange:
			// A running pod that already has the sidecar: its identities
			// are the ones it was injected with, resolved again.
			res, err := p.planner.Resolve(ctx, w.Namespace, w.Pod.Labels[names.BindingLabel])
			if err != nil {
				p.deny(w, err, fmt.Sprintf("%s: %v", w.Ref(), err))
				continue
			}
			p.use(w, res.Identities, tokenAudience(w.Pod))
			p.decided[w.Ref()] = decided{identities: res.Identities}
		case decision.OutcomeInjected:
			if w.Kind == "Pod" {
				p.block(ReasonPodNeedsRestart, w.Ref(), "pod %s/%s was created without the webhook's sidecar; restart it (or its controller's rollout) after the webhook is installed",
					w.Namespace, w.Name)
			}
			p.use(w, d.Injection.Identities, tokenAudience(d.Injection.Mutated))
			p.decided[w.Ref()] = decided{identities: d.Injection.Identities, defaultIdentity: d.Injection.DefaultIdentity}
		}
	}
	for _, ns := range sortedKeys(notOptedIn) {
		p.block(ReasonNamespaceNotOptIn, "Namespace "+ns, "%s; until then %s would get no identity", notOptedInMsg[ns], strings.Join(notOptedIn[ns], ", "))
	}
	p.unusedBindings()
	p.secretProviderClasses()
	for i := range p.set.Identities {
		ai := &p.set.Identities[i]
		p.identity(p.copies[key(ai.Namespace, ai.Name)])
	}
	p.credentials()
	sortBlockers(p.report.Blockers)
}

// sortBlockers orders blockers by object, then reason.
func sortBlockers(blockers []Blocker) {
	slices.SortStableFunc(blockers, func(a, b Blocker) int {
		return cmp.Or(strings.Compare(a.Object, b.Object), strings.Compare(a.Reason, b.Reason))
	})
}

// deny blocks a workload the webhook denies with err, and keeps what a
// cross-namespace denial names to copy.
func (p *plan) deny(w manifest.Workload, err error, msg string) {
	var cn *decision.CrossNamespaceError
	if errors.As(err, &cn) {
		p.crossDenied = append(p.crossDenied, crossDenial{workload: w, err: cn})
		msg += "; the plan shows both ways out (copyToNamespace, crossNamespaceMode)"
	}
	p.block(denyReason(err), w.Ref(), "%s", msg)
}

// use records that w's pods present tokens, with audience, for ids.
func (p *plan) use(w manifest.Workload, ids []inject.Identity, audience string) {
	if slices.ContainsFunc(ids, func(id inject.Identity) bool { return id.Namespace != w.Namespace }) {
		p.crossServed = append(p.crossServed, w.Ref())
	}
	for i := range ids {
		c := p.copies[key(ids[i].Namespace, ids[i].Name)]
		if c == nil {
			continue // resolved from an object the set does not hold
		}
		if c.resolved == nil {
			c.resolved = &ids[i]
		}
		// Only a source that reads the projected token presents it.
		spec, _ := sidecarconfig.LookupSource(ids[i].Source)
		a := ""
		if spec.TokenFile {
			a = audience
		}
		c.addSubject(w.Namespace, decision.ServiceAccountOf(w.Pod), a, w.Ref(), spec.TokenFile)
	}
}

// addSubject adds (namespace, serviceAccount, audience) to c, used by
// workload; federated says whether it needs a federated credential.
func (c *copyState) addSubject(namespace, serviceAccount, audience, workload string, federated bool) {
	k := key(key(namespace, serviceAccount), audience)
	s := c.subjects[k]
	if s == nil {
		s = &Subject{Namespace: namespace, ServiceAccount: serviceAccount, Audience: audience}
		c.subjects[k] = s
	}
	s.federated = s.federated || federated
	if !slices.Contains(s.Workloads, workload) {
		s.Workloads = append(s.Workloads, workload)
	}
}

// tokenAudience is the audience of an injected pod's projected token, as
// the decision wrote it (the pod's annotation, else --token-audience).
func tokenAudience(pod *corev1.Pod) string {
	for _, v := range pod.Spec.Volumes {
		if v.Name != names.TokenVolumeName || v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ServiceAccountToken != nil {
				return src.ServiceAccountToken.Audience
			}
		}
	}
	return ""
}

// denyReason is the blocker reason of a denied decision's error.
func denyReason(err error) string {
	for _, r := range denyReasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return ReasonDenied
}

// messageOf is what kubectl would show for a denied or failed pod.
func messageOf(d decision.Decision) string {
	if d.Message == "" && d.Err != nil {
		return d.Err.Error()
	}
	return d.Message
}

// unusedBindings blocks the bindings that no labelled workload carries the
// selector of: after the switch they serve nothing.
//
// A binding that a cross-namespace denial names is not unused: it is what
// to copy. In the compatibility mode, a binding serves the selector in
// every namespace.
func (p *plan) unusedBindings() {
	used := map[string]bool{} // namespace/selector, or /selector in the compatibility mode
	for _, w := range p.set.Workloads {
		if sel, ok := w.Pod.Labels[names.BindingLabel]; ok {
			used[key(w.Namespace, sel)] = true
			used[key("", sel)] = p.planner.CrossNamespace
		}
	}
	named := map[string]bool{} // namespace/name
	for _, d := range p.crossDenied {
		for _, f := range d.err.Bindings {
			named[f.Binding.String()] = true
		}
	}
	for i := range p.set.Bindings {
		b := &p.set.Bindings[i]
		if named[key(b.Namespace, b.Name)] || used[key("", b.Spec.Selector)] {
			continue
		}
		if b.SelectorErr() == nil && !used[key(b.Namespace, b.Spec.Selector)] {
			p.block(ReasonBindingUnused, fmt.Sprintf("AzureIdentityBinding %s/%s", b.Namespace, b.Name),
				"no pod or pod template in namespace %s carries %s=%q (spec.selector); delete the binding, or label the pods that should use it",
				b.Namespace, names.BindingLabel, b.Spec.Selector)
		}
	}
}

// identity adds one AzureIdentity to the report, with what its decisions
// resolved, and blocks what keeps its commands from being printed.
func (p *plan) identity(c *copyState) {
	ai := c.ai
	ref := fmt.Sprintf("AzureIdentity %s/%s", ai.Namespace, ai.Name)
	id := Identity{
		Namespace: ai.Namespace, Name: ai.Name, Type: int(ai.Spec.Type),
		ClientID: ai.Spec.ClientID, ResourceID: ai.Spec.ResourceID, TenantID: ai.Spec.TenantID, Subjects: []Subject{},
	}
	for _, k := range sortedKeys(c.subjects) {
		id.Subjects = append(id.Subjects, *c.subjects[k])
	}
	p.report.Identities = append(p.report.Identities, id)
	r := c.resolved
	if r == nil {
		return
	}
	at := &p.report.Identities[len(p.report.Identities)-1]
	at.Source, at.TenantID, at.AuthorityHost = r.Source, r.TenantID, r.AuthorityHost
	spec, _ := sidecarconfig.LookupSource(r.Source)
	if spec.Secret && p.opts.Secrets != nil && !p.opts.Secrets[key(ai.Namespace, r.SecretName)] {
		p.block(ReasonSecretMissing, ref, "%s (type %d) needs Secret %s/%s (spec.clientPassword.name), which does not exist; create it in namespace %s before the switch",
			ref, ai.Spec.Type, ai.Namespace, r.SecretName, ai.Namespace)
	}
}

// resourceIDForm is the shape of a user-assigned identity's ARM ID, for
// messages.
const resourceIDForm = "/subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>"

// wellFormed blocks an identity whose client ID, tenant ID or resource ID
// is not of the shape Azure gives it, and reports whether all are. No
// command is printed for an identity that is not: its values would reach
// the admin's shell or Terraform as written by whoever edits the object.
func (p *plan) wellFormed(id Identity, ai *aadv1.AzureIdentity) bool {
	ref := fmt.Sprintf("AzureIdentity %s/%s", id.Namespace, id.Name)
	ok := true
	if !isGUID(id.ClientID) {
		ok = false
		p.block(ReasonClientIDInvalid, ref, "%s has spec.clientID %q, which is not a GUID; set it to the client ID of the managed identity or service principal (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx). No command is printed for this identity",
			ref, id.ClientID)
	}
	if id.TenantID != "" && !isGUID(id.TenantID) {
		ok = false
		field := "spec.tenantID"
		if ai.Spec.TenantID == "" {
			field = "--default-tenant-id"
		}
		p.block(ReasonTenantIDInvalid, ref, "%s has %s %q, which is not a GUID; set %s to the directory (tenant) ID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx). No command is printed for this identity",
			ref, field, id.TenantID, field)
	}
	if id.ResourceID != "" {
		if _, parsed := parseResourceID(id.ResourceID); !parsed {
			ok = false
			p.block(ReasonResourceIDInvalid, ref, "%s has spec.resourceID %q, which is not the ARM ID of a user-assigned managed identity; set it to %s. No command is printed for this identity",
				ref, id.ResourceID, resourceIDForm)
		}
	}
	return ok
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
