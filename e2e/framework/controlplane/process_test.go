package controlplane

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run /bin/sh as a stand-in component: the process handling is
// the same whatever the binary.

func TestStopEndsTheWholeProcessGroup(t *testing.T) {
	tests := map[string]struct {
		script string
		grace  time.Duration
	}{
		"leader exits on SIGTERM": {
			script: `sleep 300 & echo $! > child.pid; wait`,
			grace:  10 * time.Second,
		},
		"leader ignores SIGTERM and is killed after the grace period": {
			script: `trap '' TERM; sleep 300 & echo $! > child.pid; while :; do sleep 0.1; done`,
			grace:  200 * time.Millisecond,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := startProcess("sh", "/bin/sh", []string{"-c", tc.script}, dir, filepath.Join(dir, "sh.log"), nil)
			require.NoError(t, err)
			childPID := waitForPIDFile(t, filepath.Join(dir, "child.pid"))
			require.True(t, alive(childPID), "child should be running before stop")

			require.NoError(t, p.stop(tc.grace))

			done, _ := p.exited()
			assert.True(t, done, "leader not reaped")
			assert.Eventually(t, func() bool { return !alive(childPID) }, 5*time.Second, 20*time.Millisecond,
				"child %d of the stopped process is still running", childPID)
		})
	}
}

func TestWaitReadyReportsEarlyExitWithLogTail(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess("fake-etcd", "/bin/sh", []string{"-c", `echo starting; echo "fatal: bad flag --nope" >&2; exit 3`}, dir, filepath.Join(dir, "fake.log"), nil)
	require.NoError(t, err)

	err = p.waitReady(context.Background(), time.Minute, func(context.Context) error { return errors.New("not yet") })

	var startErr *StartError
	require.ErrorAs(t, err, &startErr)
	assert.ErrorIs(t, err, ErrExited)
	assert.Equal(t, "fake-etcd", startErr.Component)
	assert.Contains(t, startErr.LogTail, "fatal: bad flag --nope")
	assert.Contains(t, err.Error(), "fatal: bad flag --nope", "the message a user reads must show the log")
}

func TestWaitReadyTimesOutWithLastCheckError(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess("sleeper", "/bin/sh", []string{"-c", `sleep 300`}, dir, filepath.Join(dir, "sleeper.log"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.stop(time.Second) })

	errNotReady := errors.New("connection refused")
	err = p.waitReady(context.Background(), 300*time.Millisecond, func(context.Context) error { return errNotReady })

	var startErr *StartError
	require.ErrorAs(t, err, &startErr)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "connection refused")
	done, _ := p.exited()
	assert.False(t, done, "waitReady must not stop the process; Stop does")
}

func TestTailFile(t *testing.T) {
	tests := map[string]struct {
		content string
		n       int
		want    string
	}{
		"fewer lines than asked": {content: "a\nb\n", n: 5, want: "a\nb"},
		"last n lines":           {content: "1\n2\n3\n4\n", n: 2, want: "3\n4"},
		"no trailing newline":    {content: "1\n2\n3", n: 1, want: "3"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			require.NoError(t, os.WriteFile(path, []byte(tc.content), 0o600))
			assert.Equal(t, tc.want, tailFile(path, tc.n))
		})
	}
	t.Run("only the end of a large file is read", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "log")
		big := strings.Repeat("x", 1<<20) + "\nlast line\n"
		require.NoError(t, os.WriteFile(path, []byte(big), 0o600))
		assert.Equal(t, "last line", tailFile(path, 1))
	})
}

func waitForPIDFile(t *testing.T, path string) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil
	}, 5*time.Second, 10*time.Millisecond, "child never wrote %s", path)
	return pid
}

// alive reports whether pid exists and is not a zombie awaiting its reaper.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no procfs: signal 0 succeeding is all we know
	}
	// The state follows the parenthesised command name.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) == 0 || fields[0] != "Z"
}
