package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

func testFiles(t *testing.T) []File {
	t.Helper()
	src := filepath.Join(t.TempDir(), "bin")
	require.NoError(t, os.WriteFile(src, []byte("\x7fELF not really"), 0o600))
	return append(Accounts(Account{Name: "app", UID: 1000, GID: 1001}),
		Binary("/usr/local/bin/app", src),
		File{Path: "/data", Mode: fs.ModeDir | 0o700, UID: 1000, GID: 1001},
	)
}

func testIndex(t *testing.T, created time.Time) v1.ImageIndex {
	t.Helper()
	var imgs []v1.Image
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		plat, err := Platform(p)
		require.NoError(t, err)
		img, err := Image(plat, testFiles(t), Config{
			User:       "1000:1001",
			Entrypoint: []string{"/usr/local/bin/app"},
			Labels:     map[string]string{"a": "b"},
		}, created)
		require.NoError(t, err)
		imgs = append(imgs, img)
	}
	idx, err := Index(imgs...)
	require.NoError(t, err)
	return idx
}

// layerEntries reads the single layer of img as name -> header.
func layerEntries(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1)
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out[h.Name] = h
	}
}

func TestImage(t *testing.T) {
	created := time.Unix(1700000000, 0)
	idx := testIndex(t, created)
	im, err := idx.IndexManifest()
	require.NoError(t, err)
	require.Len(t, im.Manifests, 2)
	assert.Equal(t, "linux/amd64", im.Manifests[0].Platform.String())
	assert.Equal(t, "linux/arm64", im.Manifests[1].Platform.String())

	img, err := idx.Image(im.Manifests[1].Digest)
	require.NoError(t, err)
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, "arm64", cf.Architecture)
	assert.Equal(t, "1000:1001", cf.Config.User)
	assert.Equal(t, []string{"/usr/local/bin/app"}, cf.Config.Entrypoint)
	assert.Equal(t, map[string]string{"a": "b"}, cf.Config.Labels)
	assert.True(t, cf.Created.Time.Equal(created))

	entries := layerEntries(t, img)
	var names []string
	for n, h := range entries {
		names = append(names, n)
		assert.True(t, h.ModTime.Equal(created), "%s mtime %v", n, h.ModTime)
	}
	assert.ElementsMatch(t, []string{"etc/", "etc/passwd", "etc/group", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/app", "data/"}, names)
	assert.Equal(t, int64(0o755), entries["usr/local/bin/app"].Mode)
	assert.Equal(t, int64(0o700), entries["data/"].Mode)
	assert.Equal(t, 1000, entries["data/"].Uid)
	assert.Equal(t, 1001, entries["data/"].Gid)
	assert.Equal(t, int64(0o755), entries["usr/"].Mode)
}

func TestImageReproducible(t *testing.T) {
	created := time.Unix(0, 0)
	a, err := testIndex(t, created).Digest()
	require.NoError(t, err)
	b, err := testIndex(t, created).Digest()
	require.NoError(t, err)
	assert.Equal(t, a, b)
	c, err := testIndex(t, time.Unix(1, 0)).Digest()
	require.NoError(t, err)
	assert.NotEqual(t, a, c, "the timestamp must reach the digest")
}

func TestImageRejects(t *testing.T) {
	plat, err := Platform("linux/amd64")
	require.NoError(t, err)
	for name, files := range map[string][]File{
		"relative path":   {{Path: "etc/passwd"}},
		"root":            {{Path: "/"}},
		"twice":           {{Path: "/a"}, {Path: "/a/"}},
		"both sources":    {{Path: "/a", Content: []byte("x"), Source: "/etc/hostname"}},
		"missing source":  {{Path: "/a", Source: "/does/not/exist"}},
		"file as parent":  {{Path: "/a"}, {Path: "/a/b"}},
		"dir has content": {{Path: "/a", Mode: fs.ModeDir, Content: []byte("x")}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Image(plat, files, Config{}, time.Unix(0, 0))
			assert.Error(t, err)
		})
	}
	_, err = Platform("linux")
	assert.Error(t, err)
}

func TestWriteLayoutAndTar(t *testing.T) {
	idx := testIndex(t, time.Unix(0, 0))
	dir := filepath.Join(t.TempDir(), "layout")
	require.NoError(t, WriteLayout(dir, Named{Ref: "example.com/app:v1", Index: idx}))

	p, err := layout.FromPath(dir)
	require.NoError(t, err)
	outer, err := p.ImageIndex()
	require.NoError(t, err)
	om, err := outer.IndexManifest()
	require.NoError(t, err)
	require.Len(t, om.Manifests, 1)
	assert.Equal(t, "v1", om.Manifests[0].Annotations["org.opencontainers.image.ref.name"])
	assert.Equal(t, "example.com/app:v1", om.Manifests[0].Annotations["io.containerd.image.name"])
	want, err := idx.Digest()
	require.NoError(t, err)
	assert.Equal(t, want, om.Manifests[0].Digest)

	var buf bytes.Buffer
	require.NoError(t, TarLayout(dir, &buf))
	tr := tar.NewReader(&buf)
	var sawIndex bool
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if h.Name == "index.json" {
			sawIndex = true
			var doc v1.IndexManifest
			require.NoError(t, json.NewDecoder(tr).Decode(&doc))
			assert.Equal(t, want, doc.Manifests[0].Digest)
		}
		assert.False(t, strings.HasPrefix(h.Name, "/"), h.Name)
	}
	assert.True(t, sawIndex)

	// Rewriting replaces, not appends.
	require.NoError(t, WriteLayout(dir, Named{Ref: "example.com/app:v1", Index: idx}))
	outer, err = p.ImageIndex()
	require.NoError(t, err)
	om, err = outer.IndexManifest()
	require.NoError(t, err)
	assert.Len(t, om.Manifests, 1)
}

func TestPush(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	idx := testIndex(t, time.Unix(0, 0))
	ref := host + "/team/app:v1"
	require.NoError(t, Push(context.Background(), ref, idx))

	r, err := name.ParseReference(ref)
	require.NoError(t, err)
	got, err := remote.Index(r)
	require.NoError(t, err)
	gd, err := got.Digest()
	require.NoError(t, err)
	wd, err := idx.Digest()
	require.NoError(t, err)
	assert.Equal(t, wd, gd)
	im, err := got.IndexManifest()
	require.NoError(t, err)
	img, err := got.Image(im.Manifests[0].Digest)
	require.NoError(t, err)
	assert.Contains(t, layerEntries(t, img), "usr/local/bin/app")
}

// TestCABundle: the images' roots are Mozilla's from the module go.mod
// pins, the same bytes on every machine, every one a CA, without the roots
// NSS constrains (a PEM file cannot carry the constraint), and with the
// root Entra ID's endpoints chain to.
func TestCABundle(t *testing.T) {
	f, err := CABundle()
	require.NoError(t, err)
	again, err := CABundle()
	require.NoError(t, err)
	assert.Equal(t, f.Content, again.Content, "deterministic")
	assert.Equal(t, DebianCABundle, f.Path, "where Go's crypto/x509 looks first on Linux")
	assert.Equal(t, fs.FileMode(0o644), f.Mode)
	assert.Empty(t, f.Source, "nothing is read from the build host")

	constrained := map[string]bool{}
	unconstrained := 0
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			constrained[string(root.Certificate)] = true
		} else {
			unconstrained++
		}
	}
	var subjects []string
	rest := f.Content
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		require.Equal(t, "CERTIFICATE", block.Type)
		cert, err := x509.ParseCertificate(block.Bytes)
		require.NoError(t, err)
		assert.True(t, cert.IsCA, cert.Subject.String())
		assert.False(t, constrained[string(block.Bytes)], "%s is distrusted after a date; a PEM bundle cannot say so", cert.Subject)
		subjects = append(subjects, cert.Subject.CommonName)
	}
	assert.Empty(t, bytes.TrimSpace(rest), "nothing but certificates")
	assert.Len(t, subjects, unconstrained, "every unconstrained root")
	assert.Contains(t, subjects, "DigiCert Global Root G2", "login.microsoftonline.com chains to it")

	// Pinned: these bytes change only when go.mod moves
	// golang.org/x/crypto/x509roots/fallback; then update the digest.
	sum := sha256.Sum256(f.Content)
	assert.Equal(t, caBundleSHA256, hex.EncodeToString(sum[:]), "the CA bundle changed without a go.mod bump of golang.org/x/crypto/x509roots/fallback")
}

// caBundleSHA256 is the digest of CABundle at
// golang.org/x/crypto/x509roots/fallback v0.0.0-20261030153154-30a33513ff6d.
const caBundleSHA256 = "bc410a1cd3a56db2b2b6d281023488182401d568b8c248fdc39e424902db537d"
