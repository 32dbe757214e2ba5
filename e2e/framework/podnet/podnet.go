//go:build linux

// Package podnet gives host processes the network a pod's containers have:
// a network namespace of their own with nothing but loopback, where the
// pod's sidecar is reachable on 127.0.0.1 at its port. The sidecar itself
// runs as a host process on the host's loopback (localenv.RunSidecar);
// podnet forwards each of its ports into the namespace at the TCP level, so
// requests reach it unchanged.
//
// The namespace has no route anywhere else, which is the point for the e2e
// client matrix: a client that ignores IDENTITY_ENDPOINT and calls node IMDS
// at 169.254.169.254, or one that phones home, gets "network is
// unreachable" and sends no packet off this machine. It needs root and
// iproute2's `ip netns`, as the e2e suite does.
package podnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

var seq atomic.Int64

// Netns is a named network namespace with loopback up and forwarded ports.
// Close it when done.
type Netns struct {
	// Name is the namespace's name in `ip netns list`.
	Name string
	path string
	lns  []net.Listener
	wg   sync.WaitGroup
}

// New creates a namespace in which each of ports on 127.0.0.1 is forwarded
// to the same port on the host's 127.0.0.1.
func New(ports ...int) (_ *Netns, err error) {
	n := &Netns{Name: fmt.Sprintf("pod-identity-%d-%d", os.Getpid(), seq.Add(1))}
	n.path = "/run/netns/" + n.Name
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s (needs root and iproute2): %w: %s", n.Name, err, out)
	}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	if out, err := exec.Command("ip", "-n", n.Name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bring up loopback in %s: %w: %s", n.Name, err, out)
	}
	for _, port := range ports {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := n.listen(addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s in %s: %w", addr, n.Name, err)
		}
		n.lns = append(n.lns, ln)
		n.wg.Add(1)
		go n.forward(ln, addr)
	}
	return n, nil
}

// listen opens a listener inside the namespace. A socket belongs to the
// namespace of the thread that created it, so the listener is created on a
// thread that has joined the namespace.
func (n *Netns) listen(addr string) (net.Listener, error) {
	fd, err := unix.Open(n.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return inNetns(fd, func() (net.Listener, error) { return net.Listen("tcp", addr) })
}

// inNetns runs f on a locked thread that has joined the network namespace
// nsFD, then moves the thread back and releases it. The thread must not
// simply end, as Go ends a thread whose locked goroutine returns: a child
// started with Pdeathsig (localenv's sidecar) gets that signal when the
// thread that forked it ends, not the process.
func inNetns[T any](nsFD int, f func() (T, error)) (T, error) {
	var zero T
	runtime.LockOSThread()
	home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return zero, fmt.Errorf("open this thread's network namespace: %w", err)
	}
	defer unix.Close(home)
	if err := unix.Setns(nsFD, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return zero, fmt.Errorf("setns: %w", err)
	}
	v, ferr := f()
	if err := unix.Setns(home, unix.CLONE_NEWNET); err != nil {
		// Stay locked: the runtime then ends this thread rather than reuse
		// it in the wrong namespace.
		return zero, errors.Join(ferr, fmt.Errorf("return to this process's network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return v, ferr
}

// forward copies each connection accepted in the namespace to target on
// the host, both ways, until either side closes.
func (n *Netns) forward(ln net.Listener, target string) {
	defer n.wg.Done()
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := net.Dial("tcp", target)
			if err != nil {
				fmt.Fprintf(os.Stderr, "podnet %s: forward to %s: %v\n", n.Name, target, err)
				return
			}
			defer out.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
			go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
			<-done
		}()
	}
}

// Command returns a command that runs argv inside the namespace.
func (n *Netns) Command(ctx context.Context, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + n.path, "--"}, argv...)...)
}

// Close stops forwarding and deletes the namespace.
func (n *Netns) Close() error {
	var errs []error
	for _, ln := range n.lns {
		errs = append(errs, ln.Close())
	}
	n.wg.Wait()
	if out, err := exec.Command("ip", "netns", "delete", n.Name).CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("ip netns delete %s: %w: %s", n.Name, err, out))
	}
	return errors.Join(errs...)
}
