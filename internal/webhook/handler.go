// Package webhook answers the API server: the Handler decodes an admission
// request, asks a decision.Planner (package decision, which the kubectl
// plugin shares), and answers with a minimal JSON Patch. It also holds the
// informer cache's transforms, the pod informer of the shared service
// account warning, and the metrics. Data flows one way: decode, plan,
// patch, respond.
package webhook

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/podidentity/injector/internal/decision"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Path is where the handler is served.
const Path = "/mutate-v1-pod"

// Handler is the admission.Handler for pods: it checks and decodes the
// request, asks its Planner, and turns the Decision into a response with a
// minimal patch.
type Handler struct {
	planner *decision.Planner
	metrics *Metrics
}

// NewHandler answers admissions with planner's decisions; metrics, if not
// nil, record outcomes and latency. It does no I/O.
func NewHandler(planner *decision.Planner, metrics *Metrics) (*Handler, error) {
	if planner == nil {
		return nil, errors.New("webhook: a Planner is required")
	}
	if err := planner.Validate(); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	return &Handler{planner: planner, metrics: metrics}, nil
}

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	d, patch := h.decide(ctx, req)
	log := logf.FromContext(ctx).WithValues("outcome", d.Outcome)
	var resp admission.Response
	switch d.Outcome {
	case decision.OutcomeInjected:
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
	case decision.OutcomeDenied:
		resp = admission.Denied(d.Message)
		log.Info("denied pod", "reason", d.Message)
	case decision.OutcomeErrored:
		code := int32(http.StatusInternalServerError)
		if errors.Is(d.Err, errBadRequest) || errors.Is(d.Err, decision.ErrInvalidNamespace) {
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
		m.Decisions.WithLabelValues(label, string(d.Outcome)).Inc()
		m.Duration.WithLabelValues(string(d.Outcome)).Observe(time.Since(start).Seconds())
		if reason, ok := d.ResolveReason(); ok {
			m.ResolveErrors.WithLabelValues(label, reason).Inc()
		}
	}
	return resp.WithWarnings(d.Warnings...)
}

// errBadRequest marks admission requests that are malformed.
var errBadRequest = errors.New("bad admission request")

// decide checks and decodes the request, plans, and makes the patch of an
// injection.
func (h *Handler) decide(ctx context.Context, req admission.Request) (decision.Decision, []byte) {
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" {
		return decision.Decision{Outcome: decision.OutcomeSkipped, Message: fmt.Sprintf("not a pod (%s); nothing to do", req.Kind.Kind)}, nil
	}
	if req.Operation != admissionv1.Create {
		return decision.Decision{Outcome: decision.OutcomeSkipped, Message: fmt.Sprintf("operation %s; pods are injected on CREATE only", req.Operation)}, nil
	}
	bad := func(format string, args ...any) (decision.Decision, []byte) {
		return decision.Decision{Outcome: decision.OutcomeErrored, Err: fmt.Errorf("%w %s for pod %s/%s: %w", errBadRequest, decision.Short(string(req.UID)), decision.Short(req.Namespace), decision.Short(req.Name), fmt.Errorf(format, args...))}, nil
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
	if d.Outcome != decision.OutcomeInjected {
		return d, nil
	}
	patch, err := Patch(d.Injection)
	if err != nil {
		return decision.Decision{Outcome: decision.OutcomeErrored, Err: err, Warnings: d.Warnings, NamespaceFound: d.NamespaceFound}, nil
	}
	return d, patch
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
