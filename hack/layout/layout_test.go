package layout

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCheckReportsPlantedViolations plants one wrong arrow at a time in an
// otherwise clean made-up graph, and expects exactly that arrow back.
func TestCheckReportsPlantedViolations(t *testing.T) {
	tests := map[string]struct {
		from Node
		to   string
	}{
		"product code imports the fakes":           {Node{"internal/tokenserver", Code}, "test/fakeaad"},
		"product code imports the examples":        {Node{"cmd/webhook", Code}, "examples"},
		"product code imports an e2e environment":  {Node{"internal/webhook", Code}, "e2e/framework/webhookenv"},
		"product code imports hack":                {Node{"cmd/sidecar", Code}, "hack/loadgen"},
		"product code imports build":               {Node{"internal/version", Code}, "build/imagebuild"},
		"product unit test imports an environment": {Node{"internal/tokenserver", UnitTest}, "e2e/framework/controlplane"},
		"product unit test imports build":          {Node{"cmd/sidecar", UnitTest}, "build/images"},
		"product unit test imports hack":           {Node{"internal/inject", UnitTest}, "hack/demo"},
		"an e2e environment builds a tool":         {Node{"e2e/framework/webhookenv", Code}, "hack/cainjector"},
		"build imports the fakes":                  {Node{"build/images", Code}, "test/fakeaad"},
		"the fakes import an environment":          {Node{"test/fakeaad", Code}, "e2e/framework/controlplane"},
		"the fakes import the examples":            {Node{"test/certgen", Code}, "examples"},
		"the control plane imports webhookenv":     {Node{"e2e/framework/controlplane", Code}, "e2e/framework/webhookenv"},
		"nodeparts imports webhookenv":             {Node{"e2e/framework/nodeparts", Code}, "e2e/framework/webhookenv"},
		"webhookenv imports nodeenv":               {Node{"e2e/framework/webhookenv", UnitTest}, "e2e/framework/nodeenv"},
		"a suite imports hack":                     {Node{"e2e/node", E2ETest}, "hack/demo"},
		"an e2e test elsewhere imports hack":       {Node{"build/images", E2ETest}, "hack/loadgen"},
		"hack imports a suite":                     {Node{"hack/demo", Code}, "e2e"},
		"a package in no room":                     {Node{"tools/gen", Code}, ""},
		"an import of a package in no room":        {Node{"hack/demo", Code}, "tools/gen"},
		"an e2e environment without a room":        {Node{"e2e/framework/brokerenv", Code}, ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			g := cleanGraph()
			if tt.to == "" {
				g[tt.from] = nil
			} else {
				g[tt.from] = append(g[tt.from], tt.to)
			}
			got := Check(g, House)
			require.Len(t, got, 1, "violations: %v", got)
			assert.Equal(t, tt.from, got[0].From)
			assert.Equal(t, tt.to, got[0].To)
			assert.NotEmpty(t, got[0].Reason)
		})
	}
}

// TestCheckExceptionIsOneArrow checks that an exception allows its one
// arrow and nothing beside it: not the same target from the package's
// other files, nor another target.
func TestCheckExceptionIsOneArrow(t *testing.T) {
	rules := House
	rules.Exceptions = []Exception{{From: Node{"examples", E2ETest}, To: "hack/demo", Why: "test"}}
	g := cleanGraph()
	g[Node{"examples", E2ETest}] = []string{"hack/demo", "hack/loadgen"}
	g[Node{"examples", UnitTest}] = []string{"hack/demo"}
	var got []string
	for _, v := range Check(g, rules) {
		got = append(got, v.From.Kind.String()+" -> "+v.To)
	}
	assert.ElementsMatch(t, []string{"e2e tests -> hack/loadgen", "unit tests -> hack/demo"}, got)
}

// TestCheckAllowsTheStack checks that every arrow the layout allows passes,
// so that the planted cases above fail for their one arrow alone.
func TestCheckAllowsTheStack(t *testing.T) {
	assert.Empty(t, Check(cleanGraph(), House))
}

// cleanGraph has an arrow of every kind the layout allows, across every
// room.
func cleanGraph() Graph {
	return Graph{
		{"internal/tokenserver", Code}:            {"internal/names", "internal/sidecarconfig"},
		{"internal/tokenserver", UnitTest}:        {"internal/tokenserver", "test/fakeaad", "test/logbuf"},
		{"internal/webhook", UnitTest}:            {"examples", "internal/inject/injecttest"},
		{"internal/webhook", E2ETest}:             {"e2e/framework/webhookenv", "test/fakeaad"},
		{"cmd/sidecar", Code}:                     {"internal/tokenserver"},
		{"cmd/sidecar", UnitTest}:                 {"test/fakeaad"},
		{"build/images", Code}:                    {"build/imagebuild", "internal/names", "internal/version"},
		{"build/images", UnitTest}:                {"internal/version", "test/logbuf"},
		{"build/images", E2ETest}:                 {"e2e/framework/controlplane", "test/fakeaad", "build/imagebuild"},
		{"test/fakeaad", Code}:                    {"internal/names", "internal/sidecarconfig"},
		{"test/certgen", Code}:                    nil,
		{"test/standin/gettoken", Code}:           nil,
		{"examples", Code}:                        nil,
		{"e2e/framework/controlplane", Code}:      nil,
		{"e2e/framework/controlplane", E2ETest}:   {"e2e/framework/controlplane"},
		{"e2e/framework/webhookenv", Code}:        {"e2e/framework/controlplane", "test/certgen", "test/fakeaad", "test/cainjector"},
		{"e2e/framework/nodeparts", Code}:         {"e2e/framework/controlplane", "build/imagebuild", "test/standin/gettoken"},
		{"e2e/framework/nodeenv", Code}:           {"e2e/framework/webhookenv", "e2e/framework/nodeparts", "e2e/framework/controlplane"},
		{"e2e", E2ETest}:                          {"e2e/framework/webhookenv", "examples", "internal/migrate"},
		{"e2e/node", E2ETest}:                     {"e2e/framework/nodeenv", "e2e/framework/nodeparts", "test/fakeaad"},
		{"charts", UnitTest}:                      {"e2e/framework/controlplane", "e2e/framework/webhookenv"},
		{"manifests", E2ETest}:                    {"e2e/framework/webhookenv", "test/certgen"},
		{"hack/certgen", Code}:                    {"test/certgen"},
		{"hack/demo", Code}:                       {"e2e/framework/nodeenv", "examples", "hack/demo/internalhelper"},
		{"hack/benche2e", UnitTest}:               {"e2e/framework/nodeenv", "internal/names"},
		{"hack/layout", UnitTest}:                 nil,
		{"internal/inject/injecttest", Code}:      {"internal/inject"},
		{"hack/demo/internalhelper", Code}:        nil,
		{"internal/apis/aadpodidentity/v1", Code}: nil,
	}
}

// TestRepositoryLayout checks the module itself: every import, test import
// and path built or run, with and without -tags e2e, points down the
// stack, and no package is outside a room.
func TestRepositoryLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the module")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	require.NoError(t, err)
	root := filepath.Dir(strings.TrimSpace(string(gomod)))

	g, err := Load(ctx, root)
	require.NoError(t, err)

	// The loader must see what the rules are about, or a clean result
	// would mean nothing: product tests that use the fakes, a path that an
	// environment builds, and the e2e-tagged suites.
	assert.Contains(t, g[Node{"internal/tokenserver", UnitTest}], "test/fakeaad")
	assert.Contains(t, g[Node{"e2e/framework/webhookenv", Code}], "test/cainjector", "go build ./test/cainjector is an arrow")
	assert.Contains(t, g[Node{"e2e/framework/nodeparts", Code}], "test/standin/gettoken")
	assert.Contains(t, g[Node{"e2e/node", E2ETest}], "e2e/framework/nodeenv")
	assert.Contains(t, g[Node{"build/images", E2ETest}], "e2e/framework/controlplane")
	assert.NotContains(t, g[Node{"build/images", UnitTest}], "e2e/framework/controlplane", "an e2e-only import counts as a suite's")

	for _, v := range Check(g, House) {
		t.Error(v)
	}
}
