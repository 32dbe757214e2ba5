package controlplane

import "syscall"

// sysProcAttr puts the child in its own process group, so that stop can
// signal everything it spawned, and has the kernel kill it if the process
// that started it dies without calling Stop (a test binary killed by its
// timeout, say), so that no control plane outlives its owner.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
