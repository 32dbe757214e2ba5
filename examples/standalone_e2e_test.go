//go:build e2e

package examples_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStandaloneCopy copies the repository's tracked files into a
// temporary folder with nothing beside it, as a clone from GitHub is, and
// runs there the tests that read the seed manifests: none may need
// ../shared. (A full `make test` from a fresh clone is measured in
// README.md; this keeps the property checked on every run.)
func TestStandaloneCopy(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed; the copy is made from git ls-files")
	}
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(file))
	out, err := exec.Command("git", "-C", repo, "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout (%v); nothing to copy", err)
	}
	dst := filepath.Join(t.TempDir(), "clone")
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		data, err := os.ReadFile(filepath.Join(repo, f))
		if os.IsNotExist(err) {
			continue // deleted in the work tree, not yet committed
		}
		require.NoError(t, err)
		info, err := os.Stat(filepath.Join(repo, f))
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dst, f), data, info.Mode().Perm()))
	}
	_, err = os.Stat(filepath.Join(filepath.Dir(dst), "shared"))
	require.True(t, os.IsNotExist(err), "nothing is beside the copy")

	cmd := exec.Command("go", "test", "-count=1", "-v", "-run", "Blog|Seed|Explain|Config",
		"./examples/", "./internal/apis/aadpodidentity/v1/", "./internal/migrate/", "./cmd/kubectl-pod_identity/", "./hack/demo/")
	cmd.Dir = dst
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	require.NoError(t, cmd.Run(), "the seed's tests in a copy with no ../shared:\n%s", buf.String())
	assert.Contains(t, buf.String(), "is not beside this clone; nothing to compare with", "the comparison with the reference copy skips")
	assert.Contains(t, buf.String(), "--- PASS: TestBlogSeed", "the migrate plan read the seed from the copy")
	assert.Contains(t, buf.String(), "--- PASS: TestExplainBlogSeed", "explain read the seed from the copy")
}
