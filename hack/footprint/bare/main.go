// Command bare is one step of hack/footprint/measure.sh: the sidecar's stack
// up to this layer, idle.
package main

import (
	"github.com/podidentity/injector/hack/footprint/layer/idle"
)

func main() {
	idle.Idle()
}
