package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGenerate builds the sidecar as `make build` does and expects, in an
// SPDX document that a parser reads back, every module that `go version -m`
// lists for it, at the same version.
func TestGenerate(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "pod-identity-sidecar")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", exe, "../../cmd/sidecar")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	b, err := build.CombinedOutput()
	require.NoError(t, err, "%s", b)
	listed, err := exec.Command("go", "version", "-m", exe).Output()
	require.NoError(t, err)
	want := map[string]string{}
	var last string
	for _, line := range strings.Split(string(listed), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "dep":
			last = f[1]
			want[last] = f[2]
		case len(f) >= 3 && f[0] == "=>":
			// A replacement's version is the one linked.
			want[last] = f[2]
		}
	}
	require.Contains(t, want, "github.com/Azure/azure-sdk-for-go/sdk/azidentity")

	var out bytes.Buffer
	require.NoError(t, run([]string{"-source-date-epoch", "1700000000", exe}, &out))
	var doc Document
	require.NoError(t, json.Unmarshal(out.Bytes(), &doc))
	assert.Equal(t, "SPDX-2.3", doc.SPDXVersion)
	assert.Equal(t, time.Unix(1700000000, 0).UTC().Format(time.RFC3339), doc.CreationInfo.Created)

	versions := map[string]string{}
	ids := map[string]bool{}
	for _, p := range doc.Packages {
		versions[p.Name] = p.VersionInfo
		assert.False(t, ids[p.SPDXID], "duplicate SPDXID %s", p.SPDXID)
		ids[p.SPDXID] = true
	}
	for path, v := range want {
		assert.Equal(t, v, versions[path], path)
	}
	assert.Equal(t, runtime.Version(), versions["stdlib"])
	assert.Contains(t, versions, "github.com/podidentity/injector", "the main module")
	// One DESCRIBES, and one CONTAINS per module, the main module and the
	// standard library.
	assert.Len(t, doc.Relationships, 1+len(want)+2)
	for _, r := range doc.Relationships {
		assert.True(t, ids[r.RelatedSPDXElement], "relationship to unknown %s", r.RelatedSPDXElement)
	}
}

func TestGenerateRejectsNonGoFile(t *testing.T) {
	f := t.TempDir() + "/not-go"
	require.NoError(t, os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755))
	assert.Error(t, run([]string{f}, &bytes.Buffer{}))
	assert.Error(t, run(nil, &bytes.Buffer{}))
}
