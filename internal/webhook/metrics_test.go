package webhook

import (
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMetricLabelsAvoidTargetLabels: Prometheus puts the scraped target's
// namespace, pod, container, job and instance (and, through a
// ServiceMonitor, service and endpoint) on every sample. A metric label of
// the same name is renamed exported_<name> or, with honor_labels, replaces
// the target's, so an alert on the pod's namespace would name the webhook's
// own. The pod's namespace is pod_namespace.
func TestMetricLabelsAvoidTargetLabels(t *testing.T) {
	targetLabels := []string{"namespace", "pod", "container", "job", "instance", "service", "endpoint"}
	m := NewMetrics()
	desc := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	labels := map[string][]string{}
	for _, c := range []prometheus.Collector{m.Duration, m.Decisions, m.ResolveErrors} {
		ch := make(chan *prometheus.Desc, 1)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			sub := desc.FindStringSubmatch(d.String())
			require.NotNil(t, sub, "parse %s", d)
			labels[sub[1]] = strings.Split(sub[2], ",")
		}
	}
	for name, ls := range labels {
		for _, l := range ls {
			assert.NotContains(t, targetLabels, l, "%s has label %s, which Prometheus sets on every target", name, l)
		}
	}
	assert.Equal(t, []string{"pod_namespace", "outcome"}, labels["pod_identity_injector_decisions_total"])
	assert.Equal(t, []string{"pod_namespace", "reason"}, labels["pod_identity_injector_resolve_errors_total"])
}
