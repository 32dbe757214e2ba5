package webhookenv

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync"

	"github.com/golang-jwt/jwt/v5"
	corev1 "k8s.io/api/core/v1"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/fakeaad"
)

// DeclareFederatedCredential does what `az identity federated-credential
// create` does: the fake Entra ID will accept, for clientID, service
// account tokens of namespace/serviceAccount issued by this cluster.
func (e *Env) DeclareFederatedCredential(clientID, namespace, serviceAccount string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.creds = append(e.creds, fakeaad.FederatedCredential{
		ClientID: clientID,
		Issuer:   e.Cluster.Issuer(),
		Subject:  fakeaad.ServiceAccountSubject(namespace, serviceAccount),
		Audience: names.TokenAudience,
		KeyFunc:  e.jwks.keyFunc,
	})
}

// SetFederatedCredentials makes creds the only federated credentials the
// fake Entra ID holds for clientIDs: every credential declared before for
// one of them is removed, the credentials of other clients stay. Each of
// creds must be for one of clientIDs; a credential without KeyFunc checks
// signatures against this cluster's JWKS, and one without Audience expects
// names.TokenAudience.
func (e *Env) SetFederatedCredentials(clientIDs []string, creds ...fakeaad.FederatedCredential) error {
	owned := func(clientID string) bool {
		for _, id := range clientIDs {
			if strings.EqualFold(id, clientID) {
				return true
			}
		}
		return false
	}
	for _, c := range creds {
		if !owned(c.ClientID) {
			return fmt.Errorf("federated credential for client %q (subject %q): the client is not one of %q, whose credentials this call sets", c.ClientID, c.Subject, clientIDs)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	kept := e.creds[:0:0]
	for _, c := range e.creds {
		if !owned(c.ClientID) {
			kept = append(kept, c)
		}
	}
	for _, c := range creds {
		if c.KeyFunc == nil {
			c.KeyFunc = e.jwks.keyFunc
		}
		kept = append(kept, c)
	}
	e.creds = kept
	return nil
}

// FederatedCredentials are the credentials declared so far, as the fake
// Entra ID holds them.
func (e *Env) FederatedCredentials() []fakeaad.FederatedCredential {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]fakeaad.FederatedCredential(nil), e.creds...)
}

// verifyAssertion checks a federated client assertion against the declared
// credentials, with the signature checked against the apiserver's JWKS.
func (e *Env) verifyAssertion(clientID, tenantID, assertion string) error {
	e.mu.Lock()
	creds := append([]fakeaad.FederatedCredential(nil), e.creds...)
	e.mu.Unlock()
	return fakeaad.VerifyFederated(creds...)(clientID, tenantID, assertion)
}

// jwksCache fetches the apiserver's /openid/v1/jwks anonymously, as Entra
// ID does, and refetches on an unknown key ID.
type jwksCache struct {
	url    string
	client *http.Client
	mu     sync.Mutex
	keys   map[string]*rsa.PublicKey
}

func (c *jwksCache) keyFunc(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.keys[kid]; ok {
		return k, nil
	}
	if err := c.fetch(); err != nil {
		return nil, err
	}
	if k, ok := c.keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("key %q is not in %s", kid, c.url)
}

func (c *jwksCache) fetch() error {
	resp, err := c.client.Get(c.url)
	if err != nil {
		return fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch JWKS %s: %s", c.url, resp.Status)
	}
	var set struct {
		Keys []struct {
			Kty, Kid, N, E string
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return fmt.Errorf("decode JWKS: %w", err)
	}
	c.keys = map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		eb, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("JWKS key %q: %w", k.Kid, err)
		}
		c.keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(eb).Int64())}
	}
	return nil
}

// Container returns the named container or init container of pod.
func Container(pod *corev1.Pod, name string) (*corev1.Container, error) {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i], nil
			}
		}
	}
	return nil, fmt.Errorf("pod %s/%s has no container %q", pod.Namespace, pod.Name, name)
}
