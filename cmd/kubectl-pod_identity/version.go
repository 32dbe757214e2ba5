package main

import "runtime/debug"

// versionString names the plugin's module version, as `go install` records
// it, and the Go version it was built with.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "kubectl-pod_identity (unknown version)"
	}
	return "kubectl-pod_identity " + bi.Main.Version + " " + bi.GoVersion
}
