package tokenserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestCache(t *testing.T, clock *fakeClock, o CacheOptions) *Cache {
	t.Helper()
	o.Now = clock.Now
	if o.RetryDelay == 0 {
		o.RetryDelay = time.Millisecond
	}
	c := NewCache(o)
	t.Cleanup(c.Close)
	return c
}

// TestCacheRefreshAhead walks a token through its life in steps of a few
// minutes: it is renewed in the background after half its lifetime, clients
// never get a token that is about to expire, and the upstream is called once
// per renewal.
func TestCacheRefreshAhead(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour}
	c := newTestCache(t, clock, CacheOptions{})
	ctx := context.Background()

	seen := map[string]bool{}
	for step := 0; step < 60; step++ { // five hours in five-minute steps
		tok, _, err := c.Get(ctx, "id", "https://r", "https://r/.default", src)
		require.NoError(t, err, "step %d", step)
		require.True(t, tok.ExpiresOn.After(clock.Now().Add(c.o.ExpiryMargin)), "step %d: served a token about to expire", step)
		seen[tok.AccessToken] = true
		// Let a renewal that this request started finish before time moves.
		eventually(t, "renewal", func() bool { return c.idle("id", "https://r") })
		clock.Advance(5 * time.Minute)
	}
	// One token per half hour: no renewal storm and no gap.
	assert.InDelta(t, 10, src.count(), 1)
	assert.Len(t, seen, src.count())
}

// idle reports whether no renewal runs for the entry.
func (c *Cache) idle(identity, resource string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byIdentity[identity][resource]
	return e == nil || !e.refreshing
}

// TestCacheOutage: during an outage the cached token is served to the end
// of its life, upstream calls back off, and service resumes after.
func TestCacheOutage(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour}
	c := newTestCache(t, clock, CacheOptions{MaxAttempts: 2, MaxBackoff: 8 * time.Second})
	ctx := context.Background()
	get := func() (Token, error) {
		tok, _, err := c.Get(ctx, "id", "r", "r/.default", src)
		eventually(t, "renewal", func() bool { return c.idle("id", "r") })
		return tok, err
	}
	first, err := get()
	require.NoError(t, err)
	src.set(classify(errUpstreamDown))

	clock.Advance(31 * time.Minute)
	tok, err := get() // starts a renewal that fails twice
	require.NoError(t, err)
	assert.Equal(t, first.AccessToken, tok.AccessToken)
	assert.Equal(t, 3, src.count())

	tok, err = get() // inside the backoff: no upstream call
	require.NoError(t, err)
	assert.Equal(t, first.AccessToken, tok.AccessToken)
	assert.Equal(t, 3, src.count())

	// Requests every second for the rest of the hour: the backoff doubles
	// from 1ms up to 8s, so the upstream sees about two calls (one renewal)
	// per 8s, not two per request.
	for clock.Now().Before(first.ExpiresOn.Add(-c.o.ExpiryMargin - time.Second)) {
		clock.Advance(time.Second)
		tok, err = get()
		require.NoError(t, err)
		require.Equal(t, first.AccessToken, tok.AccessToken)
	}
	calls := src.count()
	t.Logf("%d upstream calls during a 29-minute outage", calls)
	assert.LessOrEqual(t, calls, 2*(29*60/8+20), "backoff bounds upstream calls")
	assert.GreaterOrEqual(t, calls, 2*(29*60/8-20), "the upstream is still tried every MaxBackoff")

	// Nothing valid left: the failure shows, and is not retried at once.
	clock.Advance(2 * time.Second)
	_, err = get()
	require.ErrorIs(t, err, errUpstreamDown)
	after := src.count()
	_, err = get()
	require.ErrorIs(t, err, errUpstreamDown)
	assert.Equal(t, after, src.count(), "a failed entry waits for its backoff")

	// The upstream recovers.
	src.set(nil)
	clock.Advance(8 * time.Second)
	tok, err = get()
	require.NoError(t, err)
	assert.NotEqual(t, first.AccessToken, tok.AccessToken)
}

// TestCachePermanentErrorsAreNotRetried: a refusal goes back at once.
func TestCachePermanentErrorsAreNotRetried(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour, err: permanent(errors.New("invalid_client"))}
	c := newTestCache(t, clock, CacheOptions{MaxAttempts: 5})
	_, hit, err := c.Get(context.Background(), "id", "r", "r/.default", src)
	require.Error(t, err)
	assert.False(t, hit)
	assert.False(t, isTemporary(err))
	assert.Equal(t, 1, src.count())
}

// TestCacheUpstreamReturnsSameToken: an upstream that keeps handing back
// the token we hold (as MSAL's cache does for IMDS) is asked again only
// after a backoff, not on every request.
func TestCacheUpstreamReturnsSameToken(t *testing.T) {
	clock := newFakeClock()
	fixed := Token{AccessToken: "same", ExpiresOn: clock.Now().Add(time.Hour)}
	src := &constSource{tok: fixed}
	c := newTestCache(t, clock, CacheOptions{RetryDelay: 10 * time.Second})
	ctx := context.Background()
	_, _, err := c.Get(ctx, "id", "r", "r/.default", src)
	require.NoError(t, err)
	clock.Advance(31 * time.Minute)
	for range 100 {
		tok, _, err := c.Get(ctx, "id", "r", "r/.default", src)
		require.NoError(t, err)
		assert.Equal(t, "same", tok.AccessToken)
		eventually(t, "renewal", func() bool { return c.idle("id", "r") })
	}
	assert.Equal(t, 2, src.count(), "one renewal, then a backoff")
}

type constSource struct {
	mu    sync.Mutex
	tok   Token
	calls int
}

func (s *constSource) Token(context.Context, string) (Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return s.tok, nil
}

func (s *constSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// TestCacheCap forgets the least recently used resource of an identity
// beyond the cap, and leaves other identities alone.
func TestCacheCap(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour}
	c := newTestCache(t, clock, CacheOptions{MaxResourcesPerIdentity: 3})
	ctx := context.Background()
	get := func(id, r string) {
		t.Helper()
		_, _, err := c.Get(ctx, id, r, r+"/.default", src)
		require.NoError(t, err)
		clock.Advance(time.Second)
	}
	for i := range 3 {
		get("a", fmt.Sprint("r", i))
	}
	get("b", "r0")
	get("a", "r0") // r1 is now the least recently used of a
	require.Equal(t, 4, src.count())
	get("a", "r3") // evicts a/r1
	assert.Len(t, c.byIdentity["a"], 3)
	assert.NotContains(t, c.byIdentity["a"], "r1")
	get("a", "r0")
	get("b", "r0")
	assert.Equal(t, 5, src.count(), "a/r0 and b/r0 are still cached")
	get("a", "r1")
	assert.Equal(t, 6, src.count(), "a/r1 was forgotten")
}

// TestCacheWaiterGivesUp: a client that stops waiting gets its context's
// error; the shared upstream call completes for the others.
func TestCacheWaiterGivesUp(t *testing.T) {
	clock := newFakeClock()
	block := make(chan struct{})
	src := &fakeSource{now: clock.Now, lifetime: time.Hour, block: block}
	c := newTestCache(t, clock, CacheOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Get(ctx, "id", "r", "r/.default", src)
		done <- err
	}()
	eventually(t, "the upstream call", func() bool { return src.count() == 1 })
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	second := make(chan Token, 1)
	go func() {
		tok, _, _ := c.Get(context.Background(), "id", "r", "r/.default", src)
		second <- tok
	}()
	eventually(t, "the second waiter", func() bool { return c.waiting.Load() == 1 })
	close(block)
	assert.Equal(t, "r/.default#A", (<-second).AccessToken)
	assert.Equal(t, 1, src.count())
}

// TestCacheClose ends upstream calls in flight and refuses new requests.
func TestCacheClose(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour, block: make(chan struct{})}
	c := NewCache(CacheOptions{Now: clock.Now})
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Get(context.Background(), "id", "r", "r/.default", src)
		done <- err
	}()
	eventually(t, "the upstream call", func() bool { return src.count() == 1 })
	c.Close()
	require.Error(t, <-done)
	_, _, err := c.Get(context.Background(), "id", "r", "r/.default", src)
	require.ErrorIs(t, err, ErrClosed)
}

// TestRefreshTime honours the upstream's hint and otherwise picks half
// way to expiry.
func TestRefreshTime(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	cases := map[string]struct {
		tok  Token
		want time.Time
	}{
		"half way": {Token{ExpiresOn: now.Add(time.Hour)}, now.Add(30 * time.Minute)},
		"hint":     {Token{ExpiresOn: now.Add(24 * time.Hour), RefreshOn: now.Add(12 * time.Hour)}, now.Add(12 * time.Hour)},
		"hint after expiry is ignored": {
			Token{ExpiresOn: now.Add(time.Hour), RefreshOn: now.Add(2 * time.Hour)}, now.Add(30 * time.Minute),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, refreshTime(tc.tok, now))
		})
	}
}
