package nodeparts

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// namespaceEnv marks a process that Reexec already moved into the suite's
// own namespaces, so that it does not do so twice.
const namespaceEnv = "POD_IDENTITY_NODE_NAMESPACE"

// InNamespace reports whether this process runs in the namespaces Reexec
// made.
func InNamespace() bool { return os.Getenv(namespaceEnv) == Address }

// Reexec runs this program again, with the same arguments, in a new network
// namespace and a new mount namespace (`unshare --net --mount`), and returns
// its exit code. Everything the real node needs then lives in those
// namespaces: the control plane, containerd, the kubelet, the registry, the
// pod bridge and every fake. No packet can leave, since the new network
// namespace has no interface but its own loopback, and every mount the
// kubelet and containerd make ends with the last process in it.
//
// The child calls SetupNamespace first. It needs root and unshare(1) from
// util-linux.
func Reexec() (int, error) {
	if os.Geteuid() != 0 {
		return 0, errors.New("the real node needs root: run the suite as root (CI does), e.g. `sudo -E make e2e`")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return 0, fmt.Errorf("the real node needs unshare(1) from util-linux: %w", err)
	}
	args := append([]string{"--net", "--mount", "--propagation", "private", "--", os.Args[0]}, os.Args[1:]...)
	cmd := exec.Command(unshare, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), namespaceEnv+"="+Address)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("enter a new network namespace with %s: %w", unshare, err)
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}

// SetupNamespace prepares the namespaces Reexec made: loopback up, the node
// address on it, and / a shared mount inside the new mount namespace, as
// the kubelet expects of a host (mount propagation into pods).
func SetupNamespace() error {
	if !InNamespace() {
		return errors.New("SetupNamespace runs only in the namespaces that Reexec made")
	}
	for _, args := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "addr", "add", Address + "/32", "dev", "lo"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %w: %s", args, err, out)
		}
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make / a shared mount in the node's mount namespace: %w", err)
	}
	return nil
}
