package v1_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/yaml"

	"github.com/podidentity/injector/examples"
	v1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
)

// decode runs data through the decoder that client-go and controller-runtime
// use for typed objects: a CodecFactory over a scheme with AddToScheme.
func decode(t *testing.T, data []byte) runtime.Object {
	t.Helper()
	scheme := runtime.NewScheme()
	require.NoError(t, v1.AddToScheme(scheme))
	obj, _, err := serializer.NewCodecFactory(scheme).UniversalDeserializer().Decode(data, nil, nil)
	require.NoError(t, err)
	return obj
}

// decodeYAML converts a manifest to JSON first, as kubectl does before the
// API server stores it and a client reads it back.
func decodeYAML(t *testing.T, file string) runtime.Object {
	t.Helper()
	raw, err := examples.Blog(file)
	require.NoError(t, err)
	js, err := yaml.YAMLToJSON(raw)
	require.NoError(t, err)
	return decode(t, js)
}

func TestSeedIdentityDecodes(t *testing.T) {
	id, ok := decodeYAML(t, "azureidentity.yaml").(*v1.AzureIdentity)
	require.True(t, ok, "the seed must decode to *AzureIdentity")
	// The seed has no namespace; kubectl applies it to "default".
	id.Namespace = "default"

	assert.Equal(t, "blob-reader", id.Name)
	assert.Equal(t, v1.IdentityTypeUserAssignedMSI, id.Spec.Type)
	assert.Equal(t, "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/MC_redcluster-aks-rg_redcluster_westeurope/providers/Microsoft.ManagedIdentity/userAssignedIdentities/blob-reader", id.Spec.ResourceID)
	assert.Equal(t, "11111111-2222-3333-4444-555555555555", id.Spec.ClientID)
	assert.Equal(t, []string{
		`AzureIdentity default/blob-reader: spec key "ResourceID" is a legacy spelling; rename it to "resourceID"`,
		`AzureIdentity default/blob-reader: spec key "ClientID" is a legacy spelling; rename it to "clientID"`,
	}, id.Warnings())
	assert.NoError(t, id.DecodeErr())
	assert.NoError(t, id.Validate())

	// What this project writes back uses the canonical keys only.
	out, err := json.Marshal(id.Spec)
	require.NoError(t, err)
	assert.JSONEq(t, `{
		"type": 0,
		"resourceID": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/MC_redcluster-aks-rg_redcluster_westeurope/providers/Microsoft.ManagedIdentity/userAssignedIdentities/blob-reader",
		"clientID": "11111111-2222-3333-4444-555555555555"
	}`, string(out))
}

func TestSeedBindingDecodes(t *testing.T) {
	b, ok := decodeYAML(t, "azureidentitybinding.yaml").(*v1.AzureIdentityBinding)
	require.True(t, ok, "the seed must decode to *AzureIdentityBinding")
	b.Namespace = "default"

	assert.Equal(t, "blob-reader-to-my-app", b.Name)
	assert.Equal(t, "blob-reader", b.Spec.AzureIdentity)
	assert.Equal(t, "my-app", b.Spec.Selector)
	assert.Equal(t, 0, b.Spec.Weight)
	assert.Equal(t, []string{
		`AzureIdentityBinding default/blob-reader-to-my-app: spec key "AzureIdentity" is a legacy spelling; rename it to "azureIdentity"`,
		`AzureIdentityBinding default/blob-reader-to-my-app: spec key "Selector" is a legacy spelling; rename it to "selector"`,
	}, b.Warnings())
	assert.NoError(t, b.DecodeErr())
	assert.NoError(t, b.Validate())
}

// An informer decodes a whole List at once: one broken object must not
// break the list, nor the objects beside it.
func TestListWithBrokenObjectsDecodes(t *testing.T) {
	list := `{
	  "apiVersion": "aadpodidentity.k8s.io/v1",
	  "kind": "AzureIdentityList",
	  "metadata": {"resourceVersion": "42"},
	  "items": [
	    {"metadata": {"name": "good", "namespace": "team-a"},
	     "spec": {"type": 0, "resourceID": "/rid", "clientID": "c-good"}},
	    {"metadata": {"name": "wrong-type", "namespace": "team-a"},
	     "spec": {"type": 0, "ClientID": 12345, "resourceID": "/rid2"}},
	    {"metadata": {"name": "conflict", "namespace": "team-a"},
	     "spec": {"type": 0, "clientID": "c-one", "ClientID": "c-two"}}
	  ]
	}`
	got, ok := decode(t, []byte(list)).(*v1.AzureIdentityList)
	require.True(t, ok, "the list must decode to *AzureIdentityList")
	require.Len(t, got.Items, 3)
	assert.Equal(t, "42", got.ResourceVersion)

	good := &got.Items[0]
	assert.Equal(t, "c-good", good.Spec.ClientID)
	assert.Equal(t, "/rid", good.Spec.ResourceID)
	assert.Empty(t, good.Warnings())
	assert.NoError(t, good.Validate())

	wrongType := &got.Items[1]
	assert.Equal(t, "/rid2", wrongType.Spec.ResourceID, "the other fields of a broken object still decode")
	assert.Empty(t, wrongType.Spec.ClientID, "a value of the wrong type leaves its field zero")
	err := wrongType.DecodeErr()
	require.ErrorIs(t, err, v1.ErrInvalidField)
	assert.EqualError(t, err, `AzureIdentity team-a/wrong-type: spec key "ClientID" must be a string, not a number; fix its value`)
	assert.ErrorIs(t, wrongType.Validate(), v1.ErrInvalidField)

	conflict := &got.Items[2]
	assert.Empty(t, conflict.Spec.ClientID, "a conflict leaves its field zero rather than guess")
	err = conflict.DecodeErr()
	require.ErrorIs(t, err, v1.ErrLegacyConflict)
	assert.EqualError(t, err, `AzureIdentity team-a/conflict: spec has both "clientID" and "ClientID" with different values; delete one of them`)

	// Caches hand out deep copies: the notes must travel with them.
	copied := got.DeepCopy()
	assert.Equal(t, err.Error(), copied.Items[2].DecodeErr().Error())
	copied.Items[2].Spec.Decoding[0].Keys[0] = "changed"
	assert.Equal(t, "clientID", got.Items[2].Spec.Decoding[0].Keys[0], "DeepCopy must not share the notes")
}

func TestBindingListWithBrokenObjectDecodes(t *testing.T) {
	list := `{
	  "apiVersion": "aadpodidentity.k8s.io/v1",
	  "kind": "AzureIdentityBindingList",
	  "items": [
	    {"metadata": {"name": "broken", "namespace": "team-a"},
	     "spec": {"azureIdentity": "id", "selector": "app", "weight": "high"}},
	    {"metadata": {"name": "good", "namespace": "team-a"},
	     "spec": {"AzureIdentity": "id", "Selector": "app", "Weight": 3}}
	  ]
	}`
	got, ok := decode(t, []byte(list)).(*v1.AzureIdentityBindingList)
	require.True(t, ok)
	require.Len(t, got.Items, 2)

	err := got.Items[0].Validate()
	require.ErrorIs(t, err, v1.ErrInvalidField)
	assert.EqualError(t, err, `AzureIdentityBinding team-a/broken: spec key "weight" must be a whole number, not the string "high"; fix its value`)

	assert.Equal(t, v1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "app", Weight: 3}, withoutNotes(got.Items[1].Spec))
	assert.NoError(t, got.Items[1].Validate())
	assert.Len(t, got.Items[1].Warnings(), 3)
}

func withoutNotes(s v1.AzureIdentityBindingSpec) v1.AzureIdentityBindingSpec {
	s.Decoding = nil
	return s
}
