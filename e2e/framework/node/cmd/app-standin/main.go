// Command app-standin stands in for the seed's `nginx` image on the real
// node. It does what an application in an injected pod does: it asks
// azidentity's DefaultAzureCredential for a storage token with nothing but
// the environment the webhook injected, prints the token's decoded claims
// (never the token) on one line, and then runs until it is stopped, as a
// server would. Every line it prints names it as the stand-in.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

const prefix = "nginx stand-in (pod-identity-injector e2e):"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, prefix, err)
		os.Exit(1)
	}
	fmt.Println(prefix, "serving until stopped")
	<-ctx.Done()
}

func run(ctx context.Context) error {
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://storage.azure.com/.default"}})
	if err != nil {
		return fmt.Errorf("get a storage token: %w", err)
	}
	parts := strings.Split(tok.Token, ".")
	if len(parts) != 3 {
		return errors.New("the access token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return fmt.Errorf("decode token payload: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return fmt.Errorf("decode token claims: %w", err)
	}
	out, err := json.Marshal(claims)
	if err != nil {
		return err
	}
	fmt.Println(prefix, "token claims", string(out))
	return nil
}
