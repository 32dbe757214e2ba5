// Command images builds the webhook and sidecar images without Docker:
// it cross-compiles both static binaries for every platform, puts each on
// a minimal base assembled in Go (no shell; /etc/passwd and /etc/group with
// the image's non-root user; Mozilla's roots from the module go.mod pins,
// see imagebuild.CABundle; the binary), joins the
// platforms in one OCI image index per image, writes an OCI image layout,
// and, with -registry, pushes the indexes. `make images` runs it.
//
// Every timestamp is -source-date-epoch, and nothing but the Go toolchain
// comes from the build machine, so two builds of one commit give the same
// digests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/podidentity/injector/build/imagebuild"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

// Options are the command line.
type Options struct {
	// RepoRoot is the module's checkout, where `go build` runs.
	RepoRoot string
	// Out receives the binaries (Out/bin/<os>_<arch>/) and the layout
	// (Out/oci).
	Out string
	// Platforms are "os/arch" strings.
	Platforms []string
	// Repository and Tag name the images in the layout, and Registry, when
	// set, is where they are pushed (Registry/<image>:Tag).
	Repository, Tag, Registry string
	// LDFlags are passed to `go build` as `make build` passes them.
	LDFlags string
	// Version and Revision go into the OCI labels.
	Version, Revision string
	// SourceURL is org.opencontainers.image.source.
	SourceURL string
	// SourceDateEpoch is every timestamp in the images.
	SourceDateEpoch int64
	// Go is the go command.
	Go string
}

// AddFlags binds o to fs.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.RepoRoot, "repo", ".", "the module's checkout")
	fs.StringVar(&o.Out, "out", "_output/images", "output folder (binaries and the OCI layout)")
	fs.Func("platforms", "comma-separated os/arch list (default linux/amd64,linux/arm64)", func(s string) error {
		o.Platforms = strings.Split(s, ",")
		return nil
	})
	fs.StringVar(&o.Repository, "repository", version.ImageRepository, "repository that names the images in the layout")
	fs.StringVar(&o.Tag, "tag", version.Release, "tag of both images")
	fs.StringVar(&o.Registry, "registry", "", "push both indexes to <registry>/<image>:<tag> (credentials from the Docker config, like crane)")
	fs.StringVar(&o.LDFlags, "ldflags", "-s -w", "go build -ldflags, as `make build` passes them")
	fs.StringVar(&o.Version, "version", version.Release, "org.opencontainers.image.version")
	fs.StringVar(&o.Revision, "revision", "", "org.opencontainers.image.revision (the commit)")
	fs.StringVar(&o.SourceURL, "source-url", "https://github.com/podidentity/injector", "org.opencontainers.image.source")
	fs.Int64Var(&o.SourceDateEpoch, "source-date-epoch", 0, "every timestamp in the images, in Unix seconds (the commit time)")
	fs.StringVar(&o.Go, "go", "go", "the go command")
}

// Image describes one of the project's images.
type Image struct {
	// Name is the image's name under a repository.
	Name string
	// Package is the main package, relative to the module root.
	Package string
	// Binary is where the image puts the binary, and its entrypoint.
	Binary string
	// Cmd is the default arguments.
	Cmd []string
	// Account is the non-root user it runs as.
	Account imagebuild.Account
}

// Images are the webhook and the sidecar. The binary paths are the
// contract with manifests/deployment.yaml (the webhook's entrypoint) and
// internal/inject (names.SidecarBinary).
var Images = []Image{
	{
		Name:    version.WebhookImageName,
		Package: "./cmd/webhook",
		Binary:  "/pod-identity-webhook",
		Account: imagebuild.Account{Name: "nonroot", UID: names.WebhookUID, GID: names.WebhookUID},
	},
	{
		Name:    version.SidecarImageName,
		Package: "./cmd/sidecar",
		Binary:  names.SidecarBinary,
		Cmd:     []string{names.SidecarServeCommand},
		Account: imagebuild.Account{Name: names.SidecarUser, UID: names.SidecarUID, GID: names.SidecarGID},
	},
}

// Built is one image's index and the reference it has in the layout.
type Built struct {
	Image Image
	Ref   string
	Index v1.ImageIndex
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o := Options{Platforms: []string{"linux/amd64", "linux/arm64"}}
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	o.AddFlags(fs)
	printRelease := fs.Bool("print-release", false, "print the release that manifests/ install (internal/version.Release) and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *printRelease {
		_, err := fmt.Fprintln(stdout, version.Release)
		return err
	}
	start := time.Now()
	built, err := Build(ctx, o)
	if err != nil {
		return err
	}
	for _, b := range built {
		if err := report(stdout, b); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "layout %s (%.1fs)\n", filepath.Join(o.Out, "oci"), time.Since(start).Seconds())
	if o.Registry == "" {
		return nil
	}
	var digests strings.Builder
	for _, b := range built {
		ref := strings.TrimSuffix(o.Registry, "/") + "/" + b.Image.Name + ":" + o.Tag
		if err := imagebuild.Push(ctx, ref, b.Index); err != nil {
			return err
		}
		d, err := b.Index.Digest()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pushed %s@%s\n", ref, d)
		fmt.Fprintf(&digests, "%s@%s\n", ref, d)
	}
	// The release workflow signs exactly what was pushed, by digest.
	return os.WriteFile(filepath.Join(o.Out, "pushed.txt"), []byte(digests.String()), 0o644)
}

// report prints an image's index digest and each platform's compressed
// size (the layer and config blobs and the manifest, what a node pulls).
func report(w io.Writer, b Built) error {
	d, err := b.Index.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s@%s\n", b.Ref, d)
	im, err := b.Index.IndexManifest()
	if err != nil {
		return err
	}
	for _, m := range im.Manifests {
		img, err := b.Index.Image(m.Digest)
		if err != nil {
			return err
		}
		size, err := PulledSize(img)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  %-12s %s %8d bytes (%.2f MiB) compressed\n", m.Platform, m.Digest, size, float64(size)/(1<<20))
	}
	return nil
}

// PulledSize is the bytes a registry serves for img: manifest, config and
// compressed layers.
func PulledSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	total := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	return total, nil
}

// Build compiles the binaries and writes the layout. It pushes nothing.
func Build(ctx context.Context, o Options) ([]Built, error) {
	if o.Tag == "" || o.Repository == "" {
		return nil, errors.New("-repository and -tag must not be empty")
	}
	// The same roots on every machine, from go.mod, not the build host's.
	caBundle, err := imagebuild.CABundle()
	if err != nil {
		return nil, err
	}
	created := time.Unix(o.SourceDateEpoch, 0)
	var out []Built
	for _, spec := range Images {
		var imgs []v1.Image
		for _, p := range o.Platforms {
			plat, err := imagebuild.Platform(p)
			if err != nil {
				return nil, err
			}
			bin := filepath.Join(o.Out, "bin", plat.OS+"_"+plat.Architecture, filepath.Base(spec.Binary))
			if err := goBuild(ctx, o, plat, spec.Package, bin); err != nil {
				return nil, err
			}
			files := append(imagebuild.Accounts(spec.Account),
				caBundle,
				imagebuild.Binary(spec.Binary, bin),
			)
			img, err := imagebuild.Image(plat, files, imagebuild.Config{
				User:       fmt.Sprintf("%d:%d", spec.Account.UID, spec.Account.GID),
				Entrypoint: []string{spec.Binary},
				Cmd:        spec.Cmd,
				Labels: map[string]string{
					"org.opencontainers.image.source":   o.SourceURL,
					"org.opencontainers.image.version":  o.Version,
					"org.opencontainers.image.revision": o.Revision,
					"org.opencontainers.image.title":    spec.Name,
				},
			}, created)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", spec.Name, p, err)
			}
			imgs = append(imgs, img)
		}
		idx, err := imagebuild.Index(imgs...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec.Name, err)
		}
		out = append(out, Built{Image: spec, Ref: o.Repository + "/" + spec.Name + ":" + o.Tag, Index: idx})
	}
	named := make([]imagebuild.Named, 0, len(out))
	for _, b := range out {
		named = append(named, imagebuild.Named{Ref: b.Ref, Index: b.Index})
	}
	if err := imagebuild.WriteLayout(filepath.Join(o.Out, "oci"), named...); err != nil {
		return nil, err
	}
	return out, nil
}

// goBuild cross-compiles pkg statically for plat, as `make build` builds
// for the host.
func goBuild(ctx context.Context, o Options, plat v1.Platform, pkg, bin string) error {
	cmd := exec.CommandContext(ctx, o.Go, "build", "-trimpath", "-ldflags", o.LDFlags, "-o", bin, pkg)
	cmd.Dir = o.RepoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+plat.OS, "GOARCH="+plat.Architecture)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w\n%s", pkg, plat.OS, plat.Architecture, err, out)
	}
	return nil
}
