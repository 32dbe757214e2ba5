package nodeparts

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/podidentity/injector/build/imagebuild"
)

// Registry is go-containerregistry's OCI distribution server on 127.0.0.1
// inside the suite's namespace. containerd mirrors docker.io, ghcr.io and
// registry.k8s.io to it, so an image named ghcr.io/podidentity/x:tag is
// pushed as <Host>/podidentity/x:tag, and docker.io/library/nginx as
// <Host>/library/nginx.
type Registry struct {
	// Host is 127.0.0.1:<port>.
	Host string
	srv  *http.Server
}

// StartRegistry serves an empty in-memory registry.
func StartRegistry() (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the node's registry: %w", err)
	}
	r := &Registry{Host: ln.Addr().String()}
	r.srv = &http.Server{
		Handler:           registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Close stops the registry.
func (r *Registry) Close() { _ = r.srv.Close() }

// Push stores img under ref (for example "ghcr.io/podidentity/x:e2e"), with
// the registry host of ref swapped for the local one, as the mirror maps it.
func (r *Registry) Push(ctx context.Context, ref string, img v1.Image) error {
	local, err := r.Local(ref)
	if err != nil {
		return err
	}
	if err := remote.Write(local, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s to the node's registry as %s: %w", ref, local, err)
	}
	return nil
}

// Delete removes ref's manifest, so that pulling it fails as for an image
// that was never published.
func (r *Registry) Delete(ctx context.Context, ref string) error {
	local, err := r.Local(ref)
	if err != nil {
		return err
	}
	desc, err := remote.Head(local, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	// The tag and the digest are two entries; drop both.
	if err := remote.Delete(local, remote.WithContext(ctx)); err != nil {
		return err
	}
	return remote.Delete(local.Context().Digest(desc.Digest.String()), remote.WithContext(ctx))
}

// Local is ref as stored in this registry.
func (r *Registry) Local(ref string) (name.Reference, error) {
	parsed, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	repo := parsed.Context().RepositoryStr()
	return name.ParseReference(r.Host+"/"+repo+":"+parsed.Identifier(), name.Insecure)
}

// GoBinary builds the main package pkg (relative to dir) as a static linux
// binary and returns its bytes.
func GoBinary(ctx context.Context, dir, pkg string) ([]byte, error) {
	out, err := os.MkdirTemp("", "node-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	bin := filepath.Join(out, "bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
	}
	return os.ReadFile(bin)
}

// PushPause builds the sandbox image from ./test/standin/pause
// (repoRoot is the repository) and pushes it as PauseImage.
func (r *Registry) PushPause(ctx context.Context, repoRoot string) error {
	bin, err := GoBinary(ctx, repoRoot, "./test/standin/pause")
	if err != nil {
		return err
	}
	img, err := image([]imagebuild.File{{Path: "/pause", Mode: 0o755, Content: bin}}, "/pause")
	if err != nil {
		return err
	}
	return r.Push(ctx, PauseImage, img)
}

// image is a linux/amd64 image of files, built with the project's image
// library, with entrypoint as its only command.
func image(files []imagebuild.File, entrypoint string) (v1.Image, error) {
	platform, err := imagebuild.Platform("linux/amd64")
	if err != nil {
		return nil, err
	}
	return imagebuild.Image(platform, files, imagebuild.Config{
		Entrypoint: []string{entrypoint},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
	}, time.Unix(0, 0))
}
