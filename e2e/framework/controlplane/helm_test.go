package controlplane

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFindHelm(t *testing.T) {
	cache := t.TempDir()
	t.Setenv(CacheEnv, cache)
	path := filepath.Join(cache, "helm-"+HelmVersion, "helm")

	_, err := FindHelm()
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrBinariesMissing), "%v", err)
	assert.Contains(t, err.Error(), path)
	assert.Contains(t, err.Error(), "make tools")

	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"), 0o644))
	_, err = FindHelm()
	assert.True(t, errors.Is(err, ErrBinariesMissing), "a file that is not executable: %v", err)

	require.NoError(t, os.Chmod(path, 0o755))
	got, err := FindHelm()
	require.NoError(t, err)
	assert.Equal(t, path, got)
}
