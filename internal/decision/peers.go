package decision

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
	// OtherSelectors returns the pods of namespace that run as
	// serviceAccount and carry an aadpodidbinding label other than
	// selector. Pods that have finished are left out.
	OtherSelectors(ctx context.Context, namespace, serviceAccount, selector string) ([]Peer, error)
}

// Peer is another labelled pod, or a pod template read from a file.
type Peer struct {
	// Ref names it in messages: "pod api-7d9f" or "Deployment default/api".
	Ref string
	// Selector is its aadpodidbinding label.
	Selector string
}

// ServiceAccountOf is the pod's service account; the API server's
// ServiceAccount admission sets "default" before webhooks run, and a pod
// read from a file means the same when it names none.
func ServiceAccountOf(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName == "" {
		return "default"
	}
	return pod.Spec.ServiceAccountName
}

// differs is whether pod is a peer of a pod with selector: labelled with
// another selector, and not finished.
func differs(pod *corev1.Pod, selector string) (string, bool) {
	s, ok := pod.Labels[names.BindingLabel]
	if !ok || s == selector || PodFinished(pod.Status.Phase) {
		return "", false
	}
	return s, true
}

// PodFinished is whether a pod in phase has ended, and so cannot use a
// token: such a pod is no peer.
func PodFinished(phase corev1.PodPhase) bool {
	return phase == corev1.PodSucceeded || phase == corev1.PodFailed
}

// ReaderPeers lists pods through a live client (the plugin's --live): the
// API server selects them by label and by the spec.serviceAccountName
// field.
type ReaderPeers struct {
	Reader client.Reader
}

var _ Peers = ReaderPeers{}

// OtherSelectors implements Peers.
func (p ReaderPeers) OtherSelectors(ctx context.Context, namespace, serviceAccount, selector string) ([]Peer, error) {
	var list corev1.PodList
	if err := p.Reader.List(ctx, &list, client.InNamespace(namespace), client.HasLabels{names.BindingLabel},
		client.MatchingFields{"spec.serviceAccountName": serviceAccount}); err != nil {
		return nil, fmt.Errorf("list the pods of namespace %s that run as service account %s: %w", namespace, serviceAccount, err)
	}
	var peers []Peer
	for i := range list.Items {
		if s, ok := differs(&list.Items[i], selector); ok {
			peers = append(peers, Peer{Ref: "pod " + list.Items[i].Name, Selector: s})
		}
	}
	return peers, nil
}

// OtherSelectors implements Peers over the pods and pod templates of the
// files: for the plugin, one workload's peers are the others in the same
// files.
func (l MemoryLookup) OtherSelectors(_ context.Context, namespace, serviceAccount, selector string) ([]Peer, error) {
	var peers []Peer
	for _, w := range l.set.Workloads {
		if w.Pod.Namespace != namespace || ServiceAccountOf(w.Pod) != serviceAccount {
			continue
		}
		if s, ok := differs(w.Pod, selector); ok {
			peers = append(peers, Peer{Ref: w.Ref(), Selector: s})
		}
	}
	return peers, nil
}

var _ Peers = MemoryLookup{}

// maxPeersNamed bounds the pods a warning names.
const maxPeersNamed = 3

// sharedServiceAccountWarning is the warning for pod, whose selector is
// selector, given the peers with other selectors that run as its service
// account; "" when there are none.
func sharedServiceAccountWarning(pod *corev1.Pod, selector string, peers []Peer) string {
	var refs, selectors []string
	for _, p := range peers {
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
		inject.PodRef(pod), names.BindingLabel, selector, ServiceAccountOf(pod), named, names.BindingLabel, strings.Join(quoted, ", "))
}
