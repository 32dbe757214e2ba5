// Command azidentity is one step of hack/footprint/measure.sh: the sidecar's stack
// up to this layer, idle.
package main

import (
	"github.com/podidentity/injector/hack/footprint/layer/azure"
	"github.com/podidentity/injector/hack/footprint/layer/idle"
	"github.com/podidentity/injector/hack/footprint/layer/serve"
	"github.com/podidentity/injector/hack/footprint/layer/tlsclient"
)

func main() {
	serve.Serve()
	azure.Azure(tlsclient.TLSClient())
	idle.Idle()
}
