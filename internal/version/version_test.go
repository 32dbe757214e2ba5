package version

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestString(t *testing.T) {
	tests := map[string]struct {
		version, commit string
		want            string
	}{
		"set by ldflags": {"v1.2.3-4-gabcdef0-dirty", "abcdef0123", "prog v1.2.3-4-gabcdef0-dirty (commit abcdef0123, " + runtime.Version() + ")"},
		// A test binary has no VCS stamp, so the commit is unknown.
		"plain go build": {"", "", "prog (devel) (commit unknown, " + runtime.Version() + ")"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			oldV, oldC := Version, Commit
			t.Cleanup(func() { Version, Commit = oldV, oldC })
			Version, Commit = tc.version, tc.commit
			assert.Equal(t, tc.want, String("prog"))
		})
	}
}

func TestDefaultSidecarImageNamesRelease(t *testing.T) {
	assert.Equal(t, "ghcr.io/podidentity/pod-identity-sidecar:"+Release, DefaultSidecarImage)
}
