// Package v1 holds the Go types of the aadpodidentity.k8s.io/v1 custom
// resources that aad-pod-identity defined and that this project keeps:
// AzureIdentity, AzureIdentityBinding and AzurePodIdentityException.
//
// Users wrote these objects for years with Go's case-insensitive JSON
// decoder behind them, so manifests in the wild spell keys as `ResourceID`,
// `ClientId` or `Selector`. Kubernetes' own decoder is case-sensitive, so
// every Spec type here has an UnmarshalJSON that matches keys
// case-insensitively and never fails on one bad field: it records what it
// saw in the spec's Decoding notes instead, which the objects turn into
// admission warnings (Warnings) and errors (DecodeErr, Validate).
//
// The CRD manifests in manifests/crds are generated from these types by
// hack/generate.sh.
//
// +kubebuilder:object:generate=true
// +kubebuilder:validation:Optional
// +groupName=aadpodidentity.k8s.io
package v1
