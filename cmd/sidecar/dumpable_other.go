//go:build !linux

package main

// disableDumping has nothing to do where there is no /proc to protect; the
// sidecar runs on Linux, and this lets it build elsewhere for local runs.
func disableDumping() error { return nil }
