// Command pod-identity-sidecar is the token server injected into pods that
// use an Azure identity. `pod-identity-sidecar serve` answers managed identity
// token requests on the pod's loopback; `pod-identity-sidecar probe` is its
// exec probe. See package tokenserver.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/podidentity/injector/internal/memtune"
)

func main() {
	memtune.Apply(runtimeSettings, os.Getenv, os.ReadFile)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pod-identity-sidecar:", err)
		os.Exit(1)
	}
}
