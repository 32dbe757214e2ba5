package main

import "github.com/podidentity/injector/internal/version"

// versionString is the plugin's version, commit and Go version, as the
// webhook and the sidecar print theirs.
func versionString() string { return version.String("kubectl-pod_identity") }
