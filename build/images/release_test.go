package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/podidentity/injector/internal/version"
)

// workflow is the part of a GitHub Actions workflow the test reads.
type workflow struct {
	On struct {
		Push struct {
			Tags []string `yaml:"tags"`
		} `yaml:"push"`
	} `yaml:"on"`
	Permissions map[string]string `yaml:"permissions"`
	Jobs        map[string]struct {
		Steps []struct {
			Name string         `yaml:"name"`
			Uses string         `yaml:"uses"`
			Run  string         `yaml:"run"`
			With map[string]any `yaml:"with"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

// TestReleaseWorkflow parses .github/workflows/release.yaml, which cannot
// run here, and checks that it has the release's steps in order: test,
// push the images, sign them, the SBOMs, the install YAML, the release.
func TestReleaseWorkflow(t *testing.T) {
	raw, err := os.ReadFile("../../.github/workflows/release.yaml")
	require.NoError(t, err)
	var wf workflow
	require.NoError(t, yaml.Unmarshal(raw, &wf))

	assert.Equal(t, []string{"v*"}, wf.On.Push.Tags)
	assert.Equal(t, "write", wf.Permissions["id-token"], "keyless signing needs the OIDC token")
	assert.Equal(t, "write", wf.Permissions["packages"], "pushing to ghcr.io")
	assert.Equal(t, "write", wf.Permissions["contents"], "release assets")
	require.Contains(t, wf.Jobs, "release")

	var script strings.Builder
	for _, s := range wf.Jobs["release"].Steps {
		assert.NotEmpty(t, s.Name)
		assert.True(t, (s.Uses == "") != (s.Run == ""), "step %q: exactly one of uses and run", s.Name)
		script.WriteString(s.Uses + "\n" + s.Run + "\n")
	}
	steps := []string{
		"go run ./build/images --print-release",
		"make test",
		"crane@v0.22.1 auth login ghcr.io",
		`make images REGISTRY="$REGISTRY" TAG="$TAG"`,
		"sigstore/cosign-installer",
		"cosign sign --yes",
		"go run ./build/sbom",
		"kubectl kustomize _output/install",
		"gh release create",
	}
	at := 0
	for _, want := range steps {
		i := strings.Index(script.String()[at:], want)
		if !assert.GreaterOrEqual(t, i, 0, "step %q missing or out of order", want) {
			continue
		}
		at += i
	}
	assert.NotContains(t, strings.ToLower(script.String()), "docker ", "the release needs no Docker")
}

// pinnedUses is a step's uses: an action pinned by a full commit SHA, with
// the release tag that SHA is in a comment so that a reader (and a
// dependency bot) knows which version it is.
var pinnedUses = regexp.MustCompile(`^\s*(?:- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$`)

// TestReleaseActionsArePinned: a tag like @v4 can be moved to other code
// by whoever controls the action's repository, and the release job holds
// the id-token and packages write permissions. Every action it runs is
// pinned by commit.
func TestReleaseActionsArePinned(t *testing.T) {
	raw, err := os.ReadFile("../../.github/workflows/release.yaml")
	require.NoError(t, err)
	n := 0
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimRight(line, "\n")
		if !strings.Contains(line, "uses:") || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		n++
		assert.Regexp(t, pinnedUses, line, "pin the action by its full commit SHA, with the tag in a comment: uses: owner/repo@<40 hex> # vX.Y.Z")
	}
	assert.Positive(t, n, "the release's steps use actions; found no uses: line to check")
}

func TestPrintRelease(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"--print-release"}, &out))
	assert.Equal(t, version.Release+"\n", out.String())
}
