package webhook

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/decision/decisiontest"
	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/inject/injecttest"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// TestHandlerAuthorityAllowList: whoever may edit an AzureIdentity may set
// spec.adEndpoint, and the sidecar sends the identity's credentials there.
// A pod bound to an identity whose authority is not an https URL on the
// webhook's allow-list is denied, with a message naming the identity, the
// field and the flag; an allowed one reaches the sidecar config together
// with the allow-list, and only a non-public allowed host has instance
// discovery turned off.
func TestHandlerAuthorityAllowList(t *testing.T) {
	const ns = "team-a"
	tests := map[string]struct {
		adEndpoint    string
		allowed       []string
		wantDeny      []string // substrings of the denial; nil: injected
		wantDiscovery bool     // DisableInstanceDiscovery in the sidecar config
	}{
		"attacker host, default list": {
			adEndpoint: "https://evil.example/",
			wantDeny:   []string{"AzureIdentity team-a/evil", "spec.adEndpoint", `"https://evil.example/"`, "--allowed-authority-hosts", "evil.example is not among login.microsoftonline.com"},
		},
		"attacker host, explicit list": {
			adEndpoint: "https://evil.example/",
			allowed:    []string{"login.azurestack.example"},
			wantDeny:   []string{"AzureIdentity team-a/evil", "spec.adEndpoint", "--allowed-authority-hosts"},
		},
		"http public cloud": {
			adEndpoint: "http://login.microsoftonline.com/",
			wantDeny:   []string{"AzureIdentity team-a/evil", "spec.adEndpoint", "not an https URL", "--allowed-authority-hosts"},
		},
		"user info hides the host": {
			adEndpoint: "https://login.microsoftonline.com@evil.example/",
			wantDeny:   []string{"AzureIdentity team-a/evil", "spec.adEndpoint", "--allowed-authority-hosts"},
		},
		"public cloud": {
			adEndpoint: "https://login.microsoftonline.us/",
		},
		"listed sovereign cloud": {
			adEndpoint:    "https://login.azurestack.example/",
			allowed:       []string{"login.microsoftonline.com", "login.azurestack.example"},
			wantDiscovery: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			// The attacker's identity carries a higher weight than the
			// honest one, so that it would be the pod's default.
			objs := []client.Object{
				decisiontest.OptedIn(ns),
				&aadv1.AzureIdentity{
					ObjectMeta: metav1.ObjectMeta{Name: "evil", Namespace: ns},
					Spec: aadv1.AzureIdentitySpec{Type: aadv1.IdentityTypeServicePrincipal, ClientID: "c-evil", TenantID: "t",
						ADEndpoint: tc.adEndpoint, ClientPassword: corev1.SecretReference{Name: "sp"}},
				},
				&aadv1.AzureIdentityBinding{
					ObjectMeta: metav1.ObjectMeta{Name: "evil", Namespace: ns},
					Spec:       aadv1.AzureIdentityBindingSpec{AzureIdentity: "evil", Selector: "app", Weight: 100},
				},
				&aadv1.AzureIdentity{
					ObjectMeta: metav1.ObjectMeta{Name: "honest", Namespace: ns},
					Spec:       aadv1.AzureIdentitySpec{ClientID: "c-honest", TenantID: "t"},
				},
				&aadv1.AzureIdentityBinding{
					ObjectMeta: metav1.ObjectMeta{Name: "honest", Namespace: ns},
					Spec:       aadv1.AzureIdentityBindingSpec{AzureIdentity: "honest", Selector: "app"},
				},
			}
			cfg := testInjectConfig()
			cfg.AllowedAuthorityHosts = tc.allowed
			h := newTestHandler(t, decisiontest.FakeReader(t, objs...), nil, cfg, testSecret)
			raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"team-a","labels":{"aadpodidbinding":"app"}},
"spec":{"containers":[{"name":"app","image":"nginx"}]}}`)
			resp := h.Handle(context.Background(), podRequest(t, ns, raw))
			if tc.wantDeny != nil {
				require.False(t, resp.Allowed, "an identity with adEndpoint %q must not be injected", tc.adEndpoint)
				assert.Empty(t, resp.Patch)
				for _, want := range tc.wantDeny {
					assert.Contains(t, resp.Result.Message, want)
				}
				return
			}
			require.True(t, resp.Allowed, "%+v", resp.Result)
			pod, err := injecttest.DecodePod(applyPatch(t, raw, resp))
			require.NoError(t, err)
			sc := sidecarConfigOf(t, pod)
			assert.Equal(t, tc.allowed, sc.AllowedAuthorityHosts, "the sidecar gets the webhook's allow-list")
			require.Len(t, sc.Identities, 2)
			evil := sc.Identities[0]
			require.Equal(t, "evil", evil.Name)
			assert.Equal(t, tc.adEndpoint, evil.AuthorityHost)
			assert.Equal(t, tc.wantDiscovery, evil.DisableInstanceDiscovery)
			assert.False(t, sc.Identities[1].DisableInstanceDiscovery, "an identity without adEndpoint keeps instance discovery")
		})
	}
}

// sidecarConfigOf parses the config document of pod's sidecar.
func sidecarConfigOf(t *testing.T, pod *corev1.Pod) *sidecarconfig.Config {
	t.Helper()
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.Name != names.SidecarContainerName {
			continue
		}
		for _, e := range c.Env {
			if e.Name == names.EnvSidecarConfig {
				sc, err := sidecarconfig.Parse([]byte(e.Value))
				require.NoError(t, err)
				return sc
			}
		}
	}
	t.Fatalf("pod has no %s container with %s", names.SidecarContainerName, names.EnvSidecarConfig)
	return nil
}

// TestHandlerSharedProcessNamespace: the admission response of a labelled
// pod that shares its process namespace is a denial that names the field
// and the opt-out annotation; with the annotation, the pod is injected and
// warned.
func TestHandlerSharedProcessNamespace(t *testing.T) {
	c := &injecttest.Case{Identities: []inject.Identity{{Identity: sidecarconfig.Identity{Name: "reader", Namespace: "team-a", Source: names.TokenSourceFederated, ClientID: "cid", TenantID: "tid"}}}}
	h := newTestHandler(t, decisiontest.FakeReader(t, append(objectsFor(c, "reader"), decisiontest.OptedIn("team-a"))...), nil, testInjectConfig(), testSecret)
	pod := func(annotations string) []byte {
		return []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"team-a","labels":{"aadpodidbinding":"reader"}` + annotations + `},
"spec":{"shareProcessNamespace":true,"containers":[{"name":"app","image":"nginx"}]}}`)
	}
	resp := h.Handle(context.Background(), podRequest(t, "team-a", pod("")))
	require.False(t, resp.Allowed)
	assert.Equal(t, int32(http.StatusForbidden), resp.Result.Code)
	assert.Contains(t, resp.Result.Message, "spec.shareProcessNamespace")
	assert.Contains(t, resp.Result.Message, names.AllowSharedProcessNamespaceAnnotation+"=true")

	resp = h.Handle(context.Background(), podRequest(t, "team-a", pod(`,"annotations":{"`+names.AllowSharedProcessNamespaceAnnotation+`":"true"}`)))
	require.True(t, resp.Allowed, "%+v", resp.Result)
	assert.NotEmpty(t, resp.Patch)
	assert.True(t, slices.ContainsFunc(resp.Warnings, func(w string) bool { return strings.Contains(w, "shares its process namespace") }), resp.Warnings)
}
