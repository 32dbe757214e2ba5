package migrate

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/manifest"
)

// NamespaceCopy is one namespace's share of the first way out for the
// workloads that only other namespaces' bindings serve: the
// AzureIdentityBindings and AzureIdentities to copy into it, and what the
// plan, made again with the copies, says of its workloads.
type NamespaceCopy struct {
	// Namespace is the pods' namespace, which the copies are written to.
	Namespace string `json:"namespace"`
	// Workloads are those the copies serve.
	Workloads []string `json:"workloads"`
	// Objects are the copies, identities first: metadata.namespace is
	// Namespace, the server's fields are gone, and spec is the original's
	// (spec.clientPassword.namespace, which must be the identity's own,
	// follows it). YAML is the same objects as a stream for kubectl apply.
	Objects []map[string]any `json:"objects"`
	YAML    string           `json:"yaml"`
	// Secrets are the Secrets that type 1 and 2 identities read, to copy
	// too. The plan never reads nor prints their data.
	Secrets []SecretCopy `json:"secrets,omitempty"`
	// Credentials are the federated credentials the workloads need once
	// copied: one per service account of Namespace.
	Credentials []Credential `json:"federatedCredentials,omitempty"`
	// Blockers are what still blocks the workloads once copied.
	Blockers []Blocker `json:"blockers,omitempty"`
}

// SecretCopy is a Secret to copy into a pod's namespace, as
// "namespace/name", and a command that copies it without showing it.
type SecretCopy struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Command string `json:"command"`
}

// CrossNamespaceMode is the second way out: the webhook's aad-pod-identity
// compatibility mode, which resolves bindings of every namespace.
type CrossNamespaceMode struct {
	// Flag turns the mode on in the webhook (and in migrate, to plan so).
	Flag string `json:"flag"`
	// Enabled: the plan was made in the mode, so its identities already
	// list these credentials.
	Enabled bool `json:"enabled"`
	// ServesAll: the mode gives every workload of Workloads its identity.
	ServesAll bool `json:"servesAll"`
	// Workloads are those that only other namespaces' bindings serve.
	Workloads []string `json:"workloads"`
	// Credentials are the federated credentials the mode needs beyond the
	// plan's: Entra ID checks the pod's own namespace and service account,
	// whichever namespace its binding is in.
	Credentials []Credential `json:"federatedCredentials,omitempty"`
	// NotServed are the blockers the mode adds: the workloads it cannot
	// serve, with the webhook's message.
	NotServed []Blocker `json:"notServed,omitempty"`
}

// crossDenial is a workload denied because only other namespaces'
// bindings serve it.
type crossDenial struct {
	workload manifest.Workload
	err      *decision.CrossNamespaceError
}

// crossNamespaceWays fills the report's CopyToNamespace and
// CrossNamespaceMode: each way is planned again from the objects, as the
// webhook would decide after it, and the report lists what that plan adds
// to this one.
func (p *plan) crossNamespaceWays(ctx context.Context) error {
	if p.planner.CrossNamespace {
		if len(p.crossServed) > 0 {
			m := &CrossNamespaceMode{Flag: "--" + decision.CrossNamespaceFlag, Enabled: true, Workloads: p.crossServed, ServesAll: true}
			served := map[string]bool{}
			for _, w := range p.set.Workloads {
				if slices.Contains(p.crossServed, w.Ref()) {
					served["system:serviceaccount:"+w.Namespace+":"+decision.ServiceAccountOf(w.Pod)] = true
				}
			}
			for _, b := range p.report.Blockers {
				if b.Reason == ReasonCrossNamespaceIdentity {
					m.ServesAll = false
					m.NotServed = append(m.NotServed, b)
				}
			}
			for _, id := range p.report.Identities {
				for _, c := range id.Credentials {
					if served[c.Subject] {
						m.Credentials = append(m.Credentials, c)
					}
				}
			}
			p.report.CrossNamespaceMode = m
		}
		return nil
	}
	if len(p.crossDenied) == 0 {
		return nil
	}
	if err := p.copyWay(ctx); err != nil {
		return err
	}
	return p.modeWay(ctx)
}

// copyWay plans the set with every copy added, as the webhook in its
// default mode would decide it once they are applied.
func (p *plan) copyWay(ctx context.Context) error {
	copies := map[string]*NamespaceCopy{}
	augmented := *p.set
	augmented.Identities = slices.Clone(p.set.Identities)
	augmented.Bindings = slices.Clone(p.set.Bindings)
	secrets := maps.Clone(p.opts.Secrets)
	copied := map[string]bool{} // namespace/Kind/name
	for _, d := range p.crossDenied {
		ns := d.workload.Namespace
		c := copies[ns]
		if c == nil {
			c = &NamespaceCopy{Namespace: ns}
			copies[ns] = c
		}
		c.Workloads = append(c.Workloads, d.workload.Ref())
		for _, f := range d.err.Bindings {
			b := p.binding(f.Binding.Namespace, f.Binding.Name)
			if b == nil || copied[key(ns, "AzureIdentityBinding/"+b.Name)] {
				continue // not in the set, or copied for another workload
			}
			if hasObject(p.set.Bindings, ns, b.Name) {
				c.conflict(fmt.Sprintf("AzureIdentityBinding %s/%s", ns, b.Name), fmt.Sprintf(
					"AzureIdentityBinding %s/%s cannot be copied into namespace %s, which has an AzureIdentityBinding %s of another selector; copy it under another metadata.name",
					b.Namespace, b.Name, ns, b.Name))
				continue
			}
			copied[key(ns, "AzureIdentityBinding/"+b.Name)] = true
			bc := b.DeepCopy()
			bc.ObjectMeta = copiedMeta(b.ObjectMeta, ns)
			augmented.Bindings = append(augmented.Bindings, *bc)
			o, err := object(aadv1.KindAzureIdentityBinding, bc.ObjectMeta, bc.Spec)
			if err != nil {
				return err
			}
			c.Objects = append(c.Objects, o)
			ai := p.identityObject(f.Identity.Namespace, f.Identity.Name)
			if ai == nil || copied[key(ns, "AzureIdentity/"+ai.Name)] {
				continue
			}
			if have := p.identityObject(ns, ai.Name); have != nil {
				if !sameIdentity(have, ai) {
					c.conflict(fmt.Sprintf("AzureIdentity %s/%s", ns, ai.Name), fmt.Sprintf(
						"AzureIdentity %s/%s cannot be copied into namespace %s, which has another AzureIdentity %s (spec.clientID %q, spec.type %d), which the copied binding would bind instead; copy it under another metadata.name and set the binding's spec.azureIdentity to that name",
						ai.Namespace, ai.Name, ns, ai.Name, have.Spec.ClientID, have.Spec.Type))
				}
				continue
			}
			copied[key(ns, "AzureIdentity/"+ai.Name)] = true
			ac := ai.DeepCopy()
			ac.ObjectMeta = copiedMeta(ai.ObjectMeta, ns)
			if ac.Spec.ClientPassword.Namespace != "" {
				ac.Spec.ClientPassword.Namespace = ns
			}
			augmented.Identities = append(augmented.Identities, *ac)
			if o, err = object(aadv1.KindAzureIdentity, ac.ObjectMeta, ac.Spec); err != nil {
				return err
			}
			c.Objects = append(c.Objects, o)
			if name := ai.Spec.ClientPassword.Name; name != "" && ai.Spec.Type != aadv1.IdentityTypeUserAssignedMSI {
				c.Secrets = append(c.Secrets, SecretCopy{From: key(ai.Namespace, name), To: key(ns, name), Command: copySecretCommand(ai.Namespace, name, ns)})
				if secrets != nil {
					secrets[key(ns, name)] = true
				}
			}
		}
	}
	opts := p.opts
	opts.Secrets = secrets
	after, err := newPlan(ctx, &augmented, opts)
	if err != nil {
		return err
	}
	creds, blockers := p.added(after.report)
	// A blocker of no one namespace (a managed identity over Entra ID's
	// limit) blocks either way: the mode needs the same credentials.
	for _, b := range blockers {
		if b.Reason != ReasonBindingUnused && objectNamespace(b.Object) == "" && !slices.Contains(p.report.Blockers, b) {
			p.report.Blockers = append(p.report.Blockers, b)
		}
	}
	sortBlockers(p.report.Blockers)
	for _, ns := range sortedKeys(copies) {
		c := copies[ns]
		// Identities first, then the bindings that name them, as
		// aad-pod-identity's docs show them.
		slices.SortStableFunc(c.Objects, func(a, b map[string]any) int {
			return strings.Compare(a["kind"].(string), b["kind"].(string))
		})
		var y strings.Builder
		for _, o := range c.Objects {
			b, err := yaml.Marshal(o)
			if err != nil {
				return fmt.Errorf("copy into namespace %s: %w", ns, err)
			}
			y.WriteString("---\n")
			y.Write(b)
		}
		c.YAML = y.String()
		for _, cr := range creds {
			if subjectNamespace(cr.Subject) == ns {
				c.Credentials = append(c.Credentials, cr)
			}
		}
		for _, b := range blockers {
			if b.Reason != ReasonBindingUnused && objectNamespace(b.Object) == ns && !slices.Contains(c.Blockers, b) {
				c.Blockers = append(c.Blockers, b)
			}
		}
		p.report.CopyToNamespace = append(p.report.CopyToNamespace, *c)
	}
	return nil
}

// modeWay plans the set as the webhook in the compatibility mode would.
func (p *plan) modeWay(ctx context.Context) error {
	opts := p.opts
	opts.Decision.AADPodIdentityCrossNamespace = true
	after, err := newPlan(ctx, p.set, opts)
	if err != nil {
		return err
	}
	m := &CrossNamespaceMode{Flag: "--" + decision.CrossNamespaceFlag}
	for _, d := range p.crossDenied {
		m.Workloads = append(m.Workloads, d.workload.Ref())
	}
	m.Credentials, m.NotServed = p.added(after.report)
	m.ServesAll = !slices.ContainsFunc(m.NotServed, func(b Blocker) bool { return slices.Contains(m.Workloads, b.Object) })
	p.report.CrossNamespaceMode = m
	return nil
}

// added is what after lists and this plan does not: the credentials, and
// the blockers other than the cross-namespace denials that after resolves.
func (p *plan) added(after Report) ([]Credential, []Blocker) {
	have := map[Credential]bool{}
	for _, id := range p.report.Identities {
		for _, c := range id.Credentials {
			have[c] = true
		}
	}
	var creds []Credential
	for _, id := range after.Identities {
		for _, c := range id.Credentials {
			if !have[c] {
				creds = append(creds, c)
			}
		}
	}
	var blockers []Blocker
	for _, b := range after.Blockers {
		if !slices.Contains(p.report.Blockers, b) {
			blockers = append(blockers, b)
		}
	}
	return creds, blockers
}

// conflict blocks the copy of object into c's namespace.
func (c *NamespaceCopy) conflict(object, msg string) {
	c.Blockers = append(c.Blockers, Blocker{Reason: ReasonCopyConflict, Object: object, Message: msg})
}

// sameIdentity reports whether a and b name one identity the same way, so
// that a copy of b where a is adds nothing.
func sameIdentity(a, b *aadv1.AzureIdentity) bool {
	return a.Spec.Type == b.Spec.Type && strings.EqualFold(a.Spec.ClientID, b.Spec.ClientID) &&
		strings.EqualFold(a.Spec.ResourceID, b.Spec.ResourceID) && a.Spec.TenantID == b.Spec.TenantID &&
		a.Spec.ClientPassword.Name == b.Spec.ClientPassword.Name
}

// binding and identityObject find an object of the set.
func (p *plan) binding(namespace, name string) *aadv1.AzureIdentityBinding {
	for i := range p.set.Bindings {
		if b := &p.set.Bindings[i]; b.Namespace == namespace && b.Name == name {
			return b
		}
	}
	return nil
}

func (p *plan) identityObject(namespace, name string) *aadv1.AzureIdentity {
	for i := range p.set.Identities {
		if ai := &p.set.Identities[i]; ai.Namespace == namespace && ai.Name == name {
			return ai
		}
	}
	return nil
}

// hasObject reports whether items holds namespace/name.
func hasObject[T any, PT interface {
	*T
	metav1.Object
}](items []T, namespace, name string) bool {
	return slices.ContainsFunc(items, func(o T) bool {
		return PT(&o).GetNamespace() == namespace && PT(&o).GetName() == name
	})
}

// lastApplied is kubectl's annotation of the object as last applied: a
// copy carrying the original's would tell kubectl apply wrong.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// copiedMeta is the metadata of a copy in namespace: the name, labels and
// annotations the user wrote, without what the API server set.
func copiedMeta(m metav1.ObjectMeta, namespace string) metav1.ObjectMeta {
	out := metav1.ObjectMeta{Name: m.Name, Namespace: namespace, Labels: maps.Clone(m.Labels), Annotations: maps.Clone(m.Annotations)}
	delete(out.Annotations, lastApplied)
	if len(out.Annotations) == 0 {
		out.Annotations = nil
	}
	return out
}

// object is one copy as an object for kubectl apply.
func object(kind string, meta metav1.ObjectMeta, spec any) (map[string]any, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              any `json:"spec"`
	}{metav1.TypeMeta{APIVersion: aadv1.SchemeGroupVersion.String(), Kind: kind}, meta, spec})
	if err != nil {
		return nil, fmt.Errorf("copy %s %s/%s: %w", kind, meta.Namespace, meta.Name, err)
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	return m, nil
}

// copySecretCommand copies Secret from/name into namespace to through a
// pipe, so that its data never reaches the terminal.
func copySecretCommand(from, name, to string) string {
	return "kubectl get secret -n " + shellQuote(from) + " " + shellQuote(name) + " -o json" +
		" | jq 'del(.metadata.namespace, .metadata.resourceVersion, .metadata.uid, .metadata.creationTimestamp, .metadata.managedFields, .metadata.ownerReferences)'" +
		" | kubectl apply -n " + shellQuote(to) + " -f - >/dev/null"
}

// subjectNamespace is the namespace of "system:serviceaccount:NS:SA".
func subjectNamespace(subject string) string {
	ns, _, _ := strings.Cut(strings.TrimPrefix(subject, "system:serviceaccount:"), ":")
	return ns
}

// objectNamespace is the namespace of "Kind namespace/name", or "".
func objectNamespace(object string) string {
	_, ref, _ := strings.Cut(object, " ")
	ns, _, ok := strings.Cut(ref, "/")
	if !ok {
		return ""
	}
	return ns
}
