package inject_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/utils/ptr"

	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/names"
)

// TestInjectSharedProcessNamespace: a labelled pod that shares its process
// namespace is denied with a message that says why and names the opt-out;
// with the opt-out it is injected with a warning; false or unset is no
// concern.
func TestInjectSharedProcessNamespace(t *testing.T) {
	c := loadCase(t, "shared-process-namespace-opt-in")

	denied := c.Pod.DeepCopy()
	delete(denied.Annotations, names.AllowSharedProcessNamespaceAnnotation)
	_, _, err := inject.Inject(denied, c.Identities, c.Config, c.Secret)
	require.ErrorIs(t, err, inject.ErrSharedProcessNamespace)
	for _, want := range []string{"pod team-a/debug-", "spec.shareProcessNamespace", "/proc", "client secret or service account token",
		names.AllowSharedProcessNamespaceAnnotation + "=true"} {
		assert.Contains(t, err.Error(), want)
	}

	for _, v := range []string{"false", "yes", ""} {
		denied.Annotations = map[string]string{names.AllowSharedProcessNamespaceAnnotation: v}
		_, _, err := inject.Inject(denied, c.Identities, c.Config, c.Secret)
		assert.ErrorIs(t, err, inject.ErrSharedProcessNamespace, "annotation value %q is no opt-in", v)
	}

	_, res, err := c.Inject()
	require.NoError(t, err)
	assert.True(t, res.Changed)
	require.NotEmpty(t, res.Warnings)
	assert.Contains(t, res.Warnings[len(res.Warnings)-1], "shares its process namespace")

	for _, share := range []*bool{nil, ptr.To(false)} {
		p := denied.DeepCopy()
		p.Spec.ShareProcessNamespace = share
		_, _, err := inject.Inject(p, c.Identities, c.Config, c.Secret)
		assert.NoError(t, err)
	}
}

// TestInjectHostPID: a labelled pod in the node's process namespace is
// denied, with a message that names the pod, spec.hostPID and the fix, and
// no annotation lifts the deny, not even the one that lifts
// shareProcessNamespace's.
func TestInjectHostPID(t *testing.T) {
	seed := loadCase(t, "seed")
	tests := map[string]struct {
		annotations map[string]string
		share       *bool
	}{
		"hostPID alone": {},
		"with the shared-process-namespace opt-in": {annotations: map[string]string{names.AllowSharedProcessNamespaceAnnotation: "true"}},
		"with shareProcessNamespace opted in too": {
			annotations: map[string]string{names.AllowSharedProcessNamespaceAnnotation: "true"},
			share:       ptr.To(true),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := seed.Pod.DeepCopy()
			p.Spec.HostPID = true
			p.Spec.ShareProcessNamespace = tc.share
			p.Annotations = tc.annotations
			out, _, err := inject.Inject(p, seed.Identities, seed.Config, seed.Secret)
			require.ErrorIs(t, err, inject.ErrHostPID)
			assert.Nil(t, out)
			for _, want := range []string{"pod default/my-app-7c9d8b6f5-", "spec.hostPID is true", "/proc",
				"no annotation lifts this", "run the pod without hostPID", "remove its " + names.BindingLabel + " label"} {
				assert.Contains(t, err.Error(), want)
			}
		})
	}

	p := seed.Pod.DeepCopy()
	p.Spec.HostPID = false
	_, _, err := inject.Inject(p, seed.Identities, seed.Config, seed.Secret)
	assert.NoError(t, err, "hostPID false is no concern")
}
