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
