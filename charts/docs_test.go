package charts_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

const (
	docsPath    = "../docs/install.md"
	tableBegin  = "<!-- values table: generated from charts/pod-identity-injector/values.schema.json and values.yaml by `go test ./charts/ -update`; do not edit -->"
	tableFinish = "<!-- end of values table -->"
)

// schemaNode is the part of JSON Schema the table reads.
type schemaNode struct {
	Ref                  string                 `json:"$ref"`
	Type                 any                    `json:"type"`
	Description          string                 `json:"description"`
	Enum                 []any                  `json:"enum"`
	Properties           map[string]*schemaNode `json:"properties"`
	AdditionalProperties any                    `json:"additionalProperties"`
	Definitions          map[string]*schemaNode `json:"definitions"`
}

// valuesTable renders one row per value: objects whose keys the schema
// closes (additionalProperties: false) are expanded; free-form ones are one
// row. The default is values.yaml's.
func valuesTable(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	require.NoError(t, err)
	var root schemaNode
	require.NoError(t, json.Unmarshal(raw, &root))
	valuesRaw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	require.NoError(t, err)
	var defaults map[string]any
	require.NoError(t, yaml.Unmarshal(valuesRaw, &defaults))

	resolve := func(n *schemaNode) *schemaNode {
		if n.Ref == "" {
			return n
		}
		def := root.Definitions[strings.TrimPrefix(n.Ref, "#/definitions/")]
		require.NotNil(t, def, "unresolved %s", n.Ref)
		merged := *def
		if n.Description != "" {
			merged.Description = n.Description
		}
		return &merged
	}

	var b strings.Builder
	b.WriteString("| value | type | default | meaning |\n|---|---|---|---|\n")
	var walk func(prefix string, n *schemaNode, parentDesc string, def any)
	walk = func(prefix string, n *schemaNode, parentDesc string, def any) {
		n = resolve(n)
		if expandable(n, resolve) {
			keys := make([]string, 0, len(n.Properties))
			for k := range n.Properties {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			defMap, _ := def.(map[string]any)
			for _, k := range keys {
				path := k
				if prefix != "" {
					path = prefix + "." + k
				}
				walk(path, n.Properties[k], n.Description, defMap[k])
			}
			return
		}
		desc := n.Description
		if desc == "" {
			desc = parentDesc
		}
		require.NotEmpty(t, desc, "%s has no description in values.schema.json", prefix)
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", prefix, typeName(n), defaultCell(t, def), strings.ReplaceAll(desc, "|", `\|`))
	}
	walk("", &root, "", defaults)
	return b.String()
}

// expandable says whether an object gets a row per key: its keys are closed
// (additionalProperties: false) and each has a description or is
// expandable itself. Others, such as sidecar.resources, are one row with
// their default.
func expandable(n *schemaNode, resolve func(*schemaNode) *schemaNode) bool {
	if open, ok := n.AdditionalProperties.(bool); !ok || open || len(n.Properties) == 0 {
		return false
	}
	for _, p := range n.Properties {
		if p := resolve(p); p.Description == "" && !expandable(p, resolve) {
			return false
		}
	}
	return true
}

func typeName(n *schemaNode) string {
	var s string
	switch v := n.Type.(type) {
	case string:
		s = v
	case []any:
		var parts []string
		for _, p := range v {
			parts = append(parts, fmt.Sprint(p))
		}
		s = strings.Join(parts, " or ")
	}
	if len(n.Enum) > 0 {
		var parts []string
		for _, e := range n.Enum {
			parts = append(parts, fmt.Sprintf("`%v`", e))
		}
		s = strings.Join(parts, ", ")
	}
	return s
}

func defaultCell(t *testing.T, v any) string {
	switch v := v.(type) {
	case nil:
		return "none"
	case string:
		if v == "" {
			return `""`
		}
		return "`" + v + "`"
	}
	data, err := json.Marshal(v)
	require.NoError(t, err)
	return "`" + string(data) + "`"
}

// TestValuesTableInDocs: docs/install.md carries the table that the schema
// and values.yaml give today.
func TestValuesTableInDocs(t *testing.T) {
	table := valuesTable(t)
	doc, err := os.ReadFile(docsPath)
	require.NoError(t, err)
	before, rest, ok := strings.Cut(string(doc), tableBegin+"\n")
	require.True(t, ok, "%s lacks the line %s", docsPath, tableBegin)
	current, after, ok := strings.Cut(rest, tableFinish)
	require.True(t, ok, "%s lacks the line %s", docsPath, tableFinish)
	if *update {
		require.NoError(t, os.WriteFile(docsPath, []byte(before+tableBegin+"\n"+table+tableFinish+after), 0o644))
		current = table
	}
	assert.Equal(t, table, current, "the values table in %s is stale; run go test ./charts/ -update", docsPath)
}
