//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/internal/names"
)

// The mirror webhook's changes to the token sidecar.
const (
	mirrorRegistry = "mirror.e2e.test"
	mirrorEnv      = "MIRROR_HTTPS_PROXY"
	mirrorVolume   = "mirror-ca"
	mirrorMount    = "/etc/mirror-ca"
	mirrorSELinux  = "container_t"
)

// sidecarMirror is a second mutating webhook, of the kind clusters run: it
// rewrites the token sidecar's image to a mirror registry and sets its pull
// policy, a proxy env var, a CA mount (and its volume) and an SELinux type.
type sidecarMirror struct {
	// mutated counts the admissions in which it changed the sidecar.
	mutated atomic.Int32
}

// mutate changes pod's sidecar, and reports whether there was one to
// change: on the first pass, before this project's webhook, there is none.
func (m *sidecarMirror) mutate(pod *corev1.Pod) bool {
	i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == names.SidecarContainerName })
	if i < 0 {
		return false
	}
	sc := &pod.Spec.InitContainers[i]
	if strings.HasPrefix(sc.Image, mirrorRegistry+"/") {
		return false
	}
	_, rest, _ := strings.Cut(sc.Image, "/")
	sc.Image = mirrorRegistry + "/" + rest
	sc.ImagePullPolicy = corev1.PullAlways
	sc.Env = append(sc.Env, corev1.EnvVar{Name: mirrorEnv, Value: "http://proxy.e2e.test:3128"})
	sc.VolumeMounts = append(sc.VolumeMounts, corev1.VolumeMount{Name: mirrorVolume, MountPath: mirrorMount, ReadOnly: true})
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: mirrorVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	if sc.SecurityContext == nil {
		sc.SecurityContext = &corev1.SecurityContext{}
	}
	sc.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Type: mirrorSELinux}
	return true
}

// start serves the mirror on loopback over TLS and registers it as
// MutatingWebhookConfiguration configName, for labelled pods of namespace
// only, with reinvocationPolicy IfNeeded. The API server orders webhook
// configurations by name, so configName places it before or after
// manifests/' pod-identity-injector.
func (m *sidecarMirror) start(t *testing.T, configName, namespace string) {
	t.Helper()
	mwc := registerOtherWebhook(t, configName, "sidecar-mirror.e2e.test", namespace, admissionregistrationv1.IfNeededReinvocationPolicy,
		func(pod *corev1.Pod) bool {
			if !m.mutate(pod) {
				return false
			}
			m.mutated.Add(1)
			return true
		})
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), mwc) })
	// Wait until the API server calls it: a dry run comes back mirrored.
	require.Eventually(t, func() bool {
		p := labelledPod(namespace, "probe-mirror", "app")
		if err := env.Client.Create(context.Background(), p, dryRun); err != nil {
			return false
		}
		sc, err := webhookenv.Container(p, names.SidecarContainerName)
		return err == nil && strings.HasPrefix(sc.Image, mirrorRegistry+"/")
	}, waitLong, waitTick, "the API server calls the mirror webhook")
}

// TestAnotherWebhookMutatesTheSidecar: a second real mutating webhook that
// rewrites the sidecar's registry and sets its pull policy, an env var, a
// mount and a securityContext field, ordered before and after this
// project's webhook (both with reinvocationPolicy IfNeeded), does not get
// the pod denied: it is admitted with both webhooks' changes, and the
// sidecar keeps this webhook's command, args and config.
func TestAnotherWebhookMutatesTheSidecar(t *testing.T) {
	for _, tc := range []struct {
		name, config, clientID string
		// reinvoked: this webhook runs again after the mirror, and must
		// accept the mirrored sidecar as its own.
		reinvoked bool
	}{
		// "aa-..." sorts before "pod-identity-injector", "zz-..." after.
		{name: "before", config: "aa-e2e-sidecar-mirror", clientID: "77777777-0000-0000-0000-000000000001"},
		{name: "after", config: "zz-e2e-sidecar-mirror", clientID: "77777777-0000-0000-0000-000000000002", reinvoked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			ns := "mirror-" + tc.name
			createNamespace(t, ns, true)
			bindIdentity(t, ns, tc.clientID)
			var mirror sidecarMirror
			mirror.start(t, tc.config, ns)
			unchanged := fmt.Sprintf(`pod_identity_injector_decisions_total{outcome="unchanged",pod_namespace=%q}`, ns)
			before, _ := env.Metric(unchanged)
			mutatedBefore := mirror.mutated.Load()

			p := labelledPod(ns, "mirrored", "app")
			require.NoError(t, env.Client.Create(ctx, p), "the pod is admitted")
			assert.Greater(t, mirror.mutated.Load(), mutatedBefore, "the mirror webhook changed the sidecar of this pod")
			if tc.reinvoked {
				after, err := env.Metric(unchanged)
				require.NoError(t, err)
				assert.Greater(t, after, before, "this webhook ran again after the mirror, and found its sidecar as it left it")
			}

			sc, err := webhookenv.Container(p, names.SidecarContainerName)
			require.NoError(t, err)
			// The mirror's changes.
			assert.Equal(t, mirrorRegistry+"/podidentity/pod-identity-sidecar:e2e", sc.Image)
			assert.Equal(t, corev1.PullAlways, sc.ImagePullPolicy)
			_, n := envValue(sc, mirrorEnv)
			assert.Equal(t, 1, n, "the mirror's env var")
			assert.True(t, slices.ContainsFunc(sc.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == mirrorVolume && m.MountPath == mirrorMount }))
			assert.True(t, slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == mirrorVolume }))
			require.NotNil(t, sc.SecurityContext)
			require.NotNil(t, sc.SecurityContext.SELinuxOptions)
			assert.Equal(t, mirrorSELinux, sc.SecurityContext.SELinuxOptions.Type)
			// This webhook's own, once.
			assert.Equal(t, names.SidecarContainerName, p.Spec.InitContainers[0].Name, "the native sidecar comes first")
			assert.Equal(t, []string{names.SidecarBinary}, sc.Command)
			assert.Equal(t, []string{names.SidecarServeCommand}, sc.Args)
			cfg, n := envValue(sc, names.EnvSidecarConfig)
			assert.Equal(t, 1, n)
			assert.Contains(t, cfg, `"`+tc.clientID+`"`, "the config names the namespace's identity")
			assert.True(t, slices.ContainsFunc(sc.VolumeMounts, func(m corev1.VolumeMount) bool {
				return m.Name == names.TokenVolumeName && m.MountPath == names.TokenMountPath && m.ReadOnly
			}))
			assert.Equal(t, ptr.To(true), sc.SecurityContext.RunAsNonRoot, "the mirror left the rest of the securityContext")
			for _, v := range []string{names.EnvIdentityEndpoint, names.EnvIdentityHeader, names.EnvAzureClientID} {
				_, n := envValue(&p.Spec.Containers[0], v)
				assert.Equal(t, 1, n, "the app has %s once", v)
			}
			assert.NotEmpty(t, p.Annotations[names.InjectedAnnotation])
		})
	}
}
