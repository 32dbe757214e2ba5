package tokenserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
)

// CacheOptions tune the token cache. Zero fields take the defaults.
type CacheOptions struct {
	// Now is the clock that decides freshness; default time.Now. Tests
	// inject a fake one.
	Now func() time.Time
	// MaxResourcesPerIdentity bounds memory: past it, the least recently
	// used resource of that identity is forgotten. While new resources are
	// fetched an identity may hold up to twice as many; a request for yet
	// another new one is refused with ErrTooManyResources. Default 64.
	MaxResourcesPerIdentity int
	// UpstreamRate and UpstreamBurst bound each identity's upstream calls
	// (a token bucket): UpstreamBurst at once, then UpstreamRate per
	// second. A call past them is not made, and the request fails with
	// ErrUpstreamRateLimited. Defaults 0.5 (one call every 2 s) and 30.
	UpstreamRate  rate.Limit
	UpstreamBurst int
	// MaxAttempts is how many upstream calls one fetch makes when they fail
	// with a temporary error. Default 3.
	MaxAttempts int
	// AttemptTimeout bounds one upstream call, so that a hung upstream
	// cannot hold requests forever. Default 10s.
	AttemptTimeout time.Duration
	// RetryDelay is the pause after the first failed attempt; it doubles
	// after each further one. Default 500ms.
	RetryDelay time.Duration
	// MaxBackoff caps how long a resource whose fetches keep failing waits
	// before its next upstream call, while it still has a token to serve.
	// Default 1m.
	MaxBackoff time.Duration
	// OnDemandRetry caps that wait for a resource with no token to serve:
	// a request for it starts a new upstream call once this long has
	// passed since the last failure, however far the backoff has grown. So
	// callers see a recovered upstream within OnDemandRetry rather than
	// MaxBackoff, and the upstream still gets at most one call per resource
	// per OnDemandRetry. Default 5s.
	OnDemandRetry time.Duration
	// ExpiryMargin: a token this close to expiry is no longer served, so
	// that it cannot expire on its way to the client. Default 30s.
	ExpiryMargin time.Duration
	// MaxWait bounds how long a request waits for an upstream call: longer
	// than the retries take, shorter than any client's patience. Default
	// 45s.
	MaxWait time.Duration
}

func (o *CacheOptions) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxResourcesPerIdentity <= 0 {
		o.MaxResourcesPerIdentity = 64
	}
	if o.UpstreamRate <= 0 {
		o.UpstreamRate = 0.5
	}
	if o.UpstreamBurst <= 0 {
		o.UpstreamBurst = 30
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 3
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 10 * time.Second
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	if o.OnDemandRetry <= 0 {
		o.OnDemandRetry = 5 * time.Second
	}
	if o.ExpiryMargin <= 0 {
		o.ExpiryMargin = 30 * time.Second
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 45 * time.Second
	}
}

// ErrClosed is returned by a closed cache.
var ErrClosed = errors.New("token cache is shut down")

// Refusals of the cache's own bounds, for errors.Is.
var (
	// ErrUpstreamRateLimited: the identity made as many upstream calls
	// as UpstreamRate and UpstreamBurst allow.
	ErrUpstreamRateLimited = errors.New("the identity's upstream call budget is spent")
	// ErrTooManyResources: the identity already holds as many resources
	// as MaxResourcesPerIdentity allows, with new ones still being
	// fetched.
	ErrTooManyResources = errors.New("the identity holds as many distinct resources as the sidecar keeps")
)

// Cache holds tokens per (identity, resource). It serves from memory,
// renews a token in the background once it is past its refresh time, lets
// concurrent misses share one upstream call, and keeps serving a token that
// is still valid while the upstream fails.
//
// Renewal is triggered by the first request after the refresh time, not by
// a timer: resources nobody asks for any more cost nothing, and clients are
// told (refresh_in) to come back at the refresh time.
type Cache struct {
	o      CacheOptions
	ctx    context.Context
	cancel context.CancelFunc
	group  singleflight.Group
	wg     sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	byIdentity map[string]map[string]*entry
	limiters   map[string]*rate.Limiter

	// waiting counts requests blocked on an upstream call; tests read it.
	waiting atomic.Int64
}

type entry struct {
	identity  string
	resource  string
	tok       Token
	has       bool
	refreshAt time.Time
	lastUsed  time.Time
	// refreshing is set while a background renewal runs, fetching while
	// requests wait on a fetch; such an entry is never evicted.
	refreshing bool
	fetching   bool
	// failures counts consecutive fetches that failed or did not renew;
	// until retryAt no new upstream call is made for this entry, except on
	// demand (see CacheOptions.OnDemandRetry) once failedAt is that old.
	failures int
	retryAt  time.Time
	failedAt time.Time
	lastErr  error
}

// NewCache returns an empty cache. Close it to stop background renewals.
func NewCache(o CacheOptions) *Cache {
	o.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Cache{o: o, ctx: ctx, cancel: cancel, byIdentity: map[string]map[string]*entry{}, limiters: map[string]*rate.Limiter{}}
}

// Get returns a token of identity for resource. The token's RefreshOn is
// when the cache will renew it. hit reports that no upstream call was waited
// for. ctx bounds only the wait: the upstream call itself goes on for the
// other requests that share it, within the cache's own timeouts. A hit
// allocates no timer; only a wait is bounded by MaxWait.
func (c *Cache) Get(ctx context.Context, identity, resource, scope string, src Source) (tok Token, hit bool, err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Token{}, false, ErrClosed
	}
	now := c.o.Now()
	e := c.entryFor(identity, resource, now)
	if e == nil {
		c.mu.Unlock()
		return Token{}, false, fmt.Errorf("%w: %d, each with a token or a fetch in flight; the sidecar's --max-resources-per-identity sets how many it keeps", ErrTooManyResources, len(c.byIdentity[identity]))
	}
	e.lastUsed = now
	if e.servable(now, c.o.ExpiryMargin) {
		tok = e.served()
		if !now.Before(e.refreshAt) && !e.refreshing && !now.Before(e.retryAt) {
			e.refreshing = true
			c.wg.Add(1)
			go c.renew(identity, resource, scope, src, e)
		}
		c.mu.Unlock()
		return tok, true, nil
	}
	// Nothing to serve: the caller waits for a new upstream call, unless
	// one failed so recently that asking again would only hammer it.
	if due := minTime(e.retryAt, e.failedAt.Add(c.o.OnDemandRetry)); e.lastErr != nil && now.Before(due) {
		err := fmt.Errorf("%w (the next upstream attempt is due at %s)", e.lastErr, due.UTC().Format(time.RFC3339))
		c.mu.Unlock()
		return Token{}, false, err
	}
	e.fetching = true
	c.mu.Unlock()

	c.waiting.Add(1)
	defer c.waiting.Add(-1)
	ctx, cancel := context.WithTimeout(ctx, c.o.MaxWait)
	defer cancel()
	ch := c.group.DoChan(flightKey(identity, resource), func() (any, error) {
		return c.fetch(e, scope, src)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return Token{}, false, res.Err
		}
		return res.Val.(Token), false, nil
	case <-ctx.Done():
		return Token{}, false, fmt.Errorf("gave up waiting for the upstream token request: %w", ctx.Err())
	}
}

// Close cancels upstream calls in flight and waits for them to end.
func (c *Cache) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

func flightKey(identity, resource string) string { return identity + "\x00" + resource }

// renew refreshes a still-servable token in the background.
func (c *Cache) renew(identity, resource, scope string, src Source, e *entry) {
	defer c.wg.Done()
	_, _, _ = c.group.Do(flightKey(identity, resource), func() (any, error) {
		return c.fetch(e, scope, src)
	})
}

// entryFor returns the entry for (identity, resource). Under the
// per-identity cap it makes room by forgetting the least recently used
// entry without a servable token. It never evicts a valid token for a
// newcomer: the newcomer is let in over the cap, and store evicts for it
// only once its fetch has brought a token, so that an upstream outage,
// during which the newcomer fails, costs no token that could not be had
// again. c.mu is held.
func (c *Cache) entryFor(identity, resource string, now time.Time) *entry {
	m := c.byIdentity[identity]
	if m == nil {
		m = map[string]*entry{}
		c.byIdentity[identity] = m
	}
	if e := m[resource]; e != nil {
		return e
	}
	if len(m) >= c.o.MaxResourcesPerIdentity {
		if victim := c.victim(m, nil, now, true); victim != "" {
			delete(m, victim)
		} else if len(m) >= 2*c.o.MaxResourcesPerIdentity {
			return nil
		}
	}
	e := &entry{identity: identity, resource: resource, lastUsed: now}
	m[resource] = e
	return e
}

// fitCap brings e's identity back under the cap after a fetch: a failed
// newcomer leaves, a successful one pushes out the least recently used
// other entry, stale ones first. c.mu is held.
func (c *Cache) fitCap(e *entry, now time.Time) {
	m := c.byIdentity[e.identity]
	for len(m) > c.o.MaxResourcesPerIdentity && m[e.resource] == e {
		if !e.servable(now, c.o.ExpiryMargin) {
			delete(m, e.resource)
			return
		}
		victim := c.victim(m, e, now, false)
		if victim == "" {
			return
		}
		delete(m, victim)
	}
}

// victim is the resource to forget from m, never keep's: the least
// recently used one without a servable token, else, unless staleOnly, the
// least recently used of all; "" when there is none.
func (c *Cache) victim(m map[string]*entry, keep *entry, now time.Time, staleOnly bool) string {
	var stale, oldest string
	var staleAt, oldestAt time.Time
	for r, e := range m {
		if e == keep || e.fetching || e.refreshing {
			continue
		}
		if oldest == "" || e.lastUsed.Before(oldestAt) {
			oldest, oldestAt = r, e.lastUsed
		}
		if !e.servable(now, c.o.ExpiryMargin) && (stale == "" || e.lastUsed.Before(staleAt)) {
			stale, staleAt = r, e.lastUsed
		}
	}
	if stale != "" || staleOnly {
		return stale
	}
	return oldest
}

// fetch calls the upstream with bounded retries and records the outcome.
// It runs inside the single flight of its entry.
func (c *Cache) fetch(e *entry, scope string, src Source) (Token, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Token{}, ErrClosed
	}
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()

	var tok Token
	var err error
	delay := c.o.RetryDelay
	limiter := c.limiter(e.identity)
	for attempt := 1; ; attempt++ {
		if !limiter.AllowN(c.o.Now(), 1) {
			if attempt == 1 {
				err = fmt.Errorf("%w: at most %d upstream calls at once, then one every %s; the next is due in %s",
					ErrUpstreamRateLimited, c.o.UpstreamBurst, time.Duration(float64(time.Second)/float64(c.o.UpstreamRate)), c.retryAfter(limiter))
			}
			break
		}
		actx, cancel := context.WithTimeout(c.ctx, c.o.AttemptTimeout)
		tok, err = src.Token(actx, scope)
		cancel()
		if err == nil || !isTemporary(err) || attempt >= c.o.MaxAttempts || c.ctx.Err() != nil {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
		}
		delay *= 2
	}
	return c.store(e, tok, err)
}

// limiter is identity's upstream token bucket.
func (c *Cache) limiter(identity string) *rate.Limiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.limiters[identity]
	if l == nil {
		l = rate.NewLimiter(c.o.UpstreamRate, c.o.UpstreamBurst)
		c.limiters[identity] = l
	}
	return l
}

// retryAfter is how long until l allows a call, rounded up to a second.
func (c *Cache) retryAfter(l *rate.Limiter) time.Duration {
	now := c.o.Now()
	r := l.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return max(d.Round(time.Second), time.Second)
}

// store records a fetch's outcome in e and returns what the waiting
// requests get.
func (c *Cache) store(e *entry, tok Token, err error) (Token, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.o.Now()
	e.refreshing, e.fetching = false, false
	if err == nil && !tok.ExpiresOn.After(now.Add(c.o.ExpiryMargin)) {
		err = permanent(fmt.Errorf("the upstream returned a token that expires at %s, which is too soon to serve", tok.ExpiresOn.UTC().Format(time.RFC3339)))
	}
	if err != nil {
		e.failures++
		e.lastErr, e.failedAt = err, now
		e.retryAt = now.Add(c.backoff(e.failures))
		c.fitCap(e, now)
		return Token{}, err
	}
	if e.has && !tok.ExpiresOn.After(e.tok.ExpiresOn) {
		// The upstream handed back the token we hold (an upstream cache):
		// try again later, without hammering it, and keep serving ours.
		e.failures++
		e.lastErr, e.failedAt = nil, time.Time{}
		e.retryAt = now.Add(c.backoff(e.failures))
		return e.served(), nil
	}
	e.tok, e.has = tok, true
	e.failures, e.lastErr, e.retryAt, e.failedAt = 0, nil, time.Time{}, time.Time{}
	e.refreshAt = refreshTime(tok, now)
	c.fitCap(e, now)
	return e.served(), nil
}

// backoff is the wait after n consecutive failures: RetryDelay doubled
// n-1 times, capped at MaxBackoff.
func (c *Cache) backoff(n int) time.Duration {
	d := c.o.RetryDelay
	for i := 1; i < n && d < c.o.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.o.MaxBackoff)
}

// refreshTime is the upstream's refresh hint when it gave one, else half way
// to expiry: early enough to ride out an outage of half a token lifetime.
func refreshTime(tok Token, now time.Time) time.Time {
	if !tok.RefreshOn.IsZero() && tok.RefreshOn.Before(tok.ExpiresOn) {
		return tok.RefreshOn
	}
	return now.Add(tok.ExpiresOn.Sub(now) / 2)
}

func (e *entry) servable(now time.Time, margin time.Duration) bool {
	return e.has && now.Add(margin).Before(e.tok.ExpiresOn)
}

func (e *entry) served() Token {
	t := e.tok
	t.RefreshOn = e.refreshAt
	return t
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
