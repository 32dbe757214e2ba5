package memtune

import (
	"errors"
	"io/fs"
	"math"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSoftLimit(t *testing.T) {
	tests := map[string]struct {
		content string
		want    int64
		ok      bool
	}{
		"v2 64Mi limit":          {content: "67108864\n", want: 50331648, ok: true},
		"v2 10Mi limit":          {content: "10485760", want: 7864320, ok: true},
		"v2 no limit":            {content: "max\n"},
		"v1 256Mi limit":         {content: "268435456\n", want: 201326592, ok: true},
		"v1 no limit":            {content: "9223372036854771712\n"},
		"empty (no cgroup file)": {content: ""},
		"garbage":                {content: "lots"},
		"zero is not a limit":    {content: "0"},
		"negative":               {content: "-1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := SoftLimit(tc.content, 0.75)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

// files is a readFile over a map; a missing name is fs.ErrNotExist.
func files(m map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if s, ok := m[name]; ok {
			return []byte(s), nil
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
}

func TestContainerLimitPrefersV2(t *testing.T) {
	assert.Equal(t, "max\n", ContainerLimit(files(map[string]string{cgroupV2MemoryMax: "max\n", cgroupV1Limit: "1"})))
	assert.Equal(t, "268435456\n", ContainerLimit(files(map[string]string{cgroupV1Limit: "268435456\n"})))
	assert.Empty(t, ContainerLimit(files(nil)))
	assert.Empty(t, ContainerLimit(func(string) ([]byte, error) { return nil, errors.New("permission denied") }))
}

// TestApply changes the process's collector settings, so it restores them.
func TestApply(t *testing.T) {
	t.Cleanup(func() {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
	})
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	s := Settings{GCPercent: 37, LimitShare: 0.5}

	Apply(s, env(nil), files(map[string]string{cgroupV1Limit: "268435456"}))
	assert.Equal(t, 37, debug.SetGCPercent(100), "GOGC unset: the program's default applies")
	assert.Equal(t, int64(134217728), Limit(), "half of the v1 limit")

	debug.SetMemoryLimit(math.MaxInt64)
	Apply(s, env(map[string]string{"GOGC": "100", "GOMEMLIMIT": "1GiB"}), files(map[string]string{cgroupV2MemoryMax: "67108864"}))
	assert.Equal(t, 100, debug.SetGCPercent(100), "the operator's GOGC wins")
	assert.Equal(t, int64(math.MaxInt64), Limit(), "the operator's GOMEMLIMIT wins (the runtime applied it itself)")

	Apply(s, env(nil), files(map[string]string{cgroupV2MemoryMax: "max"}))
	assert.Equal(t, int64(math.MaxInt64), Limit(), "no limit in the cgroup: no soft limit")
}
