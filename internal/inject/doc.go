// Package inject is the mutation at the heart of the webhook: a pure,
// deterministic and idempotent function from a pod, the identities resolved
// for it and the operator's Config to the pod with the token-server sidecar
// and the identity environment added.
//
// Inject takes no client, clock or logger, and no randomness: the per-pod
// IDENTITY_HEADER value comes in as a parameter. It deep-copies the pod and
// never modifies its argument. Running it on its own output changes nothing,
// and when another webhook adds a container between two invocations
// (reinvocationPolicy IfNeeded), the new container gets the same environment
// as the others: the port and IDENTITY_HEADER are read back from the sidecar
// that is already there.
//
// The sidecar is the only container that mounts credentials. The other
// containers get only loopback addresses, the per-pod header value and the
// default client ID, and never MSI_ENDPOINT or AZURE_FEDERATED_TOKEN_FILE,
// which would steer current Azure SDKs away from the sidecar.
package inject
