//go:build e2e

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/podidentity/injector/build/imagebuild"
	"github.com/podidentity/injector/e2e/framework/controlplane"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/version"
	"github.com/podidentity/injector/test/fakeaad"
	"github.com/podidentity/injector/test/logbuf"
)

// runtimeBinaries are containerd, its runc shim, ctr and runc, as
// hack/build-tools.sh builds them into the tools cache.
type runtimeBinaries struct{ containerd, shimDir, ctr, runc string }

func findRuntime(t *testing.T) runtimeBinaries {
	t.Helper()
	cache, err := controlplane.CacheDir()
	require.NoError(t, err)
	ctrd := filepath.Join(cache, "containerd-"+controlplane.ContainerdVersion)
	b := runtimeBinaries{
		containerd: filepath.Join(ctrd, "containerd"),
		shimDir:    ctrd,
		ctr:        filepath.Join(ctrd, "ctr"),
		runc:       filepath.Join(cache, "runc-"+controlplane.RuncVersion, "runc"),
	}
	for _, p := range []string{b.containerd, filepath.Join(ctrd, "containerd-shim-runc-v2"), b.ctr, b.runc} {
		_, err := os.Stat(p)
		require.NoError(t, err, "run `hack/build-tools.sh containerd runc` (part of `make tools`)")
	}
	return b
}

// containerdEnv is a private containerd: its own root, state and socket
// under one temporary folder, its own runc root, and a namespace of its
// own, so that it shares nothing with another containerd on the machine.
type containerdEnv struct {
	bin      runtimeBinaries
	dir      string
	sock     string
	runcRoot string
	ns       string
	logs     *logbuf.Buffer
}

func startContainerd(t *testing.T, bin runtimeBinaries) *containerdEnv {
	t.Helper()
	// Unix socket paths are short: not t.TempDir(), whose name is long.
	dir, err := os.MkdirTemp("/tmp", "pii-ctrd-")
	require.NoError(t, err)
	e := &containerdEnv{bin: bin, dir: dir, sock: filepath.Join(dir, "c.sock"), runcRoot: filepath.Join(dir, "runc"), ns: "pod-identity-images-test", logs: &logbuf.Buffer{}}
	config := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), e.sock, e.sock+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(config), 0o600))

	cmd := exec.Command(bin.containerd, "--config", cfgPath)
	// The shim is found on PATH, and the shim finds runc there.
	cmd.Env = append(os.Environ(), "PATH="+bin.shimDir+":"+filepath.Dir(bin.runc)+":"+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		// Containers first, then the daemon, then its folders.
		_, _ = e.ctrOut(context.Background(), "tasks", "list")
		_ = cmd.Process.Signal(unix.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		// Snapshots may still be mounted if a test failed half-way.
		_ = unix.Unmount(filepath.Join(dir, "root"), unix.MNT_DETACH)
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove %s: %v", dir, err)
		}
		if t.Failed() {
			t.Logf("containerd log:\n%s", e.logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := e.ctrOut(context.Background(), "version"); err == nil {
			return e
		}
		require.True(t, time.Now().Before(deadline), "containerd did not answer on %s:\n%s", e.sock, e.logs.String())
		time.Sleep(100 * time.Millisecond)
	}
}

// ctrOut runs ctr against this containerd and returns its combined output.
func (e *containerdEnv) ctrOut(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--address", e.sock, "--namespace", e.ns}, args...)
	cmd := exec.CommandContext(ctx, e.bin.ctr, full...)
	cmd.Env = append(os.Environ(), "PATH="+e.bin.shimDir+":"+filepath.Dir(e.bin.runc)+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (e *containerdEnv) ctr(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := e.ctrOut(ctx, args...)
	require.NoError(t, err)
	return out
}

// runFlags are the flags of every `ctr run`: runc from the tools cache,
// with its state under the test's folder.
func (e *containerdEnv) runFlags() []string {
	return []string{"--runc-binary", e.bin.runc, "--runc-root", e.runcRoot}
}

// netns is a network namespace that the test creates, with only a loopback
// interface: no packet a test sends in it can leave it.
type netns struct{ name, path string }

func newNetns(t *testing.T) netns {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	n := netns{name: "pii-images-" + hex.EncodeToString(b)}
	n.path = "/var/run/netns/" + n.name
	out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput()
	require.NoError(t, err, "ip netns add: %s", out)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", n.name).CombinedOutput(); err != nil {
			t.Logf("ip netns delete %s: %v: %s", n.name, err, out)
		}
	})
	out, err = exec.Command("ip", "-n", n.name, "link", "set", "lo", "up").CombinedOutput()
	require.NoError(t, err, "ip link set lo up: %s", out)
	return n
}

// do runs fn on an OS thread that has joined the namespace, so that the
// sockets fn opens (listeners and connections) belong to it. The sockets
// stay there when the thread returns to the test's own namespace.
func (n netns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(n.path)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("join %s: %w", n.path, err)
			return
		}
		ferr := fn()
		// A thread that cannot go back stays locked, and Go ends it with
		// this goroutine.
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// httpClient dials from inside the namespace.
func (n netns) httpClient() *http.Client {
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := n.do(func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}},
	}
}

// importImages imports the layout that Build wrote, as a tar stream on
// ctr's stdin, with both platforms.
func importImages(t *testing.T, ctx context.Context, e *containerdEnv) {
	t.Helper()
	var tarball bytes.Buffer
	require.NoError(t, imagebuild.TarLayout(filepath.Join(buildOpts.Out, "oci"), &tarball))
	path := filepath.Join(e.dir, "images.tar")
	require.NoError(t, os.WriteFile(path, tarball.Bytes(), 0o600))
	out := e.ctr(t, ctx, "images", "import", "--all-platforms", path)
	t.Logf("ctr images import:\n%s", out)
	list := e.ctr(t, ctx, "images", "list", "--quiet")
	for _, b := range built {
		assert.Contains(t, list, b.Ref)
	}
}

// TestRunUnderContainerd runs both images under containerd and runc: the
// webhook's --version, and the sidecar as the webhook injects it (its
// image's entrypoint and `serve`, the config document and the pod's secret
// in its environment, its files mounted) inside a network namespace that
// holds the fake Entra ID on its loopback. The sidecar must pass its probe
// subcommand and serve a token that the fake issued.
func TestRunUnderContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("containerd, runc and network namespaces need root")
	}
	bin := findRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	e := startContainerd(t, bin)
	importImages(t, ctx, e)
	webhook, sidecar := builtImage(t, version.WebhookImageName), builtImage(t, version.SidecarImageName)

	t.Run("webhook --version", func(t *testing.T) {
		out := e.ctr(t, ctx, append(append([]string{"run", "--rm"}, e.runFlags()...),
			webhook.Ref, "webhook-version", webhook.Image.Binary, "--version")...)
		assert.Contains(t, out, "pod-identity-webhook "+testVersion+" (commit "+testCommit+", go")
	})
	t.Run("sidecar --version", func(t *testing.T) {
		out := e.ctr(t, ctx, append(append([]string{"run", "--rm"}, e.runFlags()...),
			sidecar.Ref, "sidecar-version", sidecar.Image.Binary, "--version")...)
		assert.Contains(t, out, "pod-identity-sidecar "+testVersion+" (commit "+testCommit+", go")
	})

	t.Run("sidecar serves a token", func(t *testing.T) {
		ns := newNetns(t)
		// What the webhook mounts into the pod (the projected token, the
		// identities' Secrets), in a folder bind-mounted at the same path.
		dir, err := os.MkdirTemp("/tmp", "pii-pod-")
		require.NoError(t, err)
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		var pod *fakeaad.Pod
		require.NoError(t, ns.do(func() (err error) {
			pod, err = fakeaad.NewPod(fakeaad.PodOptions{Dir: dir})
			return err
		}))
		t.Cleanup(pod.Close)
		require.True(t, strings.HasPrefix(pod.AAD.URL, "https://127.0.0.1:"), pod.AAD.URL)
		caFile := filepath.Join(dir, "entra-ca.pem")
		require.NoError(t, os.WriteFile(caFile, pod.AAD.CAPEM(), 0o600))
		// The files are the sidecar user's, as the kubelet's fsGroup makes them.
		require.NoError(t, filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, names.SidecarUID, names.SidecarGID)
		}))
		doc, err := pod.Config.Marshal()
		require.NoError(t, err)
		envFile := filepath.Join(e.dir, "sidecar.env")
		require.NoError(t, os.WriteFile(envFile, []byte(strings.Join([]string{
			names.EnvSidecarConfig + "=" + doc,
			names.EnvIdentityHeader + "=" + pod.IdentityHeader,
			// Go's crypto/x509 reads this instead of the image's bundle:
			// the fake Entra ID's CA is a test's.
			"SSL_CERT_FILE=" + caFile,
		}, "\n")+"\n"), 0o600))

		// No arguments: the image's own entrypoint and command run.
		logFile := filepath.Join(e.dir, "sidecar.log")
		args := append([]string{"run", "--detach", "--env-file", envFile, "--log-uri", "file://" + logFile,
			"--with-ns", "network:" + ns.path,
			"--mount", "type=bind,src=" + dir + ",dst=" + dir + ",options=rbind:ro",
		}, e.runFlags()...)
		e.ctr(t, ctx, append(args, sidecar.Ref, "sidecar")...)
		t.Cleanup(func() {
			_, _ = e.ctrOut(context.Background(), "tasks", "kill", "--signal", "SIGKILL", "sidecar")
			time.Sleep(200 * time.Millisecond)
			_, _ = e.ctrOut(context.Background(), "tasks", "delete", "--force", "sidecar")
			_, _ = e.ctrOut(context.Background(), "containers", "delete", "sidecar")
		})

		// The kubelet's startupProbe: exec `probe` until it exits 0.
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; ; i++ {
			out, err := e.ctrOut(ctx, "tasks", "exec", "--exec-id", "probe"+strconv.Itoa(i), "sidecar", names.SidecarBinary, names.SidecarProbeCommand)
			if err == nil {
				break
			}
			require.True(t, time.Now().Before(deadline), "probe never passed: %v\n%s", err, out)
			time.Sleep(200 * time.Millisecond)
		}

		// The image has no shell to exec.
		_, err = e.ctrOut(ctx, "tasks", "exec", "--exec-id", "shell", "sidecar", "/bin/sh", "-c", "true")
		assert.Error(t, err, "/bin/sh ran in the sidecar image")

		// The task runs as the sidecar's own user, from the image's USER.
		assert.Equal(t, strconv.Itoa(names.SidecarUID), taskUID(t, ctx, e, "sidecar"))

		// A token over the namespace's loopback, as an app in the pod asks.
		url := fmt.Sprintf("http://127.0.0.1:%d%s?api-version=2018-02-01&resource=%s", pod.Config.Port, names.PathIMDS, "https%3A%2F%2Fvault.azure.net")
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		require.NoError(t, err)
		req.Header.Set("Metadata", "true")
		resp, err := ns.httpClient().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body map[string]string
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		require.Equal(t, http.StatusOK, resp.StatusCode, "%v", body["error"])
		claims, err := pod.AAD.VerifyAccessToken(body["access_token"])
		require.NoError(t, err, "the token is the fake Entra ID's")
		assert.Equal(t, "https://vault.azure.net", claims.Audience)
		assert.Equal(t, pod.Identity(fakeaad.IdentityFederated).ClientID, claims.AppID)
		assert.Equal(t, 1, pod.AAD.Counts().Issued)

		// The sidecar logs a request after answering it, so the line may
		// reach the file a moment after the response reached us.
		var logs []byte
		assert.Eventually(t, func() bool {
			logs, err = os.ReadFile(logFile)
			return err == nil && strings.Contains(string(logs), `"msg":"token request"`)
		}, 5*time.Second, 50*time.Millisecond, "the sidecar logs the token request")
		for _, secret := range []string{body["access_token"], pod.IdentityHeader, pod.ClientSecret, pod.ServiceAccountToken} {
			assert.NotContains(t, string(logs), secret, "a secret in the sidecar's log")
		}
	})
}

// taskUID is the real uid of a task's process, from /proc.
func taskUID(t *testing.T, ctx context.Context, e *containerdEnv, id string) string {
	t.Helper()
	var pid string
	for _, line := range strings.Split(e.ctr(t, ctx, "tasks", "list"), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == id {
			pid = f[1]
		}
	}
	require.NotEmpty(t, pid, "no task %s", id)
	status, err := os.ReadFile("/proc/" + pid + "/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatalf("no Uid in /proc/%s/status", pid)
	return ""
}
