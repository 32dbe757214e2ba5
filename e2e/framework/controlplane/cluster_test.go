package controlplane

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// fakeBinaries writes script as every control-plane binary.
func fakeBinaries(t *testing.T, script string) Binaries {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake-component")
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"+script+"\n"), 0o755))
	return Binaries{Etcd: path, KubeAPIServer: path, KubeControllerManager: path, Kubectl: path}
}

// A start that fails part-way must leave nothing behind: no process and no
// directory, and must say which component failed and why.
func TestStartCleansUpAfterComponentFailure(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "etcd.pid")
	tests := map[string]struct {
		script  string
		wantErr error
	}{
		"etcd exits": {
			script:  `echo $$ > ` + pidFile + `; echo "etcd: refusing to start: bad data dir" >&2; exit 1`,
			wantErr: ErrExited,
		},
		"etcd never becomes healthy": {
			script:  `echo $$ > ` + pidFile + `; echo "etcd: waiting for peers" >&2; exec sleep 300`,
			wantErr: context.DeadlineExceeded,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			_, err := Start(context.Background(), Options{
				Binaries:        fakeBinaries(t, tc.script),
				WorkDir:         parent,
				ReadyTimeout:    time.Second,
				StopGracePeriod: time.Second,
			})

			var startErr *StartError
			require.ErrorAs(t, err, &startErr)
			assert.ErrorIs(t, err, tc.wantErr)
			assert.Equal(t, "etcd", startErr.Component)
			assert.Contains(t, err.Error(), "etcd: ", "the error must carry the log tail")

			entries, readErr := os.ReadDir(parent)
			require.NoError(t, readErr)
			assert.Empty(t, entries, "work directory left behind")
			pid := waitForPIDFile(t, pidFile)
			assert.False(t, alive(pid), "fake etcd (pid %d) still running after failed Start", pid)
		})
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	tests := map[string]struct {
		opts    func(t *testing.T) Options
		wantErr error // nil: only check that it fails and names the field
		field   string
	}{
		"binary missing": {
			opts: func(t *testing.T) Options {
				b := fakeBinaries(t, "exit 0")
				b.KubeAPIServer = filepath.Join(t.TempDir(), "nope")
				return Options{Binaries: b}
			},
			wantErr: ErrBinariesMissing,
			field:   "Options.Binaries",
		},
		"service range not a CIDR": {
			opts: func(t *testing.T) Options {
				return Options{Binaries: fakeBinaries(t, "exit 0"), ServiceClusterIPRange: "10.0.0.0"}
			},
			field: "Options.ServiceClusterIPRange",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Start(context.Background(), tc.opts(t))
			require.Error(t, err)
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
			}
			assert.Contains(t, err.Error(), tc.field)
		})
	}
}

func TestWriteKubeconfigRoundTrips(t *testing.T) {
	p, err := newPKI(t.TempDir(), nil)
	require.NoError(t, err)
	tests := map[string]struct {
		auth  *clientcmdapi.AuthInfo
		check func(t *testing.T, cfg *clientcmdapi.AuthInfo)
	}{
		"client certificate": {
			auth: &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCertPEM, ClientKeyData: p.adminKeyPEM},
			check: func(t *testing.T, a *clientcmdapi.AuthInfo) {
				assert.Equal(t, p.adminCertPEM, a.ClientCertificateData)
				assert.Equal(t, p.adminKeyPEM, a.ClientKeyData)
			},
		},
		"bearer token": {
			auth:  &clientcmdapi.AuthInfo{Token: "opaque"},
			check: func(t *testing.T, a *clientcmdapi.AuthInfo) { assert.Equal(t, "opaque", a.Token) },
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kubeconfig")
			require.NoError(t, writeKubeconfig(path, "https://127.0.0.1:6443", p.caCertPEM, "someone", tc.auth))

			info, err := os.Stat(path)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "kubeconfig holds credentials")
			loaded, err := clientcmd.LoadFromFile(path)
			require.NoError(t, err)
			ctx := loaded.Contexts[loaded.CurrentContext]
			require.NotNil(t, ctx)
			assert.Equal(t, "https://127.0.0.1:6443", loaded.Clusters[ctx.Cluster].Server)
			assert.Equal(t, p.caCertPEM, loaded.Clusters[ctx.Cluster].CertificateAuthorityData)
			tc.check(t, loaded.AuthInfos[ctx.AuthInfo])
		})
	}
}

func TestFirstIP(t *testing.T) {
	tests := map[string]string{
		"10.0.0.0/24":   "10.0.0.1",
		"10.96.0.0/12":  "10.96.0.1",
		"fd00::/108":    "fd00::1",
		"10.0.0.255/32": "10.0.1.0", // carries into the next octet
	}
	for cidr, want := range tests {
		t.Run(cidr, func(t *testing.T) {
			_, n, err := net.ParseCIDR(cidr)
			require.NoError(t, err)
			assert.Equal(t, want, firstIP(n).String())
		})
	}
}

func TestFreePortsAreDistinctAndBindable(t *testing.T) {
	ports, err := freePorts(5)
	require.NoError(t, err)
	seen := map[int]bool{}
	for _, p := range ports {
		assert.False(t, seen[p], "port %d returned twice", p)
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		require.NoError(t, err, "port %d not free", p)
		l.Close()
	}
}
