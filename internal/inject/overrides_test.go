package inject_test

import (
	"maps"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// sidecarConfigOf parses the injected sidecar's config.
func sidecarConfigOf(t *testing.T, pod *corev1.Pod) *sidecarconfig.Config {
	t.Helper()
	sc, _ := sidecarOf(t, pod)
	env := envValue(sc, names.EnvSidecarConfig)
	require.NotNil(t, env)
	cfg, err := sidecarconfig.Parse([]byte(env.Value))
	require.NoError(t, err)
	return cfg
}

// containerNamed finds an init or app container of pod.
func containerNamed(t *testing.T, pod *corev1.Pod, name string) *corev1.Container {
	t.Helper()
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	t.Fatalf("pod has no container %q", name)
	return nil
}

// TestSeedPerContainer is the example: the seed's data-init gets
// blob-reader, my-app gets queue-writer, and each has a header of its own
// that the sidecar's table maps to that identity alone.
func TestSeedPerContainer(t *testing.T) {
	c := loadCase(t, "seed-container-identities")
	out, _, err := c.Inject()
	require.NoError(t, err)
	cfg := sidecarConfigOf(t, out)
	byName := map[string]inject.Identity{}
	for _, id := range c.Identities {
		byName[id.Name] = id
	}
	headers := map[string]bool{}
	for ctr, id := range map[string]string{"data-init": "blob-reader", "my-app": "queue-writer"} {
		got := containerNamed(t, out, ctr)
		assert.Equal(t, byName[id].ClientID, envValue(got, names.EnvAzureClientID).Value, "%s: AZURE_CLIENT_ID", ctr)
		assert.Equal(t, byName[id].ClientID, envValue(got, names.EnvAzcopyMSIClientID).Value, "%s: AZCOPY_MSI_CLIENT_ID", ctr)
		h := envValue(got, names.EnvIdentityHeader).Value
		assert.NotEqual(t, c.Secret, h, "%s: the pod secret itself must not be a container's header", ctr)
		headers[h] = true
		i := slices.IndexFunc(cfg.Containers, func(a sidecarconfig.Container) bool { return a.Name == ctr })
		require.GreaterOrEqual(t, i, 0)
		assert.Equal(t, []string{id}, cfg.Containers[i].Identities)
		assert.Equal(t, sidecarconfig.HeaderSum(h), cfg.Containers[i].HeaderSHA256)
	}
	assert.Len(t, headers, 2, "each container must get its own header")
	assert.NotContains(t, envValue(containerNamed(t, out, names.SidecarContainerName), names.EnvSidecarConfig).Value, c.Secret)

	// Another admission's secret gives other headers: they are random per
	// pod, not a function of the pod spec alone.
	other, _, err := inject.Inject(&c.Pod, c.Identities, c.Config, c.Secret+"-other")
	require.NoError(t, err)
	assert.NotEqual(t, envValue(containerNamed(t, out, "my-app"), names.EnvIdentityHeader).Value,
		envValue(containerNamed(t, other, "my-app"), names.EnvIdentityHeader).Value)
}

// TestReinvocationKeepsInjectedValues: a second admission reads what was
// injected, not the pod's annotations, which a later webhook may have
// changed in between.
func TestReinvocationKeepsInjectedValues(t *testing.T) {
	for _, name := range []string{"seed-container-identities", "override-token", "override-sidecar-resources", "container-identities-default"} {
		t.Run(name, func(t *testing.T) {
			c := loadCase(t, name)
			out, _, err := c.Inject()
			require.NoError(t, err)
			changed := out.DeepCopy()
			maps.Copy(changed.Annotations, map[string]string{
				names.ContainerIdentitiesAnnotation:  "my-app=blob-reader",
				names.TokenAudienceAnnotation:        "api://changed",
				names.TokenExpirationAnnotation:      "700",
				names.SidecarMemoryRequestAnnotation: "100Mi",
			})
			again, res, err := inject.Inject(changed, c.Identities, c.Config, "a-later-admission-secret")
			require.NoError(t, err)
			assert.False(t, res.Changed, "a re-invocation changed the pod")
			assert.Empty(t, cmp.Diff(changed, again))
		})
	}
}

// TestIMDSRequiresHeaderSetting: the sidecar config requires the header
// on the IMDS path when the pod asks for it, and always with per-container
// identities, whose header-less requests could come from a container
// without an entry. A re-invocation keeps what was injected.
func TestIMDSRequiresHeaderSetting(t *testing.T) {
	tests := map[string]struct {
		name, value string // "" value: no annotation
		want        bool
	}{
		"pod-wide, default":          {"seed", "", false},
		"pod-wide, on":               {"seed", "true", true},
		"pod-wide, off":              {"seed", "false", false},
		"per-container, default":     {"seed-container-identities", "", true},
		"per-container, off ignored": {"seed-container-identities", "false", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := loadCase(t, tc.name)
			if tc.value != "" {
				if c.Pod.Annotations == nil {
					c.Pod.Annotations = map[string]string{}
				}
				c.Pod.Annotations[names.IMDSRequiresHeaderAnnotation] = tc.value
			}
			out, _, err := c.Inject()
			require.NoError(t, err)
			assert.Equal(t, tc.want, sidecarConfigOf(t, out).IMDSRequiresHeader)

			changed := out.DeepCopy()
			changed.Annotations[names.IMDSRequiresHeaderAnnotation] = map[bool]string{true: "false", false: "true"}[tc.want]
			again, res, err := inject.Inject(changed, c.Identities, c.Config, "a-later-admission-secret")
			require.NoError(t, err)
			assert.False(t, res.Changed, "a re-invocation changed the pod")
			assert.Equal(t, tc.want, sidecarConfigOf(t, again).IMDSRequiresHeader)
		})
	}
}

// TestPerContainerLateContainer: a container added after a per-container
// injection has no header the sidecar knows, so it gets no environment,
// and the user is told why.
func TestPerContainerLateContainer(t *testing.T) {
	c := loadCase(t, "seed-container-identities")
	out, _, err := c.Inject()
	require.NoError(t, err)
	out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: "late", Image: "late"})
	again, res, err := inject.Inject(out, c.Identities, c.Config, "a-later-admission-secret")
	require.NoError(t, err)
	assert.False(t, res.Changed)
	assert.Empty(t, containerNamed(t, again, "late").Env)
	assert.Contains(t, res.Warnings, `pod default/my-app-7c9d8b6f5-: container "late" gets no identity environment: the sidecar was injected with per-container identities (`+
		names.ContainerIdentitiesAnnotation+`) before the container was added, so it has no IDENTITY_HEADER of its own; recreate the pod with the container in it`)
}

func TestOverrideAndContainerIdentityErrors(t *testing.T) {
	seed := loadCase(t, "seed-container-identities")
	withAnnotations := func(kv ...string) *corev1.Pod {
		p := seed.Pod.DeepCopy()
		p.Annotations = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			p.Annotations[kv[i]] = kv[i+1]
		}
		return p
	}
	shared := withAnnotations(names.ContainerIdentitiesAnnotation, "data-init=blob-reader",
		// The opt-out of the shared-process-namespace deny does not lift
		// this one.
		names.AllowSharedProcessNamespaceAnnotation, "true")
	shared.Spec.ShareProcessNamespace = ptrTo(true)
	tests := map[string]struct {
		pod     *corev1.Pod
		wantErr error
		wantMsg []string
	}{
		"audience with a space": {withAnnotations(names.TokenAudienceAnnotation, "api://a b"), inject.ErrBadOverride,
			[]string{`metadata.annotations["podidentity.github.io/token-audience"] is "api://a b"`, "1-253 printable ASCII characters"}},
		"empty audience": {withAnnotations(names.TokenAudienceAnnotation, " "), inject.ErrBadOverride,
			[]string{names.TokenAudienceAnnotation, "default api://AzureADTokenExchange"}},
		"expiration below 600": {withAnnotations(names.TokenExpirationAnnotation, "599"), inject.ErrBadOverride,
			[]string{`metadata.annotations["podidentity.github.io/token-expiration"] is "599"`, "from 600 to 86400"}},
		"expiration above a day": {withAnnotations(names.TokenExpirationAnnotation, "86401"), inject.ErrBadOverride,
			[]string{names.TokenExpirationAnnotation, "from 600 to 86400"}},
		"expiration with a unit": {withAnnotations(names.TokenExpirationAnnotation, "1h"), inject.ErrBadOverride,
			[]string{names.TokenExpirationAnnotation, "whole number of seconds"}},
		"cpu request not a quantity": {withAnnotations(names.SidecarCPURequestAnnotation, "lots"), inject.ErrBadOverride,
			[]string{`metadata.annotations["podidentity.github.io/sidecar-cpu-request"] is "lots"`, "cpu quantity from 1m to 2"}},
		"cpu limit too large": {withAnnotations(names.SidecarCPULimitAnnotation, "3"), inject.ErrBadOverride,
			[]string{names.SidecarCPULimitAnnotation, "from 1m to 2"}},
		"memory request too small": {withAnnotations(names.SidecarMemoryRequestAnnotation, "1Mi"), inject.ErrBadOverride,
			[]string{names.SidecarMemoryRequestAnnotation, "memory quantity from 8Mi to 1Gi"}},
		"memory limit negative": {withAnnotations(names.SidecarMemoryLimitAnnotation, "-64Mi"), inject.ErrBadOverride,
			[]string{names.SidecarMemoryLimitAnnotation, "from 8Mi to 1Gi"}},
		"request above the operator's limit": {withAnnotations(names.SidecarMemoryRequestAnnotation, "100Mi"), inject.ErrBadOverride,
			[]string{"memory request 100Mi", `(metadata.annotations["podidentity.github.io/sidecar-memory-request"])`, "above its limit 64Mi (the webhook's default)",
				"lower " + names.SidecarMemoryRequestAnnotation + " or raise " + names.SidecarMemoryLimitAnnotation}},
		"request above the annotated limit": {withAnnotations(names.SidecarCPURequestAnnotation, "500m", names.SidecarCPULimitAnnotation, "100m"), inject.ErrBadOverride,
			[]string{"cpu request 500m", "above its limit 100m", `(metadata.annotations["podidentity.github.io/sidecar-cpu-limit"])`}},
		"inject-containers names a missing container": {withAnnotations(names.InjectContainersAnnotation, "my-app;my-ap"), inject.ErrBadOverride,
			[]string{names.InjectContainersAnnotation, `the pod has no container "my-ap"`}},
		"inject-containers is empty": {withAnnotations(names.InjectContainersAnnotation, " ; "), inject.ErrBadOverride,
			[]string{names.InjectContainersAnnotation, "name at least one"}},
		"inject-containers names the sidecar": {withAnnotations(names.InjectContainersAnnotation, names.SidecarContainerName), inject.ErrBadOverride,
			[]string{`the pod has no container "pod-identity-sidecar"`}},
		"identity not bound": {withAnnotations(names.ContainerIdentitiesAnnotation, "data-init=blob-reader,my-app=admin"), inject.ErrContainerIdentities,
			[]string{`metadata.annotations["podidentity.github.io/container-identities"]`, `container "my-app" is given AzureIdentity "admin"`,
				`aadpodidbinding label "my-app" resolves to in namespace default (blob-reader, queue-writer)`}},
		"container does not exist": {withAnnotations(names.ContainerIdentitiesAnnotation, "data-init=blob-reader,myapp=queue-writer"), inject.ErrContainerIdentities,
			[]string{names.ContainerIdentitiesAnnotation, `the pod has no container "myapp"`, `"data-init", "my-app"`}},
		"container named twice": {withAnnotations(names.ContainerIdentitiesAnnotation, "my-app=blob-reader;my-app=queue-writer"), inject.ErrContainerIdentities,
			[]string{names.ContainerIdentitiesAnnotation, `container "my-app" is named twice`}},
		"entry without identity": {withAnnotations(names.ContainerIdentitiesAnnotation, "my-app"), inject.ErrContainerIdentities,
			[]string{names.ContainerIdentitiesAnnotation, `entry "my-app" is not container=identity`}},
		"nothing in it": {withAnnotations(names.ContainerIdentitiesAnnotation, ","), inject.ErrContainerIdentities,
			[]string{names.ContainerIdentitiesAnnotation, "want container=identity entries"}},
		"skipped container": {withAnnotations(names.ContainerIdentitiesAnnotation, "my-app=queue-writer", names.SkipContainersAnnotation, "my-app"), inject.ErrContainerIdentities,
			[]string{`container "my-app" gets no identity environment`}},
		"container not opted in": {withAnnotations(names.ContainerIdentitiesAnnotation, "my-app=queue-writer", names.InjectContainersAnnotation, "data-init"), inject.ErrContainerIdentities,
			[]string{`container "my-app" gets no identity environment`, names.InjectContainersAnnotation}},
		"imds-requires-header not a boolean": {withAnnotations(names.IMDSRequiresHeaderAnnotation, "yes please"), inject.ErrBadOverride,
			[]string{`metadata.annotations["podidentity.github.io/imds-requires-header"] is "yes please"`, `want "true" or "false"`}},
		"shared process namespace, even with the opt-out": {shared, inject.ErrContainerIdentities,
			[]string{names.ContainerIdentitiesAnnotation, "spec.shareProcessNamespace is true", "/proc/<pid>/environ", names.AllowSharedProcessNamespaceAnnotation + " does not lift this"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := tc.pod.DeepCopy()
			out, _, err := inject.Inject(tc.pod, seed.Identities, seed.Config, seed.Secret)
			require.Error(t, err)
			assert.Nil(t, out)
			assert.ErrorIs(t, err, tc.wantErr)
			assert.Contains(t, err.Error(), "pod default/my-app-7c9d8b6f5-")
			for _, part := range tc.wantMsg {
				assert.Contains(t, err.Error(), part)
			}
			assert.Empty(t, cmp.Diff(before, tc.pod), "a failed Inject modified its input")
		})
	}
}

// TestSharedProcessNamespaceAfterInjection: a later webhook that shares the
// process namespace of a pod with per-container identities is refused.
func TestSharedProcessNamespaceAfterInjection(t *testing.T) {
	c := loadCase(t, "seed-container-identities")
	out, _, err := c.Inject()
	require.NoError(t, err)
	out.Spec.ShareProcessNamespace = ptrTo(true)
	_, _, err = inject.Inject(out, c.Identities, c.Config, "later")
	assert.ErrorIs(t, err, inject.ErrContainerIdentities)
}

// TestPerContainerSidecarWithPodWideHeader: a sidecar whose config has a
// per-container table and also a pod-wide header is not one the webhook
// wrote, since that header would open every identity.
func TestPerContainerSidecarWithPodWideHeader(t *testing.T) {
	c := loadCase(t, "seed-container-identities")
	out, _, err := c.Inject()
	require.NoError(t, err)
	sc, _ := sidecarOf(t, out)
	sc.Env = append(sc.Env, corev1.EnvVar{Name: names.EnvIdentityHeader, Value: "opens-everything"})
	_, _, err = inject.Inject(out, c.Identities, c.Config, "later")
	assert.ErrorIs(t, err, inject.ErrNameConflict)
	assert.ErrorContains(t, err, "pod-wide IDENTITY_HEADER beside per-container headers")
}

// TestClusterTokenDefaults: the webhook's --token-audience and
// --token-expiration-seconds are the defaults of every pod's projected
// token, which a pod's annotations still override, and re-invocation reads
// them back rather than reverting to the built-in defaults.
func TestClusterTokenDefaults(t *testing.T) {
	c := loadCase(t, "seed")
	c.Config.TokenAudience, c.Config.TokenExpirationSeconds = "api://AzureADTokenExchangeChina", 7200
	out, _, err := c.Inject()
	require.NoError(t, err)
	var got *corev1.ServiceAccountTokenProjection
	for _, v := range out.Spec.Volumes {
		if v.Name == names.TokenVolumeName {
			got = v.Projected.Sources[0].ServiceAccountToken
		}
	}
	require.NotNil(t, got)
	assert.Equal(t, "api://AzureADTokenExchangeChina", got.Audience)
	assert.Equal(t, int64(7200), *got.ExpirationSeconds)

	again, res, err := inject.Inject(out, c.Identities, c.Config, c.Secret)
	require.NoError(t, err)
	assert.False(t, res.Changed, "idempotent with the cluster's defaults")
	assert.Equal(t, out, again)

	if c.Pod.Annotations == nil {
		c.Pod.Annotations = map[string]string{}
	}
	c.Pod.Annotations[names.TokenAudienceAnnotation] = "api://per-pod"
	out, _, err = c.Inject()
	require.NoError(t, err)
	for _, v := range out.Spec.Volumes {
		if v.Name == names.TokenVolumeName {
			assert.Equal(t, "api://per-pod", v.Projected.Sources[0].ServiceAccountToken.Audience, "the pod's annotation wins")
		}
	}

	c.Config.TokenExpirationSeconds = 60
	_, _, err = c.Inject()
	assert.ErrorIs(t, err, inject.ErrInvalidConfig)
}
