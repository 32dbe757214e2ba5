// Package version says which build of the project a binary is, and which
// release this source tree installs.
//
// Version and Commit are set at link time by the Makefile:
//
//	-ldflags "-X github.com/podidentity/injector/internal/version.Version=$(git describe --tags --always --dirty)
//	          -X github.com/podidentity/injector/internal/version.Commit=$(git rev-parse HEAD)"
//
// A plain `go build` leaves them empty, and String falls back to the VCS
// stamp that the go command embeds.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by -ldflags -X; see the package comment.
var (
	Version string
	Commit  string
)

// Release is the release that this tree's manifests/ install: the tag of
// both images in manifests/kustomization.yaml and of the webhook's default
// --sidecar-image. Tests check that they agree, and the release workflow
// refuses a tag that differs.
const Release = "v0.1.0"

// ImageRepository is where releases push the images, and the repository
// that manifests/ and the webhook's default sidecar image name.
const ImageRepository = "ghcr.io/podidentity"

// The images' names under a repository.
const (
	WebhookImageName = "pod-identity-webhook"
	SidecarImageName = "pod-identity-sidecar"
)

// DefaultSidecarImage is the sidecar image of Release, which the webhook
// injects unless --sidecar-image names another.
const DefaultSidecarImage = ImageRepository + "/" + SidecarImageName + ":" + Release

// Info is what a binary knows about its own build.
type Info struct {
	Version   string
	Commit    string
	GoVersion string
}

// Get returns this binary's Info. Without ldflags, Version is "(devel)"
// and Commit comes from the go command's VCS stamp, if any.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version()}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					info.Commit = s.Value
				}
			}
		}
	}
	return info
}

// String is the line that `--version` prints, e.g.
// "pod-identity-sidecar v0.1.0 (commit 1f2e3d..., go1.26.8)".
func String(program string) string {
	i := Get()
	return fmt.Sprintf("%s %s (commit %s, %s)", program, i.Version, i.Commit, i.GoVersion)
}
