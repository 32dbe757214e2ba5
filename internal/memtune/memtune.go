// Package memtune sets the Go runtime's collector for a process that runs
// in a container: a heap goal suited to the program, and a soft memory limit
// (GOMEMLIMIT) that follows the container's memory limit. Both the sidecar
// and the webhook call it first thing in main; an operator's GOGC or
// GOMEMLIMIT in the container's env always wins. BENCHMARKS.md ("Sidecar
// footprint and webhook scale") has the measurements behind the settings.
package memtune

import (
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// The files that hold the container's memory limit: cgroup v2's
// memory.max, then cgroup v1's memory.limit_in_bytes (nodes that still run
// cgroup v1, such as this project's test node).
const (
	cgroupV2MemoryMax = "/sys/fs/cgroup/memory.max"
	cgroupV1Limit     = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
)

// noLimitV1 is the smallest value cgroup v1 uses for "no limit": the
// largest page-aligned int64, 9223372036854771712. A real limit is far
// below it.
const noLimitV1 = math.MaxInt64 / 2

// Settings are the defaults a program applies.
type Settings struct {
	// GCPercent is applied unless GOGC is set.
	GCPercent int
	// LimitShare is the part of the container's memory limit given to the
	// runtime as its soft limit, unless GOMEMLIMIT is set. Near the soft
	// limit the collector works harder and returns freed pages at once,
	// instead of the container being OOM-killed; the rest of the limit is
	// for the binary's mapped pages, which the soft limit does not count.
	LimitShare float64
}

// Apply applies s. getenv and readFile are os.Getenv and os.ReadFile,
// replaced in tests.
func Apply(s Settings, getenv func(string) string, readFile func(string) ([]byte, error)) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(s.GCPercent)
	}
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	if limit, ok := SoftLimit(ContainerLimit(readFile), s.LimitShare); ok {
		debug.SetMemoryLimit(limit)
	}
}

// ContainerLimit is the content of the first cgroup memory limit file
// that can be read, or "" when there is none.
func ContainerLimit(readFile func(string) ([]byte, error)) string {
	for _, name := range []string{cgroupV2MemoryMax, cgroupV1Limit} {
		if b, err := readFile(name); err == nil {
			return string(b)
		}
	}
	return ""
}

// SoftLimit turns the content of memory.max or memory.limit_in_bytes into
// the soft limit, or false when the cgroup sets no limit ("max" in v2, a
// value near MaxInt64 in v1) or the content is unreadable.
func SoftLimit(content string, share float64) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(content), 10, 64)
	if err != nil || n <= 0 || n >= noLimitV1 {
		return 0, false
	}
	return int64(float64(n) * share), true
}

// Limit is the soft limit in force, for a start-up log line
// (math.MaxInt64 when there is none).
func Limit() int64 { return debug.SetMemoryLimit(-1) }
