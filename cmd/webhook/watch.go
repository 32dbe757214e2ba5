package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/podidentity/injector/internal/webhook"
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
	// consequence ends check's error: what a broken watch means.
	consequence string
	// onBroken, if not nil, is called once per streak of failures, when
	// it outlasts watchGrace.
	onBroken func(what string, since time.Time, err error)

	mu sync.Mutex
	// streaks are the failing watches, by the reflector's type.
	streaks map[string]*streak
}

// streak is a run of watch failures without a long enough gap.
type streak struct {
	since, last time.Time
	err         error
	reported    bool
}

func newWatchHealth(now func() time.Time, consequence string) *watchHealth {
	return &watchHealth{now: now, consequence: consequence, streaks: map[string]*streak{}}
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
	if !s.reported && s.last.Sub(s.since) >= watchGrace && h.onBroken != nil {
		s.reported = true
		h.onBroken(what, s.since, err)
	}
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
	return fmt.Errorf("the informer watch is failing, %s: %s", h.consequence, strings.Join(broken, "; "))
}

// podsWatch is the informer of labelled pods that the shared service
// account warning reads, with a watchHealth of its own that no readiness
// check reads: admission never waits for it, and while it has not synced
// or its watch is broken, pods are admitted without that warning, the
// webhook logs once per broken streak, and the gauge reads 0.
type podsWatch struct {
	informer toolscache.SharedIndexInformer
	health   *watchHealth
}

func newPodsWatch(c kubernetes.Interface, now func() time.Time, log logr.Logger) (*podsWatch, error) {
	health := newWatchHealth(now, "so pods are admitted without the shared service account warning")
	health.onBroken = func(what string, since time.Time, err error) {
		log.Error(err, "the watch of labelled pods is failing; pods are admitted without the shared service account warning until it recovers",
			"watch", what, "since", since.UTC().Format(time.RFC3339))
	}
	inf, err := webhook.NewPodInformer(c, health.handler)
	if err != nil {
		return nil, err
	}
	return &podsWatch{informer: inf, health: health}, nil
}

// errPodsNotSynced is why the pods are not read before the first list.
var errPodsNotSynced = errors.New("the informer of labelled pods has not synced yet")

// current is nil when the informer has synced and its watch is not
// broken, else why not.
func (w *podsWatch) current() error {
	if !w.informer.HasSynced() {
		return errPodsNotSynced
	}
	return w.health.check(nil)
}

// peers reads the informer while it is current.
func (w *podsWatch) peers() webhook.IndexerPeers {
	return webhook.IndexerPeers{Indexer: w.informer.GetIndexer(), Current: w.current}
}

// healthyGauge is 1 while current is nil, read at each scrape.
func (w *podsWatch) healthyGauge() prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pod_identity_injector_peers_watch_healthy",
		Help: "1 when the webhook's cache of labelled pods, which the shared service account warning reads, has synced and its watch is not failing; 0 while pods are admitted without that warning.",
	}, func() float64 {
		if w.current() != nil {
			return 0
		}
		return 1
	})
}
