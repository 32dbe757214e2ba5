// Command http is one step of hack/footprint/measure.sh: the sidecar's stack
// up to this layer, idle.
package main

import (
	"github.com/podidentity/injector/hack/footprint/layer/idle"
	"github.com/podidentity/injector/hack/footprint/layer/serve"
)

func main() {
	serve.Serve()
	idle.Idle()
}
