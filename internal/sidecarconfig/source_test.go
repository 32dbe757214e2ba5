package sidecarconfig

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSourceTable(t *testing.T) {
	tests := map[string]struct {
		typ    int
		chosen string
		want   string
		ok     bool
	}{
		"type 0 federated":              {0, "federated", "federated", true},
		"type 0 imds":                   {0, "imds", "imds", true},
		"type 0 unknown choice":         {0, "magic", "", false},
		"type 0 a type 1 source":        {0, "clientSecret", "", false},
		"type 1 ignores the choice":     {1, "imds", "clientSecret", true},
		"type 2":                        {2, "", "clientCertificate", true},
		"type 3 has no source":          {3, "federated", "", false},
		"a negative type has no source": {-1, "federated", "", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, ok := SourceForType(tc.typ, tc.chosen)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, s.Name)
		})
	}
	for _, s := range Sources {
		got, ok := LookupSource(s.Name)
		assert.True(t, ok)
		assert.Equal(t, s, got)
		assert.Equal(t, s.Secret, s.IdentityType != 0, "%s: only service principals mount a Secret", s.Name)
	}
	_, ok := LookupSource("magic")
	assert.False(t, ok)
	assert.Equal(t, "federated or imds", SourceNames(0))
	assert.Equal(t, "clientSecret", SourceNames(1))
	assert.Equal(t, "federated, imds, clientSecret or clientCertificate", SourceNames(-1))
}
