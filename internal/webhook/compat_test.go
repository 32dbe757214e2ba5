package webhook

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/decision/decisiontest"
	"github.com/podidentity/injector/internal/inject/injecttest"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// The cases below are aad-pod-identity's own examples, as its docs gave
// them, fed through the admission path: migrating must not change which
// pods get which identities. docs/migration.md lists what still differs.

// apiObject is an aad-pod-identity object as the API server stores it.
func apiObject(kind, name, spec string) string {
	return `{"apiVersion":"aadpodidentity.k8s.io/v1","kind":"` + kind + `","metadata":{"name":"` + name + `","namespace":"demo"},"spec":` + spec + `}`
}

// azID is a type 0 AzureIdentity in the shape of aad-pod-identity's docs,
// with the tenant this project needs.
func azID(name, clientID string) string {
	return apiObject("AzureIdentity", name, `{"type":0,"resourceID":"/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/`+name+`","clientID":"`+clientID+`","tenantID":"t"}`)
}

func azBinding(name, spec string) string { return apiObject("AzureIdentityBinding", name, spec) }

// admitDemo admits a pod with labels in namespace demo against objs.
func admitDemo(t *testing.T, labels string, objs ...string) admission.Response {
	t.Helper()
	cache := newWireReader(t, decisiontest.FakeReader(t, decisiontest.OptedIn("demo")), objs...)
	raw := []byte(`{"metadata":{"name":"demo","namespace":"demo","labels":` + labels + `},"spec":{"containers":[{"name":"demo","image":"nginx"}]}}`)
	return newTestHandler(t, cache, nil, testInjectConfig(), testSecret).Handle(context.Background(), podRequest(t, "demo", raw))
}

// servedIdentities reads back, from the patched pod, the identities the
// sidecar serves and its default.
func servedIdentities(t *testing.T, labels string, resp admission.Response) ([]string, string) {
	t.Helper()
	raw := []byte(`{"metadata":{"name":"demo","namespace":"demo","labels":` + labels + `},"spec":{"containers":[{"name":"demo","image":"nginx"}]}}`)
	patched := applyPatch(t, raw, resp)
	pod, err := injecttest.DecodePod(patched)
	require.NoError(t, err)
	for _, c := range pod.Spec.InitContainers {
		for _, e := range c.Env {
			if e.Name == "POD_IDENTITY_SIDECAR_CONFIG" {
				cfg, err := sidecarconfig.Parse([]byte(e.Value))
				require.NoError(t, err)
				var ids []string
				for _, id := range cfg.Identities {
					ids = append(ids, id.Name)
				}
				return ids, cfg.DefaultIdentity
			}
		}
	}
	t.Fatalf("no sidecar config in %s", patched)
	return nil, ""
}

// TestCompatExceptionExample is aad-pod-identity's AzurePodIdentityException
// example: podLabels foo: bar and app: custom. aad-pod-identity exempted a
// pod carrying any one of them, with the value compared ignoring case.
func TestCompatExceptionExample(t *testing.T) {
	exception := apiObject("AzurePodIdentityException", "test-exception", `{"podLabels":{"foo":"bar","app":"custom"}}`)
	objs := []string{azID("reader", "c1"), azBinding("reader-binding", `{"azureIdentity":"reader","selector":"reader"}`), exception}
	tests := map[string]struct {
		labels string
		exempt bool
	}{
		"one of the two labels exempts":           {`{"aadpodidbinding":"reader","foo":"bar"}`, true},
		"the value is compared ignoring case":     {`{"aadpodidbinding":"reader","app":"Custom"}`, true},
		"a label the exception does not list":     {`{"aadpodidbinding":"reader","app":"web"}`, false},
		"the key is compared exactly, as a label": {`{"aadpodidbinding":"reader","Foo":"bar"}`, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp := admitDemo(t, tc.labels, objs...)
			require.True(t, resp.Allowed, "%+v", resp.Result)
			assert.Equal(t, !tc.exempt, len(resp.Patch) > 0, "injected")
			if tc.exempt {
				assert.Contains(t, resp.Result.Message, "AzurePodIdentityException demo/test-exception")
			}
		})
	}
}

// TestCompatSharedSelector is aad-pod-identity's Best Practices example:
// bindings az-id-1-binding and az-id-2-binding share the selector
// az-id-combined. When one identity is gone, aad-pod-identity assigned the
// other; so does the webhook, with a warning naming the binding.
func TestCompatSharedSelector(t *testing.T) {
	const labels = `{"aadpodidbinding":"az-id-combined"}`
	b1 := azBinding("az-id-1-binding", `{"azureIdentity":"az-id-1","selector":"az-id-combined"}`)
	b2 := azBinding("az-id-2-binding", `{"azureIdentity":"az-id-2","selector":"az-id-combined"}`)

	t.Run("both identities", func(t *testing.T) {
		resp := admitDemo(t, labels, azID("az-id-1", "c1"), azID("az-id-2", "c2"), b1, b2)
		require.True(t, resp.Allowed, "%+v", resp.Result)
		ids, _ := servedIdentities(t, labels, resp)
		assert.Equal(t, []string{"az-id-1", "az-id-2"}, ids)
		assert.Empty(t, resp.Warnings)
	})
	t.Run("one identity missing", func(t *testing.T) {
		resp := admitDemo(t, labels, azID("az-id-2", "c2"), b1, b2)
		require.True(t, resp.Allowed, "%+v", resp.Result)
		ids, def := servedIdentities(t, labels, resp)
		assert.Equal(t, []string{"az-id-2"}, ids)
		assert.Equal(t, "az-id-2", def)
		require.Len(t, resp.Warnings, 1)
		assert.Contains(t, resp.Warnings[0], `AzureIdentityBinding demo/az-id-1-binding (selector "az-id-combined") names AzureIdentity "az-id-1", which does not exist in namespace demo`)
		assert.Contains(t, resp.Warnings[0], "the pod gets the other identities")
	})
	t.Run("both identities missing", func(t *testing.T) {
		resp := admitDemo(t, labels, b1, b2)
		require.False(t, resp.Allowed)
		assert.Equal(t, int32(http.StatusForbidden), resp.Result.Code)
		assert.Contains(t, resp.Result.Message, "AzureIdentityBinding demo/az-id-1-binding")
		assert.Contains(t, resp.Result.Message, "AzureIdentityBinding demo/az-id-2-binding")
		d := decideDemo(t, labels, b1, b2)
		assert.ErrorIs(t, d.Err, decision.ErrIdentityNotFound)
	})
}

func decideDemo(t *testing.T, labels string, objs ...string) decision.Decision {
	t.Helper()
	cache := newWireReader(t, decisiontest.FakeReader(t, decisiontest.OptedIn("demo")), objs...)
	raw := []byte(`{"metadata":{"name":"demo","namespace":"demo","labels":` + labels + `},"spec":{"containers":[{"name":"demo","image":"nginx"}]}}`)
	d, _ := newTestHandler(t, cache, nil, testInjectConfig(), testSecret).decide(context.Background(), podRequest(t, "demo", raw))
	return d
}

// TestCompatUnreadableBinding: a binding whose selector cannot be read
// matches no pod. The denial names that binding and its key rather than
// blaming the pod's label; with another binding the pod is injected and a
// warning names the broken one.
func TestCompatUnreadableBinding(t *testing.T) {
	const labels = `{"aadpodidbinding":"demo"}`
	tests := map[string]struct {
		binding string
		key     string
	}{
		// The map form of 2019-era manifests.
		"map-form Selector":    {azBinding("demo-binding", `{"AzureIdentity":"demo-id","Selector":{"matchLabels":{"aadpodidbinding":"demo"}}}`), `"Selector" must be a string, not an object`},
		"number selector":      {azBinding("demo-binding", `{"azureIdentity":"demo-id","selector":1234}`), `"selector" must be a string, not a number`},
		"conflicting spelling": {azBinding("demo-binding", `{"azureIdentity":"demo-id","selector":"demo","Selector":"other"}`), `spec has both "selector" and "Selector" with different values`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := decideDemo(t, labels, azID("demo-id", "c1"), tc.binding)
			assert.ErrorIs(t, d.Err, decision.ErrInvalidBinding)
			assert.NotErrorIs(t, d.Err, decision.ErrNoBinding)
			resp := admitDemo(t, labels, azID("demo-id", "c1"), tc.binding)
			require.False(t, resp.Allowed)
			assert.Contains(t, resp.Result.Message, "AzureIdentityBinding demo/demo-binding")
			assert.Contains(t, resp.Result.Message, tc.key)
			assert.NotContains(t, resp.Result.Message, "fix the pod label")

			other := azBinding("other-binding", `{"azureIdentity":"demo-id","selector":"demo"}`)
			resp = admitDemo(t, labels, azID("demo-id", "c1"), tc.binding, other)
			require.True(t, resp.Allowed, "%+v", resp.Result)
			assert.NotEmpty(t, resp.Patch)
			assert.True(t, containsAny(resp.Warnings, "AzureIdentityBinding demo/demo-binding"), "warnings %q", resp.Warnings)
			assert.True(t, containsAny(resp.Warnings, "it binds no pod until fixed"), "warnings %q", resp.Warnings)
		})
	}
}

// TestCompatQuotedWeight: weight: "10" is used, like type: "0", with a
// warning, and still picks the default identity.
func TestCompatQuotedWeight(t *testing.T) {
	const labels = `{"aadpodidbinding":"az-id-combined"}`
	resp := admitDemo(t, labels, azID("az-id-1", "c1"), azID("az-id-2", "c2"),
		azBinding("az-id-1-binding", `{"azureIdentity":"az-id-1","selector":"az-id-combined"}`),
		azBinding("az-id-2-binding", `{"azureIdentity":"az-id-2","selector":"az-id-combined","weight":"10"}`))
	require.True(t, resp.Allowed, "%+v", resp.Result)
	_, def := servedIdentities(t, labels, resp)
	assert.Equal(t, "az-id-2", def, "the quoted weight counts")
	assert.Equal(t, []string{`AzureIdentityBinding demo/az-id-2-binding: spec key "weight" holds the string "10"; write it as the number 10, without quotes`}, resp.Warnings)
}

// TestCompatUnknownKey: a misspelt key is named in a warning; aad-pod-
// identity's own unused spec.metadata is not.
func TestCompatUnknownKey(t *testing.T) {
	const labels = `{"aadpodidbinding":"reader"}`
	id := apiObject("AzureIdentity", "reader", `{"type":0,"clientID":"c1","clientIDs":"c2","tenantID":"t","metadata":{"name":"reader"}}`)
	resp := admitDemo(t, labels, id, azBinding("reader-binding", `{"azureIdentity":"reader","selector":"reader"}`))
	require.True(t, resp.Allowed, "%+v", resp.Result)
	assert.Equal(t, []string{`AzureIdentity demo/reader: spec key "clientIDs" is not a field this webhook or aad-pod-identity reads, so it has no effect; check its spelling, or delete it`}, resp.Warnings)
	assert.False(t, strings.Contains(strings.Join(resp.Warnings, "\n"), "metadata"))
}
