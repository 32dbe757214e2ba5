package main

import (
	"crypto/x509"
	"runtime/debug"
	"strconv"
	"strings"
)

// The sidecar is a tiny, mostly idle server: its live heap stays under 1 MiB
// while a request makes about 2 KB of garbage. With the runtime's defaults
// the heap grows to the 4 MiB minimum goal of GOGC=100 between collections,
// and that, not the live heap, is most of its private memory after load.
// BENCHMARKS.md ("Sidecar footprint") has the figures behind both settings.

// defaultGCPercent halves the minimum heap goal to 2 MiB, at the price of
// twice as many collections of a heap that takes well under a millisecond
// to mark.
const defaultGCPercent = 50

// memoryLimitShare is the part of the container's memory limit given to the
// runtime as its soft limit (GOMEMLIMIT): near it the collector works harder
// and returns freed pages at once, instead of the container being
// OOM-killed. The rest is for the binary's mapped pages, which the limit
// does not count. A fixed limit would be wrong for a cluster that overrides
// the webhook's --sidecar-memory-limit, so it follows the cgroup's.
const memoryLimitShare = 0.75

// cgroupMemoryMax is the cgroup v2 file that holds the container's memory
// limit.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// tuneRuntime applies defaultGCPercent unless GOGC is set, and a soft memory
// limit from the container's limit unless GOMEMLIMIT is set (the runtime
// has applied those itself). main calls it, not run: a test that calls run
// in its own process keeps its own settings.
func tuneRuntime(getenv func(string) string, readFile func(string) ([]byte, error)) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	if b, err := readFile(cgroupMemoryMax); err == nil {
		if limit, ok := softMemoryLimit(string(b)); ok {
			debug.SetMemoryLimit(limit)
		}
	}
}

// softMemoryLimit turns the content of memory.max into the soft limit, or
// false when the cgroup sets no limit ("max") or the content is unreadable.
func softMemoryLimit(memoryMax string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(memoryMax), 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return int64(float64(n) * memoryLimitShare), true
}

// memoryLimit is the soft limit in force, for the start-up log
// (math.MaxInt64 when there is none).
func memoryLimit() int64 { return debug.SetMemoryLimit(-1) }

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
