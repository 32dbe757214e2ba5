package fakeaad

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/podidentity/injector/internal/names"
)

// FederatedCredential is a federated identity credential as declared on an
// Entra application or managed identity: it trusts tokens from Issuer for
// Subject with Audience.
type FederatedCredential struct {
	// ClientID is the application (client) ID the credential is declared on.
	ClientID string
	// Issuer is the expected iss, for example a cluster's service account
	// issuer URL.
	Issuer string
	// Subject is the expected sub, for example
	// system:serviceaccount:<namespace>:<name>.
	Subject string
	// Audience is the expected aud; default names.TokenAudience.
	Audience string
	// KeyFunc returns the key that verifies a token's signature, for
	// example by looking the token's kid up in the issuer's JWKS.
	KeyFunc jwt.Keyfunc
	// Now is the clock used for exp and nbf; default time.Now.
	Now func() time.Time
}

// ErrNoFederatedCredential is wrapped when no declared credential matches
// an assertion.
var ErrNoFederatedCredential = errors.New("no matching federated identity credential")

// VerifyFederated returns an Options.VerifyAssertion that accepts an
// assertion when it verifies against one of creds declared for the client.
func VerifyFederated(creds ...FederatedCredential) func(clientID, tenantID, assertion string) error {
	return func(clientID, _ string, assertion string) error {
		var reasons []string
		for _, c := range creds {
			if !strings.EqualFold(c.ClientID, clientID) {
				continue
			}
			err := c.verify(assertion)
			if err == nil {
				return nil
			}
			reasons = append(reasons, err.Error())
		}
		if len(reasons) == 0 {
			return fmt.Errorf("%w: none is declared for client %q", ErrNoFederatedCredential, clientID)
		}
		return fmt.Errorf("%w for client %q: %s", ErrNoFederatedCredential, clientID, strings.Join(reasons, "; "))
	}
}

func (c FederatedCredential) verify(assertion string) error {
	aud := c.Audience
	if aud == "" {
		aud = names.TokenAudience
	}
	now := c.Now
	if now == nil {
		now = time.Now
	}
	_, err := jwt.Parse(assertion, c.KeyFunc,
		jwt.WithValidMethods([]string{"RS256", "ES256", "PS256"}),
		jwt.WithIssuer(c.Issuer),
		jwt.WithSubject(c.Subject),
		jwt.WithAudience(aud),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(now),
	)
	if err != nil {
		return fmt.Errorf("issuer %q subject %q: %w", c.Issuer, c.Subject, err)
	}
	return nil
}

// StaticKey is a jwt.Keyfunc that always returns key.
func StaticKey(key any) jwt.Keyfunc {
	return func(*jwt.Token) (any, error) { return key, nil }
}
