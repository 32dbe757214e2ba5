package tokenserver

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/fakeaad"
)

// TestCacheUpstreamRateLimit: an identity's upstream calls are bounded by
// its token bucket, whatever the number of distinct resources asked for;
// past it a request fails with ErrUpstreamRateLimited and no call is made,
// until the bucket refills. Other identities have buckets of their own.
func TestCacheUpstreamRateLimit(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour}
	c := newTestCache(t, clock, CacheOptions{UpstreamBurst: 3, UpstreamRate: 1, MaxAttempts: 1})
	ctx := context.Background()
	var limited int
	for i := range 100 {
		r := fmt.Sprint("r", i)
		_, _, err := c.Get(ctx, "id", r, r+"/.default", src)
		if err != nil {
			require.ErrorIs(t, err, ErrUpstreamRateLimited)
			limited++
		}
	}
	assert.Equal(t, 3, src.count(), "100 distinct resources made only the burst's calls")
	assert.Equal(t, 97, limited)
	_, _, err := c.Get(ctx, "other", "r0", "r0/.default", src)
	require.NoError(t, err, "another identity has its own bucket")

	clock.Advance(time.Second)
	_, _, err = c.Get(ctx, "id", "later", "later/.default", src)
	require.NoError(t, err, "the bucket refilled one call")
	assert.Equal(t, 5, src.count())
}

// TestCacheDistinctResourceBound: while an identity's fetches are in
// flight, it holds at most twice MaxResourcesPerIdentity resources; a
// request for yet another fails at once with ErrTooManyResources and makes
// no upstream call.
func TestCacheDistinctResourceBound(t *testing.T) {
	clock := newFakeClock()
	block := make(chan struct{})
	src := &fakeSource{now: clock.Now, lifetime: time.Hour, block: block}
	c := newTestCache(t, clock, CacheOptions{MaxResourcesPerIdentity: 2, MaxAttempts: 1})
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 4 {
		r := fmt.Sprint("r", i)
		wg.Go(func() {
			_, _, err := c.Get(ctx, "id", r, r+"/.default", src)
			assert.NoError(t, err)
		})
		eventually(t, "the fetch of "+r+" to start", func() bool { return src.count() == i+1 })
	}
	_, _, err := c.Get(ctx, "id", "one-too-many", "x/.default", src)
	require.ErrorIs(t, err, ErrTooManyResources)
	assert.Contains(t, err.Error(), "--max-resources-per-identity")
	assert.Equal(t, 4, src.count(), "the refused resource made no upstream call")
	c.mu.Lock()
	assert.Len(t, c.byIdentity["id"], 4)
	c.mu.Unlock()
	close(block)
	wg.Wait()
	c.mu.Lock()
	assert.LessOrEqual(t, len(c.byIdentity["id"]), 2, "back under the cap once the fetches are done")
	c.mu.Unlock()
}

// TestRateLimitedResponse: a request past the identity's budget gets a
// 429 with the JSON error body the SDKs read, naming the identity.
func TestRateLimitedResponse(t *testing.T) {
	p := newPod(t, fakeaad.IdentitySecret)
	srv := startServer(t, p, withCache(CacheOptions{UpstreamBurst: 1, UpstreamRate: 0.001}))
	ask := func() response {
		q := url.Values{"resource": {uniqueResource(t)}, "api-version": {appServiceAPIVersion}}
		return srv.get(t, names.PathAppService+"?"+q.Encode(), http.Header{names.HeaderIdentity: {p.IdentityHeader}})
	}
	got := ask()
	require.Equal(t, http.StatusOK, got.status, "%v", got.body)
	got = ask()
	require.Equal(t, http.StatusTooManyRequests, got.status, "%v", got.body)
	assert.Equal(t, "too_many_requests", got.str("error"))
	assert.Contains(t, got.str("error_description"), "AzureIdentity default/"+fakeaad.IdentitySecret)
	assert.Contains(t, got.str("error_description"), "upstream call budget is spent")
	assert.Equal(t, 1, p.AAD.Counts().Token)
}
