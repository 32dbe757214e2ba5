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
