package controlplane

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The cache is keyed by version, so the Go constants and the script must
// agree or FindBinaries looks in the wrong place.
func TestVersionsMatchBuildScript(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("..", "..", "..", "hack", "build-tools.sh"))
	require.NoError(t, err)
	for variable, want := range map[string]string{
		"KUBE_VERSION":       KubeVersion,
		"ETCD_VERSION":       EtcdVersion,
		"AZCOPY_VERSION":     AzcopyVersion,
		"CONTAINERD_VERSION": ContainerdVersion,
		"RUNC_VERSION":       RuncVersion,
		"HELM_VERSION":       HelmVersion,
	} {
		t.Run(variable, func(t *testing.T) {
			m := regexp.MustCompile(`(?m)^` + variable + `=(\S+)$`).FindSubmatch(script)
			require.NotNil(t, m, "hack/build-tools.sh does not set %s", variable)
			assert.Equal(t, want, string(m[1]))
		})
	}
}

func TestCacheDir(t *testing.T) {
	tests := map[string]struct {
		toolsCache, xdg, home string
		want                  string
	}{
		"explicit cache wins":  {toolsCache: "/c/tools", xdg: "/x", home: "/h", want: "/c/tools"},
		"XDG_CACHE_HOME":       {xdg: "/x", home: "/h", want: "/x/pod-identity-injector"},
		"HOME when XDG unset":  {home: "/h", want: "/h/.cache/pod-identity-injector"},
		"empty XDG is ignored": {xdg: "", home: "/h", want: "/h/.cache/pod-identity-injector"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Setenv(CacheEnv, tc.toolsCache)
			t.Setenv("XDG_CACHE_HOME", tc.xdg)
			t.Setenv("HOME", tc.home)
			got, err := CacheDir()
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestFindBinaries(t *testing.T) {
	layout := map[string]string{
		"etcd":                    "etcd-" + EtcdVersion + "/etcd",
		"kube-apiserver":          "k8s-" + KubeVersion + "/kube-apiserver",
		"kube-controller-manager": "k8s-" + KubeVersion + "/kube-controller-manager",
		"kubectl":                 "k8s-" + KubeVersion + "/kubectl",
		"azcopy":                  "azcopy-" + AzcopyVersion + "/azcopy",
	}
	tests := map[string]struct {
		skip        string      // tool not built
		mode        os.FileMode // of every file
		wantMissing string      // in the error; "" means success
	}{
		"all built":              {mode: 0o755},
		"apiserver not built":    {skip: "kube-apiserver", mode: 0o755, wantMissing: "k8s-" + KubeVersion + "/kube-apiserver (not found)"},
		"azcopy not built":       {skip: "azcopy", mode: 0o755, wantMissing: "azcopy-" + AzcopyVersion + "/azcopy (not found)"},
		"files lack execute bit": {mode: 0o644, wantMissing: "etcd (not an executable file)"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cache := t.TempDir()
			t.Setenv(CacheEnv, cache)
			for tool, rel := range layout {
				if tool == tc.skip {
					continue
				}
				path := filepath.Join(cache, rel)
				require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
				require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"), tc.mode))
			}

			got, err := FindBinaries()

			if tc.wantMissing != "" {
				require.ErrorIs(t, err, ErrBinariesMissing)
				assert.Contains(t, err.Error(), tc.wantMissing)
				assert.Contains(t, err.Error(), "run `make tools`", "the error must say how to fix it")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, Binaries{
				Etcd:                  filepath.Join(cache, layout["etcd"]),
				KubeAPIServer:         filepath.Join(cache, layout["kube-apiserver"]),
				KubeControllerManager: filepath.Join(cache, layout["kube-controller-manager"]),
				Kubectl:               filepath.Join(cache, layout["kubectl"]),
				Azcopy:                filepath.Join(cache, layout["azcopy"]),
			}, got)
		})
	}
}
