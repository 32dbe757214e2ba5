// Package migrate plans the move of a cluster off aad-pod-identity: for
// every AzureIdentity, which (namespace, service account) subjects will
// present tokens, the federated identity credentials to create in Azure for
// them, and what blocks a switch. It is a pure function of the objects it
// is given, so that the kubectl plugin reads them live and tests give them
// from files.
package migrate

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
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
	// DefaultTenantID and DefaultTokenSource mirror the webhook's flags of
	// the same names.
	DefaultTenantID    string
	DefaultTokenSource string
	// RequireOptIn mirrors the webhook: namespaces must opt in.
	RequireOptIn bool
	// Secrets, when not nil, holds "namespace/name" of every Secret that
	// exists, so that a type 1 or 2 identity whose Secret is missing is a
	// blocker. Nil means unknown, and nothing is checked.
	Secrets map[string]bool
}

// Report is the plan.
type Report struct {
	Issuer     string     `json:"issuer"`
	Identities []Identity `json:"identities"`
	Blockers   []Blocker  `json:"blockers"`
}

// Identity is one AzureIdentity and who will use it.
type Identity struct {
	Namespace  string    `json:"namespace"`
	Name       string    `json:"name"`
	Type       int       `json:"type"`
	Source     string    `json:"source"`
	ClientID   string    `json:"clientID"`
	TenantID   string    `json:"tenantID,omitempty"`
	ResourceID string    `json:"resourceID,omitempty"`
	Subjects   []Subject `json:"subjects"`
	// Credentials are the federated identity credentials to create: one per
	// subject, for a federated source only.
	Credentials []Credential `json:"federatedCredentials,omitempty"`
}

// Subject is a service account whose pods will present tokens for an
// identity, and the workloads that make it one.
type Subject struct {
	Namespace      string   `json:"namespace"`
	ServiceAccount string   `json:"serviceAccount"`
	Workloads      []string `json:"workloads"`
}

// Credential is one federated identity credential on a managed identity.
type Credential struct {
	// Name is the credential's name in Azure.
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
	// Message says what is wrong and what to do.
	Message string `json:"message"`
}

// Blocker reasons.
const (
	ReasonTooManySubjects    = "too-many-subjects"
	ReasonSecretMissing      = "secret-missing"
	ReasonTenantMissing      = "tenant-missing"
	ReasonIdentityInvalid    = "identity-invalid"
	ReasonIdentityMissing    = "identity-missing"
	ReasonResourceIDMissing  = "resource-id-missing"
	ReasonClientIDInvalid    = "client-id-invalid"
	ReasonTenantIDInvalid    = "tenant-id-invalid"
	ReasonResourceIDInvalid  = "resource-id-invalid"
	ReasonSelectorUnbound    = "selector-unbound"
	ReasonBindingUnused      = "binding-unused"
	ReasonBindingInvalid     = "binding-invalid"
	ReasonPodNeedsRestart    = "pod-needs-restart"
	ReasonNamespaceNotOptIn  = "namespace-not-opted-in"
	ReasonUnknownTokenSource = "unknown-token-source"
)

// Plan builds the report. set.Workloads holds the running pods (Kind Pod)
// and the pod templates of workloads; a pod and its Deployment's template
// name the same subject, which is listed once.
func Plan(set *manifest.Set, opts Options) Report {
	p := planner{set: set, opts: opts, report: Report{Issuer: opts.Issuer, Identities: []Identity{}, Blockers: []Blocker{}}}
	p.run()
	return p.report
}

type planner struct {
	set    *manifest.Set
	opts   Options
	report Report
}

// key is namespace/name.
func key(ns, name string) string { return ns + "/" + name }

func (p *planner) block(reason, object, format string, args ...any) {
	p.report.Blockers = append(p.report.Blockers, Blocker{Reason: reason, Object: object, Message: fmt.Sprintf(format, args...)})
}

func (p *planner) run() {
	set := p.set
	optedIn := map[string]bool{}
	for _, ns := range set.Namespaces {
		optedIn[ns.Name] = namespaceOptedIn(ns.Labels, ns.Annotations)
	}
	// Bindings by namespace and selector; which are used.
	type bindingRef struct {
		b    *aadv1.AzureIdentityBinding
		used bool
	}
	bindings := map[string][]*bindingRef{} // namespace/selector -> bindings
	var allBindings []*bindingRef
	for i := range set.Bindings {
		b := &set.Bindings[i]
		ref := fmt.Sprintf("AzureIdentityBinding %s/%s", b.Namespace, b.Name)
		if err := b.Validate(); err != nil {
			p.block(ReasonBindingInvalid, ref, "%v", err)
			continue
		}
		br := &bindingRef{b: b}
		allBindings = append(allBindings, br)
		k := key(b.Namespace, b.Spec.Selector)
		bindings[k] = append(bindings[k], br)
	}
	identities := map[string]*aadv1.AzureIdentity{}
	for i := range set.Identities {
		identities[key(set.Identities[i].Namespace, set.Identities[i].Name)] = &set.Identities[i]
	}

	// Subjects per identity, from the workloads that will be injected.
	subjects := map[string]map[string]*Subject{} // identity key -> ns/sa -> subject
	notOptedIn := map[string][]string{}
	for _, w := range set.Workloads {
		pod := w.Pod
		selector, ok := pod.Labels[names.BindingLabel]
		if !ok || podOptedOut(pod) || p.exempt(w.Namespace, pod.Labels) {
			continue
		}
		matched := bindings[key(w.Namespace, selector)]
		for _, br := range matched {
			br.used = true // by a labelled pod, even if its namespace blocks it
		}
		if p.opts.RequireOptIn && !optedIn[w.Namespace] {
			notOptedIn[w.Namespace] = append(notOptedIn[w.Namespace], w.Ref())
			continue
		}
		if len(matched) == 0 {
			p.block(ReasonSelectorUnbound, w.Ref(), "%s has %s=%q, which no AzureIdentityBinding in namespace %s selects; create a binding with spec.selector %q or fix the label",
				w.Ref(), names.BindingLabel, selector, w.Namespace, selector)
			continue
		}
		if w.Kind == "Pod" && !injected(pod) {
			p.block(ReasonPodNeedsRestart, w.Ref(), "pod %s/%s was created without the webhook's sidecar; restart it (or its controller's rollout) after the webhook is installed",
				w.Namespace, w.Name)
		}
		sa := cmp.Or(pod.Spec.ServiceAccountName, "default")
		for _, br := range matched {
			ik := key(w.Namespace, br.b.Spec.AzureIdentity)
			if subjects[ik] == nil {
				subjects[ik] = map[string]*Subject{}
			}
			s := subjects[ik][key(w.Namespace, sa)]
			if s == nil {
				s = &Subject{Namespace: w.Namespace, ServiceAccount: sa}
				subjects[ik][key(w.Namespace, sa)] = s
			}
			if !slices.Contains(s.Workloads, w.Ref()) {
				s.Workloads = append(s.Workloads, w.Ref())
			}
		}
	}
	for _, ns := range sortedKeys(notOptedIn) {
		p.block(ReasonNamespaceNotOptIn, "Namespace "+ns, "namespace %s has not opted in, so %s would get no identity; annotate it %s=%s",
			ns, strings.Join(notOptedIn[ns], ", "), names.InjectAnnotation, names.InjectEnabled)
	}
	for _, br := range allBindings {
		b := br.b
		ref := fmt.Sprintf("AzureIdentityBinding %s/%s", b.Namespace, b.Name)
		if _, ok := identities[key(b.Namespace, b.Spec.AzureIdentity)]; !ok {
			p.block(ReasonIdentityMissing, ref, "%s names AzureIdentity %q, which does not exist in namespace %s; create it there or fix spec.azureIdentity",
				ref, b.Spec.AzureIdentity, b.Namespace)
		}
		if !br.used {
			p.block(ReasonBindingUnused, ref, "no pod or pod template in namespace %s carries %s=%q; delete the binding, or label the pods that should use it",
				b.Namespace, names.BindingLabel, b.Spec.Selector)
		}
	}
	for i := range set.Identities {
		p.identity(&set.Identities[i], subjects[key(set.Identities[i].Namespace, set.Identities[i].Name)])
	}
	slices.SortStableFunc(p.report.Blockers, func(a, b Blocker) int {
		return cmp.Or(strings.Compare(a.Object, b.Object), strings.Compare(a.Reason, b.Reason))
	})
}

// identity adds one AzureIdentity to the report.
func (p *planner) identity(ai *aadv1.AzureIdentity, subjects map[string]*Subject) {
	ref := fmt.Sprintf("AzureIdentity %s/%s", ai.Namespace, ai.Name)
	id := Identity{
		Namespace: ai.Namespace, Name: ai.Name, Type: int(ai.Spec.Type),
		ClientID: ai.Spec.ClientID, TenantID: cmp.Or(ai.Spec.TenantID, p.opts.DefaultTenantID), ResourceID: ai.Spec.ResourceID,
		Subjects: []Subject{},
	}
	for _, k := range sortedKeys(subjects) {
		id.Subjects = append(id.Subjects, *subjects[k])
	}
	defer func() { p.report.Identities = append(p.report.Identities, id) }()
	if err := ai.Validate(); err != nil {
		p.block(ReasonIdentityInvalid, ref, "%v", err)
		return
	}
	// The webhook's table of sources: the type chooses, and a type 0
	// identity's annotation or the default chooses among type 0's.
	chosen := cmp.Or(tokenSourceAnnotation(ai.Annotations), p.opts.DefaultTokenSource, names.TokenSourceFederated)
	spec, ok := sidecarconfig.SourceForType(int(ai.Spec.Type), chosen)
	if !ok {
		id.Source = chosen
		p.block(ReasonUnknownTokenSource, ref, "%s has token source %q; set its annotation %s to one of %s",
			ref, chosen, names.TokenSourceAnnotation, sidecarconfig.SourceNames(int(ai.Spec.Type)))
		return
	}
	id.Source = spec.Name
	if !p.wellFormed(ai, ref, id) {
		return
	}
	if spec.Secret {
		secret := key(ai.Namespace, ai.Spec.ClientPassword.Name)
		if p.opts.Secrets != nil && !p.opts.Secrets[secret] {
			p.block(ReasonSecretMissing, ref, "%s (type %d) needs Secret %s, which does not exist; create it in namespace %s before the switch",
				ref, ai.Spec.Type, secret, ai.Namespace)
		}
	}
	// A source that reads the projected token needs federated credentials;
	// node IMDS (as aad-pod-identity's NMI did) and Secrets need none.
	if spec.TokenFile {
		p.federated(ai, ref, &id)
	}
	if spec.Tenant && id.TenantID == "" {
		p.block(ReasonTenantMissing, ref, "%s has no spec.tenantID and no default tenant was given; set spec.tenantID (or the webhook's --default-tenant-id, and pass it here too)", ref)
	}
}

// federated adds the credentials a federated identity needs.
func (p *planner) federated(ai *aadv1.AzureIdentity, ref string, id *Identity) {
	if len(id.Subjects) > MaxFederatedCredentials {
		p.block(ReasonTooManySubjects, ref, "%s is used by %d service accounts, and Entra ID allows %d federated credentials per managed identity; share fewer service accounts across its pods, or split the identity",
			ref, len(id.Subjects), MaxFederatedCredentials)
	}
	if len(id.Subjects) == 0 {
		return
	}
	if ai.Spec.ResourceID == "" {
		p.block(ReasonResourceIDMissing, ref, "%s has no spec.resourceID, so its federated credentials cannot be named; set it to %s",
			ref, resourceIDForm)
		return
	}
	arm, ok := parseResourceID(ai.Spec.ResourceID)
	if !ok {
		return // wellFormed has blocked it
	}
	for _, s := range id.Subjects {
		id.Credentials = append(id.Credentials, Credential{
			Name:          credentialName(s.Namespace, s.ServiceAccount),
			Subscription:  arm.subscription,
			ResourceGroup: arm.resourceGroup,
			IdentityName:  arm.name,
			Issuer:        p.opts.Issuer,
			Subject:       "system:serviceaccount:" + s.Namespace + ":" + s.ServiceAccount,
			Audience:      names.TokenAudience,
		})
	}
}

// resourceIDForm is the shape of a user-assigned identity's ARM ID, for
// messages.
const resourceIDForm = "/subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>"

// wellFormed blocks an identity whose client ID, tenant ID or resource ID
// is not of the shape Azure gives it, and reports whether all are. No
// command is printed for an identity that is not: its values would reach
// the admin's shell or Terraform as written by whoever edits the object.
func (p *planner) wellFormed(ai *aadv1.AzureIdentity, ref string, id Identity) bool {
	ok := true
	if !isGUID(ai.Spec.ClientID) {
		ok = false
		p.block(ReasonClientIDInvalid, ref, "%s has spec.clientID %q, which is not a GUID; set it to the client ID of the managed identity or service principal (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx). No command is printed for this identity",
			ref, ai.Spec.ClientID)
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
	if ai.Spec.ResourceID != "" {
		if _, parsed := parseResourceID(ai.Spec.ResourceID); !parsed {
			ok = false
			p.block(ReasonResourceIDInvalid, ref, "%s has spec.resourceID %q, which is not the ARM ID of a user-assigned managed identity; set it to %s. No command is printed for this identity",
				ref, ai.Spec.ResourceID, resourceIDForm)
		}
	}
	return ok
}

// maxCredentialName is Entra ID's limit on a federated credential's name.
const maxCredentialName = 120

// credentialName is a stable, valid credential name for a subject:
// letters, digits, '-' and '_', at most 120 characters, starting with a
// letter or digit. A name that would be too long keeps a hash of the whole.
func credentialName(namespace, serviceAccount string) string {
	name := "pod-identity-" + namespace + "-" + serviceAccount
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, name)
	if len(name) <= maxCredentialName {
		return name
	}
	sum := sha256.Sum256([]byte(namespace + "/" + serviceAccount))
	return name[:maxCredentialName-17] + "-" + hex.EncodeToString(sum[:8])
}

// exempt reports whether an AzurePodIdentityException in namespace exempts
// a pod with these labels. aad-pod-identity exempted a pod when any one of
// an exception's podLabels matched, comparing values without case.
func (p *planner) exempt(namespace string, labels map[string]string) bool {
	for i := range p.set.Exceptions {
		e := &p.set.Exceptions[i]
		if e.Namespace != namespace || e.Validate() != nil {
			continue
		}
		for k, v := range e.Spec.PodLabels {
			if have, ok := labels[k]; ok && strings.EqualFold(have, v) {
				return true
			}
		}
	}
	return false
}

// injected reports whether a running pod already has the sidecar.
func injected(pod *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == names.SidecarContainerName {
				return true
			}
		}
	}
	return false
}

// namespaceOptedIn, podOptedOut and tokenSourceAnnotation read the keys
// as the webhook does (names.Lookup): the project's key, else its
// deprecated aad-pod-identity spelling.
func namespaceOptedIn(labels, annotations map[string]string) bool {
	annotation, _ := names.Lookup(annotations, names.InjectAnnotation)
	label, _ := names.Lookup(labels, names.InjectAnnotation)
	return annotation == names.InjectEnabled || label == names.InjectEnabled
}

func podOptedOut(pod *corev1.Pod) bool {
	v, _ := names.Lookup(pod.Annotations, names.InjectAnnotation)
	return v == names.InjectDisabled
}

func tokenSourceAnnotation(annotations map[string]string) string {
	v, _ := names.Lookup(annotations, names.TokenSourceAnnotation)
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
