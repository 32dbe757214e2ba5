package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/examples"
	"github.com/podidentity/injector/internal/decision"
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

func TestExplainNeverShowsAHeader(t *testing.T) {
	// Per-container identities derive a header per container from the
	// pod's secret: explain shows the placeholder for each.
	const pod = `
apiVersion: v1
kind: Namespace
metadata: {name: team-a, annotations: {podidentity.github.io/inject: enabled}}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: blob-reader, namespace: team-a}
spec: {type: 0, clientID: 11111111-0000-0000-0000-000000000001, tenantID: t}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: queue-writer, namespace: team-a}
spec: {type: 0, clientID: 22222222-0000-0000-0000-000000000002, tenantID: t}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: b1, namespace: team-a}
spec: {azureIdentity: blob-reader, selector: app}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: b2, namespace: team-a}
spec: {azureIdentity: queue-writer, selector: app}
---
apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: team-a
  labels: {aadpodidbinding: app}
  annotations: {podidentity.github.io/container-identities: "init=blob-reader;app=queue-writer"}
spec:
  initContainers: [{name: init, image: i}]
  containers: [{name: app, image: a}]
`
	for _, format := range []string{outputText, outputYAML} {
		code, out, errOut := explain(t, pod, "-f", "-", "-o", format)
		require.Equal(t, exitOK, code, errOut)
		n := strings.Count(out, headerPlaceholder)
		assert.Equal(t, 2, n, "init and app each show the placeholder; the sidecar holds only hashes (%s):\n%s", format, out)
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "IDENTITY_HEADER=") {
				assert.Contains(t, line, "IDENTITY_HEADER="+headerPlaceholder+" ", "no derived header value: %s", line)
			}
		}
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
	onlyOthers := write("others.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
	badField := write("field.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containerz: []}\n")
	retired := write("retired.yaml", "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: d}\n")
	noKind := write("nokind.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nmetadata: {name: p}\n")
	onlyIDs := write("ids.yaml", "apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentity\nmetadata: {name: i}\nspec: {clientID: c}\n")
	mixed := filepath.Join("testdata", "mixed.yaml")
	tests := map[string]struct {
		args []string
		want []string
	}{
		"broken YAML":                {[]string{"-f", broken}, []string{"broken.yaml: document 2", "not YAML or JSON"}},
		"only other kinds":           {[]string{"-f", onlyOthers}, []string{"no Pod, Deployment", "others.yaml (only 1 ConfigMap, 1 Service)"}},
		"unknown field":              {[]string{"-f", badField}, []string{"field.yaml: document 1", "containerz"}},
		"retired apiVersion":         {[]string{"-f", retired}, []string{"retired.yaml: document 1", `field apiVersion "extensions/v1beta1"`, "use apps/v1"}},
		"no kind":                    {[]string{"-f", noKind}, []string{"nokind.yaml: document 2", "field kind is missing"}},
		"missing file":               {[]string{"-f", filepath.Join(dir, "nope.yaml")}, []string{"nope.yaml", "does not exist"}},
		"no workload":                {[]string{"-f", onlyIDs}, []string{"no Pod, Deployment"}},
		"a tree without -R":          {[]string{"-f", filepath.Join("testdata", "tree")}, []string{"no Pod, Deployment", "add -R to read the subdirectories of testdata/tree"}},
		"no -f":                      {nil, []string{"-f or -k is required"}},
		"-f and -k":                  {[]string{"-f", mixed, "-k", filepath.Join("testdata", "kustomize", "base")}, []string{"-f and -k cannot be used together"}},
		"-R with -k":                 {[]string{"-R", "-k", filepath.Join("testdata", "kustomize", "base")}, []string{"-R walks the directories of -f"}},
		"-k without a kustomization": {[]string{"-k", "testdata"}, []string{"kustomize build testdata", "kustomization.yaml"}},
		"stdin twice":                {[]string{"-f", "-", "-f", "-"}, []string{"standard input can be read only once"}},
		"an argument":                {[]string{"-f", mixed, "deployment/web"}, []string{"explain takes manifests with -f or -k, not arguments"}},
		"bad output":                 {[]string{"-f", onlyIDs, "-o", "wide"}, []string{`-o "wide": want text, yaml, json or diff`}},
		"bad webhook flag":           {[]string{"-f", onlyIDs, "--token-port=0"}, []string{"--token-port 0"}},
		"live without a kubeconfig": {[]string{"-f", mixed, "--live", "--kubeconfig", filepath.Join(dir, "none")},
			[]string{"load kubeconfig", "none"}},
		"live with objects": {[]string{"-f", onlyIDs, "-f", mixed, "--live", "-n", "team-a", "--kubeconfig", filepath.Join(dir, "none")},
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

// TestExplainPassesAHelmStream is the GitOps gate: helm template's output,
// most of it not workloads and none of it with a namespace, piped in.
func TestExplainPassesAHelmStream(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "helm-stream.yaml"))
	require.NoError(t, err)
	for _, format := range []string{outputText, outputJSON} {
		t.Run(format, func(t *testing.T) {
			code, out, errOut := explain(t, string(data), "-f", "-", "-n", "shop", "-o", format)
			require.Equal(t, exitOK, code, "every workload is injected or skipped: %s", errOut)
			golden(t, "helm-stream."+format, out)
			if format == outputText {
				assert.Equal(t, "skipped 4 objects that are not workloads: 1 ConfigMap, 1 HorizontalPodAutoscaler, 1 Service, 1 ServiceAccount\n", errOut)
				assert.Contains(t, out, "Deployment shop/web (-: document 6)\n  decision: injected", "-n places the chart's objects, identities and bindings included")
			} else {
				assert.Empty(t, errOut, "with -o json the count is in the report")
			}
		})
	}
}

func TestExplainWalksATreeWithRecursive(t *testing.T) {
	code, out, errOut := explain(t, "", "-R", "-f", filepath.Join("testdata", "tree"))
	assert.Equal(t, exitFindings, code, "the Job's selector has a typo: %s", errOut)
	golden(t, "tree.text", out)
	assert.Contains(t, out, "Deployment team-a/web (testdata/tree/apps/web/deployment.yaml: document 1)\n  decision: injected",
		"the identity two directories away serves it")
	assert.Contains(t, out, "Job team-a/report (testdata/tree/apps/jobs/report.json: document 1)\n  decision: denied")
	assert.Equal(t, "skipped 1 object that is not a workload: 1 Service\n", errOut, "README.md is not a manifest")
}

func TestExplainBuildsAKustomization(t *testing.T) {
	code, out, errOut := explain(t, "", "-k", filepath.Join("testdata", "kustomize", "overlays", "prod"), "-o", outputJSON)
	require.Equal(t, exitOK, code, errOut)
	golden(t, "kustomize.json", out)
	var r report
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	require.Len(t, r.Workloads, 1)
	w := r.Workloads[0]
	assert.Equal(t, "Deployment prod/api", w.Ref, "the overlay's namespace")
	assert.Equal(t, decision.OutcomeInjected, w.Outcome, "the overlay's patch labels the pods, and its Namespace opts them in")
	require.Len(t, w.Identities, 1)
	assert.Equal(t, "44444444-0000-0000-0000-000000000004", w.Identities[0].ClientID)
	assert.Equal(t, reportSummary{Workloads: 1, Injected: 1, NotWorkloads: 2}, r.Summary)
}

func TestExplainJSONReport(t *testing.T) {
	code, out, errOut := explain(t, "", "-f", filepath.Join("testdata", "mixed.yaml"), "-o", outputJSON)
	assert.Equal(t, exitFindings, code, "a denied workload fails the gate in every format: %s", errOut)
	golden(t, "mixed.json", out)
	var r report
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	assert.Equal(t, reportSchema, r.Schema)
	assert.Equal(t, reportSummary{Workloads: 4, Injected: 1, Skipped: 2, Denied: 1}, r.Summary)
	byRef := map[string]reportWorkload{}
	for _, w := range r.Workloads {
		byRef[w.Ref] = w
	}
	cron := byRef["CronJob team-a/nightly"]
	assert.Equal(t, decision.OutcomeInjected, cron.Outcome)
	assert.Empty(t, cron.Message)
	require.Len(t, cron.Identities, 2)
	assert.Equal(t, reportIdentity{Name: "writer", Namespace: "team-a", Default: true, Source: "federated",
		ClientID: "22222222-0000-0000-0000-000000000002", TenantID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", Weight: 5, BoundBy: []string{"writer-combined"}},
		cron.Identities[1])
	assert.NotEmpty(t, cron.Warnings)
	typo := byRef["Deployment team-a/typo"]
	assert.Equal(t, decision.OutcomeDenied, typo.Outcome)
	assert.Contains(t, typo.Message, `no AzureIdentityBinding in namespace team-a has selector "az-id-combind"`)
	assert.Equal(t, reportSource{File: "testdata/mixed.yaml", Document: 9}, typo.Source)
	assert.NotNil(t, typo.Identities, "lists are [] rather than null")
	assert.NotContains(t, out, "IDENTITY_HEADER")
}
