package nodeparts

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	"github.com/podidentity/injector/build/imagebuild"
)

// ClientsImage is the image of the e2e client matrix's pods on the real
// node. It is no stand-in for a seed image: the seed has no such pod.
const ClientsImage = "docker.io/podidentity/e2e-clients:latest"

// The paths of ClientsImage.
const (
	// ClientsGettoken is test/standin/gettoken, Go's azidentity, static.
	ClientsGettoken = "/e2e/gettoken"
	// ClientsHome is HOME: root's, writable (az writes ~/.azure), with a
	// .curlrc that adds the HTTP status to curl's output, so that the
	// matrix runs README.md's curl lines exactly as written.
	ClientsHome = "/root"
)

// ClientsHostDirs are the host's directories that a pod of ClientsImage
// mounts read-only at the same paths (hostPath volumes). They hold the
// interpreters and clients of the matrix as Debian installs them (python3
// with python3-azure, node, curl, azure-cli, and the shell and coreutils
// that run them), with their shared libraries: merged /usr, so /bin, /lib
// and /lib64 are links into it, mounted too since the image has no links.
// Building an image of Debian's runtimes would need Docker or a Debian
// rootfs; mounting them runs the very same files the host has, unchanged.
var ClientsHostDirs = []string{"/usr", "/bin", "/lib", "/lib64", "/etc/ssl"}

// PushClientsImage builds ClientsImage and pushes it. It holds test/standin/gettoken
// at ClientsGettoken and a HOME; everything else a client needs comes from
// ClientsHostDirs, which the pod mounts.
func (r *Registry) PushClientsImage(ctx context.Context, repoRoot string) error {
	gettoken, err := GoBinary(ctx, repoRoot, "./test/standin/gettoken")
	if err != nil {
		return err
	}
	platform, err := imagebuild.Platform("linux/amd64")
	if err != nil {
		return err
	}
	curlrc := "silent\nshow-error\nwrite-out = \"\\nstatus=%{http_code}\\n\"\n"
	img, err := imagebuild.Image(platform, []imagebuild.File{
		{Path: ClientsGettoken, Mode: 0o755, Content: gettoken},
		{Path: ClientsHome, Mode: fs.ModeDir | 0o700},
		{Path: ClientsHome + "/.curlrc", Mode: 0o644, Content: []byte(curlrc)},
		{Path: "/tmp", Mode: fs.ModeDir | 0o1777},
	}, imagebuild.Config{
		// The pod names its command; sleep comes from the host's /usr.
		Env: []string{"PATH=/usr/bin:/bin", "HOME=" + ClientsHome},
	}, time.Unix(0, 0))
	if err != nil {
		return fmt.Errorf("build image %s: %w", ClientsImage, err)
	}
	return r.Push(ctx, ClientsImage, img)
}
