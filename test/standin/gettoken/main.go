// Command gettoken is what an application in an injected pod does: it asks
// azidentity for a token with nothing but the environment the webhook
// injected, and prints the token's decoded claims (never the token). The
// e2e suite and `make demo` run it with exactly an app container's env.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gettoken:", err)
		os.Exit(1)
	}
}

// Output is what gettoken prints as JSON.
type Output struct {
	Credential string         `json:"credential"`
	Resource   string         `json:"resource"`
	ExpiresOn  time.Time      `json:"expiresOn"`
	Claims     map[string]any `json:"claims"`
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gettoken", flag.ContinueOnError)
	resource := fs.String("resource", "https://storage.azure.com", "resource whose token to get")
	kind := fs.String("credential", "default", "default (DefaultAzureCredential) or managed (ManagedIdentityCredential)")
	clientID := fs.String("client-id", "", "with --credential=managed: the identity's client ID; empty means the default identity")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cred azcore.TokenCredential
	var err error
	switch *kind {
	case "default":
		cred, err = azidentity.NewDefaultAzureCredential(nil)
	case "managed":
		opts := &azidentity.ManagedIdentityCredentialOptions{}
		if *clientID != "" {
			opts.ID = azidentity.ClientID(*clientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(opts)
	default:
		return fmt.Errorf("--credential %q: want default or managed", *kind)
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{strings.TrimSuffix(*resource, "/") + "/.default"}})
	if err != nil {
		return err
	}
	claims, err := decodeClaims(tok.Token)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(Output{Credential: *kind, Resource: *resource, ExpiresOn: tok.ExpiresOn.UTC(), Claims: claims})
}

// decodeClaims reads a JWT's payload without verifying it: for display.
func decodeClaims(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("the access token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("decode token payload: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, fmt.Errorf("decode token claims: %w", err)
	}
	return claims, nil
}
