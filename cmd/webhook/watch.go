package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	toolscache "k8s.io/client-go/tools/cache"
)

// Timing of watchHealth, from client-go's reflector: after a failure it
// retries with a backoff from 0.8 s that stops in [30, 60) s. A watch that
// stays broken therefore fails again at least every 60 s.
const (
	// watchGrace is how long failures must go on before the watch counts
	// as broken: a blip, such as an API server rolling, leaves the
	// webhook ready.
	watchGrace = 10 * time.Second
	// watchRecovered is how long without a failure means the watch is
	// back: longer than the reflector's longest retry interval.
	watchRecovered = 75 * time.Second
)

// watchHealth tracks the informers' watches, so that readiness means the
// cache is current, not only that it once synced. A webhook whose watch is
// broken keeps serving the bindings it last saw, deleted ones included;
// not ready, it is taken out of the Service while the other replica
// answers.
type watchHealth struct {
	now func() time.Time

	mu sync.Mutex
	// streaks are the failing watches, by the reflector's type.
	streaks map[string]*streak
}

// streak is a run of watch failures without a long enough gap.
type streak struct {
	since, last time.Time
	err         error
}

func newWatchHealth(now func() time.Time) *watchHealth {
	return &watchHealth{now: now, streaks: map[string]*streak{}}
}

// handler is the informers' WatchErrorHandler: client-go's default, which
// logs, and a record of the failure. An expired resource version is the
// normal end of a long watch, followed by a relist, and no failure.
func (h *watchHealth) handler(ctx context.Context, r *toolscache.Reflector, err error) {
	toolscache.DefaultWatchErrorHandler(ctx, r, err)
	if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		return
	}
	h.failed(r.TypeDescription(), err)
}

// failed records a failed list or watch of the informer for what.
func (h *watchHealth) failed(what string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	s := h.streaks[what]
	if s == nil || now.Sub(s.last) >= watchRecovered {
		s = &streak{since: now}
		h.streaks[what] = s
	}
	s.last, s.err = now, err
}

// check is the readiness check: an error while a watch has been failing
// for watchGrace and has not yet been quiet for watchRecovered.
func (h *watchHealth) check(*http.Request) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	var broken []string
	for what, s := range h.streaks {
		if now.Sub(s.last) >= watchRecovered {
			delete(h.streaks, what)
			continue
		}
		if s.last.Sub(s.since) >= watchGrace {
			broken = append(broken, fmt.Sprintf("%s since %s: %v", what, s.since.UTC().Format(time.RFC3339), s.err))
		}
	}
	if len(broken) == 0 {
		return nil
	}
	slices.Sort(broken)
	return fmt.Errorf("the informer watch is failing, so the cache may serve deleted or stale bindings: %s", strings.Join(broken, "; "))
}
