package main

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
	"github.com/podidentity/injector/test/fakeaad"
)

// TestServeRefusesAuthorityOffTheList: a sidecar whose config names an
// authority that is not on its allow-list (a hand-edited pod, or one made
// by a webhook without the check) refuses to start, and the authority, a
// fake standing for an attacker's host, receives no request at all: not the
// client secret, not the service account token.
func TestServeRefusesAuthorityOffTheList(t *testing.T) {
	tests := map[string]struct {
		allowed []string
		viaFlag bool // the identities name none; --authority-host names the fake
		wantErr string
	}{
		"no list: public clouds only": {
			wantErr: "authorityHost (from spec.adEndpoint)",
		},
		"a list without the host": {
			allowed: []string{"login.microsoftonline.com", "login.azurestack.example"},
			wantErr: "authorityHost (from spec.adEndpoint)",
		},
		"flag for identities without one": {
			viaFlag: true,
			wantErr: "--authority-host",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			port := freePort(t)
			p, err := fakeaad.NewPod(fakeaad.PodOptions{Dir: t.TempDir(), Port: port, Default: fakeaad.IdentitySecret})
			require.NoError(t, err)
			defer p.Close()
			args := []string{"serve", "--imds-endpoint", p.IMDS.URL}
			if tc.viaFlag {
				// The config lists only the public clouds.
				for i := range p.Config.Identities {
					p.Config.Identities[i].AuthorityHost, p.Config.Identities[i].DisableInstanceDiscovery = "", false
				}
				p.Config.AllowedAuthorityHosts = nil
				args = append(args, "--authority-host", p.AAD.AuthorityHost())
			} else {
				p.Config.AllowedAuthorityHosts = tc.allowed
			}
			doc, err := p.Config.Marshal()
			require.NoError(t, err)
			env := map[string]string{names.EnvSidecarConfig: doc, names.EnvIdentityHeader: p.IdentityHeader}

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- run(ctx, args, func(k string) string { return env[k] }, &bytes.Buffer{}) }()
			// Were it to start, ask it for a token of every kind, as an app
			// of the pod would; then stop it.
			var runErr error
			select {
			case runErr = <-done:
			case <-waitListening(t, port, done):
				for _, id := range fakeaad.PodIdentities {
					requestToken(t, port, p.IdentityHeader, p.Identity(id).ClientID)
				}
				cancel()
				runErr = <-done
			}
			require.Error(t, runErr, "the sidecar must not start")
			assert.ErrorIs(t, runErr, sidecarconfig.ErrAuthorityNotAllowed)
			assert.Contains(t, runErr.Error(), tc.wantErr)
			assert.Contains(t, runErr.Error(), "--allowed-authority-hosts")
			assert.Equal(t, fakeaad.Counts{}, p.AAD.Counts(), "the authority off the list received requests")
			assert.Empty(t, p.AAD.Requests())
		})
	}
}

// waitListening is closed once something accepts on the loopback port, and
// never if done fires first.
func waitListening(t *testing.T, port int, done <-chan error) <-chan struct{} {
	t.Helper()
	ch := make(chan struct{})
	go func() {
		url := "http://127.0.0.1:" + strconv.Itoa(port) + names.PathHealth
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if len(done) > 0 {
				return
			}
			if resp, err := http.Get(url); err == nil {
				_ = resp.Body.Close()
				close(ch)
				return
			}
		}
	}()
	return ch
}

func requestToken(t *testing.T, port int, header, clientID string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+names.PathAppService+
		"?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net&client_id="+clientID, nil)
	require.NoError(t, err)
	req.Header.Set(names.HeaderIdentity, header)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		_ = resp.Body.Close()
	}
}
