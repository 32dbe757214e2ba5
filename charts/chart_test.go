// Package charts_test checks the Helm chart in pod-identity-injector/ with the
// real Helm CLI from the tools cache (hack/build-tools.sh helm): helm lint
// and helm template over a matrix of values files with a golden file each,
// the schema's refusals, NOTES.txt, the CRDs and the values table in
// docs/install.md, and that the chart's defaults render the same objects as
// `kubectl kustomize manifests/` (drift_test.go).
//
//	go test ./charts/ -update   # rewrites the goldens, the CRDs and the docs table
package charts_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/e2e/framework/controlplane"
)

var update = flag.Bool("update", false, "rewrite the golden files, the chart's CRDs and the values table in docs/install.md")

const (
	chartDir    = "pod-identity-injector"
	releaseName = "pod-identity-injector"
	namespace   = "pod-identity-system"
	// kubeVersion pins the Capabilities that helm template renders for, so
	// the goldens do not follow the Helm build's default.
	kubeVersion = controlplane.KubeVersion
)

// helm runs the Helm CLI from the tools cache with a private home, so no
// user configuration or repository cache leaks in. It returns stdout, and
// stderr in the error.
func helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin, err := controlplane.FindHelm()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &helmError{args: args, err: err, stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

// execOutput runs a program and returns its stdout, with stderr in the error.
func execOutput(ctx context.Context, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

type helmError struct {
	args   []string
	err    error
	stderr string
}

func (e *helmError) Error() string {
	return "helm " + strings.Join(e.args, " ") + ": " + e.err.Error() + "\n" + e.stderr
}

// template renders the chart as `helm install` would for the release in
// namespace, with the given values files, without the CRDs.
func template(t *testing.T, valuesFiles ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", releaseName, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	return helm(t, args...)
}

// valuesFiles is the matrix: every file in testdata/values.
func valuesFiles(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob("testdata/values/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	out := map[string]string{}
	for _, p := range paths {
		out[strings.TrimSuffix(filepath.Base(p), ".yaml")] = p
	}
	return out
}

// TestLint runs `helm lint --strict` with each values file.
func TestLint(t *testing.T) {
	for name, path := range valuesFiles(t) {
		t.Run(name, func(t *testing.T) {
			out, err := helm(t, "lint", chartDir, "--strict", "--kube-version", kubeVersion, "--values", path)
			require.NoError(t, err, "%s", out)
			assert.Contains(t, string(out), "1 chart(s) linted, 0 chart(s) failed")
		})
	}
}

// TestTemplateGolden renders the chart with each values file and compares
// the output with testdata/golden/<name>.yaml. A values file without a
// golden fails, and so does a golden without a values file.
func TestTemplateGolden(t *testing.T) {
	files := valuesFiles(t)
	for name, path := range files {
		t.Run(name, func(t *testing.T) {
			got, err := template(t, path)
			require.NoError(t, err)
			objs := decodeStrict(t, got)
			require.NotEmpty(t, objs)
			golden := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				require.NoError(t, os.WriteFile(golden, got, 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "no golden for testdata/values/%s.yaml; run go test ./charts/ -update", name)
			assert.Equal(t, string(want), string(got), "stale golden %s; run go test ./charts/ -update and review the diff", golden)
		})
	}
	goldens, err := filepath.Glob("testdata/golden/*.yaml")
	require.NoError(t, err)
	for _, g := range goldens {
		name := strings.TrimSuffix(filepath.Base(g), ".yaml")
		assert.Contains(t, files, name, "golden %s has no values file; delete it", g)
	}
}

// TestCRDsMatchManifests: the chart's crds/ are manifests/crds, the files
// hack/generate.sh writes, byte for byte.
func TestCRDsMatchManifests(t *testing.T) {
	src, err := filepath.Glob("../manifests/crds/*_*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, src)
	for _, p := range src {
		want, err := os.ReadFile(p)
		require.NoError(t, err)
		dst := filepath.Join(chartDir, "crds", filepath.Base(p))
		if *update {
			require.NoError(t, os.WriteFile(dst, want, 0o644))
		}
		got, err := os.ReadFile(dst)
		require.NoError(t, err, "the chart lacks %s; run go test ./charts/ -update", dst)
		assert.Equal(t, string(want), string(got), "%s differs from %s; run go test ./charts/ -update", dst, p)
	}
	chartCRDs, err := filepath.Glob(filepath.Join(chartDir, "crds", "*"))
	require.NoError(t, err)
	assert.Len(t, chartCRDs, len(src), "the chart's crds/ has files that manifests/crds has not")
}
