package webhook

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/names"
)

// The informer of labelled pods that the shared-service-account warning
// reads in the webhook (decision.Peers over an index); the plugin reads
// files or the API server instead (decision.MemoryLookup,
// decision.ReaderPeers).

// ServiceAccountIndex is the index that IndexerPeers reads, which
// NewPodInformer gives its store: pods by "namespace/serviceAccount".
const ServiceAccountIndex = names.Prefix + "/service-account"

// PodIndexers are the indexers of NewPodInformer's store, over the
// cachedPods of transformPod.
func PodIndexers() toolscache.Indexers {
	return toolscache.Indexers{ServiceAccountIndex: func(obj any) ([]string, error) {
		pod, ok := obj.(*cachedPod)
		if !ok {
			return nil, nil
		}
		return []string{pod.namespace.Value() + "/" + pod.serviceAccount.Value()}, nil
	}}
}

// NewPodInformer is the informer of labelled pods (CachePodSelector) that
// IndexerPeers reads, through c. It stores each pod as transformPod makes
// it, under PodIndexers, and reports list and watch failures to
// onWatchError. It is apart from the manager's cache on purpose: the
// warning is advice, and admission neither waits for this informer to
// sync nor stops being ready when its watch fails. It does no I/O before
// it runs.
func NewPodInformer(c kubernetes.Interface, onWatchError toolscache.WatchErrorHandlerWithContext) (toolscache.SharedIndexInformer, error) {
	selector := CachePodSelector.String()
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.LabelSelector = selector
			return c.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.LabelSelector = selector
			return c.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, opts)
		},
	}
	// As client-go's generated informers do: a fake clientset, which
	// cannot stream a list, lists instead.
	inf := toolscache.NewSharedIndexInformerWithOptions(toolscache.ToListWatcherWithWatchListSemantics(lw, c), &corev1.Pod{}, toolscache.SharedIndexInformerOptions{
		Indexers:          PodIndexers(),
		ObjectDescription: "pods labelled " + names.BindingLabel,
	})
	if err := inf.SetTransform(transformPod); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	if onWatchError != nil {
		if err := inf.SetWatchErrorHandlerWithContext(onWatchError); err != nil {
			return nil, fmt.Errorf("pod informer: %w", err)
		}
	}
	return inf, nil
}

// ErrPeersUnavailable is the error of IndexerPeers while its informer has
// not synced or its watch is failing: the webhook then gives no shared
// service account warning rather than one from a partial or stale list.
var ErrPeersUnavailable = errors.New("the webhook's cache of labelled pods is not current")

// IndexerPeers reads the webhook's pod informer (NewPodInformer) through
// its index: the cached pods themselves, never copied. An admission visits
// one pointer per labelled pod of the service account in the namespace,
// and allocates only for the pods it names (BenchmarkIndexerPeers: 1-2 µs
// for 10 such pods, 0.3-0.4 ms for 2,500).
type IndexerPeers struct {
	Indexer toolscache.Indexer
	// Current, if not nil, says whether Indexer may be read: nil, or why
	// not (not synced yet, or its watch failing), which OtherSelectors
	// wraps in ErrPeersUnavailable.
	Current func() error
}

var _ decision.Peers = IndexerPeers{}

// OtherSelectors implements decision.Peers.
func (p IndexerPeers) OtherSelectors(_ context.Context, namespace, serviceAccount, selector string) ([]decision.Peer, error) {
	if p.Current != nil {
		if err := p.Current(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrPeersUnavailable, err)
		}
	}
	objs, err := p.Indexer.ByIndex(ServiceAccountIndex, namespace+"/"+serviceAccount)
	if err != nil {
		return nil, fmt.Errorf("read the cached pods of namespace %s that run as service account %s: %w", namespace, serviceAccount, err)
	}
	var peers []decision.Peer
	for _, obj := range objs {
		// The same test as differs, over the fields transformPod kept.
		pod, ok := obj.(*cachedPod)
		if !ok || !pod.labelled || pod.finished {
			continue
		}
		if s := pod.selector.Value(); s != selector {
			peers = append(peers, decision.Peer{Ref: "pod " + pod.name, Selector: s})
		}
	}
	return peers, nil
}
