package migrate_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/examples"
	"github.com/podidentity/injector/internal/manifest"
	"github.com/podidentity/injector/internal/migrate"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const (
	issuer = "https://oidc.example/cluster-1/"
	tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
)

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "no golden file; run go test ./internal/migrate -update")
	assert.Equal(t, string(want), string(got), "stale golden %s; run go test ./internal/migrate -update and read the diff", path)
}

func render(t *testing.T, r migrate.Report, format string) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, migrate.Render(&b, r, format))
	return b.Bytes()
}

func blogSeed(t *testing.T) *manifest.Set {
	t.Helper()
	var s manifest.Set
	for _, f := range examples.BlogFiles {
		data, err := examples.Blog(f)
		require.NoError(t, err)
		require.NoError(t, s.Read(f, bytes.NewReader(data), "default"))
	}
	return &s
}

func TestBlogSeed(t *testing.T) {
	r := migrate.Plan(blogSeed(t), migrate.Options{Issuer: issuer, DefaultTenantID: tenant, RequireOptIn: true})
	require.Len(t, r.Identities, 1)
	id := r.Identities[0]
	require.Len(t, id.Credentials, 1)
	c := id.Credentials[0]
	assert.Equal(t, "system:serviceaccount:default:default", c.Subject, "the seed's pod runs as the default service account")
	assert.Equal(t, "blob-reader", c.IdentityName)
	assert.Equal(t, "MC_redcluster-aks-rg_redcluster_westeurope", c.ResourceGroup)
	assert.Equal(t, "00000000-0000-0000-0000-000000000000", c.Subscription)
	assert.Equal(t, issuer, c.Issuer)
	assert.Equal(t, "api://AzureADTokenExchange", c.Audience)
	assert.Empty(t, r.Blockers)
	for _, f := range []string{migrate.FormatText, migrate.FormatJSON, migrate.FormatTerraform} {
		golden(t, "blog-seed."+f, render(t, r, f))
	}
}

func TestBlogSeedWithoutTenantIsBlocked(t *testing.T) {
	r := migrate.Plan(blogSeed(t), migrate.Options{Issuer: issuer, RequireOptIn: true})
	require.Len(t, r.Blockers, 1)
	assert.Equal(t, migrate.ReasonTenantMissing, r.Blockers[0].Reason)
	assert.Equal(t, "AzureIdentity default/blob-reader", r.Blockers[0].Object)
	assert.Contains(t, r.Blockers[0].Message, "set spec.tenantID")
}

func TestEveryBlocker(t *testing.T) {
	var s manifest.Set
	f, err := os.Open(filepath.Join("testdata", "blockers", "objects.yaml"))
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, s.Read("objects.yaml", f, "default"))
	r := migrate.Plan(&s, migrate.Options{Issuer: issuer, RequireOptIn: true, Secrets: map[string]bool{}})

	got := map[string][]string{}
	for _, b := range r.Blockers {
		got[b.Reason] = append(got[b.Reason], b.Object)
	}
	assert.Equal(t, map[string][]string{
		migrate.ReasonSecretMissing:     {"AzureIdentity team-a/sp-secret"},
		migrate.ReasonTenantMissing:     {"AzureIdentity team-a/no-tenant"},
		migrate.ReasonResourceIDMissing: {"AzureIdentity team-a/no-tenant"},
		migrate.ReasonIdentityMissing:   {"AzureIdentityBinding team-a/dangling"},
		migrate.ReasonBindingUnused:     {"AzureIdentityBinding team-a/dangling"},
		migrate.ReasonSelectorUnbound:   {"Pod team-a/lost"},
		migrate.ReasonPodNeedsRestart:   {"Pod team-b/old-imds-pod"},
		migrate.ReasonNamespaceNotOptIn: {"Namespace closed"},
	}, got)

	for _, id := range r.Identities {
		if id.Name == "node-imds" {
			assert.Equal(t, "imds", id.Source, "the deprecated token-source annotation is read")
			assert.Empty(t, id.Credentials, "node IMDS needs no federated credential")
			require.Len(t, id.Subjects, 1)
		}
	}
	golden(t, "blockers.text", render(t, r, migrate.FormatText))
}

func TestTooManySubjects(t *testing.T) {
	var b strings.Builder
	b.WriteString(`apiVersion: v1
kind: Namespace
metadata: {name: big, annotations: {podidentity.github.io/inject: enabled}}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: shared, namespace: big}
spec: {type: 0, clientID: 22222222-0000-0000-0000-000000000009, tenantID: 72f988bf-86f1-41af-91ab-2d7cd011db47, resourceID: /subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/shared}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: shared, namespace: big}
spec: {azureIdentity: shared, selector: s}
`)
	for i := range migrate.MaxFederatedCredentials + 1 {
		fmt.Fprintf(&b, "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d%d, namespace: big}\nspec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {aadpodidbinding: s}}, spec: {serviceAccountName: sa%d, containers: [{name: c, image: i}]}}}\n", i, i)
	}
	var s manifest.Set
	require.NoError(t, s.Read("big.yaml", strings.NewReader(b.String()), "default"))
	r := migrate.Plan(&s, migrate.Options{Issuer: issuer, RequireOptIn: true})
	require.Len(t, r.Blockers, 1)
	assert.Equal(t, migrate.ReasonTooManySubjects, r.Blockers[0].Reason)
	assert.Contains(t, r.Blockers[0].Message, "used by 21 service accounts")
	assert.Len(t, r.Identities[0].Credentials, 21, "the commands are still listed, so the user sees the whole picture")
}

func TestHostileValuesAreQuoted(t *testing.T) {
	c := migrate.Credential{
		Name: "n", IdentityName: "x'; rm -rf / #", ResourceGroup: "rg$(id)", Subscription: "s",
		Issuer: "https://i/", Subject: "system:serviceaccount:a:b", Audience: "api://AzureADTokenExchange",
	}
	cmd := migrate.AzCommand(c)
	assert.Contains(t, cmd, `--identity-name 'x'"'"'; rm -rf / #'`)
	assert.Contains(t, cmd, `--resource-group 'rg$(id)'`)
	assert.Contains(t, cmd, "--issuer https://i/", "plain values stay readable")

	r := migrate.Report{Identities: []migrate.Identity{{Namespace: "a", Name: "b", ResourceID: "${file(\"/etc/passwd\")}\"", Credentials: []migrate.Credential{c}}}}
	tf := string(render(t, r, migrate.FormatTerraform))
	assert.Contains(t, tf, `user_assigned_identity_id = "$${file(\"/etc/passwd\")}\""`, "HCL interpolation is escaped")
}

func TestUnknownFormat(t *testing.T) {
	err := migrate.Render(&bytes.Buffer{}, migrate.Report{}, "yaml")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `output format "yaml" is not one of text, json or terraform`)
}

// TestHostileIdentities: an AzureIdentity's client ID, tenant ID and
// resource ID are written by namespace editors and read by the cluster
// admin who runs the plan. A value that is not of the shape Azure gives
// it is a blocker naming the object and field, and no command is printed
// for that identity; what is printed is quoted for the shell and for HCL.
func TestHostileIdentities(t *testing.T) {
	var s manifest.Set
	f, err := os.Open(filepath.Join("testdata", "hostile", "objects.yaml"))
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, s.Read("objects.yaml", f, "default"))
	hostileIssuer := "https://oidc.example/it's$(id)/${x}%{y}\"/"
	r := migrate.Plan(&s, migrate.Options{Issuer: hostileIssuer, RequireOptIn: true})

	got := map[string][]string{}
	for _, b := range r.Blockers {
		got[b.Object] = append(got[b.Object], b.Reason)
	}
	assert.Equal(t, map[string][]string{
		"AzureIdentity evil/shell":           {migrate.ReasonClientIDInvalid},
		"AzureIdentity evil/newline":         {migrate.ReasonTenantIDInvalid},
		"AzureIdentity evil/hcl":             {migrate.ReasonResourceIDInvalid},
		"AzureIdentity evil/not-an-identity": {migrate.ReasonResourceIDInvalid},
	}, got)
	for _, id := range r.Identities {
		if id.Name == "good" {
			require.Len(t, id.Credentials, 1, "the well-formed identity keeps its command")
			assert.Equal(t, "My.RG(1)", id.Credentials[0].ResourceGroup)
			assert.Equal(t, "good-id", id.Credentials[0].IdentityName)
			continue
		}
		assert.Empty(t, id.Credentials, "AzureIdentity %s/%s: no command for a blocked identity", id.Namespace, id.Name)
	}

	text := render(t, r, migrate.FormatText)
	tf := render(t, r, migrate.FormatTerraform)
	golden(t, "hostile.text", text)
	golden(t, "hostile.terraform", tf)
	for _, out := range [][]byte{text, tf} {
		assert.NotContains(t, string(out), "\n  create these federated credentials:\n    curl", "a newline in a value forges no line")
		assert.NotContains(t, string(out), "\u202e", "no bidi override reaches the terminal")
	}
	// Every line of the text plan that runs is one az command whose
	// arguments a POSIX shell reads back as the plan's values.
	for line := range strings.Lines(string(text)) {
		if cmd, ok := strings.CutPrefix(strings.TrimSpace(line), "az "); ok {
			assert.Equal(t, []string{"identity", "federated-credential", "create",
				"--name", "pod-identity-evil-sa---id-",
				"--identity-name", "good-id",
				"--resource-group", "My.RG(1)",
				"--subscription", "11111111-2222-3333-4444-555555555555",
				"--issuer", hostileIssuer,
				"--subject", "system:serviceaccount:evil:sa'$(id)",
				"--audience", "api://AzureADTokenExchange"}, shellWords(t, cmd))
		}
	}
}

// shellWords splits a command line as a POSIX shell does for the quoting
// AzCommand writes (plain words, single quotes, and "'" for a quote), and
// fails on anything the shell would expand or treat as an operator.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted, doubled := false, false, false
	for _, r := range line {
		switch {
		case quoted && r == '\'':
			quoted = false
		case quoted:
			cur.WriteRune(r)
		case doubled && r == '"':
			doubled = false
		case doubled && strings.ContainsRune("$`\\", r):
			t.Fatalf("%q expands inside double quotes in %s", r, line)
		case doubled:
			cur.WriteRune(r)
		case r == '\'':
			quoted, inWord = true, true
		case r == '"':
			doubled, inWord = true, true
		case r == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.ContainsRune("$`\\\"|&;<>()*?[]{}~#!\n\t", r):
			t.Fatalf("unquoted %q in %s", r, line)
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	require.False(t, quoted || doubled, "unterminated quote in %s", line)
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// TestDefaultTenantNotAGUID: the default tenant ID reaches the plan as an
// identity's tenant; a malformed one is named as the flag to fix.
func TestDefaultTenantNotAGUID(t *testing.T) {
	r := migrate.Plan(blogSeed(t), migrate.Options{Issuer: issuer, DefaultTenantID: "contoso; id", RequireOptIn: true})
	require.Len(t, r.Blockers, 1)
	assert.Equal(t, migrate.ReasonTenantIDInvalid, r.Blockers[0].Reason)
	assert.Equal(t, "AzureIdentity default/blob-reader", r.Blockers[0].Object)
	assert.Contains(t, r.Blockers[0].Message, `--default-tenant-id "contoso; id"`)
	assert.Empty(t, r.Identities[0].Credentials)
}
