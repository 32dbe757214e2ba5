// Command app-standin stands in for the seed's `nginx` image on the real
// node. It does what an application in an injected pod does: it asks
// azidentity's DefaultAzureCredential for a storage token with nothing but
// the environment the webhook injected, prints the token's decoded claims
// (never the token) on one line, and then runs until it is stopped, as a
// server would. Every line it prints names it as the stand-in.
//
// Two modes serve e2e/node's footprint test, which measures the sidecar:
//
//	app-standin -idle                  runs until stopped and asks for nothing
//	app-standin -token-requests 10000  (through kubectl exec) makes that many
//	                                   token requests to the injected
//	                                   IDENTITY_ENDPOINT, one after another on
//	                                   one connection, and exits
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/podidentity/injector/internal/names"
)

const prefix = "nginx stand-in (pod-identity-injector e2e):"

// storageResource is the resource of every token the stand-in asks for.
const storageResource = "https://storage.azure.com"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, prefix, err)
		os.Exit(1)
	}
}

// Config is the stand-in's command line; no flags is the seed's app.
type Config struct {
	// Idle asks for no token and runs until stopped.
	Idle bool
	// TokenRequests, if positive, makes that many token requests and exits.
	TokenRequests int
}

// AddFlags binds the fields to fs.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Idle, "idle", false, "ask for no token; run until stopped")
	fs.IntVar(&c.TokenRequests, "token-requests", 0, "make this many token requests to IDENTITY_ENDPOINT, one after another, and exit")
}

// Validate rejects a command line that asks for two modes.
func (c *Config) Validate() error {
	if c.TokenRequests < 0 || c.TokenRequests > 1_000_000 {
		return fmt.Errorf("-token-requests %d is not in 0-1000000", c.TokenRequests)
	}
	if c.Idle && c.TokenRequests > 0 {
		return errors.New("-idle and -token-requests exclude each other")
	}
	return nil
}

func run(ctx context.Context, args []string) error {
	var cfg Config
	fs := flag.NewFlagSet("app-standin", flag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	switch {
	case cfg.TokenRequests > 0:
		return requestTokens(ctx, cfg.TokenRequests, os.Getenv(names.EnvIdentityEndpoint), os.Getenv(names.EnvIdentityHeader))
	case !cfg.Idle:
		if err := printClaims(ctx); err != nil {
			return err
		}
	}
	fmt.Println(prefix, "serving until stopped")
	<-ctx.Done()
	return nil
}

// requestTokens makes n App Service token requests for storageResource to
// endpoint with the header, as azidentity's managed identity client does,
// reading each answer whole so that one keep-alive connection carries
// them all. It prints how many succeeded and stops at the first failure.
func requestTokens(ctx context.Context, n int, endpoint, header string) error {
	if endpoint == "" || header == "" {
		return fmt.Errorf("%s and %s must be set (is the pod injected?)", names.EnvIdentityEndpoint, names.EnvIdentityHeader)
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("%s: %w", names.EnvIdentityEndpoint, err)
	}
	q := u.Query()
	q.Set("api-version", "2019-08-01")
	q.Set("resource", storageResource)
	u.RawQuery = q.Encode()
	client := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	for i := range n {
		if err := requestToken(ctx, client, u.String(), header); err != nil {
			return fmt.Errorf("token request %d of %d: %w (%d succeeded)", i+1, n, err, i)
		}
	}
	fmt.Printf("%s %d of %d token requests succeeded in %s\n", prefix, n, n, time.Since(start).Round(time.Millisecond))
	return nil
}

// requestToken makes one request and checks that the answer holds a token,
// which it never prints.
func requestToken(ctx context.Context, client *http.Client, u, header string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set(names.HeaderIdentity, header)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return fmt.Errorf("%s without an access_token (%v)", resp.Status, err)
	}
	return nil
}

// printClaims gets a storage token through azidentity and prints its
// claims.
func printClaims(ctx context.Context) error {
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
