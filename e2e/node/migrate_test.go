//go:build e2e

package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podidentity/injector/e2e/framework/nodeparts"
	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/fakeaad"
)

// The estate of TestMigrationPlanHolds: client IDs of its own, so that no
// other test's federated credential serves them.
const (
	migClientA      = "6a1e0001-0000-4000-8000-00000000000a"
	migClientB      = "6a1e0001-0000-4000-8000-00000000000b"
	migClientShared = "6a1e0001-0000-4000-8000-0000000000cc"
	migSubscription = "6a1e0001-0000-4000-8000-000000000500"
	migNSA          = "mig-e2e-a"
	migNSB          = "mig-e2e-b"
	migNSC          = "mig-e2e-c"
	migNSShared     = "mig-e2e-shared"
)

// migratePlan is what the test reads of `migrate -o json`: only the
// fields the plugin's JSON report has always had.
type migratePlan struct {
	Issuer     string `json:"issuer"`
	Identities []struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
		ClientID  string `json:"clientID"`
		Subjects  []struct {
			Namespace      string   `json:"namespace"`
			ServiceAccount string   `json:"serviceAccount"`
			Workloads      []string `json:"workloads"`
		} `json:"subjects"`
		Credentials []struct {
			Issuer   string `json:"issuer"`
			Subject  string `json:"subject"`
			Audience string `json:"audience"`
		} `json:"federatedCredentials"`
	} `json:"identities"`
	SecretProviderClasses []struct {
		Namespace string   `json:"namespace"`
		Name      string   `json:"name"`
		MountedBy []string `json:"mountedBy"`
	} `json:"secretProviderClasses"`
	Blockers []struct {
		Reason  string `json:"reason"`
		Object  string `json:"object"`
		Message string `json:"message"`
	} `json:"blockers"`
}

// TestMigrationPlanHolds is issue 24's proof: an aad-pod-identity estate
// with the shapes real fleets have is planned offline by the real plugin,
// the fake Entra ID gets exactly the federated credentials the plan prints
// and no others, and then the workloads run on the real node: every
// workload the plan calls ready gets a token, and every workload it calls
// blocked is one that fails.
//
// The estate: two namespaces with an identity and a Deployment each (one
// on the default service account, one on a service account of its own); a
// Deployment whose only binding is in another namespace, which the
// webhook's default, namespaced mode denies; a hostNetwork pod, which the
// webhook denies for its shape; and a SecretProviderClass with
// usePodIdentity "true", mounted by a pod, which NMI served and nothing
// serves once it is gone.
func TestMigrationPlanHolds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	objects, spc, workloads := migrationEstate()
	writeFile(t, filepath.Join(dir, "aad-pod-identity.yaml"), objects)
	writeFile(t, filepath.Join(dir, "secretproviderclass.yaml"), spc)
	for name, doc := range workloads {
		writeFile(t, filepath.Join(dir, name+".yaml"), doc)
	}
	for _, ns := range []string{migNSA, migNSB, migNSC, migNSShared} {
		t.Cleanup(func() {
			_ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		})
	}
	// The cluster holds the aad-pod-identity objects before any workload
	// exists. The SecretProviderClass's CRD is not installed: it is
	// planned from its file only, which is not applied.
	kubectl(t, "apply", "-f", filepath.Join(dir, "aad-pod-identity.yaml"))

	plan := runMigrate(ctx, t, dir)

	// What the plan calls ready: the workloads of a subject that has a
	// federated credential, which no blocker names.
	blocked := map[string]string{} // object -> message
	for _, b := range plan.Blockers {
		blocked[b.Object] = b.Message
	}
	credentialed := map[string]bool{} // clientID/subject
	var creds []fakeaad.FederatedCredential
	var clientIDs []string
	for _, id := range plan.Identities {
		clientIDs = append(clientIDs, id.ClientID)
		for _, c := range id.Credentials {
			credentialed[id.ClientID+"/"+c.Subject] = true
			creds = append(creds, fakeaad.FederatedCredential{ClientID: id.ClientID, Issuer: c.Issuer, Subject: c.Subject, Audience: c.Audience})
		}
	}
	ready := map[string]string{} // workload -> client ID
	for _, id := range plan.Identities {
		for _, s := range id.Subjects {
			if !credentialed[id.ClientID+"/"+fakeaad.ServiceAccountSubject(s.Namespace, s.ServiceAccount)] {
				continue
			}
			for _, w := range s.Workloads {
				if _, ok := blocked[w]; !ok {
					ready[w] = id.ClientID
				}
			}
		}
	}
	t.Logf("the plan: %d federated credentials, ready %v, blockers %v", len(creds), ready, plan.Blockers)
	require.Equal(t, map[string]string{
		"Deployment " + migNSA + "/reader-a": migClientA,
		"Deployment " + migNSB + "/reader-b": migClientB,
	}, ready, "the plan calls the two namespaced Deployments ready, each on its own identity")
	require.ElementsMatch(t, []string{
		fakeaad.ServiceAccountSubject(migNSA, "default"),
		fakeaad.ServiceAccountSubject(migNSB, "reader"),
	}, subjectsOf(creds), "one federated credential per ready subject, and no other")
	for _, c := range creds {
		assert.Equal(t, cluster.Local.Cluster.Issuer(), c.Issuer, "credential for %s names the cluster's issuer", c.Subject)
	}
	blockedWorkloads := []string{"Deployment " + migNSC + "/cross", "Pod " + migNSA + "/hostnet"}
	for _, w := range blockedWorkloads {
		require.Contains(t, blocked, w, "the plan blocks %s", w)
	}
	require.Len(t, plan.SecretProviderClasses, 1, "the plan reports the SecretProviderClass that uses NMI")
	nmiClient := plan.SecretProviderClasses[0]
	assert.Equal(t, migNSB+"/kv", nmiClient.Namespace+"/"+nmiClient.Name)
	assert.Equal(t, []string{"Pod " + migNSB + "/kv-reader"}, nmiClient.MountedBy)
	require.Contains(t, blocked, "SecretProviderClass "+migNSB+"/kv", "the SecretProviderClass is a blocker")

	// The fake Entra ID now holds exactly the plan's credentials for the
	// estate's identities: it checks each assertion's issuer, subject and
	// audience against them, as Entra ID does.
	require.NoError(t, cluster.Local.SetFederatedCredentials(clientIDs, creds...))
	issuedBefore := map[string]int{}
	for _, id := range clientIDs {
		issuedBefore[id] = env.Issued(fakeaad.GrantAssertion, id)
	}

	// Apply every workload as its file is, and watch what happens.
	for _, name := range slices.Sorted(maps.Keys(workloads)) {
		out, err := env.Cluster.Kubectl(ctx, "apply", "-f", filepath.Join(dir, name+".yaml"))
		t.Logf("kubectl apply -f %s.yaml: %v\n%s", name, err, out)
		if name == "hostnet" {
			require.Error(t, err, "the webhook denies the hostNetwork pod")
			assert.Contains(t, err.Error(), blocked["Pod "+migNSA+"/hostnet"], "the denial is the plan's blocker message")
			continue
		}
		require.NoError(t, err, string(out))
	}

	// Ready: the pod runs, after its data-init's azcopy login --identity
	// exited 0 with a token of its identity.
	for w, clientID := range ready {
		ns, name, _ := strings.Cut(strings.TrimPrefix(w, "Deployment "), "/")
		pod := waitMigratedPod(ctx, t, w, ns, name)
		init := initStatus(pod, "data-init")
		require.NotNil(t, init.State.Terminated, "%s: data-init ran to completion: %+v", w, init.State)
		assert.Equal(t, int32(0), init.State.Terminated.ExitCode, "%s: azcopy login --identity exits 0", w)
		initLog := kubectl(t, "logs", "-n", ns, pod.Name, "-c", "data-init")
		assert.Contains(t, initLog, "Login with identity succeeded", "%s", w)
		assert.Greater(t, env.Issued(fakeaad.GrantAssertion, clientID), issuedBefore[clientID],
			"%s: the fake Entra ID issued a token to %s for the plan's credential", w, clientID)
	}

	// Blocked across namespaces: the webhook denies the Deployment's pods
	// with the plan's message, and nothing gets a token of the shared
	// identity.
	var dep *appsv1.Deployment
	require.Eventually(t, func() bool {
		d, err := cs.AppsV1().Deployments(migNSC).Get(ctx, "cross", metav1.GetOptions{})
		if err != nil {
			return false
		}
		dep = d
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	}, 90*time.Second, 250*time.Millisecond, "Deployment %s/cross reports ReplicaFailure (the webhook denies its pods)", migNSC)
	for _, c := range dep.Status.Conditions {
		if c.Type == appsv1.DeploymentReplicaFailure {
			t.Logf("Deployment %s/cross: %s", migNSC, c.Message)
			// The plan names the template's pod "cross-", the
			// ReplicaSet's pods have a generated name: compare the rest.
			// The plan's blocker is the webhook's denial, followed by
			// where the plan shows the ways out.
			_, denial, _ := strings.Cut(c.Message, "denied the request: ")
			_, denial, _ = strings.Cut(denial, ": ")
			_, plan, _ := strings.Cut(blocked["Deployment "+migNSC+"/cross"], ": ")
			require.NotEmpty(t, denial, "the ReplicaFailure carries the webhook's denial: %s", c.Message)
			assert.True(t, strings.HasPrefix(plan, denial), "the plan's blocker begins with the webhook's denial:\nplan:   %s\ndenial: %s", plan, denial)
		}
	}
	pods, err := cs.CoreV1().Pods(migNSC).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, pods.Items, "no pod of the cross-namespace Deployment was admitted")
	assert.Equal(t, issuedBefore[migClientShared], env.Issued(fakeaad.GrantAssertion, migClientShared), "no token for the shared identity")

	// NMI's other client: the pod that mounts the SecretProviderClass
	// stays in ContainerCreating, its volume unmountable with no driver
	// (and no NMI) to serve it.
	var evs string
	require.Eventually(t, func() bool {
		evs = events(migNSB, "kv-reader")
		return strings.Contains(evs, "FailedMount")
	}, 90*time.Second, 500*time.Millisecond, "pod %s/kv-reader cannot mount the SecretProviderClass's volume", migNSB)
	t.Logf("events of %s/kv-reader:\n%s", migNSB, evs)
	p, err := cs.CoreV1().Pods(migNSB).Get(ctx, "kv-reader", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, corev1.PodPending, p.Status.Phase, "the SecretProviderClass's pod does not start")
}

// waitMigratedPod waits, at most 2 minutes, for the pod of Deployment
// ns/name (workload w, which the plan calls ready) to run, and says on
// failure where it stands: its phase, data-init's last state and log,
// and its events.
func waitMigratedPod(ctx context.Context, t *testing.T, w, ns, name string) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var pod *corev1.Pod
	for time.Now().Before(deadline) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		require.NoError(t, err)
		if len(pods.Items) > 0 {
			pod = &pods.Items[0]
			if pod.Status.Phase == corev1.PodRunning {
				return pod
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	if pod == nil {
		t.Fatalf("the plan calls %s ready, but it has no pod after 2 minutes", w)
	}
	initLog, _ := env.Cluster.Kubectl(ctx, "logs", "-n", ns, pod.Name, "-c", "data-init", "--previous")
	t.Fatalf("the plan calls %s ready, but its pod %s is %s after 2 minutes: did its token request fail for want of the plan's federated credential?\ndata-init: %+v\ndata-init's previous log:\n%s\nevents:\n%s",
		w, pod.Name, pod.Status.Phase, initStatus(pod, "data-init").LastTerminationState, initLog, events(ns, pod.Name))
	return nil
}

// runMigrate builds the plugin and runs `migrate -f dir -o json` offline,
// with the webhook Deployment's decision flags and the cluster's issuer.
// It exits 1, since the estate has blockers.
func runMigrate(ctx context.Context, t *testing.T, dir string) migratePlan {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kubectl-pod_identity")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/kubectl-pod_identity")
	build.Dir, build.Env = repoRoot, append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/kubectl-pod_identity:\n%s", out)

	// manifests/deployment.yaml's decision flags, and the environment's.
	args := append([]string{"migrate", "-f", dir, "--issuer", cluster.Local.Cluster.Issuer(), "-o", "json",
		"--default-token-source=federated", "--require-namespace-opt-in=true", "--warn-shared-service-account=true"},
		env.WebhookArgs()...)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	t.Logf("kubectl pod-identity %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), stdout.String(), stderr.String())
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit) && exit.ExitCode() == 1, "migrate exits 1 (blockers found), got %v", err)
	var plan migratePlan
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &plan), "migrate -o json prints one JSON report")
	return plan
}

// migrationEstate is the aad-pod-identity objects (namespaces, identities,
// bindings and a ServiceAccount) as one document stream, the
// SecretProviderClass, and each workload's manifest by name.
func migrationEstate() (objects, spc string, workloads map[string]string) {
	var b strings.Builder
	for _, ns := range []string{migNSA, migNSB, migNSC, migNSShared} {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s, annotations: {%q: %q}}\n", ns, names.InjectAnnotation, names.InjectEnabled)
	}
	for _, id := range []struct{ ns, name, clientID string }{
		{migNSA, "reader-a", migClientA},
		{migNSB, "reader-b", migClientB},
		{migNSShared, "shared", migClientShared},
	} {
		fmt.Fprintf(&b, `---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  type: 0
  clientID: %[3]s
  resourceID: /subscriptions/%[4]s/resourceGroups/rg-mig/providers/Microsoft.ManagedIdentity/userAssignedIdentities/%[2]s
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: %[2]s, namespace: %[1]s}
spec: {azureIdentity: %[2]s, selector: %[2]s}
`, id.ns, id.name, id.clientID, migSubscription)
	}
	fmt.Fprintf(&b, `---
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader, namespace: %s}
`, migNSB)
	objects = b.String()
	spc = fmt.Sprintf(`apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: kv, namespace: %[1]s}
spec:
  provider: azure
  parameters:
    usePodIdentity: "true"
    keyvaultName: kv-mig
    tenantId: %[2]s
`, migNSB, webhookenv.TenantID)

	workloads = map[string]string{
		"reader-a": azcopyDeployment(migNSA, "reader-a", "reader-a", "", migClientA),
		"reader-b": azcopyDeployment(migNSB, "reader-b", "reader-b", "reader", migClientB),
		"cross":    azcopyDeployment(migNSC, "cross", "shared", "", migClientShared),
		"hostnet": fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hostnet, namespace: %s, labels: {%s: reader-a}}
spec:
  hostNetwork: true
  containers: [{name: app, image: %s}]
`, migNSA, names.BindingLabel, nodeparts.PauseImage),
		"kv-reader": fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: kv-reader, namespace: %s}
spec:
  containers:
  - name: app
    image: %s
    volumeMounts: [{name: secrets, mountPath: /mnt/secrets, readOnly: true}]
  volumes:
  - name: secrets
    csi:
      driver: secrets-store.csi.k8s.io
      readOnly: true
      volumeAttributes: {secretProviderClass: kv}
`, migNSB, nodeparts.PauseImage),
	}
	return objects, spc, workloads
}

// azcopyDeployment is the seed's shape as a Deployment: data-init logs in
// with azcopy login --identity for clientID, so the pod runs only once it
// got a token, then the nginx stand-in.
func azcopyDeployment(ns, name, selector, serviceAccount, clientID string) string {
	sa := ""
	if serviceAccount != "" {
		sa = "\n      serviceAccountName: " + serviceAccount
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[2]s}}
  template:
    metadata: {labels: {app: %[2]s, %[3]s: %[4]s}}
    spec:%[5]s
      initContainers:
      - name: data-init
        image: %[6]s
        command: [/bin/sh, -c]
        args: ["azcopy login --identity --identity-client-id %[7]s"]
      containers:
      - {name: app, image: %[8]s}
`, ns, name, names.BindingLabel, selector, sa, nodeparts.AzcopyImage, clientID, nodeparts.AppImage)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

func initStatus(pod *corev1.Pod, name string) corev1.ContainerStatus {
	for _, s := range pod.Status.InitContainerStatuses {
		if s.Name == name {
			return s
		}
	}
	return corev1.ContainerStatus{}
}

func subjectsOf(creds []fakeaad.FederatedCredential) []string {
	out := make([]string, 0, len(creds))
	for _, c := range creds {
		out = append(out, c.Subject)
	}
	return out
}
