package tokenserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCacheRecoversOnDemand: after a long outage has grown the backoff to
// its one-minute cap, a caller with no token to be served sees the
// recovered upstream within OnDemandRetry, not MaxBackoff; and however
// often callers ask meanwhile, the upstream gets about one call per
// OnDemandRetry.
func TestCacheRecoversOnDemand(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour, err: classify(errUpstreamDown)}
	c := newTestCache(t, clock, CacheOptions{MaxAttempts: 1, RetryDelay: time.Second})
	ctx := context.Background()
	get := func() error {
		_, _, err := c.Get(ctx, "id", "r", "r/.default", src)
		return err
	}

	// Five callers a second for two minutes of outage.
	end := clock.Now().Add(2 * time.Minute)
	for clock.Now().Before(end) {
		require.ErrorIs(t, get(), errUpstreamDown)
		clock.Advance(200 * time.Millisecond)
	}
	require.Equal(t, c.o.MaxBackoff, c.backoff(c.byIdentity["id"]["r"].failures), "the backoff has reached its cap")
	calls := src.count()
	t.Logf("%d upstream calls for 600 requests in a two-minute outage", calls)
	assert.LessOrEqual(t, calls, int(2*time.Minute/c.o.OnDemandRetry)+4, "at most about one call per OnDemandRetry")
	assert.GreaterOrEqual(t, calls, int(2*time.Minute/c.o.OnDemandRetry)-4, "callers keep the upstream tried every OnDemandRetry")

	// The upstream recovers: within OnDemandRetry a caller gets a token.
	src.set(nil)
	recovered := clock.Now()
	for get() != nil {
		require.LessOrEqual(t, clock.Now().Sub(recovered), c.o.OnDemandRetry, "callers still get the cached failure")
		clock.Advance(200 * time.Millisecond)
	}
}

// TestCacheCapKeepsValidTokensDuringOutage: past the cap of resources per
// identity, a resource without a token is forgotten first, and while the
// identity's upstream is down no valid token is evicted: the new resource
// fails, and the old ones keep being served from memory.
func TestCacheCapKeepsValidTokensDuringOutage(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour}
	c := newTestCache(t, clock, CacheOptions{MaxResourcesPerIdentity: 3, MaxAttempts: 1})
	ctx := context.Background()
	get := func(r string) (Token, error) {
		tok, _, err := c.Get(ctx, "id", r, r+"/.default", src)
		clock.Advance(time.Second)
		return tok, err
	}
	held := map[string]string{}
	for i := range 3 {
		r := fmt.Sprint("r", i)
		tok, err := get(r)
		require.NoError(t, err)
		held[r] = tok.AccessToken
	}
	src.set(classify(errUpstreamDown))

	// Many new resources during the outage: each fails, and none pushes a
	// valid token out.
	for i := range 10 {
		_, err := get(fmt.Sprint("new", i))
		require.ErrorIs(t, err, errUpstreamDown)
		assert.LessOrEqual(t, len(c.byIdentity["id"]), 3, "the cap holds once a failed newcomer is dropped")
	}
	calls := src.count()
	for i := range 3 { // in order: r0 is again the least recently used
		r, want := fmt.Sprint("r", i), held[fmt.Sprint("r", i)]
		tok, err := get(r)
		require.NoError(t, err, "%s was evicted during the outage", r)
		assert.Equal(t, want, tok.AccessToken)
	}
	assert.Equal(t, calls, src.count(), "the held tokens came from memory")

	// Upstream back: a newcomer evicts the least recently used token.
	src.set(nil)
	_, err := get("after")
	require.NoError(t, err)
	assert.Len(t, c.byIdentity["id"], 3)
	assert.NotContains(t, c.byIdentity["id"], "r0")
}

// TestCacheCapEvictsTokenlessFirst: with the upstream up, a resource whose
// fetch failed is forgotten before any valid token, however recently used.
func TestCacheCapEvictsTokenlessFirst(t *testing.T) {
	clock := newFakeClock()
	good := &fakeSource{now: clock.Now, lifetime: time.Hour}
	bad := &fakeSource{now: clock.Now, lifetime: time.Hour, err: permanent(errUpstreamDown)}
	c := newTestCache(t, clock, CacheOptions{MaxResourcesPerIdentity: 2, MaxAttempts: 1})
	ctx := context.Background()
	_, _, err := c.Get(ctx, "id", "old", "old/.default", good)
	require.NoError(t, err)
	clock.Advance(time.Second)
	_, _, err = c.Get(ctx, "id", "refused", "refused/.default", bad)
	require.Error(t, err)
	clock.Advance(time.Second)
	_, _, err = c.Get(ctx, "id", "new", "new/.default", good)
	require.NoError(t, err)
	assert.Contains(t, c.byIdentity["id"], "old", "the valid token stays")
	assert.NotContains(t, c.byIdentity["id"], "refused")
}
