package sidecarconfig

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckAuthority(t *testing.T) {
	allowed := []string{"login.microsoftonline.com", "https://login.azurestack.example:8443/", "127.0.0.1:9000", "[::1]:9001"}
	tests := map[string]struct {
		authority string
		want      error // nil: allowed
	}{
		"public cloud":                         {"https://login.microsoftonline.com/", nil},
		"upper case":                           {"https://LOGIN.microsoftonline.COM", nil},
		"explicit 443":                         {"https://login.microsoftonline.com:443/", nil},
		"listed port":                          {"https://login.azurestack.example:8443/", nil},
		"loopback with port":                   {"https://127.0.0.1:9000/", nil},
		"ipv6 loopback":                        {"https://[::1]:9001/", nil},
		"http":                                 {"http://login.microsoftonline.com/", ErrAuthorityNotHTTPS},
		"no scheme":                            {"login.microsoftonline.com", ErrAuthorityNotHTTPS},
		"user info":                            {"https://login.microsoftonline.com@evil.example/", ErrAuthorityNotHTTPS},
		"query":                                {"https://login.microsoftonline.com/?x=1", ErrAuthorityNotHTTPS},
		"fragment":                             {"https://login.microsoftonline.com/#x", ErrAuthorityNotHTTPS},
		"empty":                                {"", ErrAuthorityNotHTTPS},
		"off the list":                         {"https://evil.example/", ErrAuthorityNotAllowed},
		"suffix of a listed host":              {"https://login.microsoftonline.com.evil.example/", ErrAuthorityNotAllowed},
		"listed host, other port":              {"https://login.microsoftonline.com:8443/", ErrAuthorityNotAllowed},
		"listed port, other port":              {"https://login.azurestack.example/", ErrAuthorityNotAllowed},
		"loopback, unlisted port":              {"https://127.0.0.1:9999/", ErrAuthorityNotAllowed},
		"public cloud not on an explicit list": {"https://login.chinacloudapi.cn/", ErrAuthorityNotAllowed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := CheckAuthority(tc.authority, allowed)
			if tc.want == nil {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, tc.want)
		})
	}
}

func TestAllowedHost(t *testing.T) {
	for in, want := range map[string]string{
		"login.microsoftonline.com":       "login.microsoftonline.com",
		" Login.Microsoftonline.us ":      "login.microsoftonline.us", //nolint:gocritic // the spaces are the input under test
		"host:443":                        "host",
		"host:8443":                       "host:8443",
		"https://login.chinacloudapi.cn/": "login.chinacloudapi.cn",
		"https://127.0.0.1:1234/":         "127.0.0.1:1234",
		"[::1]:9001":                      "[::1]:9001",
	} {
		got, err := AllowedHost(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "http://host/", "host/path", "a b", "user@host"} {
		_, err := AllowedHost(bad)
		assert.Error(t, err, bad)
	}
}

func TestIsPublicAuthority(t *testing.T) {
	assert.True(t, IsPublicAuthority("https://login.microsoftonline.us/"))
	assert.True(t, IsPublicAuthority(DefaultAuthorityHost))
	assert.False(t, IsPublicAuthority("https://login.azurestack.example/"))
	assert.False(t, IsPublicAuthority("http://login.microsoftonline.com/"), "http is never public")
	assert.False(t, IsPublicAuthority("https://login.microsoftonline.com:8443/"))
}

// TestValidateAuthority: a sidecar refuses an identity whose authority is
// off its list, and with no list it accepts only the public clouds.
func TestValidateAuthority(t *testing.T) {
	c := valid()
	c.Identities[0].AuthorityHost = "https://evil.example/"
	err := c.Validate()
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorIs(t, err, ErrAuthorityNotAllowed)
	assert.Contains(t, err.Error(), "AzureIdentity team-a/reader: authorityHost (from spec.adEndpoint)")
	assert.Contains(t, err.Error(), "--allowed-authority-hosts")

	c.AllowedAuthorityHosts = []string{"evil.example"}
	require.NoError(t, c.Validate(), "on the list")

	c.Identities[0].AuthorityHost = "http://evil.example/"
	require.ErrorIs(t, c.Validate(), ErrAuthorityNotHTTPS)

	c.Identities[0].AuthorityHost = "https://login.microsoftonline.us/"
	c.AllowedAuthorityHosts = nil
	require.NoError(t, c.Validate(), "public clouds without a list")

	c.AllowedAuthorityHosts = []string{"not a host"}
	require.ErrorIs(t, c.Validate(), ErrInvalid)
}
