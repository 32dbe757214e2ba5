package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of an admission, the label values of the decision metrics.
const (
	OutcomeInjected = "injected"
	OutcomeSkipped  = "skipped"
	OutcomeDenied   = "denied"
	OutcomeErrored  = "errored"
	OutcomeNoChange = "unchanged"
)

// Metrics are the webhook's Prometheus collectors. Construct them with
// NewMetrics and register them once.
type Metrics struct {
	// Duration is the handler's admission latency by outcome.
	Duration *prometheus.HistogramVec
	// Decisions counts admissions by outcome.
	Decisions *prometheus.CounterVec
	// ResolveErrors counts failed resolutions by reason.
	ResolveErrors *prometheus.CounterVec
}

// NewMetrics makes the collectors; Register adds them to a registry.
func NewMetrics() *Metrics {
	return &Metrics{
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pod_identity_webhook_admission_duration_seconds",
			Help:    "Time the pod identity webhook spent on one admission, by outcome.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"outcome"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_identity_webhook_decisions_total",
			Help: "Admissions of labelled pods, by outcome: injected, skipped, denied, errored, unchanged.",
		}, []string{"outcome"}),
		ResolveErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_identity_webhook_resolve_errors_total",
			Help: "Failed binding to identity resolutions, by reason.",
		}, []string{"reason"}),
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
