// Package azure is azidentity, azcore and MSAL, one layer of the sidecar's stack that the
// hack/footprint programs add one at a time (BENCHMARKS.md, "Sidecar
// footprint"). A program links only the layers it imports.
package azure

import (
	"fmt"
	"net/http"
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Azure makes the credentials the sidecar's sources make (without calling
// Entra ID), which links azidentity, azcore and MSAL.
func Azure(c *http.Client) {
	token := os.TempDir() + "/footprint-token"
	_ = os.WriteFile(token, []byte("x"), 0o600)
	opts := azidentity.WorkloadIdentityCredentialOptions{ClientID: "00000000-0000-0000-0000-000000000001", TenantID: "00000000-0000-0000-0000-000000000002", TokenFilePath: token}
	opts.Transport = c
	if _, err := azidentity.NewWorkloadIdentityCredential(&opts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := azidentity.NewManagedIdentityCredential(nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, _, err := azidentity.ParseCertificates(nil, nil); err == nil {
		os.Exit(1)
	}
}
