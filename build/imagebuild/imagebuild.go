// Package imagebuild assembles OCI images from plain files, without Docker
// and without a base image, with go-containerregistry. The project's own
// images (build/images), the node's pause image and the stand-in test images
// are built with it.
//
// The API is four steps:
//
//   - Image(platform, files, config, created) builds one single-layer image
//     for one platform. Every file, with its mode and owner, is listed by the
//     caller; parent directories are added as root-owned 0755. Every
//     timestamp is created, so the same inputs give the same digest.
//   - Index(images...) joins single-platform images into one OCI image index.
//   - WriteLayout(dir, named...) writes indexes as an OCI image layout, each
//     named (org.opencontainers.image.ref.name and io.containerd.image.name)
//     so that `ctr images import` of TarLayout's output tags them.
//   - Push(ctx, ref, index) pushes an index to a registry, authenticated
//     from the Docker config the way crane is (authn.DefaultKeychain).
//
// Helpers build the usual files: Accounts (/etc/passwd and /etc/group),
// CABundle and Binary.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// File is one entry of an image's filesystem.
type File struct {
	// Path is absolute inside the image, e.g. "/etc/passwd".
	Path string
	// Mode holds the permission bits (0o755), and fs.ModeDir for a
	// directory. Zero means 0o644 for a file.
	Mode fs.FileMode
	// UID and GID own the entry.
	UID, GID int
	// Content is the file's bytes, unless Source is set.
	Content []byte
	// Source is a path on the build machine whose bytes are the file's,
	// read when Image is called.
	Source string
}

// Config is the part of the OCI image config a caller sets.
type Config struct {
	// User is "uid:gid" (or a name from /etc/passwd) to run as.
	User       string
	Entrypoint []string
	Cmd        []string
	// Env is a list of KEY=value.
	Env        []string
	Labels     map[string]string
	WorkingDir string
}

// Platform returns the v1.Platform of an "os/arch[/variant]" string such
// as "linux/arm64".
func Platform(s string) (v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("platform %q: %w", s, err)
	}
	if p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch, e.g. linux/amd64", s)
	}
	return *p, nil
}

// Image builds a single-layer OCI image for platform from files and cfg.
// Every timestamp (file mtimes, the config's created, its history) is
// created, so two calls with the same inputs give the same digest; pass
// the commit time (SOURCE_DATE_EPOCH) or time.Unix(0, 0).
func Image(platform v1.Platform, files []File, cfg Config, created time.Time) (v1.Image, error) {
	created = created.UTC()
	raw, err := layerTar(files, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithCompressionLevel(gzip.BestCompression), tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "build/imagebuild", Comment: "files"},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = platform.OS, platform.Architecture, platform.Variant, platform.OSVersion
	cf.Config = v1.Config{
		User:       cfg.User,
		Entrypoint: slices.Clone(cfg.Entrypoint),
		Cmd:        slices.Clone(cfg.Cmd),
		Env:        slices.Clone(cfg.Env),
		Labels:     cfg.Labels,
		WorkingDir: cfg.WorkingDir,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return img, nil
}

// layerTar writes files, and their missing parent directories, as one tar
// in path order with every header fixed, so the bytes depend on the inputs
// alone.
func layerTar(files []File, mtime time.Time) ([]byte, error) {
	entries := map[string]File{}
	for _, f := range files {
		p := path.Clean(f.Path)
		if !path.IsAbs(p) || p == "/" {
			return nil, fmt.Errorf("file %q: want an absolute path below /", f.Path)
		}
		if _, dup := entries[p]; dup {
			return nil, fmt.Errorf("file %q: listed twice", p)
		}
		if f.Source != "" && f.Content != nil {
			return nil, fmt.Errorf("file %q: set Content or Source, not both", p)
		}
		if f.Source != "" {
			b, err := os.ReadFile(f.Source)
			if err != nil {
				return nil, fmt.Errorf("file %q: %w", p, err)
			}
			f.Content = b
		}
		f.Path = p
		entries[p] = f
	}
	for p := range entries {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if e, ok := entries[d]; ok {
				if !e.Mode.IsDir() {
					return nil, fmt.Errorf("file %q: parent %q is a file", p, d)
				}
				continue
			}
			entries[d] = File{Path: d, Mode: fs.ModeDir | 0o755}
		}
	}
	names := make([]string, 0, len(entries))
	for p := range entries {
		names = append(names, p)
	}
	slices.Sort(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range names {
		f := entries[p]
		h := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Uid:     f.UID,
			Gid:     f.GID,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		switch {
		case f.Mode.IsDir():
			if len(f.Content) > 0 {
				return nil, fmt.Errorf("file %q: a directory has no content", p)
			}
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", int64(f.Mode.Perm())
		default:
			mode := f.Mode.Perm()
			if mode == 0 {
				mode = 0o644
			}
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, int64(mode), int64(len(f.Content))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("file %q: %w", p, err)
		}
		if _, err := tw.Write(f.Content); err != nil {
			return nil, fmt.Errorf("file %q: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Index joins single-platform images into one OCI image index, each
// described by the platform in its config.
func Index(images ...v1.Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	adds := make([]mutate.IndexAddendum, 0, len(images))
	for _, img := range images {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		p := cf.Platform()
		if p == nil {
			return nil, errors.New("image has no platform in its config")
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	return mutate.AppendManifests(idx, adds...), nil
}

// Named is an index with the reference it is known by, e.g.
// "ghcr.io/podidentity/pod-identity-sidecar:v0.1.0".
type Named struct {
	Ref   string
	Index v1.ImageIndex
}

// WriteLayout replaces dir with an OCI image layout holding each index,
// annotated with its reference so that containerd names it on import.
func WriteLayout(dir string, named ...Named) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	for _, n := range named {
		ref, err := name.ParseReference(n.Ref)
		if err != nil {
			return fmt.Errorf("image reference %q: %w", n.Ref, err)
		}
		if err := p.AppendIndex(n.Index, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": ref.Identifier(),
			"io.containerd.image.name":          ref.Name(),
		})); err != nil {
			return fmt.Errorf("layout %s: write %s: %w", dir, n.Ref, err)
		}
	}
	return nil
}

// TarLayout writes the layout in dir as a tar stream, the form that
// `ctr images import` and `docker load` read. Entries are in path order
// with fixed headers.
func TarLayout(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if d.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			return tw.WriteHeader(h)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, int64(len(b))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		return fmt.Errorf("tar layout %s: %w", dir, err)
	}
	return tw.Close()
}

// Push pushes idx, and every image in it, to ref. Credentials come from
// authn.DefaultKeychain (the Docker config, as `docker login` and
// `az acr login` write it) unless opts set others. Registries on loopback
// are spoken to over plain HTTP.
func Push(ctx context.Context, ref string, idx v1.ImageIndex, opts ...remote.Option) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	all := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	if err := remote.WriteIndex(r, idx, all...); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// Account is a user of /etc/passwd with a group of the same name and id.
type Account struct {
	Name     string
	UID, GID int
	// Home defaults to "/nonexistent".
	Home string
}

// Accounts returns /etc/passwd and /etc/group with root and accts, and no
// login shell for any of them (the images have no shell).
func Accounts(accts ...Account) []File {
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n"
	group := "root:x:0:\n"
	for _, a := range accts {
		home := a.Home
		if home == "" {
			home = "/nonexistent"
		}
		passwd += fmt.Sprintf("%s:x:%d:%d:%s:%s:/sbin/nologin\n", a.Name, a.UID, a.GID, a.Name, home)
		group += fmt.Sprintf("%s:x:%d:\n", a.Name, a.GID)
	}
	return []File{
		{Path: "/etc/passwd", Mode: 0o644, Content: []byte(passwd)},
		{Path: "/etc/group", Mode: 0o644, Content: []byte(group)},
	}
}

// DebianCABundle is where Debian's ca-certificates package writes the
// bundle, and where Go's crypto/x509 looks first on Linux.
const DebianCABundle = "/etc/ssl/certs/ca-certificates.crt"

// CABundle returns Mozilla's root certificates as
// /etc/ssl/certs/ca-certificates.crt, in PEM, from
// golang.org/x/crypto/x509roots/fallback at the version go.mod pins, not
// from the build machine, so that two machines build the same digest and
// a root changes only with a go.mod bump. The roots come in the module's
// order. A root that NSS distrusts for certificates issued after a date is
// left out: a PEM file cannot carry that constraint, and trusting it
// without would trust what Mozilla no longer does.
func CABundle() (File, error) {
	var b bytes.Buffer
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			return File{}, fmt.Errorf("CA bundle: %w", err)
		}
	}
	if b.Len() == 0 {
		return File{}, errors.New("CA bundle: golang.org/x/crypto/x509roots/fallback has no unconstrained roots")
	}
	return File{Path: DebianCABundle, Mode: 0o644, Content: b.Bytes()}, nil
}

// Binary returns an executable, root-owned, at dst from source.
func Binary(dst, source string) File {
	return File{Path: dst, Mode: 0o755, Source: source}
}
