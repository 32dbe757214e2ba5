package names_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/podidentity/injector/internal/names"
)

func TestLegacyKey(t *testing.T) {
	assert.Equal(t, "aadpodidentity.k8s.io/inject", names.LegacyKey(names.InjectAnnotation))
	assert.Equal(t, "aadpodidentity.k8s.io/token-source", names.LegacyKey(names.TokenSourceAnnotation))
	assert.Equal(t, names.BindingLabel, names.LegacyKey(names.BindingLabel), "a key outside Prefix has no legacy spelling")
}

func TestLookup(t *testing.T) {
	const key, legacy = names.InjectAnnotation, "aadpodidentity.k8s.io/inject"
	tests := map[string]struct {
		m           map[string]string
		wantValue   string
		wantOK      bool
		wantWarning []string // substrings; nil means no warning
	}{
		"nothing":   {m: map[string]string{"other": "x"}},
		"nil map":   {},
		"new key":   {m: map[string]string{key: "enabled"}, wantValue: "enabled", wantOK: true},
		"empty new": {m: map[string]string{key: ""}, wantValue: "", wantOK: true},
		"legacy key only": {
			m: map[string]string{legacy: "enabled"}, wantValue: "enabled", wantOK: true,
			wantWarning: []string{"Namespace team-a", "annotation", `"` + legacy + `" is deprecated`, `rename it to "` + key + `"`},
		},
		"both: the new key wins": {
			m: map[string]string{legacy: "enabled", key: "disabled"}, wantValue: "disabled", wantOK: true,
			wantWarning: []string{"Namespace team-a", `"` + legacy + `" is deprecated and ignored`, `remove "` + legacy + `"`},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			v, ok := names.Lookup(tt.m, key)
			assert.Equal(t, tt.wantValue, v)
			assert.Equal(t, tt.wantOK, ok)
			w := names.DeprecationWarning("Namespace team-a", "annotation", tt.m, key)
			if tt.wantWarning == nil {
				assert.Empty(t, w)
			}
			for _, s := range tt.wantWarning {
				assert.Contains(t, w, s)
			}
		})
	}
}
