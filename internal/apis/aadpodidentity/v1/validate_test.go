package v1_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
)

var allReasons = []error{v1.ErrLegacyConflict, v1.ErrInvalidField, v1.ErrMissingField, v1.ErrUnknownType, v1.ErrCrossNamespaceSecret}

// checkValidate asserts that err wraps exactly the sentinels in want (in
// the order of the *FieldErrors) and reads exactly msg.
func checkValidate(t *testing.T, err error, want []error, msg string) {
	t.Helper()
	if len(want) == 0 {
		assert.NoError(t, err)
		return
	}
	require.Error(t, err)
	assert.Equal(t, msg, err.Error())
	for _, reason := range allReasons {
		if containsErr(want, reason) {
			assert.ErrorIs(t, err, reason)
		} else {
			assert.NotErrorIs(t, err, reason)
		}
	}
	var fe *v1.FieldError
	require.True(t, errors.As(err, &fe), "Validate's errors are *FieldError")
	assert.Equal(t, "team-a", fe.Namespace)
	assert.Equal(t, "x", fe.Name)
}

func TestAzureIdentityValidate(t *testing.T) {
	meta := metav1.ObjectMeta{Name: "x", Namespace: "team-a"}
	tests := []struct {
		name string
		spec v1.AzureIdentitySpec
		// specJSON, when set, is decoded instead of spec.
		specJSON  string
		want      []error
		wantField string
		wantMsg   string
	}{
		{
			name: "user-assigned managed identity",
			spec: v1.AzureIdentitySpec{Type: v1.IdentityTypeUserAssignedMSI, ClientID: "c", ResourceID: "/r"},
		},
		{
			name: "service principal with its secret beside it",
			spec: v1.AzureIdentitySpec{Type: v1.IdentityTypeServicePrincipal, ClientID: "c", TenantID: "t",
				ClientPassword: corev1.SecretReference{Name: "sp", Namespace: "team-a"}},
		},
		{
			name: "service principal certificate, secret namespace left out",
			spec: v1.AzureIdentitySpec{Type: v1.IdentityTypeServicePrincipalCertificate, ClientID: "c",
				ClientPassword: corev1.SecretReference{Name: "cert"}},
		},
		{
			name:      "missing clientID",
			spec:      v1.AzureIdentitySpec{Type: v1.IdentityTypeUserAssignedMSI, ResourceID: "/r"},
			want:      []error{v1.ErrMissingField},
			wantField: "clientID",
			wantMsg:   ref + "spec.clientID is empty; set it to the client ID of the managed identity or service principal",
		},
		{
			name:      "unknown type",
			spec:      v1.AzureIdentitySpec{Type: 7, ClientID: "c"},
			want:      []error{v1.ErrUnknownType},
			wantField: "type",
			wantMsg: ref + "spec.type is 7, which is not an identity type; set it to 0 (user-assigned managed identity), " +
				"1 (service principal with client secret) or 2 (service principal with certificate)",
		},
		{
			name:      "negative type",
			spec:      v1.AzureIdentitySpec{Type: -1, ClientID: "c"},
			want:      []error{v1.ErrUnknownType},
			wantField: "type",
			wantMsg: ref + "spec.type is -1, which is not an identity type; set it to 0 (user-assigned managed identity), " +
				"1 (service principal with client secret) or 2 (service principal with certificate)",
		},
		{
			name:      "service principal without a secret",
			spec:      v1.AzureIdentitySpec{Type: v1.IdentityTypeServicePrincipal, ClientID: "c"},
			want:      []error{v1.ErrMissingField},
			wantField: "clientPassword.name",
			wantMsg: ref + "spec.type 1 (service principal with client secret) needs spec.clientPassword.name; " +
				"set it to the name of a Secret in namespace team-a that holds the client secret",
		},
		{
			name:      "service principal certificate without a secret",
			spec:      v1.AzureIdentitySpec{Type: v1.IdentityTypeServicePrincipalCertificate, ClientID: "c", ClientPassword: corev1.SecretReference{Namespace: "team-a"}},
			want:      []error{v1.ErrMissingField},
			wantField: "clientPassword.name",
			wantMsg: ref + "spec.type 2 (service principal with certificate) needs spec.clientPassword.name; " +
				"set it to the name of a Secret in namespace team-a that holds the certificate",
		},
		{
			name: "secret in another namespace",
			spec: v1.AzureIdentitySpec{Type: v1.IdentityTypeServicePrincipal, ClientID: "c",
				ClientPassword: corev1.SecretReference{Name: "sp", Namespace: "kube-system"}},
			want:      []error{v1.ErrCrossNamespaceSecret},
			wantField: "clientPassword.namespace",
			wantMsg: ref + `spec.clientPassword.namespace is "kube-system", but the Secret must live in the identity's namespace "team-a"; ` +
				`move Secret "sp" there and set clientPassword.namespace to "team-a" or remove it`,
		},
		{
			name:      "several problems at once",
			spec:      v1.AzureIdentitySpec{Type: 9},
			want:      []error{v1.ErrUnknownType, v1.ErrMissingField},
			wantField: "type",
			wantMsg: ref + "spec.type is 9, which is not an identity type; set it to 0 (user-assigned managed identity), " +
				"1 (service principal with client secret) or 2 (service principal with certificate); " +
				ref + "spec.clientID is empty; set it to the client ID of the managed identity or service principal",
		},
		{
			name:      "a decode error is reported once, not also as a missing field",
			specJSON:  `{"type":0,"clientID":42}`,
			want:      []error{v1.ErrInvalidField},
			wantField: "clientID",
			wantMsg:   ref + `spec key "clientID" must be a string, not a number; fix its value`,
		},
		{
			name:      "a conflict is reported once, not also as a missing secret",
			specJSON:  `{"type":1,"clientID":"c","clientPassword":{"name":"a"},"ClientPassword":{"name":"b"}}`,
			want:      []error{v1.ErrLegacyConflict},
			wantField: "clientPassword",
			wantMsg:   ref + `spec has both "clientPassword" and "ClientPassword" with different values; delete one of them`,
		},
		{
			name: "https adEndpoint",
			spec: v1.AzureIdentitySpec{ClientID: "c", ADEndpoint: "https://login.microsoftonline.us/"},
		},
		{
			name:      "http adEndpoint would send credentials in clear text",
			spec:      v1.AzureIdentitySpec{ClientID: "c", ADEndpoint: "http://login.microsoftonline.us/"},
			want:      []error{v1.ErrInvalidField},
			wantField: "adEndpoint",
			wantMsg: ref + `spec.adEndpoint is "http://login.microsoftonline.us/", which is not an https URL with a host; ` +
				"set it to the Entra authority, such as https://login.microsoftonline.us/, or remove it for the webhook's default",
		},
		{
			name:      "adEndpoint with user info hides its host",
			spec:      v1.AzureIdentitySpec{ClientID: "c", ADEndpoint: "https://login.microsoftonline.com@evil.example/"},
			want:      []error{v1.ErrInvalidField},
			wantField: "adEndpoint",
			wantMsg: ref + `spec.adEndpoint is "https://login.microsoftonline.com@evil.example/", which is not an https URL with a host; ` +
				"set it to the Entra authority, such as https://login.microsoftonline.us/, or remove it for the webhook's default",
		},
		{
			name:      "adEndpoint without a scheme",
			spec:      v1.AzureIdentitySpec{ClientID: "c", ADEndpoint: "login.microsoftonline.us"},
			want:      []error{v1.ErrInvalidField},
			wantField: "adEndpoint",
			wantMsg: ref + `spec.adEndpoint is "login.microsoftonline.us", which is not an https URL with a host; ` +
				"set it to the Entra authority, such as https://login.microsoftonline.us/, or remove it for the webhook's default",
		},
		{
			name:     "legacy keys alone are valid",
			specJSON: `{"Type":0,"ClientID":"c","ResourceID":"/r"}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := &v1.AzureIdentity{ObjectMeta: meta, Spec: tc.spec}
			if tc.specJSON != "" {
				id = decodeObject(t, v1.KindAzureIdentity, tc.specJSON).(*v1.AzureIdentity)
			}
			err := id.Validate()
			checkValidate(t, err, tc.want, tc.wantMsg)
			if tc.wantField != "" {
				var fe *v1.FieldError
				require.True(t, errors.As(err, &fe))
				assert.Equal(t, tc.wantField, fe.Field)
				assert.Equal(t, v1.KindAzureIdentity, fe.Kind)
			}
		})
	}
}

// Before it is applied, a manifest has no namespace; the messages say so
// rather than print an empty one.
func TestAzureIdentityValidateWithoutNamespace(t *testing.T) {
	id := &v1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: v1.AzureIdentitySpec{
		Type: v1.IdentityTypeServicePrincipal, ClientID: "c", ClientPassword: corev1.SecretReference{Namespace: "elsewhere"},
	}}
	err := id.Validate()
	require.ErrorIs(t, err, v1.ErrMissingField)
	assert.NotErrorIs(t, err, v1.ErrCrossNamespaceSecret, "the identity's namespace is not known yet")
	assert.EqualError(t, err, "AzureIdentity x: spec.type 1 (service principal with client secret) needs spec.clientPassword.name; "+
		"set it to the name of a Secret in the identity's namespace that holds the client secret")
}

func TestAzureIdentityBindingValidate(t *testing.T) {
	const ref = "AzureIdentityBinding team-a/x: "
	tests := []struct {
		name     string
		spec     v1.AzureIdentityBindingSpec
		specJSON string
		want     []error
		wantMsg  string
	}{
		{
			name: "identity and selector",
			spec: v1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "app"},
		},
		{
			name:    "missing azureIdentity",
			spec:    v1.AzureIdentityBindingSpec{Selector: "app"},
			want:    []error{v1.ErrMissingField},
			wantMsg: ref + "spec.azureIdentity is empty; set it to the name of an AzureIdentity in namespace team-a",
		},
		{
			name:    "missing selector",
			spec:    v1.AzureIdentityBindingSpec{AzureIdentity: "id"},
			want:    []error{v1.ErrMissingField},
			wantMsg: ref + "spec.selector is empty; set it to the value of the aadpodidbinding label of the pods that should get this identity",
		},
		{
			name: "missing both",
			want: []error{v1.ErrMissingField},
			wantMsg: ref + "spec.azureIdentity is empty; set it to the name of an AzureIdentity in namespace team-a; " +
				ref + "spec.selector is empty; set it to the value of the aadpodidbinding label of the pods that should get this identity",
		},
		{
			name:     "conflicting selectors",
			specJSON: `{"azureIdentity":"id","Selector":"a","selector":"b"}`,
			want:     []error{v1.ErrLegacyConflict},
			wantMsg:  ref + `spec has both "Selector" and "selector" with different values; delete one of them`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &v1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "team-a"}, Spec: tc.spec}
			if tc.specJSON != "" {
				b = decodeObject(t, v1.KindAzureIdentityBinding, tc.specJSON).(*v1.AzureIdentityBinding)
			}
			checkValidate(t, b.Validate(), tc.want, tc.wantMsg)
		})
	}
}

func TestAzurePodIdentityExceptionValidate(t *testing.T) {
	const ref = "AzurePodIdentityException team-a/x: "
	tests := []struct {
		name     string
		spec     v1.AzurePodIdentityExceptionSpec
		specJSON string
		want     []error
		wantMsg  string
	}{
		{
			name: "pod labels",
			spec: v1.AzurePodIdentityExceptionSpec{PodLabels: map[string]string{"app": "x"}},
		},
		{
			name:    "no pod labels would exempt every pod",
			want:    []error{v1.ErrMissingField},
			wantMsg: ref + "spec.podLabels is empty, which would exempt every pod of the namespace; list the labels of the pods to exempt",
		},
		{
			name:     "broken pod labels are reported once",
			specJSON: `{"podLabels":{"app":true}}`,
			want:     []error{v1.ErrInvalidField},
			wantMsg:  ref + `spec key "podLabels" must map each label key to a string, but "app" is a boolean; fix its value`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &v1.AzurePodIdentityException{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "team-a"}, Spec: tc.spec}
			if tc.specJSON != "" {
				e = decodeObject(t, v1.KindAzurePodIdentityException, tc.specJSON).(*v1.AzurePodIdentityException)
			}
			checkValidate(t, e.Validate(), tc.want, tc.wantMsg)
		})
	}
}

func TestIdentityTypeString(t *testing.T) {
	tests := map[v1.IdentityType]string{
		v1.IdentityTypeUserAssignedMSI:             "user-assigned managed identity",
		v1.IdentityTypeServicePrincipal:            "service principal with client secret",
		v1.IdentityTypeServicePrincipalCertificate: "service principal with certificate",
		3: "unknown identity type 3",
	}
	for typ, want := range tests {
		assert.Equal(t, want, typ.String())
		assert.Equal(t, typ >= 0 && typ <= 2, typ.Known())
	}
}

// TestExceptionExempts follows aad-pod-identity's labelInExceptionList: any
// one label of the exception exempts the pod, the key exactly and the value
// ignoring case. The exception is the example of aad-pod-identity's docs
// ("AzurePodIdentityException", podLabels foo: bar and app: custom).
func TestExceptionExempts(t *testing.T) {
	e := decodeObject(t, v1.KindAzurePodIdentityException, `{"podLabels":{"foo":"bar","app":"custom"}}`).(*v1.AzurePodIdentityException)
	require.NoError(t, e.Validate())
	tests := []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{"one of the labels, as in aad-pod-identity's docs", map[string]string{"aadpodidbinding": "reader", "foo": "bar"}, true},
		{"the other label", map[string]string{"aadpodidbinding": "reader", "app": "custom"}, true},
		{"both labels", map[string]string{"foo": "bar", "app": "custom"}, true},
		{"value in another case", map[string]string{"app": "Custom"}, true},
		{"key in another case is another label", map[string]string{"App": "custom"}, false},
		{"same key, other value", map[string]string{"foo": "baz", "app": "web"}, false},
		{"no labels", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, e.Exempts(tc.labels))
		})
	}
	empty := &v1.AzurePodIdentityException{}
	assert.False(t, empty.Exempts(map[string]string{"foo": "bar"}), "an exception without podLabels exempts nothing")
}
