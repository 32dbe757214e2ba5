package inject_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/inject/injecttest"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// loadCase loads a golden case or fails the test.
func loadCase(t testing.TB, name string) *injecttest.Case {
	t.Helper()
	c, err := injecttest.Load(injecttest.Dir(), name)
	require.NoError(t, err)
	return c
}

// identityEnv are the variables Inject gives every app and init container.
var identityEnv = []string{
	names.EnvIdentityEndpoint, names.EnvIdentityHeader, names.EnvAzureClientID,
	names.EnvAuthorityHost, names.EnvAzcopyAutoLoginType, names.EnvAzcopyMSIClientID,
}

func TestRequiredCasesExist(t *testing.T) {
	cases, err := injecttest.Names(injecttest.Dir())
	require.NoError(t, err)
	for _, want := range []string{
		"seed", "two-identities-weights", "type1-secret", "type2-certificate", "imds-source",
		"skip-containers", "user-set-client-id", "already-injected", "pre-1.29",
		"container-added-after-injection", "custom-port-annotation", "seed-container-identities",
		"container-identities-default", "override-token", "override-sidecar-resources", "inject-containers",
	} {
		assert.Contains(t, cases, want)
	}
}

// The derived cases are only meaningful while they start from the seed's
// current output.
func TestDerivedCasesStartFromSeedGolden(t *testing.T) {
	seedGolden, _, err := injecttest.LoadGolden(injecttest.Dir(), "seed")
	require.NoError(t, err)

	already := loadCase(t, "already-injected")
	assert.Empty(t, cmp.Diff(seedGolden, &already.Pod), "already-injected.yaml's pod must be seed.golden.yaml (-seed golden +input)")

	added := loadCase(t, "container-added-after-injection")
	trimmed := added.Pod.DeepCopy()
	trimmed.Spec.Containers = slices.DeleteFunc(trimmed.Spec.Containers, func(c corev1.Container) bool { return c.Name == "late-app" })
	trimmed.Spec.InitContainers = slices.DeleteFunc(trimmed.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "late-init" })
	assert.Empty(t, cmp.Diff(seedGolden, trimmed), "container-added-after-injection.yaml must be seed.golden.yaml plus late-app and late-init")
}

// TestCaseProperties checks, on every golden case, the promises that a
// golden file alone would not make obvious.
func TestCaseProperties(t *testing.T) {
	dir := injecttest.Dir()
	cases, err := injecttest.Names(dir)
	require.NoError(t, err)
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			c := loadCase(t, name)
			out, res, err := c.Inject()
			require.NoError(t, err)

			// The sidecar is there once, first in its list, and its config
			// parses and names the default identity.
			sc, list := sidecarOf(t, out)
			assert.Equal(t, names.SidecarContainerName, list[0].Name, "the sidecar must come first")
			cfgEnv := envValue(sc, names.EnvSidecarConfig)
			require.NotNil(t, cfgEnv)
			parsed, err := sidecarconfig.Parse([]byte(cfgEnv.Value))
			require.NoError(t, err)
			assert.Equal(t, res.DefaultIdentity, parsed.DefaultIdentity)
			assert.True(t, slices.IsSortedFunc(parsed.Identities, func(a, b sidecarconfig.Identity) int { return strings.Compare(a.Name, b.Name) }))
			header := envValue(sc, names.EnvIdentityHeader)
			perContainer := len(parsed.Containers) > 0
			if perContainer {
				assert.Nil(t, header, "with per-container identities the sidecar must hold no pod-wide header")
			} else {
				require.NotNil(t, header)
			}
			port := "http://127.0.0.1:" + strconv.Itoa(parsed.Port)

			// Only the sidecar mounts credentials.
			credVolumes := map[string]bool{}
			for _, v := range out.Spec.Volumes {
				if v.Name == names.TokenVolumeName || strings.HasPrefix(v.Name, names.SecretVolumePrefix) {
					credVolumes[v.Name] = true
				}
			}
			// Besides credentials, the sidecar mounts only the empty volume
			// that keeps the Kubernetes API token out of it.
			noAPIToken := 0
			for _, m := range sc.VolumeMounts {
				if m.Name == names.NoAPITokenVolumeName {
					assert.Equal(t, names.APITokenMountPath, m.MountPath)
					noAPIToken++
				} else {
					assert.True(t, credVolumes[m.Name], "sidecar mounts %q, which is not a credential volume", m.Name)
				}
				assert.True(t, m.ReadOnly, "sidecar mount %q must be read-only", m.Name)
			}
			assert.Equal(t, 1, noAPIToken, "the sidecar shadows the API token mount path once")
			in := map[string]*corev1.Container{}
			for _, cs := range [][]corev1.Container{c.Pod.Spec.InitContainers, c.Pod.Spec.Containers} {
				for i := range cs {
					in[cs[i].Name] = &cs[i]
				}
			}
			skipped := skipped(out)
			for _, ctr := range append(slices.Clone(out.Spec.InitContainers), out.Spec.Containers...) {
				if ctr.Name == names.SidecarContainerName {
					continue
				}
				for _, m := range ctr.VolumeMounts {
					assert.False(t, credVolumes[m.Name], "container %q mounts credential volume %q", ctr.Name, m.Name)
				}
				orig := in[ctr.Name]
				// The webhook never adds the variables of other credential
				// kinds (azure-workload-identity's may be there already).
				for _, n := range []string{"MSI_ENDPOINT", "AZURE_FEDERATED_TOKEN_FILE"} {
					assert.Equal(t, countEnv(envOf(orig), n), countEnv(ctr.Env, n), "container %q got %s", ctr.Name, n)
				}
				for _, n := range identityEnv {
					count := countEnv(ctr.Env, n)
					switch {
					case skipped[ctr.Name]:
						assert.Equal(t, countEnv(envOf(orig), n), count, "skipped container %q got %s", ctr.Name, n)
					case orig != nil && countEnv(orig.Env, n) > 0:
						assert.Equal(t, countEnv(orig.Env, n), count, "container %q: user's %s was touched", ctr.Name, n)
						assert.Equal(t, *envValue(orig, n), *envValue(&ctr, n), "container %q: user's %s was overwritten", ctr.Name, n)
					default:
						assert.Equal(t, 1, count, "container %q must have %s once", ctr.Name, n)
					}
				}
				if skipped[ctr.Name] {
					continue
				}
				// Every container that was given the header has the sidecar's,
				// or with per-container identities one the sidecar has the sum of.
				if perContainer {
					h := envValue(&ctr, names.EnvIdentityHeader)
					require.NotNil(t, h, "container %q", ctr.Name)
					i := slices.IndexFunc(parsed.Containers, func(a sidecarconfig.Container) bool { return a.Name == ctr.Name })
					require.GreaterOrEqual(t, i, 0, "container %q has no entry in the sidecar's table", ctr.Name)
					assert.Equal(t, parsed.Containers[i].HeaderSHA256, sidecarconfig.HeaderSum(h.Value), "container %q", ctr.Name)
				} else if orig == nil || countEnv(orig.Env, names.EnvIdentityHeader) == 0 {
					assert.Equal(t, *header, *envValue(&ctr, names.EnvIdentityHeader), "container %q", ctr.Name)
				}
				if orig == nil || countEnv(orig.Env, names.EnvAuthorityHost) == 0 {
					assert.Equal(t, port, envValue(&ctr, names.EnvAuthorityHost).Value, "container %q", ctr.Name)
				}
			}
		})
	}
}

func TestInjectDoesNotModifyInput(t *testing.T) {
	for _, name := range []string{"seed", "pre-1.29", "container-added-after-injection", "user-set-client-id"} {
		t.Run(name, func(t *testing.T) {
			c := loadCase(t, name)
			before := c.Pod.DeepCopy()
			out, _, err := c.Inject()
			require.NoError(t, err)
			assert.Empty(t, cmp.Diff(before, &c.Pod), "input changed")
			// The output shares no memory with the input either.
			if len(out.Spec.Containers) > 0 {
				out.Spec.Containers[len(out.Spec.Containers)-1].Env = append(out.Spec.Containers[len(out.Spec.Containers)-1].Env, corev1.EnvVar{Name: "X"})
				out.Annotations["x"] = "y"
			}
			assert.Empty(t, cmp.Diff(before, &c.Pod), "input shares memory with the output")
		})
	}
}

func TestInjectIsDeterministic(t *testing.T) {
	c := loadCase(t, "two-identities-weights")
	first, _, err := c.Inject()
	require.NoError(t, err)
	// The order of the identities must not matter.
	slices.Reverse(c.Identities)
	second, _, err := c.Inject()
	require.NoError(t, err)
	assert.Empty(t, cmp.Diff(first, second))
}

func TestInjectErrors(t *testing.T) {
	seed := loadCase(t, "seed")
	withPod := func(mutate func(*corev1.Pod)) *corev1.Pod {
		p := seed.Pod.DeepCopy()
		mutate(p)
		return p
	}
	tests := []struct {
		name    string
		pod     *corev1.Pod
		ids     []inject.Identity
		cfg     func(*inject.Config)
		secret  string
		wantErr error
		// wantMsg are parts the user-facing message must contain.
		wantMsg []string
	}{
		{
			name:    "hostNetwork",
			pod:     withPod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
			wantErr: inject.ErrHostNetwork,
			wantMsg: []string{"pod default/my-app-7c9d8b6f5-", "spec.hostNetwork", "every pod on the node", "without hostNetwork"},
		},
		{
			name:    "Windows by spec.os.name",
			pod:     withPod(func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }),
			wantErr: inject.ErrWindowsPod,
			wantMsg: []string{"pod default/my-app-7c9d8b6f5-", "spec.os.name is windows", "Linux image", "run the workload on Linux nodes", names.BindingLabel},
		},
		{
			name:    "Windows by nodeSelector",
			pod:     withPod(func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{corev1.LabelOSStable: "windows"} }),
			wantErr: inject.ErrWindowsPod,
			wantMsg: []string{`spec.nodeSelector["kubernetes.io/os"] is windows`, "Linux image", "remove its " + names.BindingLabel + " label"},
		},
		{
			name: "legacy token-port annotation is read, and named in the error",
			pod: withPod(func(p *corev1.Pod) {
				p.Annotations = map[string]string{names.LegacyKey(names.TokenPortAnnotation): "http"}
			}),
			wantErr: inject.ErrBadPortAnnotation,
			wantMsg: []string{`metadata.annotations["aadpodidentity.k8s.io/token-port"]`, `"http"`},
		},
		{
			name: "port collision in a container",
			pod: withPod(func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 8181}}
			}),
			wantErr: inject.ErrPortCollision,
			wantMsg: []string{"spec.containers[0].ports[1].containerPort", `"my-app"`, "8181", names.TokenPortAnnotation},
		},
		{
			name: "port collision in an init container",
			pod: withPod(func(p *corev1.Pod) {
				p.Spec.InitContainers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8181, Protocol: corev1.ProtocolTCP}}
			}),
			wantErr: inject.ErrPortCollision,
			wantMsg: []string{"spec.initContainers[0].ports[0].containerPort", `"data-init"`, names.TokenPortAnnotation},
		},
		{
			name: "port collision through a probe",
			pod: withPod(func(p *corev1.Pod) {
				p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8181)},
				}}
			}),
			wantErr: inject.ErrPortCollision,
			wantMsg: []string{"spec.containers[0].livenessProbe.tcpSocket.port"},
		},
		{
			name: "port collision with the annotated port",
			pod: withPod(func(p *corev1.Pod) {
				p.Annotations = map[string]string{names.TokenPortAnnotation: "9000"}
				p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9000}}
			}),
			wantErr: inject.ErrPortCollision,
			// The clash comes from the annotation itself: say which port
			// clashes with which container, not "set the annotation".
			wantMsg: []string{`metadata.annotations["` + names.TokenPortAnnotation + `"] is 9000, which container "my-app" already uses in spec.containers[0].ports[0].containerPort`,
				"change the annotation to a port in 1024-65535 that no container declares"},
		},
		{
			name: "a user IDENTITY_HEADER",
			pod: withPod(func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: names.EnvIdentityHeader, Value: "mine"})
			}),
			wantErr: inject.ErrUserIdentityHeader,
			wantMsg: []string{`spec.containers[0].env[0] of container "my-app": container sets IDENTITY_HEADER`, "generates this header per pod", names.SkipContainersAnnotation},
		},
		{
			name: "pod-level requests leave no room for the sidecar",
			pod: withPod(func(p *corev1.Pod) {
				p.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
				p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
			}),
			wantErr: inject.ErrPodResources,
			wantMsg: []string{`spec.resources.requests["cpu"] is 100m, but with the token sidecar the containers request 110m of cpu in total`,
				`raise spec.resources.requests["cpu"] by at least 10m, to 110m`},
		},
		{
			name: "pod-level memory limit without a request",
			pod: withPod(func(p *corev1.Pod) {
				p.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}
				p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("60Mi")}
			}),
			wantErr: inject.ErrPodResources,
			wantMsg: []string{`spec.resources.limits["memory"] is 64Mi`, "76Mi of memory", "by at least 12Mi"},
		},
		{
			name: "pod-level limit below the sidecar's limit, sidecar as a regular container",
			pod: withPod(func(p *corev1.Pod) {
				p.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}, Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}}
			}),
			cfg:     func(c *inject.Config) { c.NativeSidecar = false },
			wantErr: inject.ErrPodResources,
			wantMsg: []string{`spec.resources.limits["memory"] is 32Mi, below the token sidecar's limit of 64Mi`},
		},
		{
			name: "a sidecar the webhook did not write: other image",
			pod: func() *corev1.Pod {
				golden, _, err := injecttest.LoadGolden(injecttest.Dir(), "seed")
				require.NoError(t, err)
				golden.Spec.InitContainers[0].Image = "attacker.example/sidecar"
				return golden
			}(),
			wantErr: inject.ErrNameConflict,
			wantMsg: []string{`spec.initContainers[0] (container "pod-identity-sidecar") is not the token sidecar this webhook would inject: its image "attacker.example/sidecar" is not "registry.example/pod-identity-sidecar:v0.1.0" under any registry`, "remove that container"},
		},
		{
			name: "a sidecar the webhook did not write: other identities",
			pod: func() *corev1.Pod {
				golden, _, err := injecttest.LoadGolden(injecttest.Dir(), "seed")
				require.NoError(t, err)
				return golden
			}(),
			ids: []inject.Identity{{Identity: sidecarconfig.Identity{
				Name: "other", Namespace: "default", Source: names.TokenSourceFederated, ClientID: "c", TenantID: "t",
			}}},
			wantErr: inject.ErrNameConflict,
			wantMsg: []string{names.EnvSidecarConfig + " differs from what the pod's bindings and token port give now"},
		},
		{
			name: "a sidecar the webhook did not write: its token volume differs",
			pod: func() *corev1.Pod {
				golden, _, err := injecttest.LoadGolden(injecttest.Dir(), "seed")
				require.NoError(t, err)
				for i := range golden.Spec.Volumes {
					if golden.Spec.Volumes[i].Name == names.TokenVolumeName {
						golden.Spec.Volumes[i].Projected.Sources[0].ServiceAccountToken.Path = "other"
					}
				}
				return golden
			}(),
			wantErr: inject.ErrNameConflict,
			wantMsg: []string{`("pod-identity-token") differs`},
		},
		{
			// The audience is read back from the pod (it may come from the
			// token-audience annotation), but must be one the annotation
			// could have asked for.
			name: "a sidecar the webhook did not write: its token audience is out of range",
			pod: func() *corev1.Pod {
				golden, _, err := injecttest.LoadGolden(injecttest.Dir(), "seed")
				require.NoError(t, err)
				for i := range golden.Spec.Volumes {
					if golden.Spec.Volumes[i].Name == names.TokenVolumeName {
						golden.Spec.Volumes[i].Projected.Sources[0].ServiceAccountToken.Audience = "api://a b"
					}
				}
				return golden
			}(),
			wantErr: inject.ErrNameConflict,
			wantMsg: []string{`the projected token's audience "api://a b" is not one ` + names.TokenAudienceAnnotation + ` allows`},
		},
		{
			name: "port collision after injection, by a container another webhook added",
			pod: func() *corev1.Pod {
				golden, _, err := injecttest.LoadGolden(injecttest.Dir(), "seed")
				require.NoError(t, err)
				golden.Spec.Containers = append(golden.Spec.Containers, corev1.Container{
					Name: "late", Ports: []corev1.ContainerPort{{ContainerPort: 8181}},
				})
				return golden
			}(),
			wantErr: inject.ErrPortCollision,
			wantMsg: []string{"spec.containers[1].ports[0].containerPort", `"late"`},
		},
		{
			name:    "bad port annotation",
			pod:     withPod(func(p *corev1.Pod) { p.Annotations = map[string]string{names.TokenPortAnnotation: "http"} }),
			wantErr: inject.ErrBadPortAnnotation,
			wantMsg: []string{`metadata.annotations["` + names.TokenPortAnnotation + `"]`, `"http"`, "1024-65535", "remove the annotation"},
		},
		{
			name:    "privileged port annotation",
			pod:     withPod(func(p *corev1.Pod) { p.Annotations = map[string]string{names.TokenPortAnnotation: "80"} }),
			wantErr: inject.ErrBadPortAnnotation,
			wantMsg: []string{`"80"`, "1024-65535"},
		},
		{
			name:    "port annotation out of range",
			pod:     withPod(func(p *corev1.Pod) { p.Annotations = map[string]string{names.TokenPortAnnotation: "70000"} }),
			wantErr: inject.ErrBadPortAnnotation,
			wantMsg: []string{`"70000"`},
		},
		{
			name:    "port annotation zero",
			pod:     withPod(func(p *corev1.Pod) { p.Annotations = map[string]string{names.TokenPortAnnotation: "0"} }),
			wantErr: inject.ErrBadPortAnnotation,
			wantMsg: []string{`"0"`},
		},
		{
			name:    "no identities",
			pod:     seed.Pod.DeepCopy(),
			ids:     []inject.Identity{},
			wantErr: inject.ErrNoIdentities,
			wantMsg: []string{"pod default/my-app-7c9d8b6f5-", names.BindingLabel},
		},
		{
			name:    "empty secret",
			pod:     seed.Pod.DeepCopy(),
			secret:  "-",
			wantErr: inject.ErrInvalidConfig,
			wantMsg: []string{names.EnvIdentityHeader},
		},
		{
			name:    "no sidecar image",
			pod:     seed.Pod.DeepCopy(),
			cfg:     func(c *inject.Config) { c.SidecarImage = "" },
			wantErr: inject.ErrInvalidConfig,
			wantMsg: []string{"sidecar image"},
		},
		{
			name: "identity without client ID",
			pod:  seed.Pod.DeepCopy(),
			ids: []inject.Identity{{Identity: sidecarconfig.Identity{
				Name: "broken", Namespace: "default", Source: names.TokenSourceFederated, TenantID: "t",
			}}},
			wantErr: inject.ErrInvalidIdentity,
			wantMsg: []string{`"broken"`, "clientID"},
		},
		{
			name: "identity name that is no object name",
			pod:  seed.Pod.DeepCopy(),
			ids: []inject.Identity{{Identity: sidecarconfig.Identity{
				Name: "../etc", Namespace: "default", Source: names.TokenSourceIMDS, ClientID: "c",
			}}},
			wantErr: inject.ErrInvalidIdentity,
			wantMsg: []string{"AzureIdentity default/../etc"},
		},
		{
			name: "secret identity without a Secret",
			pod:  seed.Pod.DeepCopy(),
			ids: []inject.Identity{{Identity: sidecarconfig.Identity{
				Name: "sp", Namespace: "default", Source: names.TokenSourceClientSecret, ClientID: "c", TenantID: "t",
			}}},
			wantErr: inject.ErrInvalidIdentity,
			wantMsg: []string{"AzureIdentity default/sp", "clientPassword"},
		},
		{
			name: "a user container with the sidecar's name",
			pod: withPod(func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: names.SidecarContainerName, Image: "mine"})
			}),
			wantErr: inject.ErrNameConflict,
			wantMsg: []string{"spec.containers[1]", names.EnvSidecarConfig, "rename"},
		},
		{
			name: "a user volume with the token volume's name",
			pod: withPod(func(p *corev1.Pod) {
				p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: names.TokenVolumeName})
			}),
			wantErr: inject.ErrNameConflict,
			wantMsg: []string{"spec.volumes[1]", names.TokenVolumeName, "rename"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ids := seed.Identities
			if tt.ids != nil {
				ids = tt.ids
			}
			cfg := seed.Config
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			secret := seed.Secret
			if tt.secret == "-" {
				secret = ""
			}
			before := tt.pod.DeepCopy()
			out, _, err := inject.Inject(tt.pod, ids, cfg, secret)
			require.Error(t, err)
			assert.Nil(t, out)
			assert.ErrorIs(t, err, tt.wantErr)
			for _, part := range tt.wantMsg {
				assert.Contains(t, err.Error(), part)
			}
			assert.Empty(t, cmp.Diff(before, tt.pod), "a failed Inject modified its input")
		})
	}
}

func TestInjectNilPod(t *testing.T) {
	_, _, err := inject.Inject(nil, loadCase(t, "seed").Identities, loadCase(t, "seed").Config, "s")
	assert.ErrorIs(t, err, inject.ErrInvalidConfig)
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		pod  func(t *testing.T) *corev1.Pod
		cfg  func(*inject.Config)
		want []string
		// count is the number of warnings when it is not 1.
		count int
	}{
		{
			name: "native sidecar, nothing to warn about",
			pod:  func(t *testing.T) *corev1.Pod { return loadCase(t, "seed").Pod.DeepCopy() },
		},
		{
			name: "pre-1.29 names the init containers",
			pod:  func(t *testing.T) *corev1.Pod { return loadCase(t, "seed").Pod.DeepCopy() },
			cfg:  func(c *inject.Config) { c.NativeSidecar = false },
			want: []string{`below 1.29`, `init containers cannot get tokens`, `init containers "data-init" will not get tokens`},
		},
		{
			name: "pre-1.29 without init containers still says so",
			pod: func(t *testing.T) *corev1.Pod {
				p := loadCase(t, "seed").Pod.DeepCopy()
				p.Spec.InitContainers = nil
				return p
			},
			cfg:  func(c *inject.Config) { c.NativeSidecar = false },
			want: []string{`init containers cannot get tokens`},
		},
		{
			name: "init container another webhook put before the native sidecar",
			pod: func(t *testing.T) *corev1.Pod {
				golden, _, err := injecttest.LoadGolden(injecttest.Dir(), "seed")
				require.NoError(t, err)
				golden.Spec.InitContainers = slices.Insert(golden.Spec.InitContainers, 0,
					corev1.Container{Name: "early"},
					corev1.Container{Name: "mesh", RestartPolicy: ptrTo(corev1.ContainerRestartPolicyAlways)})
				return golden
			},
			want: []string{`init containers "early" run before the token sidecar`},
		},
		{
			name: "skip-containers names a container the pod lacks",
			pod: func(t *testing.T) *corev1.Pod {
				p := loadCase(t, "seed").Pod.DeepCopy()
				p.Annotations = map[string]string{names.SkipContainersAnnotation: "my-app, myapp"}
				return p
			},
			want: []string{names.SkipContainersAnnotation, `"myapp"`, "spelling"},
		},
		{
			name: "envFrom and a container azure-workload-identity mutated",
			pod:  func(t *testing.T) *corev1.Pod { return loadCase(t, "envfrom-and-workload-identity").Pod.DeepCopy() },
			want: []string{
				// The user's own AZURE_CLIENT_ID is not the webhook's.
				`container "configured" has envFrom, and the webhook's env IDENTITY_ENDPOINT, IDENTITY_HEADER, AZURE_POD_IDENTITY_AUTHORITY_HOST, AZCOPY_AUTO_LOGIN_TYPE, AZCOPY_MSI_CLIENT_ID takes precedence over keys of the same name in its ConfigMaps and Secrets`,
				`containers "azwi" already have AZURE_FEDERATED_TOKEN_FILE from azure-workload-identity's webhook`,
				"DefaultAzureCredential tries workload identity before managed identity",
			},
			count: 2,
		},
		{
			name: "the legacy injected-identities annotation",
			pod: func(t *testing.T) *corev1.Pod {
				p := loadCase(t, "seed").Pod.DeepCopy()
				p.Annotations = map[string]string{names.LegacyKey(names.InjectedAnnotation): "default/old-identity"}
				return p
			},
			want: []string{`pod default/my-app-7c9d8b6f5-: metadata.annotations["aadpodidentity.k8s.io/injected-identities"] is "default/old-identity"`,
				"a legacy key that the webhook no longer reads or writes", `metadata.annotations["` + names.InjectedAnnotation + `"]`, "remove the legacy annotation"},
		},
		{
			name: "the legacy injected-identities annotation on a pod injected already",
			pod: func(t *testing.T) *corev1.Pod {
				golden, _, err := injecttest.LoadGolden(injecttest.Dir(), "seed")
				require.NoError(t, err)
				golden.Annotations[names.LegacyKey(names.InjectedAnnotation)] = "default/blob-reader"
				return golden
			},
			want: []string{`metadata.annotations["aadpodidentity.k8s.io/injected-identities"] is "default/blob-reader"`, "remove the legacy annotation"},
		},
		{
			name: "a user IDENTITY_ENDPOINT",
			pod: func(t *testing.T) *corev1.Pod {
				p := loadCase(t, "seed").Pod.DeepCopy()
				p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: names.EnvIdentityEndpoint, Value: "http://169.254.169.254/metadata/identity/oauth2/token"})
				return p
			},
			want: []string{`pod default/my-app-7c9d8b6f5-: container "my-app" sets IDENTITY_ENDPOINT itself, which wins over the webhook's http://127.0.0.1:8181/msi/token`,
				"not from the token sidecar", "remove IDENTITY_ENDPOINT from the container's env", names.SkipContainersAnnotation},
		},
		{
			name: "a user IDENTITY_ENDPOINT from a ConfigMap, in an init container",
			pod: func(t *testing.T) *corev1.Pod {
				p := loadCase(t, "seed").Pod.DeepCopy()
				p.Spec.InitContainers[0].Env = append(p.Spec.InitContainers[0].Env, corev1.EnvVar{Name: names.EnvIdentityEndpoint, ValueFrom: &corev1.EnvVarSource{
					ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "c"}, Key: "k"},
				}})
				return p
			},
			want: []string{`container "data-init" sets IDENTITY_ENDPOINT itself`},
		},
		{
			name: "a user IDENTITY_ENDPOINT that is the webhook's is no concern",
			pod: func(t *testing.T) *corev1.Pod {
				p := loadCase(t, "seed").Pod.DeepCopy()
				p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: names.EnvIdentityEndpoint, Value: "http://127.0.0.1:8181/msi/token"})
				return p
			},
		},
		{
			name: "a skipped container's IDENTITY_ENDPOINT is its own",
			pod: func(t *testing.T) *corev1.Pod {
				p := loadCase(t, "seed").Pod.DeepCopy()
				p.Annotations = map[string]string{names.SkipContainersAnnotation: "my-app"}
				p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: names.EnvIdentityEndpoint, Value: "http://elsewhere"})
				return p
			},
		},
		{
			name: "envFrom of a skipped container is not ours to warn about",
			pod: func(t *testing.T) *corev1.Pod {
				p := loadCase(t, "envfrom-and-workload-identity").Pod.DeepCopy()
				p.Annotations = map[string]string{names.SkipContainersAnnotation: "configured,azwi"}
				return p
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seed := loadCase(t, "seed")
			cfg := seed.Config
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			_, res, err := inject.Inject(tt.pod(t), seed.Identities, cfg, seed.Secret)
			require.NoError(t, err)
			if len(tt.want) == 0 {
				assert.Empty(t, res.Warnings)
				return
			}
			n := 1
			if tt.count != 0 {
				n = tt.count
			}
			require.Len(t, res.Warnings, n)
			all := strings.Join(res.Warnings, "\n")
			for _, part := range tt.want {
				assert.Contains(t, all, part)
			}
			assert.NotContains(t, all, seed.Secret, "a warning must never carry the header value")
		})
	}
}

func TestDefaultIdentity(t *testing.T) {
	tests := []struct {
		name string
		ids  []inject.Identity
		want string
	}{
		{name: "none", ids: nil, want: ""},
		{name: "one", ids: []inject.Identity{id("a", 0)}, want: "a"},
		{name: "highest weight wins", ids: []inject.Identity{id("a", 1), id("b", 2)}, want: "b"},
		{name: "tie goes to the smallest name", ids: []inject.Identity{id("c", 2), id("b", 2), id("a", 1)}, want: "b"},
		{name: "negative weights", ids: []inject.Identity{id("a", -5), id("b", -1)}, want: "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, inject.DefaultIdentity(tt.ids).Name)
			rev := slices.Clone(tt.ids)
			slices.Reverse(rev)
			assert.Equal(t, tt.want, inject.DefaultIdentity(rev).Name, "order of ids must not matter")
		})
	}
}

// A sidecar whose header comes from a Secret is not one the webhook wrote
// (it always writes a literal per-pod value), so it is refused rather than
// trusted.
func TestExistingSidecarHeaderValueFrom(t *testing.T) {
	seed := loadCase(t, "seed")
	golden, _, err := injecttest.LoadGolden(injecttest.Dir(), "seed")
	require.NoError(t, err)
	from := &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "hdr"}, Key: "h",
	}}
	sc := &golden.Spec.InitContainers[0]
	for i := range sc.Env {
		if sc.Env[i].Name == names.EnvIdentityHeader {
			sc.Env[i] = corev1.EnvVar{Name: names.EnvIdentityHeader, ValueFrom: from}
		}
	}
	_, _, err = inject.Inject(golden, seed.Identities, seed.Config, "unused")
	require.ErrorIs(t, err, inject.ErrNameConflict)
	assert.Contains(t, err.Error(), "IDENTITY_HEADER comes from valueFrom")
}

// TestOwnSidecarWithAPIDefaults: the API server fills in defaults before it
// calls the webhook again (reinvocation); the webhook's own sidecar must
// still be recognised.
func TestOwnSidecarWithAPIDefaults(t *testing.T) {
	seed := loadCase(t, "seed")
	cfg := seed.Config
	cfg.ImagePullPolicy = ""
	cfg.Resources = *cfg.Resources.DeepCopy()
	cfg.Resources.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse("10Mi")
	first, _, err := inject.Inject(&seed.Pod, seed.Identities, cfg, seed.Secret)
	require.NoError(t, err)
	sc := &first.Spec.InitContainers[0]
	sc.TerminationMessagePath = "/dev/termination-log"
	sc.ImagePullPolicy = corev1.PullIfNotPresent
	sc.Resources.Requests[corev1.ResourceEphemeralStorage] = resource.MustParse("10Mi")
	for _, p := range []*corev1.Probe{sc.StartupProbe, sc.LivenessProbe} {
		p.SuccessThreshold = 1
	}
	for i := range first.Spec.Volumes {
		if p := first.Spec.Volumes[i].Projected; p != nil {
			p.DefaultMode = ptr.To[int32](0o644)
		}
	}
	first.Spec.Containers = append(first.Spec.Containers, corev1.Container{Name: "late", Image: "x"})
	out, res, err := inject.Inject(first, seed.Identities, cfg, "another")
	require.NoError(t, err)
	assert.True(t, res.Changed)
	assert.NotNil(t, envValue(&out.Spec.Containers[1], names.EnvIdentityHeader))
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     inject.Config
		wantErr bool
	}{
		{name: "valid", cfg: inject.Config{SidecarImage: "i", Port: 8181}},
		{name: "no image", cfg: inject.Config{Port: 8181}, wantErr: true},
		{name: "port zero", cfg: inject.Config{SidecarImage: "i"}, wantErr: true},
		{name: "port too large", cfg: inject.Config{SidecarImage: "i", Port: 65536}, wantErr: true},
		{name: "request above limit", cfg: inject.Config{SidecarImage: "i", Port: 8181, Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if !tt.wantErr {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, inject.ErrInvalidConfig)
		})
	}
}

// sidecarOf returns the sidecar and the list it is in, failing unless there
// is exactly one.
func sidecarOf(t *testing.T, pod *corev1.Pod) (*corev1.Container, []corev1.Container) {
	t.Helper()
	var (
		found *corev1.Container
		list  []corev1.Container
		n     int
	)
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == names.SidecarContainerName {
				found, list = &cs[i], cs
				n++
			}
		}
	}
	require.Equal(t, 1, n, "want exactly one sidecar")
	return found, list
}

func envOf(c *corev1.Container) []corev1.EnvVar {
	if c == nil {
		return nil
	}
	return c.Env
}

func envValue(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func countEnv(env []corev1.EnvVar, name string) int {
	n := 0
	for _, e := range env {
		if e.Name == name {
			n++
		}
	}
	return n
}

// skipped are the containers the pod's skip-containers annotation names,
// and, when inject-containers is set, every container it does not name.
func skipped(pod *corev1.Pod) map[string]bool {
	set := map[string]bool{}
	split := func(v string) []string {
		return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' || r == ' ' })
	}
	v, _ := names.Lookup(pod.Annotations, names.SkipContainersAnnotation)
	for _, n := range split(v) {
		set[n] = true
	}
	if only, ok := pod.Annotations[names.InjectContainersAnnotation]; ok {
		for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
			if !slices.Contains(split(only), c.Name) {
				set[c.Name] = true
			}
		}
	}
	return set
}

func ptrTo[T any](v T) *T { return &v }

// TestEnvReferenceOrder: an injected variable goes before the first user
// entry that references it, as the kubelet expands $(VAR) only from
// earlier entries; "$$(" is an escaped dollar, not a reference.
func TestEnvReferenceOrder(t *testing.T) {
	seed := loadCase(t, "seed")
	tests := []struct {
		name string
		env  []corev1.EnvVar
		// want is the order of names after injection.
		want []string
	}{
		{
			name: "no references: appended",
			env:  []corev1.EnvVar{{Name: "A", Value: "1"}},
			want: []string{"A", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_CLIENT_ID", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "AZCOPY_AUTO_LOGIN_TYPE", "AZCOPY_MSI_CLIENT_ID"},
		},
		{
			name: "a reference pulls the variable before it",
			env:  []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "URL", Value: "$(AZURE_POD_IDENTITY_AUTHORITY_HOST)/metadata"}, {Name: "B", Value: "$(IDENTITY_ENDPOINT)"}},
			want: []string{"A", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "URL", "IDENTITY_ENDPOINT", "B", "IDENTITY_HEADER", "AZURE_CLIENT_ID", "AZCOPY_AUTO_LOGIN_TYPE", "AZCOPY_MSI_CLIENT_ID"},
		},
		{
			name: "an escaped dollar is no reference",
			env:  []corev1.EnvVar{{Name: "A", Value: "$$(IDENTITY_ENDPOINT)"}, {Name: "B", Value: "$$$(IDENTITY_HEADER)"}},
			want: []string{"A", "IDENTITY_HEADER", "B", "IDENTITY_ENDPOINT", "AZURE_CLIENT_ID", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "AZCOPY_AUTO_LOGIN_TYPE", "AZCOPY_MSI_CLIENT_ID"},
		},
		{
			name: "an unterminated reference is no reference",
			env:  []corev1.EnvVar{{Name: "A", Value: "$(IDENTITY_ENDPOINT"}},
			want: []string{"A", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_CLIENT_ID", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "AZCOPY_AUTO_LOGIN_TYPE", "AZCOPY_MSI_CLIENT_ID"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := seed.Pod.DeepCopy()
			pod.Spec.InitContainers = nil
			pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "x", Env: tt.env}}
			out, _, err := inject.Inject(pod, seed.Identities, seed.Config, seed.Secret)
			require.NoError(t, err)
			var got []string
			for _, e := range out.Spec.Containers[0].Env {
				got = append(got, e.Name)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

// id is an identity with only a name and a weight, for the default's choice.
func id(name string, weight int) inject.Identity {
	return inject.Identity{Identity: sidecarconfig.Identity{Name: name}, Weight: weight}
}
