package examples_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/examples"
)

// sharedSeed is the reference copy the project was seeded from. A clone
// from GitHub does not have it; the test then has nothing to compare.
const sharedSeed = "../../shared/fixtures/seed"

func TestBlogMatchesSharedReference(t *testing.T) {
	if _, err := os.Stat(sharedSeed); errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s is not beside this clone; nothing to compare with", sharedSeed)
	}
	for _, name := range examples.BlogFiles {
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(sharedSeed, name))
			require.NoError(t, err)
			got, err := examples.Blog(name)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(got), "examples/%s/%s must be a byte-identical copy of the reference seed", examples.BlogDir, name)
		})
	}
}

func TestWriteBlogWritesEveryFileInApplyOrder(t *testing.T) {
	dir := t.TempDir()
	paths, err := examples.WriteBlog(dir)
	require.NoError(t, err)
	require.Len(t, paths, len(examples.BlogFiles))
	for i, p := range paths {
		assert.Equal(t, filepath.Join(dir, examples.BlogFiles[i]), p)
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		want, err := examples.Blog(examples.BlogFiles[i])
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	assert.Equal(t, "deployment.yaml", filepath.Base(paths[len(paths)-1]), "the Deployment goes last, after what its pod needs")
}

func TestBlogNamesTheMissingFile(t *testing.T) {
	_, err := examples.Blog("nope.yaml")
	require.Error(t, err)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Contains(t, err.Error(), "aad-pod-identity-blog/nope.yaml")
}
