package v1_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
)

// ignoreNotes compares specs by their fields; the notes are checked through
// Warnings and DecodeErr, which is how callers see them.
var ignoreNotes = cmpopts.IgnoreTypes(v1.DecodeNotes{})

// decodeObject wraps spec in an object named team-a/x of kind and decodes it
// through the client-go codec.
func decodeObject(t *testing.T, kind, spec string) any {
	t.Helper()
	doc := fmt.Sprintf(`{"apiVersion":"aadpodidentity.k8s.io/v1","kind":%q,"metadata":{"name":"x","namespace":"team-a"},"spec":%s}`, kind, spec)
	return decode(t, []byte(doc))
}

// decodeCase is one row of the decoding tables. wantErrs lists the
// sentinels the decode error wraps; wantErr is its exact message.
type decodeCase[S any] struct {
	name         string
	spec         string
	want         S
	wantWarnings []string
	wantErrs     []error
	wantErr      string
}

// checkNotes asserts the warnings and the decode error of one case.
func checkNotes[S any](t *testing.T, tc decodeCase[S], warnings []string, err error) {
	t.Helper()
	assert.Equal(t, tc.wantWarnings, warnings, "warnings")
	if tc.wantErr == "" {
		assert.NoError(t, err)
		return
	}
	require.Error(t, err)
	assert.Equal(t, tc.wantErr, err.Error())
	for _, sentinel := range tc.wantErrs {
		assert.ErrorIs(t, err, sentinel)
	}
	for _, other := range []error{v1.ErrLegacyConflict, v1.ErrInvalidField} {
		if !containsErr(tc.wantErrs, other) {
			assert.NotErrorIs(t, err, other)
		}
	}
}

func containsErr(errs []error, target error) bool {
	for _, e := range errs {
		if errors.Is(e, target) {
			return true
		}
	}
	return false
}

const ref = "AzureIdentity team-a/x: "

func TestAzureIdentitySpecDecoding(t *testing.T) {
	replicas := int32(2)
	tests := []decodeCase[v1.AzureIdentitySpec]{
		{
			name: "canonical keys give no warnings",
			spec: `{"type":1,"resourceID":"/r","clientID":"c","clientPassword":{"name":"s","namespace":"team-a"},
				"tenantID":"t","auxiliaryTenantIDs":["a1","a2"],"adResourceID":"ar","adEndpoint":"https://login.example","replicas":2}`,
			want: v1.AzureIdentitySpec{
				Type: v1.IdentityTypeServicePrincipal, ResourceID: "/r", ClientID: "c",
				ClientPassword: corev1.SecretReference{Name: "s", Namespace: "team-a"}, TenantID: "t",
				AuxiliaryTenantIDs: []string{"a1", "a2"}, ADResourceID: "ar", ADEndpoint: "https://login.example", Replicas: &replicas,
			},
		},
		{
			name: "capitalised keys, nested ones too",
			spec: `{"Type":1,"ResourceID":"/r","ClientID":"c","ClientPassword":{"Name":"s","namespace":"team-a"},"TenantID":"t"}`,
			want: v1.AzureIdentitySpec{
				Type: 1, ResourceID: "/r", ClientID: "c",
				ClientPassword: corev1.SecretReference{Name: "s", Namespace: "team-a"}, TenantID: "t",
			},
			wantWarnings: []string{
				ref + `spec key "Type" is a legacy spelling; rename it to "type"`,
				ref + `spec key "ResourceID" is a legacy spelling; rename it to "resourceID"`,
				ref + `spec key "ClientID" is a legacy spelling; rename it to "clientID"`,
				ref + `spec key "ClientPassword.Name" is a legacy spelling; rename it to "clientPassword.name"`,
				ref + `spec key "ClientPassword" is a legacy spelling; rename it to "clientPassword"`,
				ref + `spec key "TenantID" is a legacy spelling; rename it to "tenantID"`,
			},
		},
		{
			name:         "mixed case clientId",
			spec:         `{"type":0,"clientId":"c"}`,
			want:         v1.AzureIdentitySpec{ClientID: "c"},
			wantWarnings: []string{ref + `spec key "clientId" is a legacy spelling; rename it to "clientID"`},
		},
		{
			name: "all lower case, as aad-pod-identity's early json tags were",
			spec: `{"type":0,"resourceid":"/r","clientid":"c"}`,
			want: v1.AzureIdentitySpec{ResourceID: "/r", ClientID: "c"},
			wantWarnings: []string{
				ref + `spec key "resourceid" is a legacy spelling; rename it to "resourceID"`,
				ref + `spec key "clientid" is a legacy spelling; rename it to "clientID"`,
			},
		},
		{
			name:     "conflicting spellings",
			spec:     `{"clientID":"c1","ClientID":"c2","resourceID":"/r"}`,
			want:     v1.AzureIdentitySpec{ResourceID: "/r"},
			wantErrs: []error{v1.ErrLegacyConflict},
			wantErr:  ref + `spec has both "clientID" and "ClientID" with different values; delete one of them`,
		},
		{
			name:     "conflicting legacy spellings without the canonical one",
			spec:     `{"ClientID":"c1","ClientId":"c2"}`,
			wantErrs: []error{v1.ErrLegacyConflict},
			wantErr:  ref + `spec has both "ClientID" and "ClientId" with different values; delete one of them and rename the one you keep to "clientID"`,
		},
		{
			name:     "three conflicting spellings",
			spec:     `{"clientID":"c1","ClientID":"c2","clientid":"c1"}`,
			wantErrs: []error{v1.ErrLegacyConflict},
			wantErr:  ref + `spec has "clientID", "ClientID" and "clientid" with different values; delete all but one of them`,
		},
		{
			name:     "conflicting nested spellings",
			spec:     `{"type":1,"clientID":"c","clientPassword":{"name":"a","Name":"b"}}`,
			want:     v1.AzureIdentitySpec{Type: 1, ClientID: "c"},
			wantErrs: []error{v1.ErrLegacyConflict},
			wantErr:  ref + `spec has both "clientPassword.name" and "clientPassword.Name" with different values; delete one of them`,
		},
		{
			name:         "same value under two spellings",
			spec:         `{"clientID":"c","ClientID":"c"}`,
			want:         v1.AzureIdentitySpec{ClientID: "c"},
			wantWarnings: []string{ref + `spec keys "clientID" and "ClientID" set the same value; delete "ClientID"`},
		},
		{
			name:         "same value under two legacy spellings",
			spec:         `{"ClientID":"c","clientid":"c"}`,
			want:         v1.AzureIdentitySpec{ClientID: "c"},
			wantWarnings: []string{ref + `spec keys "ClientID" and "clientid" set the same value; keep one of them and rename it to "clientID"`},
		},
		{
			name:         "type as a quoted number",
			spec:         `{"type":"1","clientID":"c"}`,
			want:         v1.AzureIdentitySpec{Type: v1.IdentityTypeServicePrincipal, ClientID: "c"},
			wantWarnings: []string{ref + `spec key "type" holds the string "1"; write it as the number 1, without quotes`},
		},
		{
			name: "type as a whole float",
			spec: `{"type":2.0,"clientID":"c"}`,
			want: v1.AzureIdentitySpec{Type: v1.IdentityTypeServicePrincipalCertificate, ClientID: "c"},
		},
		{
			name:         "quoted number and number agree",
			spec:         `{"type":1,"Type":"1"}`,
			want:         v1.AzureIdentitySpec{Type: 1},
			wantWarnings: []string{ref + `spec key "Type" holds the string "1"; write it as the number 1, without quotes`, ref + `spec keys "type" and "Type" set the same value; delete "Type"`},
		},
		{
			name:     "wrong type: clientID is a number",
			spec:     `{"type":0,"clientID":12345,"resourceID":"/r"}`,
			want:     v1.AzureIdentitySpec{ResourceID: "/r"},
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "clientID" must be a string, not a number; fix its value`,
		},
		{
			name:     "wrong type: type is a boolean",
			spec:     `{"type":true}`,
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "type" must be the number 0, 1 or 2, not a boolean; fix its value`,
		},
		{
			name:     "wrong type: type is a word",
			spec:     `{"Type":"UserAssignedMSI"}`,
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "Type" must be the number 0, 1 or 2, not the string "UserAssignedMSI"; fix its value`,
		},
		{
			name:     "wrong type: type is a fraction",
			spec:     `{"type":1.5}`,
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "type" must be the number 0, 1 or 2, not 1.5; fix its value`,
		},
		{
			name:     "wrong type: replicas out of range",
			spec:     `{"replicas":1e10}`,
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "replicas" must be a whole number between -2147483648 and 2147483647, not 1e10; fix its value`,
		},
		{
			name:     "wrong type: a number among auxiliaryTenantIDs",
			spec:     `{"AuxiliaryTenantIDs":["a",2]}`,
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "AuxiliaryTenantIDs" must be a list of strings, but item 2 is a number; fix its value`,
		},
		{
			name:     "wrong type: clientPassword is a string",
			spec:     `{"clientPassword":"secret-name"}`,
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "clientPassword" must be an object with name and namespace, not a string; fix its value`,
		},
		{
			name:     "wrong type: nested name is a number",
			spec:     `{"ClientPassword":{"name":5,"namespace":"team-a"}}`,
			want:     v1.AzureIdentitySpec{ClientPassword: corev1.SecretReference{Namespace: "team-a"}},
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "ClientPassword.name" must be a string, not a number; fix its value`,
			wantWarnings: []string{
				ref + `spec key "ClientPassword" is a legacy spelling; rename it to "clientPassword"`,
			},
		},
		{
			name:     "a bad spelling beside a good one leaves the field zero",
			spec:     `{"clientID":"c","ClientID":5}`,
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "ClientID" must be a string, not a number; fix its value`,
		},
		{
			name:     "several problems are reported together",
			spec:     `{"type":0,"Type":1,"clientID":[]}`,
			wantErrs: []error{v1.ErrInvalidField, v1.ErrLegacyConflict},
			wantErr: ref + `spec has both "type" and "Type" with different values; delete one of them; ` +
				ref + `spec key "clientID" must be a string, not a list; fix its value`,
		},
		{
			name: "unknown keys are ignored, each with a warning, except aad-pod-identity's own metadata",
			spec: `{"clientID":"c","resourceGroup":"rg","metadata":{"name":"old"},"Selector":"x","clientIDs":"d","clientPassword":{"name":"s","nmae":"t"}}`,
			want: v1.AzureIdentitySpec{ClientID: "c", ClientPassword: corev1.SecretReference{Name: "s"}},
			wantWarnings: []string{
				ref + `spec key "resourceGroup" is not a field this webhook or aad-pod-identity reads, so it has no effect; check its spelling, or delete it`,
				ref + `spec key "Selector" is not a field this webhook or aad-pod-identity reads, so it has no effect; check its spelling, or delete it`,
				ref + `spec key "clientIDs" is not a field this webhook or aad-pod-identity reads, so it has no effect; check its spelling, or delete it`,
				ref + `spec key "clientPassword.nmae" is not a field this webhook or aad-pod-identity reads, so it has no effect; check its spelling, or delete it`,
			},
		},
		{
			name:         "null means absent",
			spec:         `{"clientID":null,"ClientID":"c","replicas":null}`,
			want:         v1.AzureIdentitySpec{ClientID: "c"},
			wantWarnings: []string{ref + `spec key "ClientID" is a legacy spelling; rename it to "clientID"`},
		},
		{
			name: "empty spec",
			spec: `{}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, ok := decodeObject(t, v1.KindAzureIdentity, tc.spec).(*v1.AzureIdentity)
			require.True(t, ok)
			assert.Empty(t, cmp.Diff(tc.want, id.Spec, ignoreNotes))
			checkNotes(t, tc, id.Warnings(), id.DecodeErr())
			assert.Equal(t, tc.wantErr != "", id.Spec.Decoding.HasErrors())
		})
	}
}

func TestAzureIdentityBindingSpecDecoding(t *testing.T) {
	const ref = "AzureIdentityBinding team-a/x: "
	tests := []decodeCase[v1.AzureIdentityBindingSpec]{
		{
			name: "canonical keys give no warnings",
			spec: `{"azureIdentity":"id","selector":"app","weight":3}`,
			want: v1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "app", Weight: 3},
		},
		{
			name: "capitalised keys",
			spec: `{"AzureIdentity":"id","Selector":"app","Weight":-1}`,
			want: v1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "app", Weight: -1},
			wantWarnings: []string{
				ref + `spec key "AzureIdentity" is a legacy spelling; rename it to "azureIdentity"`,
				ref + `spec key "Selector" is a legacy spelling; rename it to "selector"`,
				ref + `spec key "Weight" is a legacy spelling; rename it to "weight"`,
			},
		},
		{
			name:         "all lower case, as aad-pod-identity's early json tags were",
			spec:         `{"azureidentity":"id","selector":"app"}`,
			want:         v1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "app"},
			wantWarnings: []string{ref + `spec key "azureidentity" is a legacy spelling; rename it to "azureIdentity"`},
		},
		{
			name:     "conflicting selectors",
			spec:     `{"azureIdentity":"id","selector":"a","Selector":"b"}`,
			want:     v1.AzureIdentityBindingSpec{AzureIdentity: "id"},
			wantErrs: []error{v1.ErrLegacyConflict},
			wantErr:  ref + `spec has both "selector" and "Selector" with different values; delete one of them`,
		},
		{
			// As type: "0" is: aad-pod-identity's schema-less CRDs stored both.
			name:         "quoted weight is used, with a warning",
			spec:         `{"azureIdentity":"id","selector":"app","weight":"10"}`,
			want:         v1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "app", Weight: 10},
			wantWarnings: []string{ref + `spec key "weight" holds the string "10"; write it as the number 10, without quotes`},
		},
		{
			name:     "wrong type: weight is a word",
			spec:     `{"azureIdentity":"id","selector":"app","weight":"high"}`,
			want:     v1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "app"},
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "weight" must be a whole number, not the string "high"; fix its value`,
		},
		{
			name:     "wrong type: weight is a boolean",
			spec:     `{"azureIdentity":"id","selector":"app","weight":true}`,
			want:     v1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "app"},
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "weight" must be a whole number, not a boolean; fix its value`,
		},
		{
			name:     "wrong type: selector is an object",
			spec:     `{"azureIdentity":"id","selector":{"matchLabels":{"app":"x"}}}`,
			want:     v1.AzureIdentityBindingSpec{AzureIdentity: "id"},
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "selector" must be a string, not an object; fix its value`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, ok := decodeObject(t, v1.KindAzureIdentityBinding, tc.spec).(*v1.AzureIdentityBinding)
			require.True(t, ok)
			assert.Empty(t, cmp.Diff(tc.want, b.Spec, ignoreNotes))
			checkNotes(t, tc, b.Warnings(), b.DecodeErr())
		})
	}
}

func TestAzurePodIdentityExceptionSpecDecoding(t *testing.T) {
	const ref = "AzurePodIdentityException team-a/x: "
	tests := []decodeCase[v1.AzurePodIdentityExceptionSpec]{
		{
			name: "canonical key, label keys kept exactly",
			spec: `{"podLabels":{"App":"x","app":"y"}}`,
			want: v1.AzurePodIdentityExceptionSpec{PodLabels: map[string]string{"App": "x", "app": "y"}},
		},
		{
			name:         "capitalised key",
			spec:         `{"PodLabels":{"app":"x"}}`,
			want:         v1.AzurePodIdentityExceptionSpec{PodLabels: map[string]string{"app": "x"}},
			wantWarnings: []string{ref + `spec key "PodLabels" is a legacy spelling; rename it to "podLabels"`},
		},
		{
			name:     "wrong type: a label value is a number",
			spec:     `{"podLabels":{"app":"x","tier":1}}`,
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "podLabels" must map each label key to a string, but "tier" is a number; fix its value`,
		},
		{
			name:     "wrong type: podLabels is a list",
			spec:     `{"podLabels":["app=x"]}`,
			wantErrs: []error{v1.ErrInvalidField},
			wantErr:  ref + `spec key "podLabels" must be an object of label keys and values, not a list; fix its value`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := decodeObject(t, v1.KindAzurePodIdentityException, tc.spec).(*v1.AzurePodIdentityException)
			require.True(t, ok)
			assert.Empty(t, cmp.Diff(tc.want, e.Spec, ignoreNotes))
			checkNotes(t, tc, e.Warnings(), e.DecodeErr())
		})
	}
}

func TestSpecThatIsNotAnObject(t *testing.T) {
	tests := map[string]struct {
		data    string
		wantErr bool
	}{
		"a string":        {`"x"`, true},
		"a list":          {`[]`, true},
		"malformed":       {`{"clientID":`, true},
		"trailing data":   {`{} {}`, true},
		"null is a no-op": {`null`, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec := v1.AzureIdentitySpec{ClientID: "kept"}
			err := spec.UnmarshalJSON([]byte(tc.data))
			if !tc.wantErr {
				require.NoError(t, err)
				assert.Equal(t, "kept", spec.ClientID)
				return
			}
			require.ErrorIs(t, err, v1.ErrInvalidField)
			assert.Contains(t, err.Error(), "AzureIdentity spec must be a JSON object")
		})
	}
}

// Decoding replaces the whole spec, notes included, rather than merging into
// what was there, so that a reused object cannot keep stale notes.
func TestDecodingReplacesTheSpec(t *testing.T) {
	var spec v1.AzureIdentitySpec
	require.NoError(t, json.Unmarshal([]byte(`{"ClientID":"a","tenantID":"t"}`), &spec))
	require.Len(t, spec.Decoding, 1)
	require.NoError(t, json.Unmarshal([]byte(`{"clientID":"b"}`), &spec))
	assert.Equal(t, v1.AzureIdentitySpec{ClientID: "b"}, spec)
}

// Marshalling writes the canonical keys only, whatever was read.
func TestMarshalWritesCanonicalKeys(t *testing.T) {
	canonical := map[string]bool{}
	for f := range reflect.TypeFor[v1.AzureIdentitySpec]().Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		canonical[name] = true
	}
	var spec v1.AzureIdentitySpec
	require.NoError(t, json.Unmarshal([]byte(`{"Type":2,"ResourceID":"/r","ClientId":"c","ClientPassword":{"Name":"s","NameSpace":"n"},
		"TenantId":"t","AuxiliaryTenantIds":["a"],"AdResourceId":"ar","AdEndpoint":"e","Replicas":1}`), &spec))
	require.False(t, spec.Decoding.HasErrors())

	out, err := json.Marshal(spec)
	require.NoError(t, err)
	var keys map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(out, &keys))
	assert.Len(t, keys, len(canonical)-1, "every field but Decoding is written")
	for k := range keys {
		assert.True(t, canonical[k], "marshal wrote %q, which is not a canonical key", k)
	}
	assert.JSONEq(t, `{"name":"s","namespace":"n"}`, string(keys["clientPassword"]))

	var again v1.AzureIdentitySpec
	require.NoError(t, json.Unmarshal(out, &again))
	assert.Empty(t, again.Decoding, "canonical output decodes without notes")
	assert.Empty(t, cmp.Diff(spec, again, ignoreNotes))
}

// errors.As gives the webhook the object and the field of each problem.
func TestDecodeErrorsAreFieldErrors(t *testing.T) {
	id := decodeObject(t, v1.KindAzureIdentity, `{"clientID":1,"TenantID":"a","tenantID":"b"}`).(*v1.AzureIdentity)
	err := id.DecodeErr()
	require.Error(t, err)
	var fieldErrs []*v1.FieldError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *v1.FieldError
		require.True(t, errors.As(e, &fe))
		fieldErrs = append(fieldErrs, fe)
	}
	require.Len(t, fieldErrs, 2)
	assert.Equal(t, v1.FieldError{Kind: v1.KindAzureIdentity, Namespace: "team-a", Name: "x", Field: "clientID", Reason: v1.ErrInvalidField,
		Message: ref + `spec key "clientID" must be a string, not a number; fix its value`}, *fieldErrs[0])
	assert.Equal(t, "tenantID", fieldErrs[1].Field)
	assert.ErrorIs(t, fieldErrs[1], v1.ErrLegacyConflict)
}
