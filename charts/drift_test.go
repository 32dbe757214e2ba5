package charts_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podidentity/injector/e2e/framework/controlplane"
)

// difference is one way in which the chart's default rendering may differ
// from `kubectl kustomize manifests/`. Each is named, and each must still
// apply: one that no longer matches anything fails the test, so the list
// cannot grow stale.
type difference struct {
	name string
	// apply edits the two object sets towards each other and reports
	// whether it changed anything.
	apply func(t *testing.T, chart, manifests map[string]*unstructured.Unstructured) bool
}

// helmLabels are the labels Helm's conventions add to every templated
// object; manifests/ has no release to name.
var helmLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"}

// explicitFlags are the webhook flags the chart passes with their values
// while manifests/deployment.yaml leaves them at cmd/webhook's defaults.
// The test checks each value against the built binary's own defaults.
var explicitFlags = []string{
	"--sidecar-image-pull-policy",
	"--token-port",
	"--sidecar-cpu-request",
	"--sidecar-memory-request",
	"--sidecar-cpu-limit",
	"--sidecar-memory-limit",
	"--native-sidecar",
	"--token-audience",
	"--token-expiration-seconds",
	"--live-read-timeout",
	"--log-level",
	"--metrics-secure",
}

var (
	webhookDefaultsOnce sync.Once
	webhookDefaultsMap  map[string]string
	webhookDefaultsErr  error
)

// webhookDefaults builds cmd/webhook and reads every flag's default from
// its --help, as pflag's FlagUsages writes it: one line a flag,
// "      --name type   usage (default value)".
func webhookDefaults(t *testing.T) map[string]string {
	t.Helper()
	webhookDefaultsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "charts-webhook-")
		if err != nil {
			webhookDefaultsErr = err
			return
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		bin := filepath.Join(dir, "pod-identity-webhook")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/webhook")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			webhookDefaultsErr = fmt.Errorf("go build ./cmd/webhook: %w\n%s", err, out)
			return
		}
		// --help exits non-zero after printing the usage.
		help, _ := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
		webhookDefaultsMap = map[string]string{}
		flagLine := regexp.MustCompile(`^\s+(--[a-z0-9-]+)`)
		defaultValue := regexp.MustCompile(`\(default "?([^")]*)"?\)$`)
		for _, line := range strings.Split(string(help), "\n") {
			m := flagLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			webhookDefaultsMap[m[1]] = "" // the zero value, which pflag omits
			if d := defaultValue.FindStringSubmatch(strings.TrimSpace(line)); d != nil {
				webhookDefaultsMap[m[1]] = d[1]
			}
		}
		if len(webhookDefaultsMap) == 0 {
			webhookDefaultsErr = fmt.Errorf("no flags in the webhook's --help:\n%s", help)
		}
	})
	require.NoError(t, webhookDefaultsErr)
	return webhookDefaultsMap
}

var differences = []difference{
	{
		name: "the chart adds Helm's release labels (" + strings.Join(helmLabels, ", ") + ")",
		apply: func(t *testing.T, chart, _ map[string]*unstructured.Unstructured) bool {
			changed := false
			for _, o := range chart {
				changed = removeLabels(o, helmLabels, "metadata", "labels") || changed
				changed = removeLabels(o, helmLabels, "spec", "template", "metadata", "labels") || changed
			}
			return changed
		},
	},
	{
		name: "the cert-manager objects carry the chart's common labels; certs/ labels them not",
		apply: func(t *testing.T, chart, _ map[string]*unstructured.Unstructured) bool {
			changed := false
			for _, o := range chart {
				if o.GetAPIVersion() == "cert-manager.io/v1" {
					changed = removeLabels(o, []string{"app.kubernetes.io/name", "app.kubernetes.io/part-of"}, "metadata", "labels") || changed
				}
			}
			return changed
		},
	},
	{
		name: "the release namespace is Helm's (helm install --create-namespace), not a chart object",
		apply: func(t *testing.T, _, manifests map[string]*unstructured.Unstructured) bool {
			return deleteKind(manifests, "Namespace")
		},
	},
	{
		name: "the CRDs are in the chart's crds/, which helm template leaves out; TestCRDsMatchManifests compares them byte for byte",
		apply: func(t *testing.T, _, manifests map[string]*unstructured.Unstructured) bool {
			return deleteKind(manifests, "CustomResourceDefinition")
		},
	},
	{
		name: "the chart passes the webhook's defaults as explicit flags, so that values can change them",
		apply: func(t *testing.T, chart, _ map[string]*unstructured.Unstructured) bool {
			o := chart["Deployment/pod-identity-system/pod-identity-webhook"]
			require.NotNil(t, o, "the chart renders the webhook Deployment")
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			require.Len(t, containers, 1)
			c := containers[0].(map[string]any)
			args, _, _ := unstructured.NestedStringSlice(c, "args")
			defaults := webhookDefaults(t)
			var kept []string
			seen := map[string]bool{}
			for _, a := range args {
				flag, value, _ := strings.Cut(a, "=")
				if !slices.Contains(explicitFlags, flag) {
					kept = append(kept, a)
					continue
				}
				want, ok := defaults[flag]
				require.True(t, ok, "the webhook has no flag %s", flag)
				assert.Equal(t, want, value, "the chart's default for %s is the webhook's (cmd/webhook/config.go)", flag)
				seen[flag] = true
			}
			for _, flag := range explicitFlags {
				assert.True(t, seen[flag], "the chart passes %s", flag)
			}
			c["args"] = toAny(kept)
			require.NoError(t, unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers"))
			return len(seen) > 0
		},
	},
}

// TestDriftFromManifests renders the chart and manifests/ with kubectl
// kustomize, as `kubectl apply -k` does, applies the named differences,
// and requires the same objects, field for field: with the chart's
// defaults against manifests/ itself, and with each optional feature
// against an overlay with the kustomize component that provides it.
func TestDriftFromManifests(t *testing.T) {
	tests := []struct {
		name       string
		set        []string // helm --set
		components []string // under manifests/components
	}{
		{name: "defaults"},
		{name: "label mode", set: []string{"namespaceSelection.mode=label"}, components: []string{"label-opt-in"}},
		{name: "network policy", set: []string{"networkPolicy.enabled=true"}, components: []string{"network-policy"}},
		{name: "both", set: []string{"namespaceSelection.mode=label", "networkPolicy.enabled=true"}, components: []string{"label-opt-in", "network-policy"}},
	}
	bins, err := controlplane.FindBinaries()
	require.NoError(t, err)
	manifestsDir, err := filepath.Abs("../manifests")
	require.NoError(t, err)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"template", releaseName, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
			for _, s := range tt.set {
				args = append(args, "--set", s)
			}
			chartOut, err := helm(t, args...)
			require.NoError(t, err)

			dir := manifestsDir
			if len(tt.components) > 0 {
				dir = t.TempDir()
				rel, err := filepath.Rel(dir, manifestsDir)
				require.NoError(t, err)
				k := "resources:\n  - " + rel + "\ncomponents:\n"
				for _, c := range tt.components {
					k += "  - " + filepath.Join(rel, "components", c) + "\n"
				}
				require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600))
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			kustomized, err := execOutput(ctx, bins.Kubectl, "kustomize", dir)
			require.NoError(t, err)

			chart := byID(t, decodeStrict(t, chartOut))
			manifests := byID(t, decodeStrict(t, kustomized))
			for _, d := range differences {
				assert.True(t, d.apply(t, chart, manifests), "named difference no longer applies; remove it: %s", d.name)
			}

			assert.Equal(t, sortedKeys(manifests), sortedKeys(chart), "the chart's objects and the kustomize build's")
			for id, want := range manifests {
				got, ok := chart[id]
				if !ok {
					continue
				}
				if diff := cmp.Diff(want.Object, got.Object); diff != "" {
					t.Errorf("%s: the chart (+) differs from kustomize (-):\n%s", id, diff)
				}
			}
		})
	}
}

func byID(t *testing.T, objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	m := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		id := fmt.Sprintf("%s/%s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
		require.NotContains(t, m, id, "rendered twice")
		m[id] = o
	}
	return m
}

func sortedKeys(m map[string]*unstructured.Unstructured) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// removeLabels deletes keys from the label map at path, and the map itself
// when that empties it. It reports whether it removed anything.
func removeLabels(o *unstructured.Unstructured, keys []string, path ...string) bool {
	labels, found, _ := unstructured.NestedStringMap(o.Object, path...)
	if !found {
		return false
	}
	changed := false
	for _, k := range keys {
		if _, ok := labels[k]; ok {
			delete(labels, k)
			changed = true
		}
	}
	if len(labels) == 0 {
		unstructured.RemoveNestedField(o.Object, path...)
	} else {
		_ = unstructured.SetNestedStringMap(o.Object, labels, path...)
	}
	return changed
}

func deleteKind(objs map[string]*unstructured.Unstructured, kind string) bool {
	n := len(objs)
	for id, o := range objs {
		if o.GetKind() == kind {
			delete(objs, id)
		}
	}
	return len(objs) < n
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
