package main

import (
	"crypto/x509"
	"runtime/debug"

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
