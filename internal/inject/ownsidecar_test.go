package inject_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/inject/injecttest"
	"github.com/podidentity/injector/internal/names"
)

// mirrorVolume is what an image-mirror webhook might mount into every
// container: its CA bundle.
var mirrorVolume = corev1.Volume{Name: "mirror-ca", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}

// TestOwnSidecarToleratesOtherWebhooks: another mutating webhook, ordered
// before or after this one, may change every field of the injected sidecar
// that this webhook does not own; re-invocation then leaves the pod as it
// is, the other webhook's changes included.
func TestOwnSidecarToleratesOtherWebhooks(t *testing.T) {
	seed := loadCase(t, "seed")
	tests := map[string]func(p *corev1.Pod, sc *corev1.Container){
		"registry rewritten by an image mirror": func(_ *corev1.Pod, sc *corev1.Container) {
			sc.Image = "mirror.corp.example:5000/pod-identity-sidecar:v0.1.0"
		},
		"registry rewritten with a path prefix": func(_ *corev1.Pod, sc *corev1.Container) {
			sc.Image = "harbor.corp.example/proxy/pod-identity-sidecar:v0.1.0"
		},
		"tag pinned to a digest": func(_ *corev1.Pod, sc *corev1.Container) {
			sc.Image += "@sha256:" + sha('a')
		},
		"imagePullPolicy": func(_ *corev1.Pod, sc *corev1.Container) { sc.ImagePullPolicy = corev1.PullAlways },
		"an env var": func(_ *corev1.Pod, sc *corev1.Container) {
			sc.Env = append(sc.Env, corev1.EnvVar{Name: "HTTPS_PROXY", Value: "http://proxy.corp.example:3128"})
		},
		"envFrom": func(_ *corev1.Pod, sc *corev1.Container) {
			sc.EnvFrom = append(sc.EnvFrom, corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "proxy"}}})
		},
		"a volume mount, and its volume": func(p *corev1.Pod, sc *corev1.Container) {
			p.Spec.Volumes = append(p.Spec.Volumes, mirrorVolume)
			sc.VolumeMounts = append(sc.VolumeMounts, corev1.VolumeMount{Name: mirrorVolume.Name, MountPath: "/etc/mirror-ca", ReadOnly: true})
		},
		"a securityContext field": func(_ *corev1.Pod, sc *corev1.Container) {
			sc.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Type: "container_t"}
		},
		"a seccomp profile of the cluster's": func(_ *corev1.Pod, sc *corev1.Container) {
			sc.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptr.To("corp/default.json")}
		},
		"resources beyond CPU and memory": func(_ *corev1.Pod, sc *corev1.Container) {
			sc.Resources.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
		},
		"a memory limit outside the override annotation's range": func(_ *corev1.Pod, sc *corev1.Container) {
			sc.Resources.Limits[corev1.ResourceMemory] = resource.MustParse("4Gi")
		},
		"a preStop hook": func(_ *corev1.Pod, sc *corev1.Container) {
			sc.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}}
		},
		"probe timings": func(_ *corev1.Pod, sc *corev1.Container) { sc.LivenessProbe.TimeoutSeconds = 10 },
		"all of them at once": func(p *corev1.Pod, sc *corev1.Container) {
			sc.Image = "mirror.corp.example/pod-identity-sidecar:v0.1.0"
			sc.ImagePullPolicy = corev1.PullAlways
			sc.Env = append(sc.Env, corev1.EnvVar{Name: "HTTPS_PROXY", Value: "http://proxy.corp.example:3128"})
			p.Spec.Volumes = append(p.Spec.Volumes, mirrorVolume)
			sc.VolumeMounts = append(sc.VolumeMounts, corev1.VolumeMount{Name: mirrorVolume.Name, MountPath: "/etc/mirror-ca"})
			sc.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Type: "container_t"}
		},
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			golden, _, err := injecttest.LoadGolden(injecttest.Dir(), "seed")
			require.NoError(t, err)
			mutate(golden, &golden.Spec.InitContainers[0])
			out, res, err := inject.Inject(golden, seed.Identities, seed.Config, "another-secret-that-must-not-be-used")
			require.NoError(t, err)
			assert.False(t, res.Changed)
			assert.Empty(t, cmp.Diff(golden, out), "the other webhook's change must survive (-in +out)")
		})
	}
}

// TestOwnSidecarRefusesChangesToWhatItOwns: a change to a field that this
// webhook owns is refused, naming the change, whoever made it: a pod
// created from an injected pod's YAML and edited, or another webhook.
func TestOwnSidecarRefusesChangesToWhatItOwns(t *testing.T) {
	seed := loadCase(t, "seed")
	tests := map[string]struct {
		mutate  func(p *corev1.Pod, sc *corev1.Container)
		cfg     func(*inject.Config)
		wantMsg string
	}{
		"another repository": {
			mutate:  func(_ *corev1.Pod, sc *corev1.Container) { sc.Image = "attacker.example/sidecar:v0.1.0" },
			wantMsg: `its image "attacker.example/sidecar:v0.1.0" is not "registry.example/pod-identity-sidecar:v0.1.0" under any registry`,
		},
		"a repository that only ends like the webhook's": {
			mutate: func(_ *corev1.Pod, sc *corev1.Container) {
				sc.Image = "registry.example/evil-pod-identity-sidecar:v0.1.0"
			},
			wantMsg: `its image "registry.example/evil-pod-identity-sidecar:v0.1.0"`,
		},
		"another tag": {
			mutate:  func(_ *corev1.Pod, sc *corev1.Container) { sc.Image = "registry.example/pod-identity-sidecar:v9" },
			wantMsg: `its image "registry.example/pod-identity-sidecar:v9"`,
		},
		"no tag": {
			mutate:  func(_ *corev1.Pod, sc *corev1.Container) { sc.Image = "mirror.example/pod-identity-sidecar" },
			wantMsg: `its image "mirror.example/pod-identity-sidecar"`,
		},
		"another digest than the one the webhook pins": {
			cfg: func(c *inject.Config) {
				c.SidecarImage = "registry.example/pod-identity-sidecar:v0.1.0@sha256:" + sha('a')
			},
			mutate: func(_ *corev1.Pod, sc *corev1.Container) {
				sc.Image = "mirror.example/pod-identity-sidecar:v0.1.0@sha256:" + sha('b')
			},
			wantMsg: `its image "mirror.example/pod-identity-sidecar:v0.1.0@sha256:bbbb`,
		},
		"command": {
			mutate:  func(_ *corev1.Pod, sc *corev1.Container) { sc.Command = []string{"/bin/sh", "-c"} },
			wantMsg: `its command ["/bin/sh" "-c"] is not ["/pod-identity-sidecar"]`,
		},
		"args": {
			mutate: func(_ *corev1.Pod, sc *corev1.Container) {
				sc.Args = append(sc.Args, "--imds-endpoint=http://10.0.0.1")
			},
			wantMsg: `its args ["serve" "--imds-endpoint=http://10.0.0.1"] are not ["serve"]`,
		},
		"a second config entry, which wins over the first": {
			mutate: func(_ *corev1.Pod, sc *corev1.Container) {
				sc.Env = append(sc.Env, corev1.EnvVar{Name: names.EnvSidecarConfig, Value: "{}"})
			},
			wantMsg: `its env sets ` + names.EnvSidecarConfig + ` 2 times, where the webhook sets it once; the last one wins`,
		},
		"a second IDENTITY_HEADER entry": {
			mutate: func(_ *corev1.Pod, sc *corev1.Container) {
				sc.Env = append(sc.Env, corev1.EnvVar{Name: names.EnvIdentityHeader, Value: "known"})
			},
			wantMsg: `its env sets ` + names.EnvIdentityHeader + ` 2 times`,
		},
		"the token mount removed": {
			mutate: func(_ *corev1.Pod, sc *corev1.Container) {
				sc.VolumeMounts = withoutMount(sc.VolumeMounts, names.TokenVolumeName)
			},
			wantMsg: `its volumeMount "pod-identity-token" at ` + names.TokenMountPath + ` is missing or differs`,
		},
		"the token mount made writable": {
			mutate:  func(_ *corev1.Pod, sc *corev1.Container) { mountOf(sc, names.TokenVolumeName).ReadOnly = false },
			wantMsg: `its volumeMount "pod-identity-token" at ` + names.TokenMountPath + ` is missing or differs`,
		},
		"the mount that keeps the API token out, moved": {
			mutate: func(_ *corev1.Pod, sc *corev1.Container) {
				mountOf(sc, names.NoAPITokenVolumeName).MountPath = "/elsewhere"
			},
			wantMsg: `its volumeMount "pod-identity-no-api-token" at ` + names.APITokenMountPath + ` is missing or differs`,
		},
		"a mount over the token file": {
			mutate: func(p *corev1.Pod, sc *corev1.Container) {
				p.Spec.Volumes = append(p.Spec.Volumes, mirrorVolume)
				sc.VolumeMounts = append(sc.VolumeMounts, corev1.VolumeMount{Name: mirrorVolume.Name, MountPath: names.TokenMountPath + "/" + names.TokenFileName})
			},
			wantMsg: `its volumeMount "mirror-ca" at ` + names.TokenMountPath + "/" + names.TokenFileName + ` lies inside the webhook's mount "pod-identity-token"`,
		},
		"the token volume changed": {
			mutate: func(p *corev1.Pod, _ *corev1.Container) {
				for i := range p.Spec.Volumes {
					if p.Spec.Volumes[i].Name == names.TokenVolumeName {
						p.Spec.Volumes[i].Projected.Sources[0].ServiceAccountToken.Path = "other"
					}
				}
			},
			wantMsg: `spec.volumes[2] ("pod-identity-token") differs`,
		},
		"no longer a native sidecar": {
			mutate:  func(_ *corev1.Pod, sc *corev1.Container) { sc.RestartPolicy = nil },
			wantMsg: `its restartPolicy is not Always, which makes it a native sidecar`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := seed.Config
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			injected, _, err := inject.Inject(&seed.Pod, seed.Identities, cfg, seed.Secret)
			require.NoError(t, err)
			tc.mutate(injected, &injected.Spec.InitContainers[0])
			out, _, err := inject.Inject(injected, seed.Identities, cfg, "another-secret-that-must-not-be-used")
			require.ErrorIs(t, err, inject.ErrNameConflict)
			assert.Nil(t, out)
			assert.Contains(t, err.Error(), `pod default/my-app-7c9d8b6f5-: spec.initContainers[0] (container "pod-identity-sidecar") is not the token sidecar this webhook would inject: `+tc.wantMsg)
			assert.Contains(t, err.Error(), "remove that container from the pod")
		})
	}
}

// sha is a sha256 digest of 64 times c.
func sha(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

// mountOf is c's mount of the volume name, or fails.
func mountOf(c *corev1.Container, name string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	panic("no mount " + name)
}

// withoutMount is mounts less the mount of the volume name.
func withoutMount(mounts []corev1.VolumeMount, name string) []corev1.VolumeMount {
	var out []corev1.VolumeMount
	for _, m := range mounts {
		if m.Name != name {
			out = append(out, m)
		}
	}
	return out
}
