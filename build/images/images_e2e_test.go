//go:build e2e

package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/build/imagebuild"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/version"
)

// The build the tests share: both images for both platforms, from the
// real binaries, as `make images` builds them.
var (
	built      []Built
	buildOpts  Options
	repoRoot   string
	testCommit = "0123456789abcdef0123456789abcdef01234567"
)

const testVersion = "v9.8.7-test"

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(filepath.Dir(file)))
	out, err := os.MkdirTemp("", "pod-identity-images-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(out)
	buildOpts = testOptions(out)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if built, err = Build(ctx, buildOpts); err != nil {
		fmt.Fprintln(os.Stderr, "build images:", err)
		return 1
	}
	return m.Run()
}

func testOptions(out string) Options {
	pkg := "github.com/podidentity/injector/internal/version"
	return Options{
		RepoRoot:        repoRoot,
		Out:             out,
		Platforms:       []string{"linux/amd64", "linux/arm64"},
		Repository:      "registry.test/podidentity",
		Tag:             testVersion,
		LDFlags:         "-s -w -X " + pkg + ".Version=" + testVersion + " -X " + pkg + ".Commit=" + testCommit,
		Version:         testVersion,
		Revision:        testCommit,
		SourceURL:       "https://github.com/podidentity/injector",
		SourceDateEpoch: 1700000000,
		Go:              "go",
	}
}

func builtImage(t *testing.T, imageName string) Built {
	t.Helper()
	for _, b := range built {
		if b.Image.Name == imageName {
			return b
		}
	}
	t.Fatalf("no image %s was built", imageName)
	return Built{}
}

// layerFiles reads an image's only layer as name -> (header, content).
func layerFiles(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1, "one layer: the base and the binary are assembled together")
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs, data
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		hdrs[h.Name], data[h.Name] = h, b
	}
}

// TestImageConfig checks what a node sees of each image: both platforms,
// the non-root user that exists in /etc/passwd, the entrypoint that
// manifests/ and internal/inject rely on, the OCI labels, a static binary
// for the right architecture, the CA bundle, and nothing else: no shell.
func TestImageConfig(t *testing.T) {
	tests := map[string]struct {
		uid, gid   int
		user       string
		entrypoint string
	}{
		version.WebhookImageName: {names.WebhookUID, names.WebhookUID, "nonroot", "/pod-identity-webhook"},
		version.SidecarImageName: {names.SidecarUID, names.SidecarGID, names.SidecarUser, names.SidecarBinary},
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	caBundle, err := imagebuild.CABundle()
	require.NoError(t, err)
	for imageName, tc := range tests {
		t.Run(imageName, func(t *testing.T) {
			b := builtImage(t, imageName)
			im, err := b.Index.IndexManifest()
			require.NoError(t, err)
			var plats []string
			for _, m := range im.Manifests {
				plats = append(plats, m.Platform.String())
			}
			assert.Equal(t, []string{"linux/amd64", "linux/arm64"}, plats)

			for _, m := range im.Manifests {
				t.Run(m.Platform.Architecture, func(t *testing.T) {
					img, err := b.Index.Image(m.Digest)
					require.NoError(t, err)
					cf, err := img.ConfigFile()
					require.NoError(t, err)
					assert.Equal(t, m.Platform.Architecture, cf.Architecture)
					assert.Equal(t, fmt.Sprintf("%d:%d", tc.uid, tc.gid), cf.Config.User)
					assert.Equal(t, []string{tc.entrypoint}, cf.Config.Entrypoint)
					assert.Equal(t, map[string]string{
						"org.opencontainers.image.source":   "https://github.com/podidentity/injector",
						"org.opencontainers.image.version":  testVersion,
						"org.opencontainers.image.revision": testCommit,
						"org.opencontainers.image.title":    imageName,
					}, cf.Config.Labels)
					assert.True(t, cf.Created.Equal(time.Unix(1700000000, 0)))

					hdrs, data := layerFiles(t, img)
					bin := strings.TrimPrefix(tc.entrypoint, "/")
					var files []string
					for n := range hdrs {
						files = append(files, n)
						assert.NotEqual(t, "sh", filepath.Base(strings.TrimSuffix(n, "/")), "a shell in the image: %s", n)
						assert.True(t, hdrs[n].ModTime.Equal(time.Unix(1700000000, 0)), n)
					}
					for n, h := range hdrs {
						if h.Typeflag == tar.TypeDir {
							continue
						}
						assert.Equal(t, byte(tar.TypeReg), h.Typeflag, n)
					}
					assert.ElementsMatch(t, []string{
						"etc/", "etc/passwd", "etc/group", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt", bin,
					}, files)
					assert.NotContains(t, hdrs, "bin/sh")

					assert.Contains(t, string(data["etc/passwd"]), fmt.Sprintf("%s:x:%d:%d:", tc.user, tc.uid, tc.gid))
					assert.Contains(t, string(data["etc/group"]), fmt.Sprintf("%s:x:%d:", tc.user, tc.gid))
					assert.NotContains(t, string(data["etc/passwd"]), "/bin/sh")

					pool := x509.NewCertPool()
					assert.True(t, pool.AppendCertsFromPEM(data["etc/ssl/certs/ca-certificates.crt"]), "CA bundle parses")
					assert.Equal(t, caBundle.Content, data["etc/ssl/certs/ca-certificates.crt"], "the CA bundle is the one go.mod pins, not the build host's")

					assert.Equal(t, int64(0o755), hdrs[bin].Mode)
					assert.Equal(t, 0, hdrs[bin].Uid, "root owns the binary, so the user cannot replace it")
					f, err := elf.NewFile(bytes.NewReader(data[bin]))
					require.NoError(t, err)
					assert.Equal(t, machines[m.Platform.Architecture], f.Machine)
					for _, p := range f.Progs {
						assert.NotEqual(t, elf.PT_INTERP, p.Type, "static: no dynamic loader")
					}
				})
			}
		})
	}
}

// TestReproducible builds everything again, binaries included, into
// another folder and expects the same digests and the same layout.
func TestReproducible(t *testing.T) {
	o := testOptions(t.TempDir())
	again, err := Build(context.Background(), o)
	require.NoError(t, err)
	require.Len(t, again, len(built))
	for i := range built {
		want, err := built[i].Index.Digest()
		require.NoError(t, err)
		got, err := again[i].Index.Digest()
		require.NoError(t, err)
		assert.Equal(t, want, got, built[i].Image.Name)
	}
	a, err := os.ReadFile(filepath.Join(buildOpts.Out, "oci", "index.json"))
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(o.Out, "oci", "index.json"))
	require.NoError(t, err)
	assert.Equal(t, string(a), string(b))
}

// TestPushPull pushes both indexes as `make images REGISTRY=...` does, to
// a registry on loopback, and pulls them back by tag.
func TestPushPull(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	reg := strings.TrimPrefix(srv.URL, "http://") + "/team"
	var stdout bytes.Buffer
	args := []string{"--repo", repoRoot, "--out", t.TempDir(), "--registry", reg, "--tag", testVersion,
		"--ldflags", buildOpts.LDFlags, "--version", testVersion, "--revision", testCommit, "--source-date-epoch", "1700000000"}
	require.NoError(t, run(context.Background(), args, &stdout))

	for _, b := range built {
		ref, err := name.ParseReference(reg + "/" + b.Image.Name + ":" + testVersion)
		require.NoError(t, err)
		got, err := remote.Index(ref)
		require.NoError(t, err)
		gd, err := got.Digest()
		require.NoError(t, err)
		wd, err := b.Index.Digest()
		require.NoError(t, err)
		assert.Equal(t, wd, gd, "the pushed index is the one built")
		assert.Contains(t, stdout.String(), "pushed "+ref.String()+"@"+wd.String())

		im, err := got.IndexManifest()
		require.NoError(t, err)
		require.Len(t, im.Manifests, 2)
		for _, m := range im.Manifests {
			img, err := got.Image(m.Digest)
			require.NoError(t, err)
			hdrs, _ := layerFiles(t, img)
			assert.Contains(t, hdrs, strings.TrimPrefix(b.Image.Binary, "/"))
		}
	}
}
