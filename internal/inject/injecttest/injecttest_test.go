package injecttest_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/inject/injecttest"
)

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantErr bool
	}{
		{
			name: "valid",
			input: `description: d
secret: s
config: {sidecarImage: i, port: 8181, nativeSidecar: true}
identities: [{name: a, namespace: ns, source: imds, clientID: c}]
pod: {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c, image: i}]}}
`,
		},
		{name: "unknown top-level key", input: "secrte: s\npod: {metadata: {name: p}}\n", wantErr: true},
		{name: "unknown config key", input: "config: {sidecarimage: i, prot: 1}\npod: {metadata: {name: p}}\n", wantErr: true},
		{name: "unknown pod field", input: "pod: {spec: {containerz: []}}\n", wantErr: true},
		{name: "no pod", input: "secret: s\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(tt.input), 0o644))
			c, err := injecttest.Load(dir, "c")
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "c", c.Name)
			assert.Equal(t, "s", c.Secret)
			assert.Equal(t, 8181, c.Config.Port)
			assert.True(t, c.Config.NativeSidecar)
			require.Len(t, c.Identities, 1)
			assert.Equal(t, "c", c.Identities[0].ClientID)
			assert.Equal(t, "p", c.Pod.Name)
			assert.JSONEq(t, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}`, string(c.PodJSON))
		})
	}
}

func TestNamesAndGoldenRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"b.yaml", "a.yaml", "a.golden.yaml", "notes.txt"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte("pod: {metadata: {name: p}}\n"), 0o644))
	}
	require.NoError(t, os.Mkdir(filepath.Join(dir, "fuzz"), 0o755))
	got, err := injecttest.Names(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, got)

	c, err := injecttest.Load(dir, "b")
	require.NoError(t, err)
	require.NoError(t, injecttest.WriteGolden(dir, "b", &c.Pod))
	pod, raw, err := injecttest.LoadGolden(dir, "b")
	require.NoError(t, err)
	assert.Equal(t, "p", pod.Name)
	want, err := injecttest.Marshal(&c.Pod)
	require.NoError(t, err)
	assert.Equal(t, want, raw)

	_, _, err = injecttest.LoadGolden(dir, "missing")
	assert.Error(t, err)
}
