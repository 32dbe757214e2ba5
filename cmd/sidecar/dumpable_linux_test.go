package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestServeIsNotDumpable: serve marks the process not dumpable before it
// reads any credential, even when it then fails to start. The test restores
// the flag for the rest of the test binary.
func TestServeIsNotDumpable(t *testing.T) {
	require.NoError(t, unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0))
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0) })
	before, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	require.NoError(t, err)
	require.Equal(t, 1, before)

	err = run(context.Background(), []string{"serve"}, noEnv, &bytes.Buffer{})
	require.Error(t, err, "no config: serve stops at once")

	after, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, 0, after, "the sidecar process must not be dumpable")

}

// TestProbeIsNotDumpable: the probe runs in the sidecar's container as its
// user, so /proc/<probe pid>/root would show the mounted token and Secrets
// to any process of that uid; it marks itself not dumpable before it does
// anything else, even when it then fails.
func TestProbeIsNotDumpable(t *testing.T) {
	require.NoError(t, unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0))
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0) })
	err := run(context.Background(), []string{"probe", "--port", "1", "--probe-timeout", "50ms"}, noEnv, &bytes.Buffer{})
	require.Error(t, err, "nothing listens on port 1")
	after, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, 0, after, "the probe process must not be dumpable")
}
