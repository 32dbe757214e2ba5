package webhook

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/names"
)

// The aadpodidbinding label is no boundary between pods that run as one
// service account. Whoever may create a pod as that service account may set
// any selector on it; and a federated identity trusts the service account's
// token, not the label, so Entra ID gives every one of those pods a token
// of every identity federated with it. The webhook cannot refuse such pods
// (aad-pod-identity allowed them, and many clusters run everything as
// "default"), so it warns, naming the other pods and their selectors, at
// each admission of a pod whose selector differs from theirs
// (docs/security.md, "The label is not a boundary between pods of one
// service account").

// Peers finds the other labelled pods that run as a service account.
type Peers interface {
	// SharingServiceAccount returns the pods of namespace that carry an
	// aadpodidbinding label and run as serviceAccount, whatever their
	// selector. Pods that have finished are left out.
	SharingServiceAccount(ctx context.Context, namespace, serviceAccount string) ([]Peer, error)
}

// Peer is another labelled pod, or a pod template read from a file.
type Peer struct {
	// Ref names it in messages: "pod api-7d9f" or "Deployment default/api".
	Ref string
	// Selector is its aadpodidbinding label.
	Selector string
}

// ServiceAccountField is the pod field that ReaderPeers selects on: a field
// selector the API server supports for pods, and, for an informer cache, a
// field index that the cache must be given (IndexServiceAccount).
const ServiceAccountField = "spec.serviceAccountName"

// IndexServiceAccount is the cache's index of ServiceAccountField, for
// cache.Cache.IndexField.
func IndexServiceAccount(obj client.Object) []string {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil
	}
	return []string{serviceAccountOf(pod)}
}

// serviceAccountOf is the pod's service account; the API server's
// ServiceAccount admission sets "default" before webhooks run, and a pod
// read from a file means the same when it names none.
func serviceAccountOf(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName == "" {
		return "default"
	}
	return pod.Spec.ServiceAccountName
}

// ReaderPeers lists pods through a controller-runtime reader: the webhook's
// informer cache, which then needs IndexServiceAccount and holds only
// labelled pods (CachePodSelector), or a live client (the plugin's
// --live), whose List becomes a label and a field selector.
type ReaderPeers struct {
	Reader client.Reader
}

var _ Peers = ReaderPeers{}

// SharingServiceAccount implements Peers.
func (p ReaderPeers) SharingServiceAccount(ctx context.Context, namespace, serviceAccount string) ([]Peer, error) {
	var list corev1.PodList
	if err := p.Reader.List(ctx, &list, client.InNamespace(namespace), client.HasLabels{names.BindingLabel},
		client.MatchingFields{ServiceAccountField: serviceAccount}); err != nil {
		return nil, fmt.Errorf("list the pods of namespace %s that run as service account %s: %w", namespace, serviceAccount, err)
	}
	peers := make([]Peer, 0, len(list.Items))
	for i := range list.Items {
		pod := &list.Items[i]
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		peers = append(peers, Peer{Ref: "pod " + pod.Name, Selector: pod.Labels[names.BindingLabel]})
	}
	return peers, nil
}

// SharingServiceAccount implements Peers over the pods and pod templates of
// the files: for the plugin, one workload's peers are the others in the
// same files.
func (l MemoryLookup) SharingServiceAccount(_ context.Context, namespace, serviceAccount string) ([]Peer, error) {
	var peers []Peer
	for _, w := range l.set.Workloads {
		selector, ok := w.Pod.Labels[names.BindingLabel]
		if !ok || w.Pod.Namespace != namespace || serviceAccountOf(w.Pod) != serviceAccount {
			continue
		}
		peers = append(peers, Peer{Ref: w.Ref(), Selector: selector})
	}
	return peers, nil
}

var _ Peers = MemoryLookup{}

// maxPeersNamed bounds the pods a warning names.
const maxPeersNamed = 3

// sharedServiceAccountWarning is the warning for pod, whose selector is
// selector, given the peers that run as its service account; "" when every
// peer has the same selector.
func sharedServiceAccountWarning(pod *corev1.Pod, selector string, peers []Peer) string {
	var refs, selectors []string
	for _, p := range peers {
		if p.Selector == selector {
			continue
		}
		refs = append(refs, p.Ref)
		if !slices.Contains(selectors, p.Selector) {
			selectors = append(selectors, p.Selector)
		}
	}
	if len(refs) == 0 {
		return ""
	}
	slices.Sort(refs)
	slices.Sort(selectors)
	named := strings.Join(refs[:min(len(refs), maxPeersNamed)], ", ")
	if n := len(refs) - maxPeersNamed; n > 0 {
		named += fmt.Sprintf(" and %d more", n)
	}
	quoted := make([]string, len(selectors))
	for i, s := range selectors {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("pod %s (%s=%q) shares service account %q with %s, whose %s selectors differ (%s): "+
		"the label is no boundary between pods of one service account, since any of them may set another's selector "+
		"and a federated identity trusts the service account, not the label; "+
		"give each selector's pods a service account of their own (docs/security.md, \"The label is not a boundary\")",
		inject.PodRef(pod), names.BindingLabel, selector, serviceAccountOf(pod), named, names.BindingLabel, strings.Join(quoted, ", "))
}
