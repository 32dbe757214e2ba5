package main

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	buildinfo "github.com/podidentity/injector/internal/version"
)

// TestDefaultSidecarImageMatchesManifests checks that a webhook started
// without --sidecar-image injects the sidecar of the release that
// manifests/ installs, so the two never name different versions.
func TestDefaultSidecarImageMatchesManifests(t *testing.T) {
	raw, err := os.ReadFile("../../manifests/kustomization.yaml")
	require.NoError(t, err)
	var k struct {
		Images []struct {
			Name   string `json:"name"`
			NewTag string `json:"newTag"`
		} `json:"images"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &k))
	tags := map[string]string{}
	for _, img := range k.Images {
		tags[img.Name] = img.NewTag
	}
	sidecar := buildinfo.ImageRepository + "/" + buildinfo.SidecarImageName
	webhook := buildinfo.ImageRepository + "/" + buildinfo.WebhookImageName
	require.Contains(t, tags, sidecar)
	require.Contains(t, tags, webhook)
	assert.Equal(t, buildinfo.Release, tags[sidecar], "manifests/kustomization.yaml sidecar tag")
	assert.Equal(t, buildinfo.Release, tags[webhook], "manifests/kustomization.yaml webhook tag")
	assert.Equal(t, sidecar+":"+tags[sidecar], defaultConfig().SidecarImage)
}
