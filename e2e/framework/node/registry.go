package node

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
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

// File is one file of an image layer.
type File struct {
	Path string // absolute path in the image
	Mode int64
	Data []byte
	// Link, when set, makes the file a symlink to Link.
	Link string
}

// Image is a one-layer linux/amd64 image of files, with entrypoint and env.
//
// TODO(images): switch to the project's image library (hack/imagebuild)
// once it lands; this is only the layer and config that the node needs.
func Image(files []File, entrypoint []string, env []string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		p := strings.TrimPrefix(f.Path, "/")
		for d := filepath.Dir(p); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	var dirList []string
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sortByDepth(dirList)
	for _, d := range dirList {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		h := &tar.Header{Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode}
		if f.Link != "" {
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Link
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Entrypoint = entrypoint
	cfg.Config.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, env...)
	return mutate.ConfigFile(img, cfg)
}

func sortByDepth(dirs []string) {
	for i := 1; i < len(dirs); i++ {
		for j := i; j > 0 && strings.Count(dirs[j], "/") < strings.Count(dirs[j-1], "/"); j-- {
			dirs[j], dirs[j-1] = dirs[j-1], dirs[j]
		}
	}
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

// PushPause builds the sandbox image from ./e2e/framework/node/cmd/pause
// (repoRoot is the repository) and pushes it as PauseImage.
func (r *Registry) PushPause(ctx context.Context, repoRoot string) error {
	bin, err := GoBinary(ctx, repoRoot, "./e2e/framework/node/cmd/pause")
	if err != nil {
		return err
	}
	img, err := Image([]File{{Path: "/pause", Mode: 0o755, Data: bin}}, []string{"/pause"}, nil)
	if err != nil {
		return err
	}
	return r.Push(ctx, PauseImage, img)
}
