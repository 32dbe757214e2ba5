package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// disableDumping marks the process not dumpable. The kernel then refuses
// other processes of the same uid access to /proc/<pid>/root, mem and
// environ, and core dumps, so that an app container that shares the pod's
// process namespace and happens to run as the sidecar's uid cannot read the
// mounted credentials or IDENTITY_HEADER through them. Only the sidecar
// holds credentials, so only it pays for the hardening.
func disableDumping() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return nil
}
