//go:build e2e

package e2e

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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/e2e/framework/localenv"
	"github.com/podidentity/injector/e2e/framework/podnet"
	"github.com/podidentity/injector/internal/names"
)

// matrixClientID is the identity of the client matrix's pod.
const matrixClientID = "77777777-0000-0000-0000-000000000000"

// wrongHeaderReason is what the sidecar answers a wrong X-IDENTITY-HEADER
// with; a client "names the problem" when its own error carries it.
const wrongHeaderReason = "the X-IDENTITY-HEADER header is wrong; send the value of the IDENTITY_HEADER environment variable of this container"

// tokenClient is one token client of the matrix, run as a host process with
// nothing but a container's injected env (plus HOME and PATH, which every
// image has, and where to find its installed packages).
type tokenClient struct {
	name string
	argv []string
	env  []string
	// claims reads the token's claims from the client's stdout.
	claims func(stdout []byte) (map[string]any, error)
}

// TestClientMatrix runs the clients that most pods use, unchanged, against
// the real sidecar of a real admitted pod: Python's azure.identity from
// Debian, JavaScript's @azure/identity pinned by a lockfile, and curl on
// both paths exactly as README.md shows them. Each gets a storage token of
// the pod's identity, and each, given a wrong IDENTITY_HEADER, gets a 401
// whose reason reaches the user. Two subtests record traps rather than
// successes: AZURE_FEDERATED_TOKEN_FILE in the pod, which takes the newer
// DefaultAzureCredentials away from the sidecar, and the az CLI that Debian
// ships, which predates IDENTITY_ENDPOINT.
func TestClientMatrix(t *testing.T) {
	ctx := context.Background()
	python := debianPython(t)
	nodeModules := npmModules(t)
	appService, imds := readmeCurls(t)

	createNamespace(t, "clients", true)
	bindIdentity(t, "clients", matrixClientID)
	env.DeclareFederatedCredential(matrixClientID, "clients", "default")
	pod := labelledPod("clients", "matrix", "app")
	require.NoError(t, env.Client.Create(ctx, pod))
	sidecar, err := env.RunSidecar(ctx, pod)
	require.NoError(t, err)
	t.Cleanup(sidecar.Stop)
	appEnv, err := localenv.ContainerEnv(pod, "app")
	require.NoError(t, err)
	// The clients run in a network of their own, as a pod's containers do:
	// the sidecar's port on loopback, and no route anywhere else.
	endpoint, err := url.Parse(envOf(appEnv, names.EnvIdentityEndpoint))
	require.NoError(t, err)
	port, err := strconv.Atoi(endpoint.Port())
	require.NoError(t, err, "the port of %s", names.EnvIdentityEndpoint)
	podNet, err := podnet.New(port)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, podNet.Close()) })
	run := func(t *testing.T, argv, env []string) (stdout, stderr []byte, err error) {
		return runClient(ctx, t, podNet, argv, env)
	}
	wrongEnv := replaceEnv(appEnv, names.EnvIdentityHeader, "not-the-header-of-this-pod")

	pyScript := filepath.Join(repoRoot, "e2e", "clients", "python", "gettoken.py")
	jsScript := filepath.Join(repoRoot, "e2e", "clients", "js", "gettoken.cjs")
	clients := []tokenClient{
		{name: "python ManagedIdentityCredential", argv: []string{python, pyScript, "--credential=managed"}, claims: scriptClaims},
		{name: "python DefaultAzureCredential", argv: []string{python, pyScript, "--credential=default"}, claims: scriptClaims},
		{name: "js ManagedIdentityCredential", argv: []string{"node", jsScript, "--credential=managed"}, env: []string{"NODE_PATH=" + nodeModules}, claims: scriptClaims},
		{name: "js DefaultAzureCredential", argv: []string{"node", jsScript, "--credential=default"}, env: []string{"NODE_PATH=" + nodeModules}, claims: scriptClaims},
		{name: "curl App Service path", argv: []string{"sh", "-c", appService}, claims: curlClaims},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, err := run(t, c.argv, append(appEnv, c.env...))
			require.NoError(t, err, "stderr: %s\nsidecar log:\n%s", redact(stderr), sidecar.Logs())
			logSDK(t, stdout)
			claims, err := c.claims(stdout)
			require.NoError(t, err, "stdout: %s", redact(stdout))
			assertStorageToken(t, claims)
		})
		t.Run(c.name+" with a wrong IDENTITY_HEADER", func(t *testing.T) {
			before := count401(sidecar.Logs())
			stdout, stderr, err := run(t, c.argv, append(wrongEnv, c.env...))
			out := redact(stdout) + redact(stderr)
			if c.argv[0] == "sh" {
				// curl exits 0 on an HTTP error; the body and status say it.
				require.NoError(t, err, out)
				assert.Contains(t, out, "status=401")
			} else {
				require.Error(t, err, "the client must fail: %s", out)
			}
			assert.Contains(t, out, wrongHeaderReason, "the client's error names the problem")
			assert.Greater(t, count401(sidecar.Logs()), before, "the sidecar answered 401")
			t.Logf("%s says: %s", c.name, strings.TrimSpace(out))
		})
	}

	// The IMDS path authenticates with "Metadata: true", as IMDS does, not
	// with IDENTITY_HEADER: a wrong header changes nothing, a missing
	// Metadata header is a 401 that says so.
	t.Run("curl IMDS path", func(t *testing.T) {
		for name, e := range map[string][]string{"injected env": appEnv, "wrong IDENTITY_HEADER": wrongEnv} {
			stdout, stderr, err := run(t, []string{"sh", "-c", imds}, e)
			require.NoError(t, err, "%s: %s", name, redact(stderr))
			claims, err := curlClaims(stdout)
			require.NoError(t, err, "%s: %s", name, redact(stdout))
			assertStorageToken(t, claims)
		}
	})
	t.Run("curl IMDS path without Metadata: true", func(t *testing.T) {
		noMetadata := strings.Replace(imds, `-H "Metadata: true" `, "", 1)
		require.NotEqual(t, imds, noMetadata)
		stdout, _, err := run(t, []string{"sh", "-c", noMetadata}, appEnv)
		require.NoError(t, err)
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
		tokenFile := filepath.Join(t.TempDir(), "token")
		require.NoError(t, os.WriteFile(tokenFile, []byte("not-a-service-account-token"), 0o600))
		wiEnv := append(append([]string(nil), appEnv...), "AZURE_FEDERATED_TOKEN_FILE="+tokenFile, "AZURE_TENANT_ID="+localenv.TenantID)
		for _, c := range []struct {
			name string
			argv []string
			env  []string
			// says is in the error of a client that skips the sidecar;
			// empty for one that still asks it.
			says string
		}{
			{"go azidentity DefaultAzureCredential", []string{filepath.Join(binDir, "gettoken"), "--credential=default"}, nil, "WorkloadIdentityCredential: unable to resolve an endpoint"},
			{"js DefaultAzureCredential", []string{"node", jsScript, "--credential=default"}, []string{"NODE_PATH=" + nodeModules}, "network_error: Network request failed"},
			{"python DefaultAzureCredential 1.13.0b2", []string{python, pyScript, "--credential=default"}, nil, ""},
		} {
			t.Run(c.name, func(t *testing.T) {
				before := strings.Count(sidecar.Logs(), "token request")
				stdout, stderr, err := run(t, c.argv, append(wiEnv, c.env...))
				asked := strings.Count(sidecar.Logs(), "token request") - before
				if c.says == "" {
					require.NoError(t, err, redact(stderr))
					claims, err := scriptClaims(stdout)
					require.NoError(t, err)
					assertStorageToken(t, claims)
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
	// attempt finds no route, so no packet leaves the machine.
	t.Run("az login --identity (Debian azure-cli)", func(t *testing.T) {
		az, err := exec.LookPath("az")
		require.NoError(t, err, "Debian's azure-cli is missing: run hack/install-deps.sh")
		version, _ := exec.Command("dpkg-query", "-W", "-f=${Version}", "azure-cli").Output()
		before := strings.Count(sidecar.Logs(), "token request")
		stdout, stderr, err := run(t, []string{az, "login", "--identity"}, appEnv)
		out := redact(stdout) + redact(stderr)
		require.Error(t, err, "azure-cli %s logged in: %s", version, out)
		assert.Contains(t, out, "Failed to connect to MSI")
		assert.Contains(t, out, "host='169.254.169.254'", "it asks node IMDS, not IDENTITY_ENDPOINT")
		assert.Equal(t, before, strings.Count(sidecar.Logs(), "token request"), "it never asked the sidecar")
		t.Logf("azure-cli %s, az login --identity: %s", version, strings.TrimSpace(out))
	})
}

// runClient runs argv in podNet with env, HOME and PATH, and returns what it
// wrote.
func runClient(ctx context.Context, t *testing.T, podNet *podnet.Netns, argv, env []string) (stdout, stderr []byte, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	home := t.TempDir()
	// curl reads options from $HOME/.curlrc: they add the HTTP status to
	// its output and keep the command itself exactly as README.md has it.
	rc := "silent\nshow-error\nwrite-out = \"\\nstatus=%{http_code}\\n\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(home, ".curlrc"), []byte(rc), 0o600))
	cmd := podNet.Command(ctx, argv...)
	cmd.Env = append(append([]string(nil), env...), "HOME="+home, "PATH=/usr/bin:/bin")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.Bytes(), errOut.Bytes(), err
}

// debianPython returns Debian's python3, which has python3-azure. (A python3
// earlier on PATH, such as pyenv's, would not.)
func debianPython(t *testing.T) string {
	t.Helper()
	const python = "/usr/bin/python3"
	out, err := exec.Command(python, "-c", "import azure.identity; print(azure.identity.__version__)").CombinedOutput()
	require.NoError(t, err, "Debian's python3-azure is missing: run hack/install-deps.sh\n%s", out)
	t.Logf("python3-azure: azure-identity %s", strings.TrimSpace(string(out)))
	return python
}

// npmModules installs e2e/clients/js's lockfile into the tools cache, once
// per lockfile, and returns its node_modules.
func npmModules(t *testing.T) string {
	t.Helper()
	_, err := exec.LookPath("node")
	require.NoError(t, err, "node is missing: install Node.js 20 or later")
	cmd := exec.Command(filepath.Join(repoRoot, "hack", "install-npm.sh"), filepath.Join(repoRoot, "e2e", "clients", "js"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	require.NoError(t, err, "hack/install-npm.sh")
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

func assertStorageToken(t *testing.T, claims map[string]any) {
	t.Helper()
	assert.Equal(t, "https://storage.azure.com", claims["aud"])
	assert.Equal(t, matrixClientID, claims["appid"], "the token is the pod's identity's")
	assert.Equal(t, "https://sts.windows.net/"+localenv.TenantID+"/", claims["iss"])
}

// scriptClaims reads what e2e/clients/*/gettoken print: the decoded claims.
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

// envOf returns the value of name in env.
func envOf(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// replaceEnv returns env with name set to value.
func replaceEnv(env []string, name, value string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return append(out, name+"="+value)
}

// count401 counts the sidecar's log lines of requests it refused with 401.
func count401(logs string) int {
	return strings.Count(logs, "status=401") + strings.Count(logs, `"status":401`)
}

var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)

// redact hides tokens in output that a failing test prints.
func redact(b []byte) string {
	return jwtPattern.ReplaceAllString(string(b), "<token>")
}
