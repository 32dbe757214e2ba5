package charts_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestNetworkPolicyMetricsPort: in every golden (each the chart rendered
// with one values file, kept current by TestTemplateGolden), a
// NetworkPolicy rule that names peers opens the port the Deployment serves
// metrics on, the container port named metrics. A wrong port shuts the
// scraper out and opens a port nothing serves.
func TestNetworkPolicyMetricsPort(t *testing.T) {
	goldens, err := filepath.Glob("testdata/golden/*.yaml")
	require.NoError(t, err)
	checked := 0
	for _, g := range goldens {
		data, err := os.ReadFile(g)
		require.NoError(t, err)
		var (
			netpols     []networkingv1.NetworkPolicy
			metricsPort int32
		)
		for _, o := range decodeStrict(t, data) {
			switch o.GetKind() {
			case "NetworkPolicy":
				var np networkingv1.NetworkPolicy
				require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &np))
				netpols = append(netpols, np)
			case "Deployment":
				var d appsv1.Deployment
				require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d))
				for _, c := range d.Spec.Template.Spec.Containers {
					for _, p := range c.Ports {
						if p.Name == "metrics" {
							metricsPort = p.ContainerPort
						}
					}
				}
			}
		}
		for _, np := range netpols {
			for _, rule := range np.Spec.Ingress {
				if len(rule.From) == 0 {
					continue // the API server's rule, on the serving port
				}
				require.NotZero(t, metricsPort, "%s: a metrics rule, but the Deployment names no metrics port", g)
				for _, p := range rule.Ports {
					require.NotNil(t, p.Port, g)
					assert.Equal(t, metricsPort, p.Port.IntVal, "%s: NetworkPolicy %s opens %s to metricsFrom, not the Deployment's metrics port", g, np.Name, p.Port)
					checked++
				}
			}
		}
	}
	assert.Positive(t, checked, "no golden has a NetworkPolicy with a metrics rule; testdata/values/network-policy.yaml should give one")
}
