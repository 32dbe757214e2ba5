package controlplane

import (
	"fmt"
	"os"
	"path/filepath"
)

// FindHelm returns the path of the Helm CLI that hack/build-tools.sh builds
// into CacheDir. Like FindBinaries it never builds: the error for a missing
// binary wraps ErrBinariesMissing and says to run `make tools`.
func FindHelm() (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(cache, "helm-"+HelmVersion, "helm")
	info, err := os.Stat(path)
	if err == nil && (info.IsDir() || info.Mode().Perm()&0o111 == 0) {
		err = fmt.Errorf("not an executable file")
	}
	if err != nil {
		return "", fmt.Errorf("%w: %s (%v); run `make tools` (hack/build-tools.sh helm) to build it, or set %s to the directory it printed",
			ErrBinariesMissing, path, err, CacheEnv)
	}
	return path, nil
}
