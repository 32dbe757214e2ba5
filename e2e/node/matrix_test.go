//go:build e2e

package node_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podidentity/injector/e2e/framework/controlplane"
	"github.com/podidentity/injector/e2e/framework/nodeparts"
	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/internal/names"
)

// This file, and percontainer_test.go, sort after failure_test.go on
// purpose: go test runs the files in name order, and TestSidecarImageMissing
// must run before any pod has put the sidecar image in containerd's store.

// matrixClientID is the identity of the client matrix's pod.
const matrixClientID = "77777777-0000-0000-0000-000000000000"

// wrongHeaderReason is what the sidecar answers a wrong X-IDENTITY-HEADER
// with; a client "names the problem" when its own error carries it.
const wrongHeaderReason = "the X-IDENTITY-HEADER header is wrong; send the value of the IDENTITY_HEADER environment variable of this container"

// Where the client matrix's pod mounts the lockfile-pinned npm packages
// and the repository's client scripts (e2e/clients), read-only.
const (
	podNodeModules = "/opt/node_modules"
	podClients     = "/opt/clients"
)

// tokenClient is one token client of the matrix: argv as it runs in the
// pod's app container, with the container's env.
type tokenClient struct {
	name string
	argv []string
	// claims reads the token's claims from the client's stdout.
	claims func(stdout []byte) (map[string]any, error)
}

// TestClientMatrix runs the clients that most pods use, unchanged, in the
// app container of a pod that the webhook Deployment admitted and the real
// node runs, against its real injected sidecar, with the container's env
// exactly as the webhook set it: Python's azure.identity from Debian,
// JavaScript's @azure/identity pinned by a lockfile, and curl on both paths
// exactly as README.md shows them. Each gets a storage token of the pod's
// identity, and each, given a wrong IDENTITY_HEADER, gets a 401 whose reason
// reaches the user. Two subtests record traps rather than successes:
// AZURE_FEDERATED_TOKEN_FILE in the pod, which takes the newer
// DefaultAzureCredentials away from the sidecar, and the az CLI that Debian
// ships, which predates IDENTITY_ENDPOINT.
//
// The clients are Debian's packages (python3-azure, azure-cli, curl) and
// Node.js with the npm packages in the tools cache. Without Docker there is
// no image of them to pull, so the pod's image (nodeparts.ClientsImage) holds only
// test/standin/gettoken and a HOME, and mounts the host's /usr (and the links into
// it), the npm packages and e2e/clients read-only: the container runs the
// host's very files, in the pod's own network, where only the sidecar
// answers. The pod network has no route off the suite's namespace, so a
// client that calls node IMDS at 169.254.169.254 fails there.
func TestClientMatrix(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	checkDebianPython(t)
	nodeModules := npmModules(t)
	appService, imds := readmeCurls(t)
	pushClientsImage(t)

	const ns = "node-clients"
	optInNamespace(ctx, t, ns, matrixClientID)
	env.DeclareFederatedCredential(matrixClientID, ns, "default")
	spec := clientsPod(ns, "matrix", "app")
	mountHostDir(spec, &spec.Spec.Containers[0], "npm-packages", nodeModules, podNodeModules)
	mountHostDir(spec, &spec.Spec.Containers[0], "client-scripts", filepath.Join(repoRoot, "e2e", "clients"), podClients)
	// Where node finds @azure/identity: part of the image's setup, as a
	// Node.js image's global modules are, not of the injected env.
	spec.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "NODE_PATH", Value: podNodeModules}}
	app := startClientsPod(ctx, t, spec, "app")

	const python, pyScript, jsScript = "/usr/bin/python3", podClients + "/python/gettoken.py", podClients + "/js/gettoken.cjs"
	clients := []tokenClient{
		{name: "python ManagedIdentityCredential", argv: []string{python, pyScript, "--credential=managed"}, claims: scriptClaims},
		{name: "python DefaultAzureCredential", argv: []string{python, pyScript, "--credential=default"}, claims: scriptClaims},
		{name: "js ManagedIdentityCredential", argv: []string{"node", jsScript, "--credential=managed"}, claims: scriptClaims},
		{name: "js DefaultAzureCredential", argv: []string{"node", jsScript, "--credential=default"}, claims: scriptClaims},
		{name: "curl App Service path", argv: []string{"sh", "-c", appService}, claims: curlClaims},
	}
	// wrongHeader runs argv with IDENTITY_HEADER replaced, and nothing else
	// of the container's env changed.
	wrongHeader := func(argv []string) []string {
		return append([]string{"env", names.EnvIdentityHeader + "=not-the-header-of-this-pod"}, argv...)
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, err := app.run(ctx, c.argv...)
			require.NoError(t, err, "stderr: %s\nsidecar log:\n%s", redact(stderr), redact([]byte(app.sidecarLogs(ctx, t))))
			logSDK(t, stdout)
			claims, err := c.claims(stdout)
			require.NoError(t, err, "stdout: %s", redact(stdout))
			assertStorageToken(t, claims, matrixClientID)
		})
		t.Run(c.name+" with a wrong IDENTITY_HEADER", func(t *testing.T) {
			before := count401(app.sidecarLogs(ctx, t))
			stdout, stderr, err := app.run(ctx, wrongHeader(c.argv)...)
			out := redact(stdout) + redact(stderr)
			if c.argv[0] == "sh" {
				// curl exits 0 on an HTTP error; the body and status say it.
				require.NoError(t, err, out)
				assert.Contains(t, out, "status=401")
			} else {
				require.Error(t, err, "the client must fail: %s", out)
			}
			assert.Contains(t, out, wrongHeaderReason, "the client's error names the problem")
			// The sidecar logs a request once it has answered it: wait.
			assert.Eventually(t, func() bool { return count401(app.sidecarLogs(ctx, t)) > before },
				10*time.Second, 100*time.Millisecond, "the sidecar answered 401")
			t.Logf("%s says: %s", c.name, strings.TrimSpace(out))
		})
	}

	// The IMDS path authenticates with "Metadata: true", as IMDS does, not
	// with IDENTITY_HEADER: a wrong header changes nothing, a missing
	// Metadata header is a 401 that says so.
	t.Run("curl IMDS path", func(t *testing.T) {
		for name, argv := range map[string][]string{"injected env": {"sh", "-c", imds}, "wrong IDENTITY_HEADER": wrongHeader([]string{"sh", "-c", imds})} {
			stdout, stderr, err := app.run(ctx, argv...)
			require.NoError(t, err, "%s: %s", name, redact(stderr))
			claims, err := curlClaims(stdout)
			require.NoError(t, err, "%s: %s", name, redact(stdout))
			assertStorageToken(t, claims, matrixClientID)
		}
	})
	t.Run("curl IMDS path without Metadata: true", func(t *testing.T) {
		noMetadata := strings.Replace(imds, `-H "Metadata: true" `, "", 1)
		require.NotEqual(t, imds, noMetadata)
		stdout, stderr, err := app.run(ctx, "sh", "-c", noMetadata)
		require.NoError(t, err, redact(stderr))
		assert.Contains(t, string(stdout), "status=401")
		assert.Contains(t, string(stdout), "the Metadata: true header is missing")
	})

	// AZURE_FEDERATED_TOKEN_FILE with AZURE_TENANT_ID, as azure-workload-
	// identity's webhook sets them, puts workload identity ahead of the
	// sidecar in the newer DefaultAzureCredentials: they go to Entra ID
	// themselves with whatever that file holds (here Entra ID is out of
	// reach, so they fail; in a cluster they fail, or succeed as another
	// identity). Debian's azure-identity 1.13.0b2 predates that and still
	// asks the sidecar.
	t.Run("AZURE_FEDERATED_TOKEN_FILE in the pod", func(t *testing.T) {
		const tokenFile = "/tmp/federated-token"
		_, stderr, err := app.run(ctx, "sh", "-c", "printf not-a-service-account-token > "+tokenFile)
		require.NoError(t, err, string(stderr))
		wi := []string{"env", "AZURE_FEDERATED_TOKEN_FILE=" + tokenFile, "AZURE_TENANT_ID=" + webhookenv.TenantID}
		for _, c := range []struct {
			name string
			argv []string
			// says is in the error of a client that skips the sidecar;
			// empty for one that still asks it.
			says string
		}{
			{"go azidentity DefaultAzureCredential", []string{nodeparts.ClientsGettoken, "--credential=default"}, "WorkloadIdentityCredential: unable to resolve an endpoint"},
			{"js DefaultAzureCredential", []string{"node", jsScript, "--credential=default"}, "network_error: Network request failed"},
			{"python DefaultAzureCredential 1.13.0b2", []string{python, pyScript, "--credential=default"}, ""},
		} {
			t.Run(c.name, func(t *testing.T) {
				var stdout, stderr []byte
				var err error
				asked := app.sidecarRequests(ctx, t, func() { stdout, stderr, err = app.run(ctx, append(wi, c.argv...)...) })
				if c.says == "" {
					require.NoError(t, err, redact(stderr))
					claims, err := scriptClaims(stdout)
					require.NoError(t, err)
					assertStorageToken(t, claims, matrixClientID)
					assert.Equal(t, 1, asked, "it asked the sidecar")
					return
				}
				require.Error(t, err, "it must not get a token: %s", redact(stdout))
				assert.Contains(t, string(stderr), c.says)
				assert.Zero(t, asked, "it never asked the sidecar")
			})
		}
	})

	// Debian's azure-cli 2.45 logs in with msrestazure, which knows only
	// MSI_ENDPOINT and IMDS at 169.254.169.254. IDENTITY_ENDPOINT is
	// reachable in its network, yet it never asks the sidecar; its IMDS
	// attempt finds no route, so no packet leaves the node's namespace.
	t.Run("az login --identity (Debian azure-cli)", func(t *testing.T) {
		_, err := exec.LookPath("az")
		require.NoError(t, err, "Debian's azure-cli is missing: run hack/install-deps.sh")
		version, _ := exec.Command("dpkg-query", "-W", "-f=${Version}", "azure-cli").Output()
		var stdout, stderr []byte
		asked := app.sidecarRequests(ctx, t, func() { stdout, stderr, err = app.run(ctx, "az", "login", "--identity") })
		out := redact(stdout) + redact(stderr)
		require.Error(t, err, "azure-cli %s logged in: %s", version, out)
		assert.Contains(t, out, "Failed to connect to MSI")
		assert.Contains(t, out, "host='169.254.169.254'", "it asks node IMDS, not IDENTITY_ENDPOINT")
		assert.Zero(t, asked, "it never asked the sidecar")
		t.Logf("azure-cli %s, az login --identity: %s", version, strings.TrimSpace(out))
	})

	t.Run("no token or header secret in the sidecar's logs", func(t *testing.T) {
		logs := app.sidecarLogs(ctx, t)
		header := envOf(t, app.pod, "app", names.EnvIdentityHeader)
		assert.NotContains(t, logs, header)
		assert.NotContains(t, logs, "eyJ", "no JWT in the logs")
	})
}

var pushClientsOnce = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return reg.PushClientsImage(ctx, repoRoot)
})

// pushClientsImage builds nodeparts.ClientsImage and pushes it to the node's
// registry, once for the suite.
func pushClientsImage(t *testing.T) {
	t.Helper()
	require.NoError(t, pushClientsOnce(), "build and push %s", nodeparts.ClientsImage)
}

// clientsPod is a pod labelled for the binding "app" whose containers
// (names) run nodeparts.ClientsImage and sleep, each mounting
// nodeparts.ClientsHostDirs read-only, so that tests run clients in them with
// `kubectl exec`. Exec'd processes get the container's env. Nothing
// restarts, so that a container that fails fails the pod, and the test.
func clientsPod(ns, name string, containers ...string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{names.BindingLabel: "app"}},
		Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever},
	}
	for _, c := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
			Name: c, Image: nodeparts.ClientsImage, Command: []string{"/usr/bin/sleep", "infinity"},
		})
	}
	for i := range pod.Spec.Containers {
		for _, dir := range nodeparts.ClientsHostDirs {
			mountHostDir(pod, &pod.Spec.Containers[i], "host"+strings.ReplaceAll(dir, "/", "-"), dir, dir)
		}
	}
	return pod
}

// mountHostDir mounts the host's directory at path read-only into c, adding
// the volume to pod once.
func mountHostDir(pod *corev1.Pod, c *corev1.Container, volume, hostDir, path string) {
	found := false
	for _, v := range pod.Spec.Volumes {
		found = found || v.Name == volume
	}
	if !found {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
			Name: volume, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir}},
		})
	}
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: volume, MountPath: path, ReadOnly: true})
}

// inPod runs commands in one container of a running pod, as `kubectl exec`
// does.
type inPod struct {
	pod       *corev1.Pod
	container string
	kubectl   string
	cacheDir  string
	markers   atomic.Int64
}

// startClientsPod creates pod and waits for it to run; on failure it shows
// the pod's status, events and every container's log. It deletes the pod
// at cleanup.
func startClientsPod(ctx context.Context, t *testing.T, pod *corev1.Pod, container string) *inPod {
	t.Helper()
	created, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cs.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, *metav1.NewDeleteOptions(0))
	})
	require.True(t, hasSidecar(created), "the webhook injected the sidecar")
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		p, err := cs.CoreV1().Pods(pod.Namespace).Get(waitCtx, pod.Name, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			break
		}
		if err == nil && p.Status.Phase == corev1.PodFailed || waitCtx.Err() != nil {
			status := fmt.Sprint(err)
			if p != nil {
				status = fmt.Sprintf("%+v", p.Status)
			}
			t.Fatalf("pod %s/%s does not run: %s\nevents:\n%s\n%s", pod.Namespace, pod.Name, status, events(pod.Namespace, pod.Name), allLogs(created))
		}
		time.Sleep(100 * time.Millisecond)
	}
	bins, err := controlplane.FindBinaries()
	require.NoError(t, err)
	return &inPod{pod: created, container: container, kubectl: bins.Kubectl, cacheDir: t.TempDir()}
}

// run runs argv in the container with `kubectl exec`, and returns what it
// wrote; err is an *exec.ExitError with the command's exit code.
func (p *inPod) run(ctx context.Context, argv ...string) (stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	args := append([]string{"--kubeconfig=" + env.Cluster.KubeconfigPath(), "--cache-dir=" + p.cacheDir,
		"exec", "-n", p.pod.Namespace, p.pod.Name, "-c", p.container, "--"}, argv...)
	cmd := exec.CommandContext(ctx, p.kubectl, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.Bytes(), errOut.Bytes(), err
}

// sidecarLogs is the pod's sidecar container's log so far.
func (p *inPod) sidecarLogs(ctx context.Context, t *testing.T) string {
	t.Helper()
	return containerLog(ctx, t, p.pod, names.SidecarContainerName)
}

// sidecarRequests counts the token requests the sidecar logged while f ran.
// The sidecar logs a request after answering it, so a count right after f
// could miss one: a marker request to a path of its own, sent from the
// container after f, is logged after any request of f, and the count stops
// there.
func (p *inPod) sidecarRequests(ctx context.Context, t *testing.T, f func()) int {
	t.Helper()
	before := strings.Count(p.sidecarLogs(ctx, t), `"msg":"token request"`)
	f()
	endpoint, err := url.Parse(envOf(t, p.pod, p.container, names.EnvIdentityEndpoint))
	require.NoError(t, err)
	marker := fmt.Sprintf("/e2e-marker-%d", p.markers.Add(1))
	_, stderr, err := p.run(ctx, "curl", "--max-time", "10", "http://"+endpoint.Host+marker)
	require.NoError(t, err, "the marker request: %s", stderr)
	var logs string
	require.Eventually(t, func() bool {
		logs = p.sidecarLogs(ctx, t)
		return strings.Contains(logs, `"path":"`+marker+`"`)
	}, 10*time.Second, 100*time.Millisecond, "the sidecar logs the marker request %s", marker)
	// Not counting the marker itself.
	return strings.Count(logs, `"msg":"token request"`) - before - 1
}

// containerLog is one container's log, as `kubectl logs` shows it.
func containerLog(ctx context.Context, t *testing.T, pod *corev1.Pod, container string) string {
	t.Helper()
	raw, err := cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	require.NoError(t, err, "logs of %s/%s -c %s", pod.Namespace, pod.Name, container)
	return string(raw)
}

// allLogs is every container's log, for a failure report, with tokens
// redacted.
func allLogs(pod *corev1.Pod) string {
	var b strings.Builder
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			raw, err := cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: c.Name}).DoRaw(context.Background())
			if err != nil {
				raw = []byte(err.Error())
			}
			fmt.Fprintf(&b, "---- kubectl logs %s -c %s ----\n%s\n", pod.Name, c.Name, redact(raw))
		}
	}
	return b.String()
}

// envOf is the value the webhook gave name in container.
func envOf(t *testing.T, pod *corev1.Pod, container, name string) string {
	t.Helper()
	c, err := webhookenv.Container(pod, container)
	require.NoError(t, err)
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	t.Fatalf("container %s has no %s", container, name)
	return ""
}

// checkDebianPython fails unless Debian's python3 has python3-azure (a
// python3 earlier on the host's PATH, such as pyenv's, would not; the pod
// runs /usr/bin/python3).
func checkDebianPython(t *testing.T) {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", "-c", "import azure.identity; print(azure.identity.__version__)").CombinedOutput()
	require.NoError(t, err, "Debian's python3-azure is missing: run hack/install-deps.sh\n%s", out)
	t.Logf("python3-azure: azure-identity %s", strings.TrimSpace(string(out)))
}

// npmModules returns the node_modules of e2e/clients/js's lockfile in the
// tools cache. The suite's namespace has no network, so `make deps`
// (hack/install-npm.sh) must have installed them; here the script only
// finds them.
func npmModules(t *testing.T) string {
	t.Helper()
	_, err := exec.LookPath("node")
	require.NoError(t, err, "node is missing: install Node.js 20 or later")
	cmd := exec.Command(filepath.Join(repoRoot, "hack", "install-npm.sh"), filepath.Join(repoRoot, "e2e", "clients", "js"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "the client matrix's npm packages are not installed; the suite has no network: run `make deps` (hack/install-npm.sh) first\n%s", stderr.String())
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// readmeCurls returns the two curl commands of README.md, App Service path
// then IMDS path, so that the test runs what users copy.
func readmeCurls(t *testing.T) (appService, imds string) {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	require.NoError(t, err)
	for _, m := range regexp.MustCompile("`(curl [^`]+)`").FindAllStringSubmatch(string(readme), -1) {
		switch {
		case strings.Contains(m[1], "$IDENTITY_ENDPOINT"):
			appService = m[1]
		case strings.Contains(m[1], names.PathIMDS):
			imds = m[1]
		}
	}
	require.NotEmpty(t, appService, "README.md shows curl on $IDENTITY_ENDPOINT")
	require.NotEmpty(t, imds, "README.md shows curl on %s", names.PathIMDS)
	return appService, imds
}

// assertStorageToken checks a storage token's claims: the fake Entra ID's
// issuer, and clientID's appid.
func assertStorageToken(t *testing.T, claims map[string]any, clientID string) {
	t.Helper()
	assert.Equal(t, "https://storage.azure.com", claims["aud"])
	assert.Equal(t, clientID, claims["appid"], "the token is the pod's identity's")
	assert.Equal(t, "https://sts.windows.net/"+webhookenv.TenantID+"/", claims["iss"])
}

// scriptClaims reads what test/standin/gettoken and e2e/clients/*/gettoken print:
// the decoded claims.
func scriptClaims(stdout []byte) (map[string]any, error) {
	var got struct {
		Claims map[string]any `json:"claims"`
	}
	if err := json.Unmarshal(stdout, &got); err != nil {
		return nil, err
	}
	return got.Claims, nil
}

// curlClaims decodes the claims of the access token in a token response.
func curlClaims(stdout []byte) (map[string]any, error) {
	body, status, _ := strings.Cut(string(stdout), "\nstatus=")
	if strings.TrimSpace(status) != "200" {
		return nil, fmt.Errorf("HTTP status %q", strings.TrimSpace(status))
	}
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return nil, err
	}
	parts := strings.Split(resp.AccessToken, ".")
	if len(parts) != 3 {
		return nil, errors.New("access_token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	return claims, json.Unmarshal(payload, &claims)
}

// logSDK records the version the script reports.
func logSDK(t *testing.T, stdout []byte) {
	var got struct {
		SDK string `json:"sdk"`
	}
	if json.Unmarshal(stdout, &got) == nil && got.SDK != "" {
		t.Logf("sdk: %s", got.SDK)
	}
}

// count401 counts the sidecar's log lines of requests it refused with 401.
func count401(logs string) int {
	return strings.Count(logs, `"status":401`)
}

var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)

// redact hides tokens in output that a failing test prints.
func redact(b []byte) string {
	return jwtPattern.ReplaceAllString(string(b), "<token>")
}
