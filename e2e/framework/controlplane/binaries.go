package controlplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Versions that hack/build-tools.sh builds. A test keeps them equal to the
// script's, since the cache layout is keyed by them.
const (
	KubeVersion   = "v1.37.2"
	EtcdVersion   = "v3.7.3"
	AzcopyVersion = "v10.32.7"
	// ContainerdVersion, RuncVersion and HelmVersion key the node's runtime
	// and the Helm CLI in the same cache.
	ContainerdVersion = "v2.4.2"
	RuncVersion       = "v1.5.3"
	HelmVersion       = "v3.22.0"
)

// CacheEnv names the variable that overrides the tools cache directory, as it
// does for hack/build-tools.sh.
const CacheEnv = "POD_IDENTITY_TOOLS_CACHE"

// ErrBinariesMissing is wrapped by the error that FindBinaries and Start
// return when a tool has not been built.
var ErrBinariesMissing = errors.New("tool binaries missing")

// Binaries are the paths of the programs the cluster runs.
type Binaries struct {
	Etcd                  string
	KubeAPIServer         string
	KubeControllerManager string
	Kubectl               string
	// Azcopy is not run by the cluster; it is found here because it lives in
	// the same cache and the e2e suite runs it against injected pods.
	Azcopy string
}

// CacheDir returns the directory hack/build-tools.sh builds into:
// $POD_IDENTITY_TOOLS_CACHE, else $XDG_CACHE_HOME/pod-identity-injector,
// else $HOME/.cache/pod-identity-injector.
func CacheDir() (string, error) {
	if dir := os.Getenv(CacheEnv); dir != "" {
		return dir, nil
	}
	if xdg := os.Getenv("XDG_CACHE_HOME"); xdg != "" {
		return filepath.Join(xdg, "pod-identity-injector"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locate the tools cache: set %s or HOME: %w", CacheEnv, err)
	}
	return filepath.Join(home, ".cache", "pod-identity-injector"), nil
}

// FindBinaries returns the paths of the tools in CacheDir. It reads the cache
// and never builds: a cold build takes many minutes, so the error for a
// missing tool says to run `make tools` instead.
func FindBinaries() (Binaries, error) {
	cache, err := CacheDir()
	if err != nil {
		return Binaries{}, err
	}
	kube := filepath.Join(cache, "k8s-"+KubeVersion)
	b := Binaries{
		Etcd:                  filepath.Join(cache, "etcd-"+EtcdVersion, "etcd"),
		KubeAPIServer:         filepath.Join(kube, "kube-apiserver"),
		KubeControllerManager: filepath.Join(kube, "kube-controller-manager"),
		Kubectl:               filepath.Join(kube, "kubectl"),
		Azcopy:                filepath.Join(cache, "azcopy-"+AzcopyVersion, "azcopy"),
	}
	if err := b.check(true); err != nil {
		return Binaries{}, err
	}
	return b, nil
}

// check reports every tool that is not an executable file, so that one run
// names all of them. The cluster needs all but azcopy.
func (b Binaries) check(withAzcopy bool) error {
	tools := []struct{ name, path string }{
		{"etcd", b.Etcd},
		{"kube-apiserver", b.KubeAPIServer},
		{"kube-controller-manager", b.KubeControllerManager},
		{"kubectl", b.Kubectl},
	}
	if withAzcopy {
		tools = append(tools, struct{ name, path string }{"azcopy", b.Azcopy})
	}
	var missing []string
	for _, t := range tools {
		if t.path == "" {
			missing = append(missing, t.name+" (no path given)")
			continue
		}
		info, err := os.Stat(t.path)
		switch {
		case err != nil:
			missing = append(missing, t.path+" (not found)")
		case info.IsDir() || info.Mode().Perm()&0o111 == 0:
			missing = append(missing, t.path+" (not an executable file)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s; run `make tools` (hack/build-tools.sh) to build them, or set %s to the directory it printed",
			ErrBinariesMissing, strings.Join(missing, ", "), CacheEnv)
	}
	return nil
}
