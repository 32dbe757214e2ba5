package nodeparts

import (
	"context"
	"fmt"
	"io/fs"
	"os"

	"github.com/podidentity/injector/build/imagebuild"
	"github.com/podidentity/injector/internal/names"
)

// The seed's images, as examples/aad-pod-identity-blog names them. On the
// real node they are stand-ins, built here and pushed under these names.
const (
	AzcopyImage = "docker.io/datenbetrieb/azcopy:latest"
	AppImage    = "docker.io/library/nginx:latest"
)

// SeedImages are the inputs of PushSeedImages.
type SeedImages struct {
	RepoRoot string
	// SidecarRef is the name the webhook injects (its --sidecar-image).
	SidecarRef string
	// CAPEM is the test CA (the fake Entra ID's, which also signs the blob
	// emulator's certificate): the images' only trusted root, as a real
	// image's CA bundle holds Entra ID's and Azure Storage's roots.
	CAPEM []byte
	// Azcopy is the real azcopy binary from the tools cache.
	Azcopy string
	// Busybox is a static busybox (Debian's busybox-static: /bin/busybox).
	Busybox string
}

// PushSeedImages builds and pushes the three images the seed pod runs:
//   - the sidecar: cmd/sidecar at names.SidecarBinary, with the test CA;
//   - the azcopy stand-in for datenbetrieb/azcopy: the real azcopy, a
//     busybox shell for the seed's `/bin/sh -c` command, and the test CA;
//   - the nginx stand-in: test/standin/app-standin, which gets a token through the
//     injected env and prints its claims.
func (r *Registry) PushSeedImages(ctx context.Context, s SeedImages) error {
	sidecar, err := GoBinary(ctx, s.RepoRoot, "./cmd/sidecar")
	if err != nil {
		return err
	}
	app, err := GoBinary(ctx, s.RepoRoot, "./test/standin/app-standin")
	if err != nil {
		return err
	}
	azcopy, err := os.ReadFile(s.Azcopy)
	if err != nil {
		return fmt.Errorf("the azcopy stand-in image needs azcopy: %w", err)
	}
	busybox, err := os.ReadFile(s.Busybox)
	if err != nil {
		return fmt.Errorf("the azcopy stand-in image needs a static busybox (Debian busybox-static; make deps): %w", err)
	}
	ca := imagebuild.File{Path: imagebuild.DebianCABundle, Mode: 0o644, Content: s.CAPEM}
	images := []struct {
		ref        string
		files      []imagebuild.File
		entrypoint string
	}{
		{s.SidecarRef, []imagebuild.File{{Path: names.SidecarBinary, Mode: 0o755, Content: sidecar}, ca}, names.SidecarBinary},
		{AzcopyImage, []imagebuild.File{
			{Path: "/usr/local/bin/azcopy", Mode: 0o755, Content: azcopy},
			// busybox runs the applet its name says: sh for the seed's
			// `/bin/sh -c` command.
			{Path: "/bin/sh", Mode: 0o755, Content: busybox},
			{Path: "/root", Mode: fs.ModeDir | 0o700},
			{Path: "/tmp", Mode: fs.ModeDir | 0o1777},
			ca,
		}, "/bin/sh"},
		{AppImage, []imagebuild.File{{Path: "/app-standin", Mode: 0o755, Content: app}, ca}, "/app-standin"},
	}
	for _, im := range images {
		img, err := image(im.files, im.entrypoint)
		if err != nil {
			return fmt.Errorf("build image %s: %w", im.ref, err)
		}
		if err := r.Push(ctx, im.ref, img); err != nil {
			return err
		}
	}
	return nil
}

// PushWebhookImage builds cmd/webhook into an image laid out as the
// Dockerfile's webhook stage (/pod-identity-webhook, run as 65532 by the
// Deployment) and pushes it as ref.
// (`make images` builds the release images the same way, with
// build/imagebuild, for every platform.)
func (r *Registry) PushWebhookImage(ctx context.Context, repoRoot, ref string) error {
	bin, err := GoBinary(ctx, repoRoot, "./cmd/webhook")
	if err != nil {
		return err
	}
	img, err := image([]imagebuild.File{{Path: "/pod-identity-webhook", Mode: 0o755, Content: bin}}, "/pod-identity-webhook")
	if err != nil {
		return err
	}
	return r.Push(ctx, ref, img)
}
