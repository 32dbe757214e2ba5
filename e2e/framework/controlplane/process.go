package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// logTailLines is how much of a component's log a start error carries: enough
// to show the fatal line and what led to it.
const logTailLines = 30

// StartError reports a control-plane component that exited or never became
// ready. Its message carries the tail of the component's log; the full log
// is at LogPath until the work directory is removed.
type StartError struct {
	Component string // "etcd", "kube-apiserver" or "kube-controller-manager"
	LogPath   string
	LogTail   string
	Err       error
}

// Error names the component and its error, then shows the log tail.
func (e *StartError) Error() string {
	return fmt.Sprintf("start %s: %v\n--- last lines of %s ---\n%s", e.Component, e.Err, e.LogPath, e.LogTail)
}

// Unwrap returns the cause, such as ErrExited or context.DeadlineExceeded.
func (e *StartError) Unwrap() error { return e.Err }

// ErrExited is wrapped by a StartError when the component's process ended
// before it became ready.
var ErrExited = errors.New("process exited before it became ready")

// process is one child: its own process group, so that stopping it also
// stops anything it spawned, and one log file for stdout and stderr.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has been reaped
	waitErr error         // valid after done is closed
}

// startProcess runs bin with args in dir, its output appended to logPath.
func startProcess(name, bin string, args []string, dir, logPath string, env []string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s log %s: %w", name, logPath, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("run %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, then SIGKILL if the leader has
// not ended within grace, and waits until the leader is reaped. A last
// SIGKILL to the group catches children that outlived their parent.
func (p *process) stop(grace time.Duration) error {
	pgid := p.cmd.Process.Pid // Setpgid makes the leader's PID the group ID
	if done, _ := p.exited(); !done {
		if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("stop %s (pid %d): SIGTERM: %w", p.name, pgid, err)
		}
		select {
		case <-p.done:
		case <-time.After(grace):
			if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("stop %s (pid %d): SIGKILL: %w", p.name, pgid, err)
			}
			<-p.done
		}
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop children of %s (process group %d): %w", p.name, pgid, err)
	}
	return nil
}

// startError wraps err with the component's name and the tail of its log.
func (p *process) startError(err error) *StartError {
	return &StartError{Component: p.name, LogPath: p.logPath, LogTail: tailFile(p.logPath, logTailLines), Err: err}
}

// waitReady polls check every interval until it returns nil. It gives up with
// a StartError when the process exits, ctx ends or timeout passes, carrying
// the last check error so that the cause is not lost.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	const interval = 100 * time.Millisecond
	var last error
	for {
		if done, waitErr := p.exited(); done {
			return p.startError(fmt.Errorf("%w: %v", ErrExited, waitErr))
		}
		attemptCtx, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		last = check(attemptCtx)
		cancelAttempt()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return p.startError(fmt.Errorf("not ready after %s (last check: %v): %w", timeout, last, ctx.Err()))
		case <-p.done:
			// Loop once more so that an exit is reported as such.
		case <-time.After(interval):
		}
	}
}

// tailFile returns at most the last n lines of the file at path, reading no
// more than its last 64 KiB.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	const maxRead = 64 << 10
	if info, err := f.Stat(); err == nil && info.Size() > maxRead {
		if _, err := f.Seek(-maxRead, io.SeekEnd); err != nil {
			return fmt.Sprintf("(cannot read log: %v)", err)
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := strings.Split(string(bytes.TrimRight(data, "\n")), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Component is a process that Run started next to the control plane, such
// as a node's container runtime or kubelet. Cluster.Stop ends it too, in
// reverse start order, unless Stop already did.
type Component struct{ p *process }

// Run starts bin as a component of the cluster: its own process group, its
// output in logs/<name>.log under WorkDir, HOME set to WorkDir and PATH
// inherited, with extraEnv appended (a later PATH wins).
func (c *Cluster) Run(name, bin string, extraEnv []string, args ...string) (*Component, error) {
	p, err := c.run(name, bin, extraEnv, args...)
	if err != nil {
		return nil, err
	}
	return &Component{p: p}, nil
}

// WaitReady polls check until it succeeds; it fails with a *StartError
// carrying the log tail when the process exits or timeout passes.
func (x *Component) WaitReady(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	return x.p.waitReady(ctx, timeout, check)
}

// Stop ends the component: SIGTERM to its process group, SIGKILL after grace.
func (x *Component) Stop(grace time.Duration) error { return x.p.stop(grace) }

// LogPath is the component's log file.
func (x *Component) LogPath() string { return x.p.logPath }

// Pid is the process ID of the component's main process.
func (x *Component) Pid() int { return x.p.cmd.Process.Pid }

// LogTail returns the last n lines of the component's log.
func (x *Component) LogTail(n int) string { return tailFile(x.p.logPath, n) }
