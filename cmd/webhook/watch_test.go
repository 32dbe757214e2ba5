package main

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestWatchHealth: a watch that fails as client-go's reflector retries it
// makes the webhook not ready once the failures outlast the grace period,
// and ready again once they have stopped; a single blip does not.
func TestWatchHealth(t *testing.T) {
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	h := newWatchHealth(clock.Now)
	down := errors.New("connection refused")
	require.NoError(t, h.check(nil), "no failure yet")

	// A blip: one failure, then quiet.
	h.failed("*v1.AzureIdentityBinding", down)
	require.NoError(t, h.check(nil))
	clock.Advance(watchRecovered)
	require.NoError(t, h.check(nil))

	// A broken watch: the reflector's backoff, 0.8 s doubling to 30 s, and
	// up to twice that with jitter.
	for _, d := range []time.Duration{800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond} {
		h.failed("*v1.AzureIdentityBinding", down)
		require.NoError(t, h.check(nil), "still within the grace period")
		clock.Advance(d)
	}
	h.failed("*v1.AzureIdentityBinding", down)
	err := h.check(nil)
	require.Error(t, err, "failing for 12 s")
	assert.Contains(t, err.Error(), "*v1.AzureIdentityBinding")
	assert.Contains(t, err.Error(), "connection refused")
	for range 5 {
		clock.Advance(59 * time.Second)
		h.failed("*v1.AzureIdentityBinding", down)
		require.Error(t, h.check(nil), "still broken")
	}

	// It comes back: ready once no failure came for watchRecovered.
	clock.Advance(watchRecovered - time.Second)
	require.Error(t, h.check(nil))
	clock.Advance(time.Second)
	require.NoError(t, h.check(nil))
}
