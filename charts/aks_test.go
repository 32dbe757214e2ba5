package charts_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// templateSet renders the chart with --set values.
func templateSet(t *testing.T, set ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", releaseName, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return helm(t, args...)
}

// findKind returns the one rendered object of kind, decoded into into.
func findKind(t *testing.T, objs []*unstructured.Unstructured, kind string, into any) {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	require.Len(t, found, 1, "one %s", kind)
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(found[0].Object, into))
}

// TestSubchart: Helm passes `global` to every subchart, so a schema that
// refuses it makes the chart unusable as a dependency. The chart is copied
// into the charts/ of a parent chart that sets a global value, and the
// parent renders.
func TestSubchart(t *testing.T) {
	parent := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(parent, "Chart.yaml"), []byte(`apiVersion: v2
name: platform
version: 1.0.0
dependencies:
  - name: pod-identity-injector
    version: ">=0.0.0-0"
`), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(parent, "values.yaml"), []byte("global:\n  imageRegistry: registry.example\n"), 0o600))
	require.NoError(t, copyDir(chartDir, filepath.Join(parent, "charts", "pod-identity-injector")))

	out, err := helm(t, "template", releaseName, parent, "--namespace", namespace, "--kube-version", kubeVersion)
	require.NoError(t, err)
	var d appsv1.Deployment
	findKind(t, decodeStrict(t, out), "Deployment", &d)
	assert.Equal(t, "pod-identity-webhook", d.Name)

	t.Run("--set global.x=y on the chart itself", func(t *testing.T) {
		_, err := templateSet(t, "global.x=y")
		require.NoError(t, err)
	})
}

func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
}

// TestNodeSelectorLinux: the webhook's image is Linux only, so its pods
// select Linux nodes (AKS clusters often have a Windows pool), and the
// user's nodeSelector is merged with that rather than replacing it.
func TestNodeSelectorLinux(t *testing.T) {
	tests := map[string]struct {
		set  []string
		want map[string]string
	}{
		"default":            {want: map[string]string{corev1.LabelOSStable: "linux"}},
		"with a user's pool": {set: []string{"nodeSelector.agentpool=system"}, want: map[string]string{corev1.LabelOSStable: "linux", "agentpool": "system"}},
		"an arch beside it":  {set: []string{"nodeSelector.kubernetes\\.io/arch=arm64"}, want: map[string]string{corev1.LabelOSStable: "linux", corev1.LabelArchStable: "arm64"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := templateSet(t, tt.set...)
			require.NoError(t, err)
			var d appsv1.Deployment
			findKind(t, decodeStrict(t, out), "Deployment", &d)
			assert.Equal(t, tt.want, d.Spec.Template.Spec.NodeSelector)
		})
	}
}

// TestPDBBlocksDrains: a PodDisruptionBudget that keeps every replica lets
// no webhook pod be evicted, so node drains and AKS upgrades hang. The
// chart refuses to render it, and names both values and the ways out.
func TestPDBBlocksDrains(t *testing.T) {
	refused := map[string][]string{
		"one replica":                 {"replicaCount=1"},
		"minAvailable = replicas":     {"replicaCount=3", "podDisruptionBudget.minAvailable=3"},
		"minAvailable 100%":           {"podDisruptionBudget.minAvailable=100%"},
		"one replica, 50% rounded up": {"replicaCount=1", "podDisruptionBudget.minAvailable=50%"},
	}
	for name, set := range refused {
		t.Run(name, func(t *testing.T) {
			out, err := templateSet(t, set...)
			require.Error(t, err, "rendered:\n%s", out)
			var he *helmError
			require.True(t, errors.As(err, &he), "%v", err)
			for _, w := range []string{"replicaCount", "podDisruptionBudget.minAvailable", "blocks node drains", "podDisruptionBudget.enabled=false"} {
				assert.Contains(t, he.stderr, w)
			}
		})
	}
	allowed := map[string][]string{
		"defaults":                    nil,
		"one replica without a PDB":   {"replicaCount=1", "podDisruptionBudget.enabled=false"},
		"one replica, minAvailable 0": {"replicaCount=1", "podDisruptionBudget.minAvailable=0"},
		"three replicas, 50%":         {"replicaCount=3", "podDisruptionBudget.minAvailable=50%"},
	}
	for name, set := range allowed {
		t.Run(name, func(t *testing.T) {
			_, err := templateSet(t, set...)
			require.NoError(t, err)
		})
	}
}

// aksEnforcerOptOut is the label with which AKS's Admissions Enforcer
// leaves a webhook configuration alone (AKS FAQ, "Can admission controller
// webhooks impact kube-system and internal AKS namespaces?").
const aksEnforcerOptOut = "admissions.enforcer/disabled"

// TestAdmissionsEnforcerOptOut: without the label, AKS adds its own
// namespaceSelector expressions to the webhook configuration, and Argo CD
// or Flux then see drift from the chart forever.
func TestAdmissionsEnforcerOptOut(t *testing.T) {
	for name, path := range valuesFiles(t) {
		t.Run(name, func(t *testing.T) {
			out, err := template(t, path)
			require.NoError(t, err)
			var cfg admissionregistrationv1.MutatingWebhookConfiguration
			findKind(t, decodeStrict(t, out), "MutatingWebhookConfiguration", &cfg)
			assert.Equal(t, "true", cfg.Labels[aksEnforcerOptOut])
		})
	}
}

// TestMonitorsAPIGroup: AKS's managed Prometheus reads ServiceMonitors and
// PodMonitors of azmonitoring.coreos.com only; the Prometheus Operator
// those of monitoring.coreos.com. The PrometheusRule stays the Operator's.
func TestMonitorsAPIGroup(t *testing.T) {
	for _, group := range []string{"monitoring.coreos.com", "azmonitoring.coreos.com"} {
		t.Run(group, func(t *testing.T) {
			out, err := templateSet(t, "metrics.monitorsAPIGroup="+group,
				"metrics.podMonitor.enabled=true", "metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true")
			require.NoError(t, err)
			kinds := map[string]string{}
			for _, o := range decodeStrict(t, out) {
				if strings.HasSuffix(o.GetAPIVersion(), "coreos.com/v1") {
					kinds[o.GetKind()] = o.GetAPIVersion()
				}
			}
			assert.Equal(t, map[string]string{
				"PodMonitor":     group + "/v1",
				"ServiceMonitor": group + "/v1",
				"PrometheusRule": "monitoring.coreos.com/v1",
			}, kinds)
		})
	}
	_, err := templateSet(t, "metrics.monitorsAPIGroup=coreos.com")
	var he *helmError
	require.True(t, errors.As(err, &he), "%v", err)
	assert.Contains(t, he.stderr, "/metrics/monitorsAPIGroup")
}
