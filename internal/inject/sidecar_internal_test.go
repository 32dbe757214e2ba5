package inject

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podidentity/injector/internal/names"
)

func TestSecretVolumeName(t *testing.T) {
	long := strings.Repeat("a", 253)
	tests := []struct {
		name     string
		identity string
		// want is the exact name, or "" when only validity and the
		// readable prefix are checked.
		want       string
		wantPrefix string
		// wantLen, when set, is the exact length.
		wantLen int
	}{
		{name: "short name kept", identity: "sp-reader", want: names.SecretVolumePrefix + "sp-reader"},
		{name: "longest name that fits is kept", identity: strings.Repeat("b", 63-len(names.SecretVolumePrefix)), want: names.SecretVolumePrefix + strings.Repeat("b", 63-len(names.SecretVolumePrefix))},
		{name: "dots are replaced and hashed", identity: "sp.reader", wantPrefix: names.SecretVolumePrefix + "sp-reader-"},
		{name: "253 characters are cut", identity: long, wantPrefix: names.SecretVolumePrefix + "aaaa", wantLen: 63},
		{name: "a cut that ends in a dash is trimmed", identity: strings.Repeat("c", 33) + "." + strings.Repeat("d", 40), wantPrefix: names.SecretVolumePrefix + strings.Repeat("c", 33) + "-", wantLen: len(names.SecretVolumePrefix) + 33 + 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := secretVolumeName(tt.identity)
			assert.Empty(t, validation.IsDNS1123Label(got), "%q is not a DNS-1123 label", got)
			if tt.want != "" {
				assert.Equal(t, tt.want, got)
			}
			assert.True(t, strings.HasPrefix(got, tt.wantPrefix), "%q lacks prefix %q", got, tt.wantPrefix)
			if tt.wantLen != 0 {
				assert.Len(t, got, tt.wantLen)
			}
			assert.Equal(t, got, secretVolumeName(tt.identity), "not stable")
		})
	}
	// Names that sanitise alike stay apart through the hash.
	assert.NotEqual(t, secretVolumeName("a.b"), secretVolumeName("a_b"))
	assert.NotEqual(t, secretVolumeName(long), secretVolumeName(long+"x"))
}

// TestSameImage: the registry of the sidecar's image is not the webhook's
// (mirrors rewrite it), its repository path, tag and pinned digest are.
func TestSameImage(t *testing.T) {
	const digest = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name, have, want string
		same             bool
	}{
		{name: "identical", have: "ghcr.io/p/sidecar:v1", want: "ghcr.io/p/sidecar:v1", same: true},
		{name: "another registry", have: "mirror.corp/p/sidecar:v1", want: "ghcr.io/p/sidecar:v1", same: true},
		{name: "a registry with a port", have: "mirror.corp:5000/p/sidecar:v1", want: "ghcr.io/p/sidecar:v1", same: true},
		{name: "localhost", have: "localhost/p/sidecar:v1", want: "ghcr.io/p/sidecar:v1", same: true},
		{name: "under a path prefix", have: "harbor.corp/ghcr-proxy/p/sidecar:v1", want: "ghcr.io/p/sidecar:v1", same: true},
		{name: "Docker Hub without a registry, mirrored", have: "mirror.corp/sidecar:v1", want: "sidecar:v1", same: true},
		{name: "Docker Hub library, mirrored with it", have: "mirror.corp/library/sidecar:v1", want: "docker.io/sidecar:v1", same: true},
		{name: "a digest pinning the tag", have: "mirror.corp/p/sidecar:v1" + digest, want: "ghcr.io/p/sidecar:v1", same: true},
		{name: "the pinned digest", have: "mirror.corp/p/sidecar:v1" + digest, want: "ghcr.io/p/sidecar:v1" + digest, same: true},
		{name: "another pinned digest", have: "ghcr.io/p/sidecar:v1@sha256:" + strings.Repeat("f", 64), want: "ghcr.io/p/sidecar:v1" + digest},
		{name: "the pinned digest dropped", have: "ghcr.io/p/sidecar:v1", want: "ghcr.io/p/sidecar:v1" + digest},
		{name: "another tag", have: "ghcr.io/p/sidecar:v2", want: "ghcr.io/p/sidecar:v1"},
		{name: "no tag", have: "ghcr.io/p/sidecar", want: "ghcr.io/p/sidecar:v1"},
		{name: "another repository", have: "ghcr.io/p/other:v1", want: "ghcr.io/p/sidecar:v1"},
		{name: "another organisation", have: "ghcr.io/q/sidecar:v1", want: "ghcr.io/p/sidecar:v1"},
		{name: "a name that only ends alike", have: "ghcr.io/p/evil-sidecar:v1", want: "ghcr.io/p/sidecar:v1"},
		{name: "the first component is no registry", have: "p/sidecar:v1", want: "ghcr.io/q/p/sidecar:v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.same, sameImage(tt.have, tt.want))
		})
	}
}
