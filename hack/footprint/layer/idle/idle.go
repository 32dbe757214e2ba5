// Package idle blocks until SIGTERM, one layer of the sidecar's stack that the
// hack/footprint programs add one at a time (BENCHMARKS.md, "Sidecar
// footprint"). A program links only the layers it imports.
package idle

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"
)

// Idle blocks until SIGTERM, after printing "ready" for the driver.
func Idle() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fmt.Println("ready")
	<-ctx.Done()
}
