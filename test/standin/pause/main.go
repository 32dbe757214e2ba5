// Command pause is the node's sandbox ("pause") image: it holds a pod's
// namespaces open, reaps nothing and exits on SIGINT or SIGTERM, as
// registry.k8s.io/pause does. It is built static and is the image's only file.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
}
