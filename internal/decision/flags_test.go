package decision

import (
	"testing"

	"github.com/spf13/pflag"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/version"

	"github.com/podidentity/injector/internal/manifest"
)

func TestSupportsNativeSidecar(t *testing.T) {
	tests := map[string]struct {
		major, minor string
		want         bool
		err          bool
	}{
		"1.37":      {"1", "37", true, false},
		"1.29":      {"1", "29", true, false},
		"1.28":      {"1", "28", false, false},
		"1.30+":     {"1", "30+", true, false},
		"2.0":       {"2", "0", true, false},
		"garbage":   {"one", "x", false, true},
		"empty":     {"", "", false, true},
		"1.28+ eks": {"1", "28+", false, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := SupportsNativeSidecar(&version.Info{Major: tc.major, Minor: tc.minor})
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestFlags(t *testing.T) {
	parse := func(args ...string) (Flags, error) {
		c := DefaultFlags()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		c.AddFlags(fs)
		require.NoError(t, fs.Parse(args))
		return c, c.Validate()
	}
	c, err := parse("--sidecar-image=example.test/s:v1", "--token-port=9000", "--default-tenant-id=t", "--sidecar-memory-limit=")
	require.NoError(t, err)
	cfg, err := c.InjectConfig(true)
	require.NoError(t, err)
	assert.Equal(t, "example.test/s:v1", cfg.SidecarImage)
	assert.Equal(t, 9000, cfg.Port)
	assert.True(t, cfg.NativeSidecar)
	assert.Equal(t, "10Mi", cfg.Resources.Requests.Memory().String())
	assert.NotContains(t, cfg.Resources.Limits, "memory", "an empty limit is none")
	assert.Equal(t, Defaults{TenantID: "t", TokenSource: "federated", AllowedAuthorityHosts: []string{"login.microsoftonline.com", "login.chinacloudapi.cn", "login.microsoftonline.us"}}, c.Defaults(), "the public clouds, by default")

	for flag, want := range map[string]string{
		"--token-expiration-seconds=60":  "the token expiration 60s is not in 600-86400",
		"--token-audience=api://a b":     `the token audience "api://a b"`,
		"--sidecar-memory-request=128Mi": "above its limit",
	} {
		_, err := parse(flag)
		require.Error(t, err, flag)
		assert.Contains(t, err.Error(), want)
	}
	c, err = parse("--token-audience=api://AzureADTokenExchangeChina", "--token-expiration-seconds=7200")
	require.NoError(t, err)
	cfg, err = c.InjectConfig(true)
	require.NoError(t, err)
	assert.Equal(t, "api://AzureADTokenExchangeChina", cfg.TokenAudience)
	assert.Equal(t, int64(7200), cfg.TokenExpirationSeconds)

	_, err = parse("--sidecar-image=", "--token-port=0", "--sidecar-image-pull-policy=Sometimes", "--native-sidecar=maybe",
		"--default-token-source=magic", "--authority-host=http://x", "--sidecar-cpu-request=lots")
	require.Error(t, err)
	for _, want := range []string{"--sidecar-image is required", "--token-port 0", "Always, IfNotPresent or Never", "--native-sidecar", "--default-token-source", "--authority-host", "--sidecar-cpu-request"} {
		assert.Contains(t, err.Error(), want, "every wrong flag is named at once")
	}
}

// TestFlagsCrossNamespace: the compatibility mode is off by default, and
// its flag reaches the Planner that both binaries build.
func TestFlagsCrossNamespace(t *testing.T) {
	for args, want := range map[string]bool{"": false, "--" + CrossNamespaceFlag: true, "--" + CrossNamespaceFlag + "=false": false} {
		c := DefaultFlags()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		c.AddFlags(fs)
		var argv []string
		if args != "" {
			argv = []string{args}
		}
		require.NoError(t, fs.Parse(argv))
		p, err := c.NewPlanner(NewMemoryLookup(&manifest.Set{}), nil, true)
		require.NoError(t, err)
		assert.Equal(t, want, p.CrossNamespace, "%q", args)
	}
}
