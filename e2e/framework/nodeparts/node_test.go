package nodeparts

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRegistryLocal(t *testing.T) {
	r := &Registry{Host: "127.0.0.1:5000"}
	for name, tc := range map[string]struct{ ref, want string }{
		"docker hub short name": {"nginx", "127.0.0.1:5000/library/nginx:latest"},
		"docker hub user":       {AzcopyImage, "127.0.0.1:5000/datenbetrieb/azcopy:latest"},
		"ghcr":                  {"ghcr.io/podidentity/pod-identity-sidecar:v0.1.0", "127.0.0.1:5000/podidentity/pod-identity-sidecar:v0.1.0"},
		"registry.k8s.io":       {PauseImage, "127.0.0.1:5000/pause:3.10"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := r.Local(tc.ref)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got.String())
		})
	}
	_, err := r.Local("Not A Reference")
	assert.ErrorContains(t, err, `image reference "Not A Reference"`)
}

// TestAzuriteVersion keeps the version the suite looks for equal to what
// hack/build-tools.sh installs and the lock file pins.
func TestAzuriteVersion(t *testing.T) {
	script, err := os.ReadFile("../../../hack/build-tools.sh")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^AZURITE_VERSION=(\S+)`).FindSubmatch(script)
	require.NotNil(t, m, "hack/build-tools.sh sets AZURITE_VERSION")
	assert.Equal(t, AzuriteVersion, string(m[1]))

	data, err := os.ReadFile("../../../hack/tools/azurite/package.json")
	require.NoError(t, err)
	var pkg struct{ Dependencies map[string]string }
	require.NoError(t, json.Unmarshal(data, &pkg))
	assert.Equal(t, AzuriteVersion, pkg.Dependencies["azurite"], "package.json pins the exact version")
}

// TestConfigs checks the settings this machine kind needs, which a
// refactor must not drop.
func TestConfigs(t *testing.T) {
	n := &Node{dir: "/work/node", cgroupRoot: "/x/pod-identity-node-1", opts: Options{RegistryHost: "127.0.0.1:5000", Binaries: Binaries{Runc: "/cache/runc"}}}
	ctrd := n.containerdConfig()
	for _, want := range []string{"restrict_oom_score_adj = true", `sandbox = "registry.k8s.io/pause:3.10"`, `BinaryName = "/cache/runc"`, `config_path = "/work/node/certs.d"`} {
		assert.Contains(t, ctrd, want)
	}
	assert.Contains(t, n.cniConfig(), `"subnet": "10.88.0.0/16"`)
}
