package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/examples"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "no golden file; run go test ./cmd/kubectl-pod_identity -update")
	assert.Equal(t, string(want), got, "stale golden %s; run go test ./cmd/kubectl-pod_identity -update and read the diff", path)
}

// explain runs `kubectl pod-identity explain ARGS` as kubectl would, and
// returns its exit code and what it printed.
func explain(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"explain"}, args...), strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// blogArgs names the blog seed's files, as a user passes them.
func blogArgs(t *testing.T) []string {
	t.Helper()
	var args []string
	for _, f := range examples.BlogFiles {
		args = append(args, "-f", filepath.Join(examples.BlogPath(filepath.Join("..", "..")), f))
	}
	return args
}

const tenant = "--default-tenant-id=72f988bf-86f1-41af-91ab-2d7cd011db47"

func TestExplainBlogSeed(t *testing.T) {
	for _, format := range []string{outputText, outputYAML, outputDiff} {
		t.Run(format, func(t *testing.T) {
			code, out, errOut := explain(t, "", append(blogArgs(t), tenant, "-o", format)...)
			require.Equal(t, exitOK, code, "the seed is admitted: %s", errOut)
			assert.Contains(t, out, headerPlaceholder, "IDENTITY_HEADER is shown as what it is, never a value")
			golden(t, "blog-seed."+format, strings.ReplaceAll(out, filepath.Join("..", ".."), "REPO"))
		})
	}
}

func TestExplainWithoutTenantIsTheWebhooksDenial(t *testing.T) {
	code, out, _ := explain(t, "", blogArgs(t)...)
	assert.Equal(t, exitFindings, code)
	assert.Contains(t, out, "decision: denied")
	assert.Contains(t, out, "AzureIdentity default/blob-reader has no spec.tenantID and the webhook has no --default-tenant-id")
}

func TestExplainEveryOutcome(t *testing.T) {
	code, out, errOut := explain(t, "", "-f", filepath.Join("testdata", "mixed.yaml"))
	assert.Equal(t, exitFindings, code, "a denied workload makes explain a failing CI gate: %s", errOut)
	golden(t, "mixed.text", out)
	for _, want := range []string{
		"CronJob team-a/nightly (testdata/mixed.yaml: document 7)\n  decision: injected",
		"writer (default: highest weight, then smallest name)",
		"Pod team-a/exempt (testdata/mixed.yaml: document 8)\n  decision: skipped",
		"matches AzurePodIdentityException team-a/mic-exception",
		"Deployment team-a/typo (testdata/mixed.yaml: document 9)\n  decision: denied",
		`no AzureIdentityBinding in namespace team-a has selector "az-id-combind"`,
		"StatefulSet team-b/elsewhere (testdata/mixed.yaml: document 10)\n  decision: skipped",
		"namespace team-b has not opted in",
	} {
		assert.Contains(t, out, want)
	}
}

func TestExplainReadsADirectory(t *testing.T) {
	code, out, errOut := explain(t, "", "-f", examples.BlogPath(filepath.Join("..", "..")), tenant)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "Deployment default/my-app (../../examples/aad-pod-identity-blog/deployment.yaml: document 1)\n  decision: injected")
}

func TestExplainReadsStandardInput(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "mixed.yaml"))
	require.NoError(t, err)
	code, out, _ := explain(t, string(data), "-f", "-", "-o", "yaml")
	assert.Equal(t, exitFindings, code)
	assert.Contains(t, out, "# CronJob team-a/nightly (-: document 7): injected")
	assert.Contains(t, out, "name: pod-identity-sidecar")
}

func TestExplainBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	broken := write("broken.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: []}\n---\nkind: [\n")
	unknown := write("unknown.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
	badField := write("field.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containerz: []}\n")
	onlyIDs := write("ids.yaml", "apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentity\nmetadata: {name: i}\nspec: {clientID: c}\n")
	tests := map[string]struct {
		args []string
		want []string
	}{
		"broken YAML":      {[]string{"-f", broken}, []string{"broken.yaml: document 2", "not YAML or JSON"}},
		"unknown kind":     {[]string{"-f", unknown}, []string{"unknown.yaml: document 1", "kind ConfigMap"}},
		"unknown field":    {[]string{"-f", badField}, []string{"field.yaml: document 1", "containerz"}},
		"missing file":     {[]string{"-f", filepath.Join(dir, "nope.yaml")}, []string{"nope.yaml", "no such file"}},
		"no workload":      {[]string{"-f", onlyIDs}, []string{"no Pod, Deployment"}},
		"no -f":            {nil, []string{"-f is required"}},
		"bad output":       {[]string{"-f", onlyIDs, "-o", "json"}, []string{`-o "json": want text, yaml or diff`}},
		"bad webhook flag": {[]string{"-f", onlyIDs, "--token-port=0"}, []string{"--token-port 0"}},
		"live with objects": {[]string{"-f", onlyIDs, "-f", filepath.Join("testdata", "mixed.yaml"), "--live", "--kubeconfig", filepath.Join(dir, "none")},
			[]string{"with --live", "remove them from the files"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, _, errOut := explain(t, "", tc.args...)
			assert.Equal(t, exitBadInput, code, errOut)
			for _, w := range tc.want {
				assert.Contains(t, errOut, w)
			}
		})
	}
}
