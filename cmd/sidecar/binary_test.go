package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/fakeaad"
	"github.com/podidentity/injector/test/logbuf"
)

// buildSidecar builds this command as the image does: static, trimmed.
func buildSidecar(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pod-identity-sidecar")
	// go test puts its own GOROOT/bin first on PATH.
	gotool, err := exec.LookPath("go")
	require.NoError(t, err, "the go command is not on PATH")
	cmd := exec.Command(gotool, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// runningSidecar is the real sidecar binary serving a fake pod: its
// mounted files, and the environment the webhook gives the container.
type runningSidecar struct {
	pod    *fakeaad.Pod
	env    []string
	cmd    *exec.Cmd
	exited chan error
	logs   *logbuf.Buffer
}

// startSidecar runs bin serve for a fresh fake pod, with only what the
// webhook gives the sidecar container in its environment (and PATH), plus
// args; it is killed at the end of the test if it still runs.
func startSidecar(t *testing.T, bin string, args ...string) *runningSidecar {
	t.Helper()
	p, err := fakeaad.NewPod(fakeaad.PodOptions{Dir: t.TempDir(), Port: freePort(t)})
	require.NoError(t, err)
	t.Cleanup(p.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, p.AAD.CAPEM(), 0o600))
	doc, err := p.Config.Marshal()
	require.NoError(t, err)
	s := &runningSidecar{
		pod:    p,
		env:    []string{names.EnvSidecarConfig + "=" + doc, names.EnvIdentityHeader + "=" + p.IdentityHeader, "PATH=" + os.Getenv("PATH")},
		exited: make(chan error, 1),
		logs:   &logbuf.Buffer{},
	}
	s.cmd = exec.Command(bin, append([]string{names.SidecarServeCommand, "--ca-file", caFile, "--imds-endpoint", p.IMDS.URL}, args...)...)
	s.cmd.Env, s.cmd.Stderr = s.env, s.logs
	require.NoError(t, s.cmd.Start())
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			_ = <-s.exited // killed: its exit error says nothing
		}
	})
	return s
}

// TestBinaryEndToEnd runs the real sidecar binary the way the webhook
// starts it (config and secret in the environment), waits for its exec
// probe, and gets tokens with the real azidentity clients for every source
// type, then stops it with SIGTERM.
func TestBinaryEndToEnd(t *testing.T) {
	bin := buildSidecar(t)
	sc := startSidecar(t, bin)
	p, env, srv, exited, logs := sc.pod, sc.env, sc.cmd, sc.exited, sc.logs

	// The kubelet's startupProbe: exec `probe` until it exits 0.
	deadline := time.Now().Add(20 * time.Second)
	for {
		pr := exec.Command(bin, names.SidecarProbeCommand)
		pr.Env = env
		out, err := pr.CombinedOutput()
		if err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("sidecar exited early: %v\n%s", err, logs.String())
		default:
		}
		require.True(t, time.Now().Before(deadline), "probe never succeeded: %s\n%s", out, logs.String())
		time.Sleep(10 * time.Millisecond)
	}

	base := "http://127.0.0.1:" + strconv.Itoa(p.Config.Port)
	t.Setenv(names.EnvIdentityEndpoint, base+names.PathAppService)
	t.Setenv(names.EnvIdentityHeader, p.IdentityHeader)
	t.Setenv(names.EnvAzureClientID, p.Identity(fakeaad.IdentityFederated).ClientID)
	t.Setenv(names.EnvAuthorityHost, base)
	for _, k := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT", "IMDS_ENDPOINT", "AZURE_TOKEN_CREDENTIALS"} {
		t.Setenv(k, "")
		require.NoError(t, os.Unsetenv(k))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var tokens []string
	get := func(t *testing.T, cred azcore.TokenCredential, wantClientID, wantSource string) {
		t.Helper()
		resource := "https://binary-" + uuid.NewString()[:8] + ".example.com"
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{resource + "/.default"}})
		require.NoError(t, err, "sidecar logs:\n%s", logs.String())
		tokens = append(tokens, tok.Token)
		claims, err := p.AAD.VerifyAccessToken(tok.Token)
		require.NoError(t, err)
		assert.Equal(t, resource, claims.Audience)
		assert.Equal(t, wantClientID, claims.AppID)
		assert.Equal(t, wantSource, claims.Source)
	}
	for _, name := range fakeaad.PodIdentities {
		t.Run(name, func(t *testing.T) {
			id := p.Identity(name)
			cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(id.ClientID)})
			require.NoError(t, err)
			source := "entra"
			if id.Source == names.TokenSourceIMDS {
				source = "imds"
			}
			get(t, cred, id.ClientID, source)
		})
	}
	t.Run("DefaultAzureCredential", func(t *testing.T) {
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		require.NoError(t, err)
		get(t, cred, p.Identity(fakeaad.IdentityFederated).ClientID, "entra")
	})
	t.Run("IMDS path", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, base+names.PathIMDS+"?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net", nil)
		require.NoError(t, err)
		req.Header.Set("Metadata", "true")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body map[string]string
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		tokens = append(tokens, body["access_token"])
		assert.Equal(t, p.Identity(fakeaad.IdentityFederated).ClientID, body["client_id"])
	})

	require.NoError(t, srv.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "exit after SIGTERM; logs:\n%s", logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("sidecar did not stop after SIGTERM\n%s", logs.String())
	}

	out := logs.String()
	assert.Equal(t, len(fakeaad.PodIdentities)+2, strings.Count(out, `"msg":"token request"`), out)
	assert.Contains(t, out, `"msg":"stopped"`)
	for _, secret := range append(tokens, p.IdentityHeader, p.ClientSecret, p.ServiceAccountToken) {
		assert.NotContains(t, out, secret)
	}
}
