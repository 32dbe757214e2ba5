package v1

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kinds, as they appear in `kind:` and in every message about an object.
const (
	KindAzureIdentity             = "AzureIdentity"
	KindAzureIdentityBinding      = "AzureIdentityBinding"
	KindAzurePodIdentityException = "AzurePodIdentityException"
)

// Plural resource names, as served by the API server.
const (
	ResourceAzureIdentities            = "azureidentities"
	ResourceAzureIdentityBindings      = "azureidentitybindings"
	ResourceAzurePodIdentityExceptions = "azurepodidentityexceptions"
)

// IdentityType is AzureIdentity.spec.type: which kind of Azure AD principal
// the identity is. The numbers are aad-pod-identity's and are what users
// wrote in their manifests.
type IdentityType int

const (
	// IdentityTypeUserAssignedMSI is a user-assigned managed identity.
	IdentityTypeUserAssignedMSI IdentityType = 0
	// IdentityTypeServicePrincipal is a service principal whose client
	// secret is in the Secret named by spec.clientPassword.
	IdentityTypeServicePrincipal IdentityType = 1
	// IdentityTypeServicePrincipalCertificate is a service principal whose
	// certificate is in the Secret named by spec.clientPassword.
	IdentityTypeServicePrincipalCertificate IdentityType = 2
)

// Known reports whether t is one of the three identity types.
func (t IdentityType) Known() bool {
	return t >= IdentityTypeUserAssignedMSI && t <= IdentityTypeServicePrincipalCertificate
}

// String describes t in words, for messages and logs.
func (t IdentityType) String() string {
	switch t {
	case IdentityTypeUserAssignedMSI:
		return "user-assigned managed identity"
	case IdentityTypeServicePrincipal:
		return "service principal with client secret"
	case IdentityTypeServicePrincipalCertificate:
		return "service principal with certificate"
	}
	return fmt.Sprintf("unknown identity type %d", int(t))
}

// AzureIdentity describes one Azure AD principal that pods may act as.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=azid
// +kubebuilder:metadata:annotations="api-approved.kubernetes.io=unapproved, aad-pod-identity compatibility"
type AzureIdentity struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec describes the principal. Keys other than those listed here are
	// kept, so that blog-era spellings such as ResourceID and ClientID
	// survive; the webhook reads keys case-insensitively and warns about
	// such spellings.
	// +kubebuilder:pruning:PreserveUnknownFields
	Spec   AzureIdentitySpec   `json:"spec"`
	Status AzureIdentityStatus `json:"status,omitzero"`
}

// AzureIdentitySpec is the principal's description. Its JSON keys are
// matched case-insensitively; see UnmarshalJSON.
type AzureIdentitySpec struct {
	// Type is 0 (user-assigned managed identity), 1 (service principal with
	// client secret) or 2 (service principal with certificate).
	Type IdentityType `json:"type"`
	// ResourceID is the ARM resource ID of a user-assigned managed identity.
	ResourceID string `json:"resourceID,omitempty"`
	// ClientID is the application (client) ID of the managed identity or
	// service principal.
	ClientID string `json:"clientID,omitempty"`
	// ClientPassword names the Secret that holds a service principal's
	// secret (type 1) or certificate (type 2). It must be in the identity's
	// namespace.
	// +kubebuilder:pruning:PreserveUnknownFields
	ClientPassword corev1.SecretReference `json:"clientPassword,omitzero"`
	// TenantID is the Azure AD tenant of the principal.
	TenantID string `json:"tenantID,omitempty"`
	// AuxiliaryTenantIDs are further tenants a service principal may get
	// tokens for.
	// +nullable
	AuxiliaryTenantIDs []string `json:"auxiliaryTenantIDs,omitempty"`
	// ADResourceID is aad-pod-identity's optional Azure AD resource of a
	// service principal.
	ADResourceID string `json:"adResourceID,omitempty"`
	// ADEndpoint is the Azure AD authority host, for sovereign clouds.
	ADEndpoint string `json:"adEndpoint,omitempty"`
	// Replicas is kept from aad-pod-identity and not used.
	// +nullable
	Replicas *int32 `json:"replicas,omitempty"`

	// Decoding is what the tolerant decoder noticed about the keys. It is
	// never serialised; DeepCopy copies it, so cached objects keep it.
	Decoding DecodeNotes `json:"-"`
}

// AzureIdentityStatus is kept from aad-pod-identity, whose controller wrote
// it. This project writes no status.
type AzureIdentityStatus struct {
	// AvailableReplicas is aad-pod-identity's count of node assignments.
	AvailableReplicas int32 `json:"availableReplicas,omitempty"`
}

// AzureIdentityList is a list of AzureIdentity.
//
// +kubebuilder:object:root=true
type AzureIdentityList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []AzureIdentity `json:"items"`
}

// AzureIdentityBinding gives the AzureIdentity it names to every pod in its
// namespace whose aadpodidbinding label equals its selector.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=azidb
// +kubebuilder:metadata:annotations="api-approved.kubernetes.io=unapproved, aad-pod-identity compatibility"
type AzureIdentityBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec names the identity and the pod label value. Keys other than
	// those listed here are kept, so that blog-era spellings such as
	// AzureIdentity and Selector survive; the webhook reads keys
	// case-insensitively and warns about such spellings.
	// +kubebuilder:pruning:PreserveUnknownFields
	Spec   AzureIdentityBindingSpec   `json:"spec"`
	Status AzureIdentityBindingStatus `json:"status,omitzero"`
}

// AzureIdentityBindingSpec ties a pod label value to an identity. Its JSON
// keys are matched case-insensitively; see UnmarshalJSON.
type AzureIdentityBindingSpec struct {
	// AzureIdentity is the name of an AzureIdentity in the binding's
	// namespace.
	AzureIdentity string `json:"azureIdentity,omitempty"`
	// Selector is compared, by exact string equality, with the value of a
	// pod's aadpodidbinding label.
	Selector string `json:"selector,omitempty"`
	// Weight chooses the default identity when several bindings match one
	// pod: the highest weight wins.
	Weight int `json:"weight,omitempty"`

	// Decoding is what the tolerant decoder noticed about the keys. It is
	// never serialised; DeepCopy copies it, so cached objects keep it.
	Decoding DecodeNotes `json:"-"`
}

// AzureIdentityBindingStatus is kept from aad-pod-identity, whose
// controller wrote it. This project writes no status.
type AzureIdentityBindingStatus struct {
	// AvailableReplicas is aad-pod-identity's count of node assignments.
	AvailableReplicas int32 `json:"availableReplicas,omitempty"`
}

// AzureIdentityBindingList is a list of AzureIdentityBinding.
//
// +kubebuilder:object:root=true
type AzureIdentityBindingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []AzureIdentityBinding `json:"items"`
}

// AzurePodIdentityException exempts pods in its namespace from injection.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=azidex
// +kubebuilder:metadata:annotations="api-approved.kubernetes.io=unapproved, aad-pod-identity compatibility"
type AzurePodIdentityException struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec selects the exempt pods. Keys other than those listed here are
	// kept, so that other spellings of podLabels survive; the webhook reads
	// keys case-insensitively and warns about such spellings.
	// +kubebuilder:pruning:PreserveUnknownFields
	Spec   AzurePodIdentityExceptionSpec   `json:"spec"`
	Status AzurePodIdentityExceptionStatus `json:"status,omitzero"`
}

// AzurePodIdentityExceptionSpec selects the exempt pods. Its JSON keys are
// matched case-insensitively; see UnmarshalJSON.
type AzurePodIdentityExceptionSpec struct {
	// PodLabels exempts a pod that carries any one of these labels, with
	// the value compared case-insensitively, as aad-pod-identity did.
	PodLabels map[string]string `json:"podLabels,omitempty"`

	// Decoding is what the tolerant decoder noticed about the keys. It is
	// never serialised; DeepCopy copies it, so cached objects keep it.
	Decoding DecodeNotes `json:"-"`
}

// AzurePodIdentityExceptionStatus is kept from aad-pod-identity. This
// project writes no status.
type AzurePodIdentityExceptionStatus struct {
	// Status is aad-pod-identity's free-form status text.
	Status string `json:"status,omitempty"`
}

// AzurePodIdentityExceptionList is a list of AzurePodIdentityException.
//
// +kubebuilder:object:root=true
type AzurePodIdentityExceptionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []AzurePodIdentityException `json:"items"`
}
