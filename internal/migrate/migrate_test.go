package migrate_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/examples"
	"github.com/podidentity/injector/internal/decision"
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

// flags are the webhook's defaults, with tenant as --default-tenant-id.
func flags(tenant string) decision.Flags {
	f := decision.DefaultFlags()
	f.DefaultTenantID = tenant
	return f
}

// plan runs migrate.Plan with the webhook's default flags but tenant.
func plan(t *testing.T, set *manifest.Set, issuer, tenant string) migrate.Report {
	t.Helper()
	r, err := migrate.Plan(context.Background(), set, migrate.Options{Issuer: issuer, Decision: flags(tenant)})
	require.NoError(t, err)
	return r
}

// readFile reads testdata/name through migrate.ReadFile.
func readFile(t *testing.T, name string) (*manifest.Set, []migrate.SecretProviderClass) {
	t.Helper()
	var s manifest.Set
	f, err := os.Open(filepath.Join("testdata", name))
	require.NoError(t, err)
	defer f.Close()
	spcs, err := migrate.ReadFile(&s, name, f, "default")
	require.NoError(t, err)
	return &s, spcs
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
	r := plan(t, blogSeed(t), issuer, tenant)
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
	r := plan(t, blogSeed(t), issuer, "")
	require.Len(t, r.Blockers, 1)
	assert.Equal(t, migrate.ReasonIdentityInvalid, r.Blockers[0].Reason)
	assert.Equal(t, "Deployment default/my-app", r.Blockers[0].Object, "the webhook denies the workload, and the plan says so")
	assert.Contains(t, r.Blockers[0].Message, "AzureIdentity default/blob-reader has no spec.tenantID")
	assert.Empty(t, r.Identities[0].Credentials)
}

func TestEveryBlocker(t *testing.T) {
	var s manifest.Set
	f, err := os.Open(filepath.Join("testdata", "blockers", "objects.yaml"))
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, s.Read("objects.yaml", f, "default"))
	r, err := migrate.Plan(context.Background(), &s, migrate.Options{Issuer: issuer, Decision: flags(""), Secrets: map[string]bool{}})
	require.NoError(t, err)

	got := map[string][]string{}
	for _, b := range r.Blockers {
		got[b.Reason] = append(got[b.Reason], b.Object)
	}
	assert.Equal(t, map[string][]string{
		migrate.ReasonSecretMissing:     {"AzureIdentity team-a/sp-secret"},
		migrate.ReasonIdentityInvalid:   {"CronJob team-a/nt-job"},
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

// sharedIdentity is n namespaces, each with its own copy of one managed
// identity (some spelling its IDs in upper case, which Azure compares
// without case), and a
// Deployment whose service account uses it.
func sharedIdentity(n int) string {
	var b strings.Builder
	for i := range n {
		ns := fmt.Sprintf("team-%02d", i)
		clientID := "22222222-0000-0000-0000-000000000009"
		resourceID := "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/shared"
		if i%2 == 1 {
			clientID = strings.ToUpper(clientID)
			resourceID = strings.ToUpper(resourceID)
		}
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Namespace
metadata: {name: %[1]s, annotations: {podidentity.github.io/inject: enabled}}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: copy-%[2]d, namespace: %[1]s}
spec: {type: 0, clientID: "%[3]s", tenantID: 72f988bf-86f1-41af-91ab-2d7cd011db47, resourceID: "%[4]s"}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: shared, namespace: %[1]s}
spec: {azureIdentity: copy-%[2]d, selector: s}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: %[1]s}
spec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {aadpodidbinding: s}}, spec: {serviceAccountName: app, containers: [{name: c, image: i}]}}}
`, ns, i, clientID, resourceID)
	}
	return b.String()
}

// TestLimitPerManagedIdentity: Entra ID counts federated credentials per
// managed identity, so 21 namespaces that each copy one identity need 21
// on it, however the copies name it.
func TestLimitPerManagedIdentity(t *testing.T) {
	for name, tc := range map[string]struct {
		namespaces int
		blocked    bool
	}{
		"at the limit": {namespaces: migrate.MaxFederatedCredentials},
		"over it":      {namespaces: migrate.MaxFederatedCredentials + 1, blocked: true},
	} {
		t.Run(name, func(t *testing.T) {
			var s manifest.Set
			require.NoError(t, s.Read("shared.yaml", strings.NewReader(sharedIdentity(tc.namespaces)), "default"))
			r := plan(t, &s, issuer, "")
			credentials := 0
			for _, id := range r.Identities {
				credentials += len(id.Credentials)
			}
			assert.Equal(t, tc.namespaces, credentials, "one credential per namespace, listed once")
			if !tc.blocked {
				assert.Empty(t, r.Blockers)
				return
			}
			require.Len(t, r.Blockers, 1)
			b := r.Blockers[0]
			assert.Equal(t, migrate.ReasonTooManySubjects, b.Reason)
			assert.Equal(t, "managed identity shared", b.Object)
			assert.Contains(t, b.Message, "client ID 22222222-0000-0000-0000-000000000009")
			assert.Contains(t, b.Message, "needs 21 federated credentials")
			assert.Contains(t, b.Message, "AzureIdentity team-00/copy-0, team-01/copy-1,")
			assert.Contains(t, b.Message, "split it")
			assert.Contains(t, b.Message, "token broker (issue 'One federated credential per identity')")
		})
	}
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
	r := plan(t, &s, hostileIssuer, "")

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
	commands := 0
	for line := range strings.Lines(string(text)) {
		if guarded, ok := strings.CutPrefix(strings.TrimSpace(line), "if az "); ok {
			commands++
			show, rest, ok := strings.Cut(guarded, " >/dev/null 2>&1; then echo ")
			require.True(t, ok, line)
			msg, rest, ok := strings.Cut(rest, " >&2; else az ")
			require.True(t, ok, line)
			cmd, ok := strings.CutSuffix(rest, "; fi")
			require.True(t, ok, line)
			name := "cluster-7ae30412-evil-sa---id--af3c78568a"
			assert.Equal(t, []string{"identity", "federated-credential", "show", "--name", name,
				"--identity-name", "good-id", "--resource-group", "My.RG(1)", "--subscription", "11111111-2222-3333-4444-555555555555"}, shellWords(t, show))
			assert.Len(t, shellWords(t, msg), 1, "the message is one quoted word")
			assert.Equal(t, []string{"identity", "federated-credential", "create",
				"--name", name,
				"--identity-name", "good-id",
				"--resource-group", "My.RG(1)",
				"--subscription", "11111111-2222-3333-4444-555555555555",
				"--issuer", hostileIssuer,
				"--subject", "system:serviceaccount:evil:sa'$(id)",
				"--audience", "api://AzureADTokenExchange"}, shellWords(t, cmd))
		}
	}
	assert.Equal(t, 1, commands, "one guarded command, for the one well-formed identity")
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
	r := plan(t, blogSeed(t), issuer, "contoso; id")
	require.Len(t, r.Blockers, 1)
	assert.Equal(t, migrate.ReasonTenantIDInvalid, r.Blockers[0].Reason)
	assert.Equal(t, "AzureIdentity default/blob-reader", r.Blockers[0].Object)
	assert.Contains(t, r.Blockers[0].Message, `--default-tenant-id "contoso; id"`)
	assert.Empty(t, r.Identities[0].Credentials)
}

// TestEstate plans an estate with the shapes real fleets have: one managed
// identity copied into two namespaces, subjects whose joined names
// collide, a pod's own token audience, shapes the webhook denies, an
// authority off the allow-list, and SecretProviderClasses that use NMI.
func TestEstate(t *testing.T) {
	s, spcs := readFile(t, filepath.Join("estate", "objects.yaml"))
	require.Len(t, spcs, 3, "the SecretProviderClasses are read, from a List too")
	r, err := migrate.Plan(context.Background(), s, migrate.Options{Issuer: issuer, Decision: flags(""), SecretProviderClasses: spcs, ClusterName: "prod-weu"})
	require.NoError(t, err)

	got := map[string]string{}
	for _, b := range r.Blockers {
		got[b.Object] = b.Reason
	}
	assert.Equal(t, map[string]string{
		"DaemonSet a/node-agent":        migrate.ReasonDenied,
		"Deployment a/debugger":         migrate.ReasonDenied,
		"Deployment a/iis":              migrate.ReasonDenied,
		"Job a/exfil":                   migrate.ReasonIdentityInvalid,
		"SecretProviderClass a-b/vault": migrate.ReasonSecretProvider,
		"SecretProviderClass a/orphan":  migrate.ReasonSecretProvider,
	}, got)
	for _, b := range r.Blockers {
		switch b.Object {
		case "DaemonSet a/node-agent":
			assert.Contains(t, b.Message, "spec.hostNetwork is true", "the webhook's own message")
		case "Deployment a/debugger":
			assert.Contains(t, b.Message, "hostPID")
		case "Deployment a/iis":
			assert.Contains(t, b.Message, "windows")
		case "Job a/exfil":
			assert.Contains(t, b.Message, "--allowed-authority-hosts", "the allow-list is the webhook's")
		case "SecretProviderClass a-b/vault":
			assert.Contains(t, b.Message, `usePodIdentity: "false"`)
			assert.Contains(t, b.Message, `clientID: "33333333-0000-0000-0000-000000000001"`)
			assert.Contains(t, b.Message, "system:serviceaccount:a-b:web")
		}
	}

	creds := map[string]migrate.Credential{}
	for _, id := range r.Identities {
		for _, c := range id.Credentials {
			assert.NotContains(t, creds, c.Subject, "each subject is listed once per managed identity")
			creds[c.Subject] = c
		}
	}
	require.Len(t, creds, 3)
	assert.Equal(t, "api://contoso-exchange", creds["system:serviceaccount:a:b-c"].Audience, "the pod's audience annotation reaches its credential")
	assert.Equal(t, "api://AzureADTokenExchange", creds["system:serviceaccount:a-b:c"].Audience)
	assert.Equal(t, "api://AzureADTokenExchange", creds["system:serviceaccount:a-b:web"].Audience, "the CSI driver's audience")
	assert.NotEqual(t, creds["system:serviceaccount:a:b-c"].Name, creds["system:serviceaccount:a-b:c"].Name, "a-b/c and a/b-c get names of their own")

	golden(t, "estate.text", render(t, r, migrate.FormatText))
	golden(t, "estate.terraform", render(t, r, migrate.FormatTerraform))
}

// TestTokenAudienceFlag: the webhook's --token-audience is what pods
// without the annotation present, so it is their credentials' audience.
func TestTokenAudienceFlag(t *testing.T) {
	f := flags(tenant)
	f.TokenAudience = "api://sovereign-exchange"
	r, err := migrate.Plan(context.Background(), blogSeed(t), migrate.Options{Issuer: issuer, Decision: f})
	require.NoError(t, err)
	require.Len(t, r.Identities[0].Credentials, 1)
	assert.Equal(t, "api://sovereign-exchange", r.Identities[0].Credentials[0].Audience)
}

func TestCredentialName(t *testing.T) {
	valid := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$`)
	long := strings.Repeat("n", 63)
	names := map[string]string{
		"a-b/c":          migrate.CredentialName("prod", "a-b", "c"),
		"a/b-c":          migrate.CredentialName("prod", "a", "b-c"),
		"other cluster":  migrate.CredentialName("stage", "a-b", "c"),
		"long":           migrate.CredentialName(strings.Repeat("k", 40), long, strings.Repeat("s", 253)),
		"long, one more": migrate.CredentialName(strings.Repeat("k", 40), long, strings.Repeat("s", 252)+"t"),
		"dots":           migrate.CredentialName("prod", "a", "b.c"),
		"dashes":         migrate.CredentialName("prod", "a", "b-c-"),
		"leading dash":   migrate.CredentialName("-x", "a", "b"),
	}
	seen := map[string]string{}
	for what, name := range names {
		assert.Regexp(t, valid, name, "%s: within Entra ID's rules", what)
		assert.NotContains(t, seen, name, "%s collides with %s", what, seen[name])
		seen[name] = what
	}
	assert.Equal(t, names["a-b/c"], migrate.CredentialName("prod", "a-b", "c"), "deterministic")
	assert.True(t, strings.HasPrefix(names["a-b/c"], "prod-a-b-c-"), "readable: %s", names["a-b/c"])
}

func TestClusterName(t *testing.T) {
	a := migrate.DefaultClusterName("https://westeurope.oic.prod-aks.azure.com/tenant/cluster-a/")
	b := migrate.DefaultClusterName("https://westeurope.oic.prod-aks.azure.com/tenant/cluster-b/")
	assert.NotEqual(t, a, b, "clusters of one region share the host")
	assert.True(t, strings.HasPrefix(a, "westeurope-oic-prod-aks-azure-com"[:31]), a)
	for _, n := range []string{a, b, migrate.DefaultClusterName(""), migrate.DefaultClusterName("https://" + strings.Repeat("x", 300) + "/")} {
		assert.NoError(t, migrate.ValidateClusterName(n), "the default is a valid --cluster-name")
	}
	for _, bad := range []string{"", "-x", "a b", "a.b", strings.Repeat("x", 41)} {
		assert.Error(t, migrate.ValidateClusterName(bad), "%q", bad)
	}
}

// TestCrossNamespace plans the common aad-pod-identity layout of one
// identity and binding in default, used by Deployments of team-b and
// team-c, as the webhook would in each of its modes.
func TestCrossNamespace(t *testing.T) {
	s, _ := readFile(t, filepath.Join("crossnamespace", "objects.yaml"))
	opts := migrate.Options{Issuer: issuer, Decision: flags(""), ClusterName: "prod-weu"}
	want := map[string]string{ // subject -> credential name, either way
		"system:serviceaccount:team-b:api":    migrate.CredentialName("prod-weu", "team-b", "api"),
		"system:serviceaccount:team-c:worker": migrate.CredentialName("prod-weu", "team-c", "worker"),
	}
	names := func(creds []migrate.Credential) map[string]string {
		got := map[string]string{}
		for _, c := range creds {
			assert.Equal(t, "shared", c.IdentityName)
			got[c.Subject] = c.Name
		}
		return got
	}

	t.Run("namespaced", func(t *testing.T) {
		r, err := migrate.Plan(context.Background(), s, opts)
		require.NoError(t, err)
		got := map[string]string{}
		for _, b := range r.Blockers {
			got[b.Object] = b.Reason
		}
		assert.Equal(t, map[string]string{
			"Deployment team-b/api":    migrate.ReasonCrossNamespace,
			"Deployment team-c/worker": migrate.ReasonCrossNamespace,
		}, got, "the binding the pods need is not advised away as unused")
		for _, id := range r.Identities {
			assert.Empty(t, id.Credentials, "the webhook serves no pod yet")
		}

		// (a) copy the objects into each pod's namespace
		require.Len(t, r.CopyToNamespace, 2)
		for i, ns := range []string{"team-b", "team-c"} {
			c := r.CopyToNamespace[i]
			assert.Equal(t, ns, c.Namespace)
			require.Len(t, c.Objects, 2, "the binding and its identity")
			for _, o := range c.Objects {
				meta := o["metadata"].(map[string]any)
				assert.Equal(t, ns, meta["namespace"], "%s is rewritten into the pod's namespace", o["kind"])
				for _, k := range []string{"resourceVersion", "uid", "creationTimestamp", "managedFields"} {
					assert.NotContains(t, meta, k, "%s: server fields are stripped", o["kind"])
				}
			}
			assert.Equal(t, "AzureIdentityBinding", c.Objects[1]["kind"])
			assert.Equal(t, map[string]any{"azureIdentity": "shared", "selector": "shared"}, c.Objects[1]["spec"], "spec as written")
			ai := c.Objects[0]
			assert.Equal(t, map[string]any{"owner": "platform-team"}, ai["metadata"].(map[string]any)["annotations"], "the user's annotations stay, kubectl's go")
			assert.Equal(t, "44444444-0000-0000-0000-000000000001", ai["spec"].(map[string]any)["clientID"])
			assert.Contains(t, c.YAML, "namespace: "+ns)
			assert.Empty(t, c.Secrets, "a type 0 identity needs no Secret")
			assert.Empty(t, c.Blockers, "once copied, the workload is ready")
			require.Len(t, c.Credentials, 1, "its own namespace and service account")
			assert.Equal(t, want[c.Credentials[0].Subject], c.Credentials[0].Name)
			assert.True(t, strings.HasSuffix(c.Credentials[0].Subject, ":"+ns+":"+map[string]string{"team-b": "api", "team-c": "worker"}[ns]))
		}

		// (b) the compatibility mode
		m := r.CrossNamespaceMode
		require.NotNil(t, m)
		assert.Equal(t, "--"+decision.CrossNamespaceFlag, m.Flag)
		assert.False(t, m.Enabled)
		assert.True(t, m.ServesAll)
		assert.Equal(t, []string{"Deployment team-b/api", "Deployment team-c/worker"}, m.Workloads)
		assert.Equal(t, want, names(m.Credentials), "Entra ID still checks the pod's own namespace and service account")
		assert.Empty(t, m.NotServed)

		golden(t, "crossnamespace.text", render(t, r, migrate.FormatText))
		golden(t, "crossnamespace.json", render(t, r, migrate.FormatJSON))
	})

	t.Run("cross-namespace mode", func(t *testing.T) {
		o := opts
		o.Decision.AADPodIdentityCrossNamespace = true
		r, err := migrate.Plan(context.Background(), s, o)
		require.NoError(t, err)
		assert.Empty(t, r.Blockers, "the mode serves both, as aad-pod-identity did")
		require.Len(t, r.Identities, 1)
		assert.Equal(t, want, names(r.Identities[0].Credentials), "the credentials are listed under the identity in default")
		assert.Empty(t, r.CopyToNamespace)
		require.NotNil(t, r.CrossNamespaceMode)
		assert.True(t, r.CrossNamespaceMode.Enabled)
		assert.Equal(t, []string{"Deployment team-b/api", "Deployment team-c/worker"}, r.CrossNamespaceMode.Workloads)
		assert.Equal(t, want, names(r.CrossNamespaceMode.Credentials))

		golden(t, "crossnamespace-mode.text", render(t, r, migrate.FormatText))
		golden(t, "crossnamespace-mode.json", render(t, r, migrate.FormatJSON))
	})
}

// TestCrossNamespaceSecretIdentity: a type 1 identity of another namespace
// needs its Secret in the pod's namespace, which the plan says without
// printing it, and the compatibility mode cannot serve it.
func TestCrossNamespaceSecretIdentity(t *testing.T) {
	const objects = `
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: sp, namespace: default}
spec: {type: 1, clientID: 44444444-0000-0000-0000-000000000002, tenantID: 72f988bf-86f1-41af-91ab-2d7cd011db47, clientPassword: {name: sp-secret, namespace: default}}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: sp, namespace: default}
spec: {azureIdentity: sp, selector: sp}
---
apiVersion: v1
kind: Secret
metadata: {name: sp-secret, namespace: default}
data: {clientSecret: c3VwZXItc2VjcmV0LXZhbHVl}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: batch, namespace: team-b}
spec:
  selector: {matchLabels: {app: batch}}
  template:
    metadata: {labels: {app: batch, aadpodidbinding: sp}}
    spec: {containers: [{name: batch, image: batch}]}
`
	var s manifest.Set
	require.NoError(t, s.Read("sp.yaml", strings.NewReader(objects), "default"))
	f := flags("")
	f.RequireNamespaceOptIn = false
	r, err := migrate.Plan(context.Background(), &s, migrate.Options{Issuer: issuer, Decision: f, Secrets: map[string]bool{"default/sp-secret": true}})
	require.NoError(t, err)

	require.Len(t, r.CopyToNamespace, 1)
	c := r.CopyToNamespace[0]
	require.Len(t, c.Secrets, 1)
	assert.Equal(t, migrate.SecretCopy{From: "default/sp-secret", To: "team-b/sp-secret"}, migrate.SecretCopy{From: c.Secrets[0].From, To: c.Secrets[0].To})
	assert.Equal(t, map[string]any{"name": "sp-secret", "namespace": "team-b"}, c.Objects[0]["spec"].(map[string]any)["clientPassword"],
		"spec.clientPassword.namespace must be the identity's own")
	assert.Empty(t, c.Blockers, "once the Secret is copied too, the workload is ready")
	assert.Empty(t, c.Credentials, "a client secret needs no federated credential")

	m := r.CrossNamespaceMode
	require.NotNil(t, m)
	assert.False(t, m.ServesAll, "the sidecar cannot mount another namespace's Secret")
	require.Len(t, m.NotServed, 1)
	assert.Equal(t, "Deployment team-b/batch", m.NotServed[0].Object)
	assert.Equal(t, migrate.ReasonCrossNamespaceIdentity, m.NotServed[0].Reason)

	for _, format := range []string{migrate.FormatText, migrate.FormatJSON} {
		out := string(render(t, r, format))
		assert.NotContains(t, out, "c3VwZXItc2VjcmV0LXZhbHVl", "%s: no Secret data", format)
		assert.NotContains(t, out, "super-secret-value", "%s: no Secret data", format)
	}
	assert.Contains(t, string(render(t, r, migrate.FormatText)), "Secret default/sp-secret")
}

// TestSecretProviderClassesOf: SecretProviderClasses come from the set's
// Others, one reader for every kind; one without a namespace gets the
// default, and a parameter that is not a string is refused by name.
func TestSecretProviderClassesOf(t *testing.T) {
	const spc = `apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: vault}
spec: {provider: azure, parameters: {usePodIdentity: %s, keyvaultName: kv}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
`
	var s manifest.Set
	got, err := migrate.ReadFile(&s, "spc.yaml", strings.NewReader(fmt.Sprintf(spc, `"true"`)), "team-a")
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "team-a", got[0].Namespace)
	assert.True(t, got[0].UsesPodIdentity())
	assert.Len(t, s.Others, 2, "the set keeps every object it does not model")

	_, err = migrate.ReadFile(&manifest.Set{}, "spc.yaml", strings.NewReader(fmt.Sprintf(spc, "true")), "team-a")
	require.ErrorIs(t, err, manifest.ErrInput)
	assert.Contains(t, err.Error(), "SecretProviderClass team-a/vault: spec.parameters.usePodIdentity is true, not a string")
	assert.Contains(t, err.Error(), "spc.yaml: document 1")
}

// crossNamespaceEstate is an identity and binding in default, and a
// Deployment in each of n namespaces that only that binding serves.
func crossNamespaceEstate(n int, extra string) string {
	var b strings.Builder
	b.WriteString(`apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: shared, namespace: default}
spec: {type: 0, clientID: 44444444-0000-0000-0000-000000000001, tenantID: 72f988bf-86f1-41af-91ab-2d7cd011db47, resourceID: /subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/shared}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: shared, namespace: default}
spec: {azureIdentity: shared, selector: shared}
`)
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: team-%02d}
spec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {aadpodidbinding: shared}}, spec: {serviceAccountName: app, containers: [{name: c, image: i}]}}}
`, i)
	}
	return b.String() + extra
}

// TestCrossNamespaceOverTheLimit: the subjects that either way out adds
// count against Entra ID's limit of the managed identity, which blocks
// the switch either way.
func TestCrossNamespaceOverTheLimit(t *testing.T) {
	var s manifest.Set
	require.NoError(t, s.Read("x.yaml", strings.NewReader(crossNamespaceEstate(migrate.MaxFederatedCredentials+1, "")), "default"))
	f := flags("")
	f.RequireNamespaceOptIn = false
	r, err := migrate.Plan(context.Background(), &s, migrate.Options{Issuer: issuer, Decision: f})
	require.NoError(t, err)
	var tooMany []migrate.Blocker
	for _, b := range r.Blockers {
		if b.Reason == migrate.ReasonTooManySubjects {
			tooMany = append(tooMany, b)
		}
	}
	require.Len(t, tooMany, 1)
	assert.Equal(t, "managed identity shared", tooMany[0].Object)
	assert.Contains(t, tooMany[0].Message, "needs 21 federated credentials")
	assert.Len(t, r.CopyToNamespace, migrate.MaxFederatedCredentials+1)
	assert.Len(t, r.CrossNamespaceMode.Credentials, migrate.MaxFederatedCredentials+1)
}

// TestCrossNamespaceCopyConflict: a copy that would land on another
// object of its name in the pod's namespace is a blocker of that copy,
// named, and not written over it.
func TestCrossNamespaceCopyConflict(t *testing.T) {
	const other = `---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: shared, namespace: team-00}
spec: {type: 0, clientID: 44444444-0000-0000-0000-00000000000f, tenantID: 72f988bf-86f1-41af-91ab-2d7cd011db47}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: shared, namespace: team-01}
spec: {azureIdentity: shared, selector: other}
`
	var s manifest.Set
	require.NoError(t, s.Read("x.yaml", strings.NewReader(crossNamespaceEstate(3, other)), "default"))
	f := flags("")
	f.RequireNamespaceOptIn = false
	r, err := migrate.Plan(context.Background(), &s, migrate.Options{Issuer: issuer, Decision: f})
	require.NoError(t, err)
	require.Len(t, r.CopyToNamespace, 3)
	conflicts := map[string][]string{}
	for _, c := range r.CopyToNamespace {
		for _, b := range c.Blockers {
			if b.Reason == migrate.ReasonCopyConflict {
				conflicts[c.Namespace] = append(conflicts[c.Namespace], b.Object)
				assert.Contains(t, b.Message, "another metadata.name")
			}
		}
		for _, o := range c.Objects {
			assert.NotEqual(t, "team-00/AzureIdentity", c.Namespace+"/"+o["kind"].(string), "no copy over another identity")
		}
	}
	assert.Equal(t, map[string][]string{
		"team-00": {"AzureIdentity team-00/shared"},
		"team-01": {"AzureIdentityBinding team-01/shared"},
	}, conflicts)
	assert.Empty(t, r.CopyToNamespace[2].Blockers, "team-02 copies cleanly")
}
