package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSoftMemoryLimit(t *testing.T) {
	tests := map[string]struct {
		memoryMax string
		want      int64
		ok        bool
	}{
		"64Mi limit":          {memoryMax: "67108864\n", want: 50331648, ok: true},
		"10Mi limit":          {memoryMax: "10485760", want: 7864320, ok: true},
		"no limit":            {memoryMax: "max\n"},
		"empty":               {memoryMax: ""},
		"garbage":             {memoryMax: "lots"},
		"zero is not a limit": {memoryMax: "0"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := softMemoryLimit(tc.memoryMax)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}
