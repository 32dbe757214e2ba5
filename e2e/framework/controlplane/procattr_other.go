//go:build unix && !linux

package controlplane

import "syscall"

// sysProcAttr puts the child in its own process group, so that stop can
// signal everything it spawned.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
