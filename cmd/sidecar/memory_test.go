package main

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestBurstReleaser: a release once per burst, after a quiet interval, and
// never for an idle sidecar or for the release's own collection.
func TestBurstReleaser(t *testing.T) {
	var r burstReleaser
	steps := []struct {
		cycles  uint64
		release bool
		why     string
	}{
		{0, false, "idle since start: nothing to give back"},
		{0, false, "still idle"},
		{3, false, "a burst is running"},
		{7, false, "still running"},
		{7, true, "a quiet interval after the burst"},
	}
	for _, s := range steps {
		assert.Equal(t, s.release, r.tick(s.cycles), s.why)
	}
	r.released(8) // FreeOSMemory's own collection
	for _, s := range []struct {
		cycles  uint64
		release bool
		why     string
	}{
		{8, false, "the release's collection is not a burst"},
		{8, false, "idle again"},
		{9, false, "a short burst"},
		{9, true, "over: release again"},
	} {
		assert.Equal(t, s.release, r.tick(s.cycles), s.why)
	}
}

func TestGCCyclesCounts(t *testing.T) {
	before := gcCycles()
	runtime.GC()
	assert.Greater(t, gcCycles(), before)
}
