//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/internal/migrate"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/fakeaad"
)

// plugin runs the built kubectl plugin against the e2e cluster and returns
// its exit code and standard output.
func plugin(t *testing.T, args ...string) (int, []byte) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "kubectl-pod_identity"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Cluster.KubeconfigPath())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), out
	}
	require.NoError(t, err, "kubectl-pod_identity %s: %s", strings.Join(args, " "), stderr.String())
	return 0, out
}

// applySeedObjects applies the seed's namespace, identity and binding, as
// TestSeedVerbatim does; apply is idempotent, so the order of tests does
// not matter.
func applySeedObjects(t *testing.T) {
	t.Helper()
	for _, f := range []string{"namespace.yaml", "azureidentity.yaml", "azureidentitybinding.yaml"} {
		out, err := kubectl(t, "apply", "-f", filepath.Join(seedDir(t), f))
		require.NoError(t, err, out)
	}
}

// TestExplainLiveMatchesTheWebhook: what `explain --live` says the webhook
// will do to the seed's pod is what the webhook does to it.
func TestExplainLiveMatchesTheWebhook(t *testing.T) {
	applySeedObjects(t)
	pod, err := webhookenv.SeedPodTemplate(filepath.Join(seedDir(t), "deployment.yaml"), "default")
	require.NoError(t, err)
	pod.APIVersion, pod.Kind, pod.Name = "v1", "Pod", "plugin-explain"
	manifest, err := yaml.Marshal(pod)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "pod.yaml")
	require.NoError(t, os.WriteFile(file, manifest, 0o600))

	// The webhook's answer: what the API server would store.
	stored := pod.DeepCopy()
	_, err = env.DryRunWarnings(context.Background(), stored)
	require.NoError(t, err)

	// The plugin's, with the flags the webhook runs with here.
	args := append([]string{"explain", "--live", "-f", file, "-o", "yaml"}, env.WebhookArgs()...)
	code, out := plugin(t, args...)
	require.Equal(t, 0, code, "%s", out)
	var explained corev1.Pod
	require.NoError(t, yaml.Unmarshal(out, &explained))

	header, n := envValue(&stored.Spec.InitContainers[0], names.EnvIdentityHeader)
	require.Equal(t, 1, n)
	assert.NotContains(t, string(out), header, "explain never shows a header value")

	// Compare what the webhook adds, with the per-pod header as what it is.
	require.NotEmpty(t, explained.Spec.InitContainers)
	want, got := stored.Spec.InitContainers[0], explained.Spec.InitContainers[0]
	assert.Equal(t, names.SidecarContainerName, got.Name)
	assert.Equal(t, want.Image, got.Image)
	assert.Equal(t, want.Command, got.Command)
	assert.Equal(t, want.Args, got.Args)
	assert.Equal(t, want.RestartPolicy, got.RestartPolicy)
	assert.Equal(t, want.SecurityContext, got.SecurityContext)
	assert.Equal(t, want.Resources, got.Resources)
	assert.Equal(t, want.VolumeMounts, got.VolumeMounts)
	assert.Equal(t, masked(want.Env, header), masked(got.Env, headerShown(got.Env)))
	for _, name := range []string{"data-init", "my-app"} {
		w, err := webhookenv.Container(stored, name)
		require.NoError(t, err)
		g, err := webhookenv.Container(&explained, name)
		require.NoError(t, err)
		assert.Equal(t, masked(w.Env, header), masked(g.Env, headerShown(g.Env)), "env of %s", name)
	}
	var storedVolumes, explainedVolumes []corev1.Volume
	for _, v := range stored.Spec.Volumes {
		if strings.HasPrefix(v.Name, "pod-identity-") {
			// The API server defaults a projected volume's mode after the
			// webhook, as it does for every pod; explain shows the pod
			// before defaulting.
			if p := v.Projected; p != nil && p.DefaultMode != nil && *p.DefaultMode == corev1.ProjectedVolumeSourceDefaultMode {
				v = *v.DeepCopy()
				v.Projected.DefaultMode = nil
			}
			storedVolumes = append(storedVolumes, v)
		}
	}
	for _, v := range explained.Spec.Volumes {
		if strings.HasPrefix(v.Name, "pod-identity-") {
			explainedVolumes = append(explainedVolumes, v)
		}
	}
	assert.Equal(t, storedVolumes, explainedVolumes)
	assert.Equal(t, stored.Annotations[names.InjectedAnnotation], explained.Annotations[names.InjectedAnnotation])
}

// headerShown is the IDENTITY_HEADER value explain printed.
func headerShown(env []corev1.EnvVar) string {
	for _, e := range env {
		if e.Name == names.EnvIdentityHeader {
			return e.Value
		}
	}
	return ""
}

// masked replaces the header value in env, so that a stored pod and an
// explained one compare equal when all else is.
func masked(env []corev1.EnvVar, header string) []corev1.EnvVar {
	out := make([]corev1.EnvVar, len(env))
	for i, e := range env {
		if header != "" {
			e.Value = strings.ReplaceAll(e.Value, header, "HEADER")
		}
		out[i] = e
	}
	return out
}

// TestMigrateNamesTheCredentialsTheFakeHolds: the federated credentials
// that `migrate` tells the user to create for the seed are the ones the
// fake Entra ID holds, and with which it issued the seed's tokens.
func TestMigrateNamesTheCredentialsTheFakeHolds(t *testing.T) {
	applySeedObjects(t)
	out, err := kubectl(t, "apply", "-f", filepath.Join(seedDir(t), "deployment.yaml"))
	require.NoError(t, err, out)
	env.DeclareFederatedCredential(seedClientID, "default", "default")

	// The issuer comes from the API server's discovery document.
	code, report := plugin(t, "migrate", "-o", "json", "--default-tenant-id="+webhookenv.TenantID)
	require.Contains(t, []int{0, 1}, code, "%s", report)
	var r migrate.Report
	require.NoError(t, json.Unmarshal(report, &r), "%s", report)
	assert.Equal(t, env.Cluster.Issuer(), r.Issuer)

	var seed *migrate.Identity
	for i := range r.Identities {
		if r.Identities[i].Namespace == "default" && r.Identities[i].Name == "blob-reader" {
			seed = &r.Identities[i]
		}
	}
	require.NotNil(t, seed, "the seed's identity is in the report")
	require.NotEmpty(t, seed.Credentials)
	held := map[string]bool{}
	for _, c := range env.FederatedCredentials() {
		if c.ClientID == seedClientID {
			held[c.Issuer+" "+c.Subject+" "+c.Audience] = true
		}
	}
	for _, c := range seed.Credentials {
		assert.True(t, held[c.Issuer+" "+c.Subject+" "+c.Audience], "migrate names %s %s, which the fake Entra ID must hold", c.Issuer, c.Subject)
	}
	assert.Equal(t, fakeaad.ServiceAccountSubject("default", "default"), seed.Credentials[0].Subject)
	for _, b := range r.Blockers {
		assert.NotContains(t, b.Object, "default/blob-reader", "nothing blocks the seed: %s", b.Message)
	}
}
