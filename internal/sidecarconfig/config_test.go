package sidecarconfig

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
)

func valid() Config {
	return Config{
		APIVersion:      APIVersion,
		Port:            names.DefaultTokenPort,
		DefaultIdentity: "reader",
		Identities: []Identity{
			{Name: "reader", Namespace: "team-a", Source: names.TokenSourceFederated, ClientID: "c1", TenantID: "t", TokenFile: "/token"},
			{Name: "node", Namespace: "team-a", Source: names.TokenSourceIMDS, ClientID: "c2"},
			{Name: "sp", Namespace: "team-a", Source: names.TokenSourceClientSecret, ClientID: "c3", TenantID: "t", SecretDir: "/s", SecretName: "sp"},
		},
	}
}

// withContainers is valid() with per-container headers.
func withContainers() Config {
	c := valid()
	c.Containers = []Container{
		{Name: "app", HeaderSHA256: HeaderSum("app-secret"), Identities: []string{"reader", "sp"}},
		{Name: "init", HeaderSHA256: HeaderSum("init-secret"), Identities: []string{"node"}},
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	for name, c := range map[string]Config{"pod-wide header": valid(), "per-container headers": withContainers()} {
		t.Run(name, func(t *testing.T) { roundTrip(t, c) })
	}
}

// TestOlderDocumentsParse: a document written before Containers existed
// means what it meant, and Containers is left out when empty, so that a
// pod without per-container identities gets the same bytes as before.
func TestOlderDocumentsParse(t *testing.T) {
	c := valid()
	s, err := c.Marshal()
	require.NoError(t, err)
	assert.NotContains(t, s, "containers")
	got, err := Parse([]byte(s))
	require.NoError(t, err)
	assert.Empty(t, got.Containers)
	assert.NotContains(t, s, "imdsRequiresHeader")
}

// TestEarlierDocumentsParse: documents as earlier webhooks wrote them,
// byte for byte, still parse and mean what they meant; the IMDS header
// requirement (added later) is off in both.
func TestEarlierDocumentsParse(t *testing.T) {
	docs := map[string]string{
		"pod-wide": `{"apiVersion":"sidecar.aadpodidentity.k8s.io/v1","port":8181,"defaultIdentity":"reader",` +
			`"identities":[{"name":"reader","namespace":"team-a","source":"federated","clientID":"c1","tenantID":"t","tokenFile":"/token"}]}`,
		"per-container": `{"apiVersion":"sidecar.aadpodidentity.k8s.io/v1","port":8181,"defaultIdentity":"reader",` +
			`"identities":[{"name":"reader","namespace":"team-a","source":"federated","clientID":"c1","tenantID":"t","tokenFile":"/token"}],` +
			`"allowedAuthorityHosts":["login.microsoftonline.com"],` +
			`"containers":[{"name":"app","headerSHA256":"` + HeaderSum("x") + `","identities":["reader"]}]}`,
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			got, err := Parse([]byte(doc))
			require.NoError(t, err)
			assert.Equal(t, "reader", got.Default().Name)
			assert.False(t, got.IMDSRequiresHeader)
		})
	}
}

// TestIMDSRequiresHeaderRoundTrip: the setting travels in the document.
func TestIMDSRequiresHeaderRoundTrip(t *testing.T) {
	c := withContainers()
	c.IMDSRequiresHeader = true
	s, err := c.Marshal()
	require.NoError(t, err)
	assert.Contains(t, s, `"imdsRequiresHeader":true`)
	got, err := Parse([]byte(s))
	require.NoError(t, err)
	assert.True(t, got.IMDSRequiresHeader)
}

func TestHeaderSum(t *testing.T) {
	// sha256("abc"), from FIPS 180-2.
	assert.Equal(t, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", HeaderSum("abc"))
}

func roundTrip(t *testing.T, c Config) {
	s, err := c.Marshal()
	require.NoError(t, err)
	got, err := Parse([]byte(s))
	require.NoError(t, err)
	assert.Equal(t, c, *got)
	assert.Equal(t, "reader", got.Default().Name)
	again, err := got.Marshal()
	require.NoError(t, err)
	assert.Equal(t, s, again, "marshalling is deterministic")
}

func TestValidate(t *testing.T) {
	tests := map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"other apiVersion":    {func(c *Config) { c.APIVersion = "v0" }, `apiVersion "v0"`},
		"port zero":           {func(c *Config) { c.Port = 0 }, "port 0"},
		"port too large":      {func(c *Config) { c.Port = 70000 }, "port 70000"},
		"no identities":       {func(c *Config) { c.Identities = nil }, "no identities"},
		"unnamed identity":    {func(c *Config) { c.Identities[1].Name = "" }, "identities[1].name is empty"},
		"duplicate identity":  {func(c *Config) { c.Identities[1].Name = "reader" }, `identity "reader" is listed twice`},
		"no client ID":        {func(c *Config) { c.Identities[0].ClientID = "" }, `identity "reader" has no clientID`},
		"federated no tenant": {func(c *Config) { c.Identities[0].TenantID = "" }, `federated identity "reader" needs tenantID`},
		"federated no file":   {func(c *Config) { c.Identities[0].TokenFile = "" }, `federated identity "reader" needs tokenFile`},
		"secret no dir":       {func(c *Config) { c.Identities[2].SecretDir = "" }, `clientSecret identity "sp" needs secretDir`},
		"unknown source":      {func(c *Config) { c.Identities[1].Source = "magic" }, `unknown source "magic"`},
		"missing default":     {func(c *Config) { c.DefaultIdentity = "ghost" }, `defaultIdentity "ghost"`},
		"unnamed container":   {func(c *Config) { c.Containers[0].Name = "" }, "containers[0].name is empty"},
		"container twice":     {func(c *Config) { c.Containers[1].Name = "app" }, `container "app" is listed twice`},
		"plaintext header":    {func(c *Config) { c.Containers[0].HeaderSHA256 = "secret" }, "not a hex SHA-256 sum"},
		"shared header":       {func(c *Config) { c.Containers[1].HeaderSHA256 = c.Containers[0].HeaderSHA256 }, "every container needs its own header"},
		"no grant":            {func(c *Config) { c.Containers[0].Identities = nil }, `container "app" has no identities`},
		"unknown grant":       {func(c *Config) { c.Containers[0].Identities = []string{"ghost"} }, `names identity "ghost"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := withContainers()
			require.NoError(t, c.Validate())
			tc.mutate(&c)
			err := c.Validate()
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrInvalid))
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseRejectsUnknownFields(t *testing.T) {
	_, err := Parse([]byte(`{"apiVersion":"` + APIVersion + `","port":8181,"defaultIdentity":"a","identities":[],"typo":1}`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "typo")
	_, err = Parse([]byte(`not json`))
	require.Error(t, err)
}
