// Package webhook is the admission handler: it decodes a pod, decides
// whether the pod is in scope, resolves its identities, calls inject and
// answers with a minimal JSON Patch. Data flows one way: decode, resolve,
// inject, respond.
package webhook

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/names"
)

// Path is where the handler is served.
const Path = "/mutate-v1-pod"

// headerSecretBytes is the entropy of a pod's IDENTITY_HEADER.
const headerSecretBytes = 32

// Options configure a Handler.
type Options struct {
	// Resolver finds the identities of a selector.
	Resolver *Resolver
	// Inject is passed to inject.Inject for every pod.
	Inject inject.Config
	// RequireOptIn, when true, injects only into namespaces that carry
	// names.InjectAnnotation=enabled (or its legacy spelling, with a
	// deprecation warning) as an annotation or a label.
	RequireOptIn bool
	// NewSecret makes the per-pod IDENTITY_HEADER value; nil means
	// RandomSecret.
	NewSecret func() (string, error)
	// Metrics, if not nil, record outcomes and latency.
	Metrics *Metrics
}

// Handler is the admission.Handler for pods.
type Handler struct {
	opts Options
}

// NewHandler checks opts; it does no I/O.
func NewHandler(opts Options) (*Handler, error) {
	if opts.Resolver == nil || opts.Resolver.Cache == nil {
		return nil, errors.New("webhook: a Resolver with a Cache is required")
	}
	if err := opts.Inject.Validate(); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	if opts.NewSecret == nil {
		opts.NewSecret = RandomSecret
	}
	return &Handler{opts: opts}, nil
}

// decision is the outcome of one admission before it becomes a response.
type decision struct {
	outcome  string
	message  string
	err      error // for OutcomeErrored and OutcomeDenied
	resolve  bool  // err came from resolving the selector
	warnings []string
	resp     admission.Response // for OutcomeInjected
	patchOps int
}

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	d := h.decide(ctx, req)
	log := logf.FromContext(ctx).WithValues("outcome", d.outcome)
	var resp admission.Response
	switch d.outcome {
	case OutcomeInjected:
		resp = d.resp
		log.Info("injected pod identity sidecar", "patchOps", d.patchOps)
	case OutcomeDenied:
		resp = admission.Denied(d.message)
		log.Info("denied pod", "reason", d.message)
	case OutcomeErrored:
		code := int32(http.StatusInternalServerError)
		if errors.Is(d.err, errBadRequest) {
			code = http.StatusBadRequest
		}
		resp = admission.Errored(code, d.err)
		log.Error(d.err, "admission failed")
	default:
		resp = admission.Allowed(d.message)
		log.V(1).Info("pod left unchanged", "reason", d.message)
	}
	if m := h.opts.Metrics; m != nil {
		m.Decisions.WithLabelValues(req.Namespace, d.outcome).Inc()
		m.Duration.WithLabelValues(d.outcome).Observe(time.Since(start).Seconds())
		if d.resolve {
			m.ResolveErrors.WithLabelValues(req.Namespace, reason(d.err)).Inc()
		}
	}
	return resp.WithWarnings(d.warnings...)
}

// errBadRequest marks admission requests that are malformed.
var errBadRequest = errors.New("bad admission request")

// podKeys are the pod annotations the webhook reads whose legacy
// aadpodidentity.k8s.io/ spelling is still accepted.
var podKeys = []string{names.InjectAnnotation, names.SkipContainersAnnotation, names.TokenPortAnnotation}

// decide runs the pipeline: decode, scope, resolve, inject, patch.
func (h *Handler) decide(ctx context.Context, req admission.Request) (d decision) {
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" {
		return decision{outcome: OutcomeSkipped, message: fmt.Sprintf("not a pod (%s); nothing to do", req.Kind.Kind)}
	}
	if req.Operation != admissionv1.Create {
		return decision{outcome: OutcomeSkipped, message: fmt.Sprintf("operation %s; pods are injected on CREATE only", req.Operation)}
	}
	bad := func(format string, args ...any) decision {
		return decision{outcome: OutcomeErrored, err: fmt.Errorf("%w %s for pod %s/%s: %w", errBadRequest, req.UID, req.Namespace, req.Name, fmt.Errorf(format, args...))}
	}
	if len(req.Object.Raw) == 0 {
		return bad("the request has no object; the API server sent no pod")
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		return bad("decode pod: %w", err)
	}
	namespace := cmp.Or(req.Namespace, pod.Namespace)
	if namespace == "" {
		return bad("the request names no namespace")
	}
	pod.Namespace = namespace
	ref := inject.PodRef(pod)

	selector, ok := pod.Labels[names.BindingLabel]
	if !ok {
		return decision{outcome: OutcomeSkipped, message: fmt.Sprintf("pod %s has no %s label", ref, names.BindingLabel)}
	}
	// Every answer from here on carries the deprecation warnings of the
	// pod's and the namespace's legacy keys.
	var deprecated []string
	defer func() { d.warnings = append(deprecated, d.warnings...) }()
	for _, key := range podKeys {
		if w := names.DeprecationWarning("Pod "+ref, "annotation", pod.Annotations, key); w != "" {
			deprecated = append(deprecated, w)
		}
	}
	if v, _ := names.Lookup(pod.Annotations, names.InjectAnnotation); v == names.InjectDisabled {
		return decision{outcome: OutcomeSkipped, message: fmt.Sprintf("pod %s opted out with %s=%s", ref, names.InjectAnnotation, names.InjectDisabled)}
	}
	if h.opts.RequireOptIn {
		in, nsWarnings, err := h.optedIn(ctx, namespace)
		deprecated = append(deprecated, nsWarnings...)
		if err != nil {
			return decision{outcome: OutcomeErrored, err: err, resolve: true}
		}
		if !in {
			return decision{outcome: OutcomeSkipped, message: fmt.Sprintf("namespace %s has not opted in; annotate it %s=%s", namespace, names.InjectAnnotation, names.InjectEnabled)}
		}
	}
	exc, excWarnings, err := h.exception(ctx, pod)
	if err != nil {
		return decision{outcome: OutcomeErrored, err: err, resolve: true}
	}
	if exc != "" {
		return decision{outcome: OutcomeSkipped, warnings: excWarnings, message: fmt.Sprintf("pod %s matches AzurePodIdentityException %s/%s", ref, namespace, exc)}
	}

	res, err := h.opts.Resolver.Resolve(ctx, namespace, selector)
	res.Warnings = append(excWarnings, res.Warnings...)
	if err != nil {
		if errors.Is(err, ErrLookup) {
			return decision{outcome: OutcomeErrored, err: err, resolve: true, warnings: res.Warnings}
		}
		return decision{outcome: OutcomeDenied, err: err, resolve: true, warnings: res.Warnings,
			message: fmt.Sprintf("pod %s: %v", ref, err)}
	}
	secret, err := h.opts.NewSecret()
	if err != nil {
		return decision{outcome: OutcomeErrored, err: err}
	}
	mutated, result, err := inject.Inject(pod, res.Identities, h.opts.Inject, secret)
	warnings := append(res.Warnings, result.Warnings...)
	if err != nil {
		return decision{outcome: OutcomeDenied, err: err, warnings: warnings, message: err.Error()}
	}
	if !result.Changed {
		return decision{outcome: OutcomeNoChange, warnings: warnings, message: fmt.Sprintf("pod %s already has its identities", ref)}
	}
	orig, stale, ok := withoutStaleAnnotation(pod, mutated)
	if ok {
		warnings = append(warnings, fmt.Sprintf("pod %s: metadata.annotations[%q] was %q, which is not what the webhook injected; "+
			"it was replaced with %q: remove that annotation from the pod's manifest or template, where it was most likely copied from an injected pod",
			ref, names.InjectedAnnotation, stale, mutated.Annotations[names.InjectedAnnotation]))
	}
	ops, err := patchFor(orig, mutated)
	if err != nil {
		return decision{outcome: OutcomeErrored, err: fmt.Errorf("pod %s: %w", ref, err)}
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return decision{outcome: OutcomeErrored, err: fmt.Errorf("pod %s: encode patch: %w", ref, err)}
	}
	resp := admission.Allowed(fmt.Sprintf("injected identities of selector %q, default %s", selector, result.DefaultIdentity))
	resp.Patch, resp.PatchType = patch, ptr.To(admissionv1.PatchTypeJSONPatch)
	return decision{outcome: OutcomeInjected, warnings: warnings, resp: resp, patchOps: len(ops)}
}

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

// optedIn reports whether the namespace carries the opt-in annotation or
// label, with deprecation warnings for their legacy spellings. Namespaces
// are cached as metadata only.
func (h *Handler) optedIn(ctx context.Context, namespace string) (bool, []string, error) {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	key := client.ObjectKey{Name: namespace}
	r := h.opts.Resolver
	err := r.Cache.Get(ctx, key, ns)
	if err != nil && apierrors.IsNotFound(err) && r.Live != nil {
		liveCtx, cancel := context.WithTimeout(ctx, r.LiveTimeout)
		err = r.Live.Get(liveCtx, key, ns)
		cancel()
	}
	if err != nil {
		return false, nil, fmt.Errorf("%w: get namespace %s: %w", ErrLookup, namespace, err)
	}
	var warnings []string
	for kind, m := range map[string]map[string]string{"annotation": ns.Annotations, "label": ns.Labels} {
		if w := names.DeprecationWarning("Namespace "+namespace, kind, m, names.InjectAnnotation); w != "" {
			warnings = append(warnings, w)
		}
	}
	slices.Sort(warnings)
	annotation, _ := names.Lookup(ns.Annotations, names.InjectAnnotation)
	label, _ := names.Lookup(ns.Labels, names.InjectAnnotation)
	return annotation == names.InjectEnabled || label == names.InjectEnabled, warnings, nil
}

// exception returns the name of the first AzurePodIdentityException in the
// pod's namespace that exempts the pod (any one of its podLabels, see
// Exempts), or "", and warnings for
// exceptions that use legacy keys or cannot be read: a broken exception
// matches nothing, and the warning says which one and why.
func (h *Handler) exception(ctx context.Context, pod *corev1.Pod) (string, []string, error) {
	var list aadv1.AzurePodIdentityExceptionList
	if err := h.opts.Resolver.Cache.List(ctx, &list, client.InNamespace(pod.Namespace)); err != nil {
		return "", nil, fmt.Errorf("%w: list AzurePodIdentityExceptions in namespace %s: %w", ErrLookup, pod.Namespace, err)
	}
	var warnings []string
	for i := range list.Items {
		e := &list.Items[i]
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

// RandomSecret makes a pod's IDENTITY_HEADER value from crypto/rand.
func RandomSecret() (string, error) {
	b := make([]byte, headerSecretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate identity header: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// reason is the label of pod_identity_injector_resolve_errors_total: why
// a selector could not be resolved. Denials by inject and malformed
// requests are counted by pod_identity_injector_decisions_total alone.
func reason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{ErrNoBinding, "no_binding"},
		{ErrInvalidBinding, "invalid_binding"},
		{ErrIdentityNotFound, "identity_not_found"},
		{ErrInvalidIdentity, "invalid_identity"},
		{ErrLookup, "lookup"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}
