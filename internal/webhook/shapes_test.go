package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podidentity/injector/internal/decision/decisiontest"
	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/inject/injecttest"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// shapeHandler serves the identity "reader" to selector "reader" in
// namespace team-a.
func shapeHandler(t *testing.T) *Handler {
	t.Helper()
	c := &injecttest.Case{Identities: []inject.Identity{{Identity: sidecarconfig.Identity{Name: "reader", Namespace: "team-a", Source: names.TokenSourceFederated, ClientID: "cid", TenantID: "tid"}}}}
	cfg := testInjectConfig()
	cfg.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
	return newTestHandler(t, decisiontest.FakeReader(t, append(objectsFor(c, "reader"), decisiontest.OptedIn("team-a"))...), nil, cfg, testSecret)
}

func shapePod(t *testing.T, mut func(*corev1.Pod)) []byte {
	t.Helper()
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team-a", Labels: map[string]string{names.BindingLabel: "reader"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
	}
	if mut != nil {
		mut(p)
	}
	b, err := json.Marshal(p)
	require.NoError(t, err)
	return b
}

// TestHandlerPodShapes: the denials and warnings for pod shapes the
// injector used to get wrong, each with the message the user reads.
func TestHandlerPodShapes(t *testing.T) {
	tests := []struct {
		name     string
		pod      func(*corev1.Pod)
		denied   bool
		message  []string // parts of the denial
		warnings []string // parts of some warning
	}{
		{
			name: "user IDENTITY_HEADER",
			pod: func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: names.EnvIdentityHeader, Value: "from-the-manifest"}}
			},
			denied:  true,
			message: []string{`pod team-a/web: spec.containers[0].env[0] of container "app": container sets IDENTITY_HEADER`, "the webhook generates this header per pod"},
		},
		{
			name: "token-port annotation clashes with a container port",
			pod: func(p *corev1.Pod) {
				p.Annotations = map[string]string{names.TokenPortAnnotation: "9090"}
				p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9090}}
			},
			denied:  true,
			message: []string{`is 9090, which container "app" already uses in spec.containers[0].ports[0].containerPort`},
		},
		{
			name:    "token-port annotation on a privileged port",
			pod:     func(p *corev1.Pod) { p.Annotations = map[string]string{names.TokenPortAnnotation: "443"} },
			denied:  true,
			message: []string{`"443"`, "1024-65535"},
		},
		{
			name: "pod-level requests without room for the sidecar",
			pod: func(p *corev1.Pod) {
				p.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
				p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
			},
			denied:  true,
			message: []string{`spec.resources.requests["cpu"] is 100m`, "raise"},
		},
		{
			name: "pod-level resources with room",
			pod: func(p *corev1.Pod) {
				p.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}
			},
		},
		{
			name: "a pod-identity-sidecar the pod brings itself",
			pod: func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: names.SidecarContainerName, Image: "attacker.example/sidecar",
					Env: []corev1.EnvVar{{Name: names.EnvSidecarConfig, Value: `{"apiVersion":"sidecar.aadpodidentity.k8s.io/v1","port":8181,"defaultIdentity":"reader","identities":[{"name":"reader","namespace":"team-a","source":"imds","clientID":"cid"}]}`}, {Name: names.EnvIdentityHeader, Value: "x"}}}}
			},
			denied:  true,
			message: []string{`spec.initContainers[0] (container "pod-identity-sidecar") is not the token sidecar this webhook would inject`},
		},
		{
			name: "envFrom",
			pod: func(p *corev1.Pod) {
				p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}
			},
			warnings: []string{`container "app" has envFrom, and the webhook's env IDENTITY_ENDPOINT, IDENTITY_HEADER, AZURE_CLIENT_ID`},
		},
		{
			name: "already mutated by azure-workload-identity",
			pod: func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "AZURE_FEDERATED_TOKEN_FILE", Value: "/var/run/secrets/azure/tokens/azure-identity-token"}}
			},
			warnings: []string{`containers "app" already have AZURE_FEDERATED_TOKEN_FILE`},
		},
		{
			name: "stale injected-identities annotation from an old manifest",
			pod: func(p *corev1.Pod) {
				p.Annotations = map[string]string{names.InjectedAnnotation: "team-a/old-identity", "keep": "me"}
			},
			warnings: []string{`metadata.annotations["` + names.InjectedAnnotation + `"] was "team-a/old-identity"`, `replaced with "team-a/reader"`, "remove that annotation"},
		},
		{
			name: "stale injected-identities annotation as the only annotation",
			pod: func(p *corev1.Pod) {
				p.Annotations = map[string]string{names.InjectedAnnotation: ""}
			},
			warnings: []string{`replaced with "team-a/reader"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := shapeHandler(t)
			raw := shapePod(t, tc.pod)
			resp := h.Handle(context.Background(), podRequest(t, "team-a", raw))
			if tc.denied {
				require.False(t, resp.Allowed)
				assert.Equal(t, int32(http.StatusForbidden), resp.Result.Code)
				for _, m := range tc.message {
					assert.Contains(t, resp.Result.Message, m)
				}
				return
			}
			require.True(t, resp.Allowed, "%+v", resp.Result)
			require.NotEmpty(t, resp.Patch)
			all := strings.Join(resp.Warnings, "\n")
			for _, w := range tc.warnings {
				assert.Contains(t, all, w)
			}
			assert.NotContains(t, all, testSecret)
			patched := applyPatch(t, raw, resp)
			got, err := injecttest.DecodePod(patched)
			require.NoError(t, err)
			assert.NoError(t, injecttest.CheckStructure(got))
			assert.Equal(t, "team-a/reader", got.Annotations[names.InjectedAnnotation])
			if tc.pod != nil {
				in, err := injecttest.DecodePod(raw)
				require.NoError(t, err)
				for k, v := range in.Annotations {
					if k != names.InjectedAnnotation {
						assert.Equal(t, v, got.Annotations[k], "annotation %s kept", k)
					}
				}
			}
			again := h.Handle(context.Background(), podRequest(t, "team-a", patched))
			require.True(t, again.Allowed, "%+v", again.Result)
			assert.Empty(t, again.Patch, "a second pass must not patch")
		})
	}
}
