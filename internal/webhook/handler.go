// Package webhook decides what happens to a pod and answers the API server.
// The decision (Planner.Plan: scope, resolve, inject) needs no admission
// request, so that the kubectl plugin makes the same one from files; the
// Handler only decodes the request, plans, and answers with a minimal JSON
// Patch. Data flows one way: decode, plan (resolve, inject), respond. What
// the decision reads comes through a Lookup: the informer cache then the
// API server in the webhook, files or a live client in the plugin.
package webhook

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podidentity/injector/internal/inject"
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
	// Peers, if not nil, finds the labelled pods that share an injected
	// pod's service account, for Planner.Peers.
	Peers Peers
}

// Handler is the admission.Handler for pods: it checks and decodes the
// request, asks its Planner, and turns the Decision into a response with a
// minimal patch.
type Handler struct {
	planner *Planner
	metrics *Metrics
}

// NewHandler checks opts; it does no I/O.
func NewHandler(opts Options) (*Handler, error) {
	if opts.Resolver == nil || opts.Resolver.Lookup == nil {
		return nil, errors.New("webhook: a Resolver with a Lookup is required")
	}
	if err := opts.Inject.Validate(); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	if opts.NewSecret == nil {
		opts.NewSecret = RandomSecret
	}
	return &Handler{
		planner: &Planner{Resolver: opts.Resolver, Inject: opts.Inject, RequireOptIn: opts.RequireOptIn, NewSecret: opts.NewSecret, Peers: opts.Peers},
		metrics: opts.Metrics,
	}, nil
}

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	d, patch := h.decide(ctx, req)
	log := logf.FromContext(ctx).WithValues("outcome", d.Outcome)
	var resp admission.Response
	switch d.Outcome {
	case OutcomeInjected:
		resp = admission.Allowed(d.Message)
		resp.Patch, resp.PatchType = patch, ptr.To(admissionv1.PatchTypeJSONPatch)
		// The warnings go to whoever created the pod: for a pod that a
		// controller made, that is the controller, not a person; the log
		// keeps them where an operator looks.
		if len(d.Warnings) > 0 {
			log = log.WithValues("warnings", d.Warnings)
		}
		log.Info("injected pod identity sidecar", "patchBytes", len(patch))
		if d.PeersErr != nil {
			log.Error(d.PeersErr, "no check of the pods that share the service account")
		}
	case OutcomeDenied:
		resp = admission.Denied(d.Message)
		log.Info("denied pod", "reason", d.Message)
	case OutcomeErrored:
		code := int32(http.StatusInternalServerError)
		if errors.Is(d.Err, errBadRequest) || errors.Is(d.Err, ErrInvalidNamespace) {
			code = http.StatusBadRequest
		}
		resp = admission.Errored(code, d.Err)
		log.Error(d.Err, "admission failed")
	default:
		resp = admission.Allowed(d.Message)
		log.V(1).Info("pod left unchanged", "reason", d.Message)
	}
	if m := h.metrics; m != nil {
		// Only a namespace the decision found may become a label: a caller
		// who names made-up namespaces would otherwise add a series each.
		label := NamespaceOther
		if d.NamespaceFound {
			label = req.Namespace
		}
		m.Decisions.WithLabelValues(label, d.Outcome).Inc()
		m.Duration.WithLabelValues(d.Outcome).Observe(time.Since(start).Seconds())
		if d.ResolveErr {
			m.ResolveErrors.WithLabelValues(label, reason(d.Err)).Inc()
		}
	}
	return resp.WithWarnings(d.Warnings...)
}

// errBadRequest marks admission requests that are malformed.
var errBadRequest = errors.New("bad admission request")

// decide checks and decodes the request, plans, and makes the patch of an
// injection.
func (h *Handler) decide(ctx context.Context, req admission.Request) (Decision, []byte) {
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" {
		return Decision{Outcome: OutcomeSkipped, Message: fmt.Sprintf("not a pod (%s); nothing to do", req.Kind.Kind)}, nil
	}
	if req.Operation != admissionv1.Create {
		return Decision{Outcome: OutcomeSkipped, Message: fmt.Sprintf("operation %s; pods are injected on CREATE only", req.Operation)}, nil
	}
	bad := func(format string, args ...any) (Decision, []byte) {
		return Decision{Outcome: OutcomeErrored, Err: fmt.Errorf("%w %s for pod %s/%s: %w", errBadRequest, short(string(req.UID)), short(req.Namespace), short(req.Name), fmt.Errorf(format, args...))}, nil
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

	d := h.planner.Plan(ctx, pod)
	if d.Outcome != OutcomeInjected {
		return d, nil
	}
	patch, err := d.Patch()
	if err != nil {
		return Decision{Outcome: OutcomeErrored, Err: err, Warnings: d.Warnings}, nil
	}
	return d, patch
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
		{ErrLiveReadLimited, "live_read_limited"},
		{ErrLookup, "lookup"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}

// MaxRequestBytes caps an admission request's body. The largest pod etcd
// stores is 1.5 MiB, and its AdmissionReview (the object, and the old
// object of an update) fits in twice that; controller-runtime alone would
// read 7 MiB from anyone who reaches the port.
const MaxRequestBytes = 3 << 20

// LimitBody refuses a request whose body is over MaxRequestBytes: at once
// when its Content-Length says so, else when the admission webhook's read
// passes the cap.
func LimitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxRequestBytes {
			http.Error(w, fmt.Sprintf("request body of %d bytes is too large: an admission request is at most %d bytes", r.ContentLength, MaxRequestBytes),
				http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBytes)
		next.ServeHTTP(w, r)
	})
}
