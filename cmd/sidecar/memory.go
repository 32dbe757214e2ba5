package main

import (
	"context"
	"crypto/x509"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/podidentity/injector/internal/memtune"
)

// The sidecar is a tiny, mostly idle server: its live heap stays under 1 MiB
// while a request makes about 2 KB of garbage. With the runtime's defaults
// the heap grows to the 4 MiB minimum goal of GOGC=100 between collections,
// and that, not the live heap, is most of its private memory after load.
// BENCHMARKS.md ("Sidecar footprint") has the figures behind both settings.

// runtimeSettings halve the minimum heap goal to 2 MiB (GOGC=50), at the
// price of twice as many collections of a heap that takes well under a
// millisecond to mark, and give the runtime 75% of the container's memory
// limit as its soft limit: a guard against the OOM killer, not a shaper. A
// fixed limit would be wrong for a cluster that overrides the webhook's
// --sidecar-memory-limit, so it follows the cgroup's. main applies them,
// not run: a test that calls run in its own process keeps its own settings.
var runtimeSettings = memtune.Settings{GCPercent: 50, LimitShare: 0.75}

// releaseStartupMemory returns to the kernel what start-up left behind, and
// loads the system CA roots first so that their garbage is part of it.
// crypto/x509 parses every root of the system bundle once per process, at
// the first TLS handshake otherwise, and keeps only their raw bytes: the
// parse leaves about 4 MiB of garbage (hack/footprint/measure.sh, the tls
// step), which an idle server would keep mapped for minutes after its first
// token. Loaded right after start, beside the first requests, it costs the
// first token nothing. The parsed certificates of --ca-file and of the
// identities' Secrets are garbage by now too. Both steps take from a few to
// tens of milliseconds on a busy node (the parse, and the forced collection
// that returns the pages), which is why serve runs this in the background
// once it listens, rather than before readiness.
func releaseStartupMemory() {
	_, _ = x509.SystemCertPool()
	debug.FreeOSMemory()
}

// releaseInterval is how often releaseAfterBursts looks at the collector.
const releaseInterval = 5 * time.Second

// releaseAfterBursts returns the heap that a burst of requests freed to the
// kernel once the burst is over, until ctx is done. A burst grows the heap
// to its goal and leaves free spans behind that the runtime's background
// scavenger gives back only over minutes; a sidecar is idle most of its
// life, and its private memory is what the kubelet charges to the pod. A
// burst is over when no collection ran for a whole interval after at least
// one did since the last release; then debug.FreeOSMemory runs once (one
// collection of a heap under 1 MiB live). An idle sidecar, whose probes and
// rare requests do not trigger collections, is never woken for it.
func releaseAfterBursts(ctx context.Context) {
	t := time.NewTicker(releaseInterval)
	defer t.Stop()
	var r burstReleaser
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if r.tick(gcCycles()) {
				debug.FreeOSMemory()
				r.released(gcCycles())
			}
		}
	}
}

// burstReleaser decides, from the collector's cycle count at each tick,
// when a burst is over.
type burstReleaser struct {
	last, atRelease uint64
}

// tick reports whether to release now, given the cycle count.
func (r *burstReleaser) tick(cycles uint64) bool {
	quiet := cycles == r.last
	r.last = cycles
	return quiet && cycles != r.atRelease
}

// released records the cycle count after a release, whose own collection
// is not a burst.
func (r *burstReleaser) released(cycles uint64) { r.last, r.atRelease = cycles, cycles }

// gcCycles is the number of completed collections.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
