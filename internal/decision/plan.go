// Package decision decides what the webhook does with a pod: Planner.Plan
// resolves its bindings through a Lookup and returns a typed Outcome, with no
// admission request, so that the webhook and `kubectl pod-identity` share it.
package decision

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/names"
)

// Outcome is what a decision does with a pod; its value is the outcome
// label of the webhook's metrics.
type Outcome string

// The outcomes of a decision.
const (
	// OutcomeInjected: the sidecar and environment are added.
	OutcomeInjected Outcome = "injected"
	// OutcomeSkipped: the pod is left alone (not labelled, not opted in,
	// an exception, or the pod opted out).
	OutcomeSkipped Outcome = "skipped"
	// OutcomeDenied: the pod is refused, with a message for its creator.
	OutcomeDenied Outcome = "denied"
	// OutcomeErrored: the decision could not be made (a read failed, or
	// the request is malformed).
	OutcomeErrored Outcome = "errored"
	// OutcomeNoChange: the pod already has everything (a re-invocation).
	OutcomeNoChange Outcome = "unchanged"
)

// Planner decides what the webhook does to a pod. It needs no admission
// request: the handler calls it for every pod it admits, and the kubectl
// plugin calls it for pods and templates read from files or a cluster, so
// that both give the same answer.
type Planner struct {
	// Lookup reads the namespaces, bindings, identities and exceptions
	// that a decision needs.
	Lookup Lookup
	// Defaults fill in what an AzureIdentity leaves out.
	Defaults Defaults
	// Inject is passed to inject.Inject for every pod.
	Inject inject.Config
	// RequireOptIn, when true, injects only into namespaces that carry
	// names.InjectAnnotation=enabled (or its legacy spelling, with a
	// deprecation warning) as an annotation or a label.
	RequireOptIn bool
	// NewSecret makes the per-pod IDENTITY_HEADER value; nil means
	// RandomSecret.
	NewSecret func() (string, error)
	// CrossNamespace is the aad-pod-identity compatibility mode
	// (Flags.AADPodIdentityCrossNamespace): a pod's selector matches the
	// bindings of every namespace (Resolve).
	CrossNamespace bool
	// Peers, if not nil, finds the labelled pods that share an injected
	// pod's service account, to warn when their selectors differ.
	Peers Peers
}

// Validate checks what a Planner needs before its first decision.
func (p *Planner) Validate() error {
	if p.Lookup == nil {
		return errors.New("decision: a Planner needs a Lookup")
	}
	if err := p.Inject.Validate(); err != nil {
		return fmt.Errorf("decision: %w", err)
	}
	return nil
}

// Decision is what the webhook does to one pod.
type Decision struct {
	// Outcome is what happens to the pod.
	Outcome Outcome
	// Message is the reason of a skip or a deny, as kubectl shows it.
	Message string
	// Err is the error of a deny or an error; ResolveReason classifies it.
	Err error
	// Warnings go back to the user as admission warnings.
	Warnings []string
	// Injection is what an injected pod gets; nil for any other outcome.
	Injection *Injection
	// PeersErr is why the pods sharing the service account could not be
	// read; the pod is injected all the same, without that warning.
	PeersErr error
	// NamespaceFound is true once the pod's namespace was read and exists:
	// only such a namespace may become a metric label, since anyone who
	// reaches the admission endpoint can name any namespace.
	NamespaceFound bool
}

// Injection is what an injected pod gets.
type Injection struct {
	// Identities and DefaultIdentity are the pod's identities, and
	// BoundBy the bindings that bound each one.
	Identities      []inject.Identity
	DefaultIdentity string
	BoundBy         map[string][]string
	// Mutated is the injected pod, and PatchBase the pod a patch applies
	// to: the input, less a stale injected-identities annotation that the
	// patch overwrites.
	Mutated, PatchBase *corev1.Pod
}

// ResolveReason says why the pod's objects could not be resolved to
// identities (cross_namespace_binding, no_binding, invalid_binding,
// identity_not_found, cross_namespace_identity, invalid_identity,
// live_read_limited or lookup), and false when the
// decision failed for another reason or did not fail.
func (d *Decision) ResolveReason() (string, bool) {
	if d.Err == nil {
		return "", false
	}
	for _, r := range resolveReasons {
		if errors.Is(d.Err, r.err) {
			return r.name, true
		}
	}
	return "", false
}

// resolveReasons are the causes ResolveReason names, most specific first.
var resolveReasons = []struct {
	err  error
	name string
}{
	{ErrCrossNamespaceBinding, "cross_namespace_binding"},
	{ErrNoBinding, "no_binding"},
	{ErrInvalidBinding, "invalid_binding"},
	{ErrIdentityNotFound, "identity_not_found"},
	{ErrCrossNamespaceIdentity, "cross_namespace_identity"},
	{ErrInvalidIdentity, "invalid_identity"},
	{ErrLiveReadLimited, "live_read_limited"},
	{ErrLookup, "lookup"},
}

// Errors of the pod's namespace, before any binding is read.
var (
	// ErrInvalidNamespace: the pod's namespace is not a DNS-1123 label, so
	// no API server sent it.
	ErrInvalidNamespace = errors.New("invalid namespace name")
	// ErrNamespaceNotFound: the pod's namespace does not exist.
	ErrNamespaceNotFound = errors.New("namespace not found")
)

// maxQuoted is how much of a hostile value a message repeats.
const maxQuoted = 80

// Short cuts s to maxQuoted bytes for a message: a namespace that is not
// one may be megabytes long.
func Short(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:maxQuoted], len(s))
}

// headerSecretBytes is the entropy of a pod's IDENTITY_HEADER.
const headerSecretBytes = 32

// RandomSecret makes a pod's IDENTITY_HEADER value from crypto/rand.
func RandomSecret() (string, error) {
	b := make([]byte, headerSecretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate identity header: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func (p *Planner) newSecret() (string, error) {
	if p.NewSecret == nil {
		return RandomSecret()
	}
	return p.NewSecret()
}

// Plan decides for pod, whose Namespace must be set: skip, deny or inject,
// with the warnings of every object it read. It never modifies pod.
func (p *Planner) Plan(ctx context.Context, pod *corev1.Pod) (d Decision) {
	namespace := pod.Namespace
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return Decision{Outcome: OutcomeErrored, Err: fmt.Errorf("%w: metadata.namespace %q of pod %q: %s; the API server sends only pods of existing namespaces",
			ErrInvalidNamespace, Short(namespace), Short(pod.Name), errs[0])}
	}
	ref := inject.PodRef(pod)
	selector, ok := pod.Labels[names.BindingLabel]
	if !ok {
		return Decision{Outcome: OutcomeSkipped, Message: fmt.Sprintf("pod %s has no %s label", ref, names.BindingLabel)}
	}
	// Every answer from here on carries the deprecation warnings of the
	// pod's and the namespace's legacy keys, and says whether the
	// namespace exists.
	var deprecated []string
	var found bool
	defer func() { d.Warnings, d.NamespaceFound = append(deprecated, d.Warnings...), found }()
	ns, err := p.Lookup.Namespace(ctx, namespace)
	switch {
	case apierrors.IsNotFound(err):
		err = reasonf(ErrNamespaceNotFound, "pod %s: namespace %s does not exist; create the namespace before its pods", ref, namespace)
		return Decision{Outcome: OutcomeDenied, Err: err, Message: err.Error()}
	case err != nil:
		return lookupFailed(ref, fmt.Errorf("%w: get namespace %s: %w", ErrLookup, namespace, err), nil)
	}
	found = true
	for _, key := range podKeys {
		if w := names.DeprecationWarning("Pod "+ref, "annotation", pod.Annotations, key); w != "" {
			deprecated = append(deprecated, w)
		}
	}
	if v, _ := names.Lookup(pod.Annotations, names.InjectAnnotation); v == names.InjectDisabled {
		return Decision{Outcome: OutcomeSkipped, Message: fmt.Sprintf("pod %s opted out with %s=%s", ref, names.InjectAnnotation, names.InjectDisabled)}
	}
	if p.RequireOptIn {
		in, nsWarnings := namespaceOptedIn(ns)
		deprecated = append(deprecated, nsWarnings...)
		if !in {
			return Decision{Outcome: OutcomeSkipped, Message: fmt.Sprintf("namespace %s has not opted in; annotate it %s=%s", namespace, names.InjectAnnotation, names.InjectEnabled)}
		}
	}
	exc, excWarnings, err := p.exception(ctx, pod)
	if err != nil {
		return Decision{Outcome: OutcomeErrored, Err: err}
	}
	if exc != "" {
		return Decision{Outcome: OutcomeSkipped, Warnings: excWarnings, Message: fmt.Sprintf("pod %s matches AzurePodIdentityException %s/%s", ref, namespace, exc)}
	}

	res, err := p.Resolve(ctx, namespace, selector)
	res.Warnings = append(excWarnings, res.Warnings...)
	if err != nil {
		if errors.Is(err, ErrLookup) {
			return lookupFailed(ref, err, res.Warnings)
		}
		return Decision{Outcome: OutcomeDenied, Err: err, Warnings: res.Warnings,
			Message: fmt.Sprintf("pod %s: %v", ref, err)}
	}
	secret, err := p.newSecret()
	if err != nil {
		return Decision{Outcome: OutcomeErrored, Err: err}
	}
	mutated, result, err := inject.Inject(pod, res.Identities, p.Inject, secret)
	warnings := slices.Concat(res.Warnings, result.Warnings)
	if err != nil {
		return Decision{Outcome: OutcomeDenied, Err: err, Warnings: warnings, Message: err.Error()}
	}
	if !result.Changed {
		return Decision{Outcome: OutcomeNoChange, Warnings: warnings, Message: fmt.Sprintf("pod %s already has its identities", ref)}
	}
	orig, stale, ok := withoutStaleAnnotation(pod, mutated)
	if ok {
		warnings = append(warnings, fmt.Sprintf("pod %s: metadata.annotations[%q] was %q, which is not what the webhook injected; "+
			"it was replaced with %q: remove that annotation from the pod's manifest or template, where it was most likely copied from an injected pod",
			ref, names.InjectedAnnotation, stale, mutated.Annotations[names.InjectedAnnotation]))
	}
	var peersErr error
	if p.Peers != nil {
		peers, err := p.Peers.OtherSelectors(ctx, namespace, ServiceAccountOf(pod), selector)
		if w := sharedServiceAccountWarning(pod, selector, peers); w != "" {
			warnings = append(warnings, w)
		}
		peersErr = err
	}
	return Decision{
		PeersErr: peersErr,
		Outcome:  OutcomeInjected,
		Message:  fmt.Sprintf("injected identities of selector %q, default %s", selector, result.DefaultIdentity),
		Warnings: warnings,
		Injection: &Injection{
			Identities:      res.Identities,
			DefaultIdentity: result.DefaultIdentity,
			BoundBy:         res.BoundBy,
			Mutated:         mutated,
			PatchBase:       orig,
		},
	}
}

// podKeys are the pod annotations the webhook reads whose legacy
// aadpodidentity.k8s.io/ spelling is still accepted.
var podKeys = []string{names.InjectAnnotation, names.SkipContainersAnnotation, names.TokenPortAnnotation}

// withoutStaleAnnotation returns pod, or, when pod already carries an
// injected-identities annotation that differs from what inject wrote, a
// copy of pod without it, the stale value and true. Diffing from that copy makes
// the patch overwrite the annotation (a JSON Patch add replaces an existing
// member) instead of failing as "not additive": the annotation is ours to
// write, and one copied from an old manifest must not make the pod fail.
func withoutStaleAnnotation(pod, mutated *corev1.Pod) (*corev1.Pod, string, bool) {
	v, ok := pod.Annotations[names.InjectedAnnotation]
	if !ok || v == mutated.Annotations[names.InjectedAnnotation] {
		return pod, "", false
	}
	out := *pod
	out.Annotations = maps.Clone(pod.Annotations)
	delete(out.Annotations, names.InjectedAnnotation)
	return &out, v, true
}

// lookupFailed is the decision when the cache and the API server could not
// be read. A read refused by the live-read rate is a deny with a message
// that says to retry, since the webhook never admits a labelled pod
// uninjected; any other failure is an error.
func lookupFailed(ref string, err error, warnings []string) Decision {
	if errors.Is(err, ErrLiveReadLimited) {
		return Decision{Outcome: OutcomeDenied, Err: err, Warnings: warnings,
			Message: fmt.Sprintf("pod %s: %v; an object it needs is not in the webhook's cache yet: retry in a few seconds (a controller retries by itself)", ref, err)}
	}
	return Decision{Outcome: OutcomeErrored, Err: err, Warnings: warnings}
}

// namespaceOptedIn reports whether the namespace carries the opt-in annotation or
// label, with deprecation warnings for their legacy spellings. Namespaces
// are cached as metadata only.
func namespaceOptedIn(ns *metav1.PartialObjectMetadata) (bool, []string) {
	var warnings []string
	for kind, m := range map[string]map[string]string{"annotation": ns.Annotations, "label": ns.Labels} {
		if w := names.DeprecationWarning("Namespace "+ns.Name, kind, m, names.InjectAnnotation); w != "" {
			warnings = append(warnings, w)
		}
	}
	slices.Sort(warnings)
	annotation, _ := names.Lookup(ns.Annotations, names.InjectAnnotation)
	label, _ := names.Lookup(ns.Labels, names.InjectAnnotation)
	return annotation == names.InjectEnabled || label == names.InjectEnabled, warnings
}

// exception returns the name of the first AzurePodIdentityException in the
// pod's namespace that exempts the pod (any one of its podLabels, see
// Exempts), or "", and warnings for
// exceptions that use legacy keys or cannot be read: a broken exception
// matches nothing, and the warning says which one and why.
func (p *Planner) exception(ctx context.Context, pod *corev1.Pod) (string, []string, error) {
	items, err := p.Lookup.Exceptions(ctx, pod.Namespace)
	if err != nil {
		return "", nil, fmt.Errorf("%w: list AzurePodIdentityExceptions in namespace %s: %w", ErrLookup, pod.Namespace, err)
	}
	var warnings []string
	for i := range items {
		e := &items[i]
		warnings = append(warnings, e.Warnings()...)
		if err := e.Validate(); err != nil {
			warnings = append(warnings, fmt.Sprintf("%v; it exempts no pod until fixed", err))
			continue
		}
		if e.Exempts(pod.Labels) {
			return e.Name, warnings, nil
		}
	}
	return "", warnings, nil
}
