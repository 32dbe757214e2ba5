package charts_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podidentity/injector/internal/webhook"
)

// TestPrometheusRuleMetricsExist: every metric and label the chart's alerts
// query is one the webhook exposes, so a renamed metric cannot leave an
// alert that never fires.
func TestPrometheusRuleMetricsExist(t *testing.T) {
	m := webhook.NewMetrics()
	exposed := map[string][]string{} // metric name -> its variable labels
	fqName := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	for _, c := range []prometheus.Collector{m.Duration, m.Decisions, m.ResolveErrors} {
		ch := make(chan *prometheus.Desc, 4)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			sub := fqName.FindStringSubmatch(d.String())
			require.NotNil(t, sub, "parse %s", d)
			exposed[sub[1]] = strings.Split(sub[2], ",")
		}
	}

	out, err := template(t, "testdata/values/monitoring.yaml")
	require.NoError(t, err)
	var rule *unstructured.Unstructured
	for _, o := range decodeStrict(t, out) {
		if o.GetKind() == "PrometheusRule" {
			rule = o
		}
	}
	require.NotNil(t, rule, "monitoring.yaml renders a PrometheusRule")
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	require.NotEmpty(t, groups)
	metric := regexp.MustCompile(`\b(pod_identity_[a-z_]+?)(_bucket|_sum|_count)?\b`)
	byLabels := regexp.MustCompile(`by \(([a-z_, ]+)\)`)
	templateLabel := regexp.MustCompile(`\$labels\.([a-z_]+)`)
	alerts := 0
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			expr := r.(map[string]any)["expr"].(string)
			alerts++
			// A label the summary names is one the expression keeps.
			var kept []string
			for _, by := range byLabels.FindAllStringSubmatch(expr, -1) {
				for _, l := range strings.Split(by[1], ",") {
					kept = append(kept, strings.TrimSpace(l))
				}
			}
			annotations, _, _ := unstructured.NestedStringMap(r.(map[string]any), "annotations")
			for _, a := range annotations {
				for _, l := range templateLabel.FindAllStringSubmatch(a, -1) {
					assert.Contains(t, kept, l[1], "alert %v names $labels.%s, which %q does not keep", r.(map[string]any)["alert"], l[1], expr)
				}
			}
			found := metric.FindAllStringSubmatch(expr, -1)
			require.NotEmpty(t, found, "alert %v queries a webhook metric", r.(map[string]any)["alert"])
			for _, f := range found {
				labels, ok := exposed[f[1]]
				if !assert.True(t, ok, "%s in %q is not a metric of internal/webhook", f[1], expr) {
					continue
				}
				for _, by := range byLabels.FindAllStringSubmatch(expr, -1) {
					for _, l := range strings.Split(by[1], ",") {
						if l = strings.TrimSpace(l); l != "le" {
							assert.Contains(t, labels, l, "label %s of %s in %q", l, f[1], expr)
						}
					}
				}
			}
		}
	}
	assert.Equal(t, 3, alerts)
}
