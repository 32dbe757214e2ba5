package charts_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSchemaRejects: values.schema.json refuses each class of bad value
// before anything is rendered, and Helm's message names the value's path
// and what is wrong with it. helm template, lint, install and upgrade all
// validate against the same schema.
func TestSchemaRejects(t *testing.T) {
	tests := []struct {
		name   string
		values string
		// want are substrings of Helm's error: the value's path and the
		// schema's complaint.
		want []string
		// byTemplate marks the one rule the schema cannot word (a value
		// required only when another is false), which the chart's
		// template fails with instead.
		byTemplate bool
	}{
		{
			name:   "a misspelt top-level key",
			values: "replicas: 3\n",
			want:   []string{"additional properties 'replicas' not allowed"},
		},
		{
			name:   "a misspelt nested key",
			values: "webhook:\n  failurPolicy: Ignore\n",
			want:   []string{"/webhook", "additional properties 'failurPolicy' not allowed"},
		},
		{
			name:   "a wrong type",
			values: "replicaCount: two\n",
			want:   []string{"/replicaCount", "got string, want integer"},
		},
		{
			name:   "a value outside its enum",
			values: "webhook:\n  failurePolicy: Never\n",
			want:   []string{"/webhook/failurePolicy", "'Fail'", "'Ignore'"},
		},
		{
			name:   "a number out of range",
			values: "webhook:\n  timeoutSeconds: 31\n",
			want:   []string{"/webhook/timeoutSeconds", "maximum"},
		},
		{
			name:   "a token lifetime out of range",
			values: "sidecar:\n  tokenExpirationSeconds: 60\n",
			want:   []string{"/sidecar/tokenExpirationSeconds", "minimum"},
		},
		{
			name:   "a token audience with a comma",
			values: "sidecar:\n  tokenAudience: api://a,api://b\n",
			want:   []string{"/sidecar/tokenAudience", "does not match pattern"},
		},
		{
			name:   "a port out of range",
			values: "sidecar:\n  port: 0\n",
			want:   []string{"/sidecar/port", "minimum"},
		},
		{
			name:   "a malformed digest",
			values: "image:\n  digest: latest\n",
			want:   []string{"/image/digest", "does not match pattern"},
		},
		{
			name:   "a malformed resource quantity",
			values: "sidecar:\n  resources:\n    requests:\n      cpu: lots\n",
			want:   []string{"/sidecar/resources/requests/cpu", "does not match pattern"},
		},
		{
			name:   "a caBundle that is not base64 PEM",
			values: "certManager:\n  enabled: false\ntls:\n  secretName: my-tls\n  caBundle: not-a-pem\n",
			want:   []string{"/tls/caBundle", "does not match pattern"},
		},
		{
			name:       "cert-manager off without the Secret and caBundle",
			values:     "certManager:\n  enabled: false\n",
			byTemplate: true,
			want:       []string{"certManager.enabled is false, so set tls.secretName", "and tls.caBundle"},
		},
		{
			name:   "a metrics port the webhook already uses",
			values: "metrics:\n  port: 9443\n",
			want:   []string{"/metrics/port", "not"},
		},
		{
			name:   "an unknown namespace selection mode",
			values: "namespaceSelection:\n  mode: labels\n",
			want:   []string{"/namespaceSelection/mode", "'annotation'", "'label'", "'all'"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "values.yaml")
			require.NoError(t, os.WriteFile(path, []byte(tt.values), 0o600))
			out, err := template(t, path)
			require.Error(t, err, "rendered:\n%s", out)
			var he *helmError
			require.True(t, errors.As(err, &he), "%v", err)
			if !tt.byTemplate {
				assert.Contains(t, he.stderr, "values don't meet the specifications of the schema(s)")
			}
			for _, w := range tt.want {
				assert.Contains(t, he.stderr, w)
			}
		})
	}
}
