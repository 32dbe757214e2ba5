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
	// host is the network namespace New was called in, where the
	// forwarded ports are dialled.
	host int
	lns  []net.Listener
	wg   sync.WaitGroup
}

// New creates a namespace in which each of ports on 127.0.0.1 is forwarded
// to the same port on the host's 127.0.0.1.
func New(ports ...int) (_ *Netns, err error) {
	n := &Netns{Name: fmt.Sprintf("pod-identity-%d-%d", os.Getpid(), seq.Add(1)), host: -1}
	n.path = "/run/netns/" + n.Name
	// The caller's thread is in the host's namespace: only the locked
	// threads below ever join another one, and they never run anything else.
	runtime.LockOSThread()
	n.host, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("open this process's network namespace: %w", err)
	}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		_ = unix.Close(n.host)
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

// dialHost connects to addr in the host's namespace. It joins that
// namespace explicitly rather than trust the thread it happens to run on.
func (n *Netns) dialHost(addr string) (net.Conn, error) {
	return inNetns(n.host, func() (net.Conn, error) { return net.Dial("tcp", addr) })
}

// inNetns runs f on a thread of its own that has joined the network
// namespace nsFD, and discards that thread afterwards.
func inNetns[T any](nsFD int, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the runtime ends the thread with the goroutine.
		runtime.LockOSThread()
		var r result
		if r.err = unix.Setns(nsFD, unix.CLONE_NEWNET); r.err != nil {
			r.err = fmt.Errorf("setns: %w", r.err)
		} else {
			r.v, r.err = f()
		}
		ch <- r
	}()
	r := <-ch
	return r.v, r.err
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
			out, err := n.dialHost(target)
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
	errs = append(errs, unix.Close(n.host))
	return errors.Join(errs...)
}
