// Package decisiontest holds what tests of the decision and of its
// callers (the admission handler, the kubectl plugin) need to give a
// Planner objects to read: a fake client that knows the CRD kinds, and a
// reader that counts the reads reaching it. Only tests import it.
package decisiontest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/names"
)

// Scheme knows the built-in kinds and the aadpodidentity.k8s.io kinds.
func Scheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	require.NoError(t, aadv1.AddToScheme(s))
	return s
}

// FakeReader is a fake client that holds objs, with the index of
// AzureIdentityBindings by selector that the webhook's informer cache has
// (decision.IndexBindingSelector), so that it can stand for that cache in
// decision.CacheThenLive.
func FakeReader(t testing.TB, objs ...client.Object) client.Client {
	t.Helper()
	return fake.NewClientBuilder().WithScheme(Scheme(t)).WithObjects(objs...).
		WithIndex(&aadv1.AzureIdentityBinding{}, bindingSelectorField, bindingSelector).Build()
}

// bindingSelectorField and bindingSelector are decision.BindingSelectorField
// and decision.BindingSelector, which this package cannot import: the
// decision package's own tests import it. A name that differs fails every
// test of decision.CacheThenLive with "no index".
const bindingSelectorField = "spec.selector"

func bindingSelector(obj client.Object) []string {
	if b, ok := obj.(*aadv1.AzureIdentityBinding); ok && b.Spec.Selector != "" {
		return []string{b.Spec.Selector}
	}
	return nil
}

// OptedIn is a namespace annotated to opt in.
func OptedIn(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{names.InjectAnnotation: names.InjectEnabled}}}
}

// CountingReader counts the reads that reach the reader behind it.
type CountingReader struct {
	client.Reader
	Reads int
}

// Get implements client.Reader.
func (c *CountingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.Reads++
	return c.Reader.Get(ctx, key, obj, opts...)
}

// List implements client.Reader.
func (c *CountingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	c.Reads++
	return c.Reader.List(ctx, list, opts...)
}
