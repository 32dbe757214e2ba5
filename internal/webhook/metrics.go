package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
)

// NamespaceOther is the pod_namespace label of every admission whose namespace
// the decision did not find: the one bounded bucket for made-up names. No
// namespace can be called so (an underscore is not allowed in one).
const NamespaceOther = "_other"

// Metrics are the webhook's Prometheus collectors. Construct them with
// NewMetrics and register them once.
type Metrics struct {
	// Duration is the handler's admission latency by outcome. It has no
	// namespace label: a histogram per namespace costs a dozen series each.
	Duration *prometheus.HistogramVec
	// Decisions counts admissions by the pod's namespace and outcome, so
	// that alerts can be per team. The label is pod_namespace, not
	// namespace, which Prometheus sets on every sample to the scraped
	// target's, the webhook's own. It is the pod's namespace once the
	// decision found it in the cache or the API server, else
	// NamespaceOther: anyone who reaches the endpoint can send a request,
	// so the series are bounded by the namespaces that exist, plus one.
	Decisions *prometheus.CounterVec
	// ResolveErrors counts failed resolutions by the pod's namespace
	// (pod_namespace) and reason.
	ResolveErrors *prometheus.CounterVec
}

// NewMetrics makes the collectors; Register adds them to a registry.
func NewMetrics() *Metrics {
	return &Metrics{
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pod_identity_injector_admission_duration_seconds",
			Help:    "Time the pod identity webhook spent on one admission, by outcome.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"outcome"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_identity_injector_decisions_total",
			Help: "Admissions of labelled pods, by the pod's namespace and outcome: injected, skipped, denied, errored, unchanged.",
		}, []string{"pod_namespace", "outcome"}),
		ResolveErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_identity_injector_resolve_errors_total",
			Help: "Failed binding to identity resolutions, by the pod's namespace and reason.",
		}, []string{"pod_namespace", "reason"}),
	}
}

// Register adds the collectors to r.
func (m *Metrics) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.Duration, m.Decisions, m.ResolveErrors} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
