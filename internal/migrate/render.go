package migrate

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Formats of a report.
const (
	FormatText      = "text"
	FormatJSON      = "json"
	FormatTerraform = "terraform"
)

// Render writes the report in format. Every value that came from a
// cluster object is quoted for the shell or for HCL, since object fields
// are the user's input and may hold anything.
func Render(w io.Writer, r Report, format string) error {
	switch format {
	case FormatText, "":
		return renderText(w, r)
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case FormatTerraform:
		return renderTerraform(w, r)
	}
	return fmt.Errorf("output format %q is not one of %s, %s or %s", format, FormatText, FormatJSON, FormatTerraform)
}

func renderText(w io.Writer, r Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Service account issuer: %s\n", printable(r.Issuer))
	fmt.Fprintf(&b, "Cluster name in credential names: %s\n", printable(r.Cluster))
	if len(r.Identities) == 0 {
		b.WriteString("\nNo AzureIdentity objects found.\n")
	}
	for _, id := range r.Identities {
		fmt.Fprintf(&b, "\nAzureIdentity %s/%s: type %d, source %s\n", printable(id.Namespace), printable(id.Name), id.Type, orDash(id.Source))
		fmt.Fprintf(&b, "  client ID: %s\n  tenant ID: %s\n", showGUID(id.ClientID), showGUID(id.TenantID))
		if id.AuthorityHost != "" {
			fmt.Fprintf(&b, "  authority: %s\n", printable(id.AuthorityHost))
		}
		if len(id.Subjects) == 0 {
			b.WriteString("  subjects: none (no pod or pod template uses it)\n")
		} else {
			b.WriteString("  subjects:\n")
		}
		for _, s := range id.Subjects {
			audience := ""
			if s.Audience != "" {
				audience = " (audience " + printable(s.Audience) + ")"
			}
			fmt.Fprintf(&b, "    system:serviceaccount:%s:%s%s  <- %s\n", printable(s.Namespace), printable(s.ServiceAccount), audience, printable(strings.Join(s.Workloads, ", ")))
		}
		if len(id.Credentials) > 0 {
			b.WriteString("  create these federated credentials (each skipped, not overwritten, if its name exists):\n")
			for _, c := range id.Credentials {
				fmt.Fprintf(&b, "    %s\n", AzGuardedCommand(c))
			}
		}
	}
	for _, sp := range r.SecretProviderClasses {
		fmt.Fprintf(&b, "\nSecretProviderClass %s/%s: uses NMI (usePodIdentity \"true\")\n", printable(sp.Namespace), printable(sp.Name))
		b.WriteString("  workload identity form:\n    spec:\n      parameters:\n        usePodIdentity: \"false\"\n")
		fmt.Fprintf(&b, "        clientID: %s\n", strconv.Quote(cmp.Or(sp.ClientID, "<client ID of the managed identity>")))
		fmt.Fprintf(&b, "  mounted by: %s\n", orDash(strings.Join(sp.MountedBy, ", ")))
		fmt.Fprintf(&b, "  federated credentials for: %s\n", orDash(strings.Join(sp.Subjects, ", ")))
	}
	renderCrossNamespace(&b, r)
	if len(r.Blockers) == 0 {
		b.WriteString("\nNothing blocks the switch.\n")
	} else {
		fmt.Fprintf(&b, "\nBlockers (%d):\n", len(r.Blockers))
		for _, bl := range r.Blockers {
			fmt.Fprintf(&b, "  [%s] %s: %s\n", bl.Reason, printable(bl.Object), printable(bl.Message))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// renderCrossNamespace writes the two ways out for the workloads that only
// other namespaces' bindings serve, or, in the compatibility mode, which
// workloads it serves.
func renderCrossNamespace(b *strings.Builder, r Report) {
	m := r.CrossNamespaceMode
	if m == nil {
		return
	}
	credentials := func(creds []Credential) {
		for _, c := range creds {
			fmt.Fprintf(b, "      %s\n", AzGuardedCommand(c))
		}
	}
	blockers := func(bls []Blocker) {
		for _, bl := range bls {
			fmt.Fprintf(b, "      [%s] %s: %s\n", bl.Reason, printable(bl.Object), printable(bl.Message))
		}
	}
	if m.Enabled {
		fmt.Fprintf(b, "\nCross-namespace bindings: planned as the webhook with %s decides, which resolves bindings of every namespace as aad-pod-identity did.\n", m.Flag)
		fmt.Fprintf(b, "  served by another namespace's binding: %s\n", printable(strings.Join(m.Workloads, ", ")))
		b.WriteString("  their federated credentials (listed above) name each pod's own namespace and service account: Entra ID checks the pod's token.\n")
		if len(m.NotServed) > 0 {
			b.WriteString("  not served in this mode (copy the objects into the pod's namespace):\n")
			blockers(m.NotServed)
		}
		return
	}
	fmt.Fprintf(b, "\nCross-namespace bindings: only other namespaces' bindings serve %s, and the webhook does not resolve them by default. Two ways out:\n",
		printable(strings.Join(m.Workloads, ", ")))
	b.WriteString("\n  (a) Copy the AzureIdentity and AzureIdentityBinding into each pod's namespace (kubectl apply -f the YAML below).\n")
	for _, c := range r.CopyToNamespace {
		fmt.Fprintf(b, "    namespace %s, for %s:\n", printable(c.Namespace), printable(strings.Join(c.Workloads, ", ")))
		for line := range strings.Lines(c.YAML) {
			fmt.Fprintf(b, "      %s\n", printable(strings.TrimSuffix(line, "\n")))
		}
		for _, sc := range c.Secrets {
			fmt.Fprintf(b, "    copy Secret %s to %s too (spec.clientPassword; the plan never prints Secret data):\n      %s\n", printable(sc.From), printable(sc.To), sc.Command)
		}
		if len(c.Credentials) > 0 {
			b.WriteString("    then create these federated credentials:\n")
			credentials(c.Credentials)
		}
		if len(c.Blockers) > 0 {
			b.WriteString("    still blocked once copied:\n")
			blockers(c.Blockers)
		} else {
			b.WriteString("    once copied, the webhook serves these workloads.\n")
		}
	}
	fmt.Fprintf(b, "\n  (b) Or run the webhook with %s, which resolves bindings of every namespace as aad-pod-identity did (docs/security.md says what it changes).\n", m.Flag)
	if m.ServesAll {
		b.WriteString("    It serves every workload above.\n")
	} else {
		b.WriteString("    It does not serve every workload above; copy the objects for these:\n")
		blockers(m.NotServed)
	}
	if len(m.Credentials) > 0 {
		b.WriteString("    Entra ID still checks each pod's own namespace and service account, so create these federated credentials:\n")
		credentials(m.Credentials)
	}
}

// AzCommand is the az CLI command that creates c, every value quoted for a
// POSIX shell.
func AzCommand(c Credential) string {
	return quoteArgs(append(azTarget("create", c),
		"--issuer", c.Issuer,
		"--subject", c.Subject,
		"--audience", c.Audience,
	))
}

// AzShowCommand is the az CLI command that succeeds when a credential of
// c's name exists on c's identity.
func AzShowCommand(c Credential) string {
	return quoteArgs(azTarget("show", c))
}

// AzGuardedCommand creates c unless a credential of its name exists:
// `az identity federated-credential create` replaces one of the same name,
// which could be another cluster's. It is one line, with no exit, so that
// pasting it into an interactive shell ends nothing.
func AzGuardedCommand(c Credential) string {
	msg := fmt.Sprintf("federated credential %s exists on %s: not overwritten (a cluster with this --cluster-name made it)", c.Name, c.IdentityName)
	return "if " + AzShowCommand(c) + " >/dev/null 2>&1; then echo " + shellQuote(msg) + " >&2; else " + AzCommand(c) + "; fi"
}

// azTarget is the az command line that names c on its identity.
func azTarget(verb string, c Credential) []string {
	return []string{"az", "identity", "federated-credential", verb,
		"--name", c.Name,
		"--identity-name", c.IdentityName,
		"--resource-group", c.ResourceGroup,
		"--subscription", c.Subscription,
	}
}

func quoteArgs(args []string) string {
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	return strings.Join(args, " ")
}

func renderTerraform(w io.Writer, r Report) error {
	var b strings.Builder
	b.WriteString("# Federated identity credentials for pod-identity-injector (azurerm provider 5.x).\n")
	b.WriteString("# With azurerm 3.x or 4.x, write parent_id and resource_group_name instead of user_assigned_identity_id.\n")
	fmt.Fprintf(&b, "# Names carry the cluster (%s) and a hash of namespace and service account, so no other\n", printable(r.Cluster))
	b.WriteString("# cluster's plan names the same credential; azurerm refuses to create one that exists (import it).\n")
	seen := map[string]int{}
	for _, id := range r.Identities {
		for _, c := range id.Credentials {
			label := hclLabel(id.Namespace + "_" + id.Name + "_" + c.Name)
			if n := seen[label]; n > 0 {
				label = fmt.Sprintf("%s_%d", label, n+1)
			}
			seen[label]++
			fmt.Fprintf(&b, "\nresource \"azurerm_federated_identity_credential\" %s {\n", hclString(label))
			fmt.Fprintf(&b, "  name                      = %s\n", hclString(c.Name))
			fmt.Fprintf(&b, "  user_assigned_identity_id = %s\n", hclString(id.ResourceID))
			fmt.Fprintf(&b, "  audience                  = [%s]\n", hclString(c.Audience))
			fmt.Fprintf(&b, "  issuer                    = %s\n", hclString(c.Issuer))
			fmt.Fprintf(&b, "  subject                   = %s\n", hclString(c.Subject))
			b.WriteString("}\n")
		}
	}
	for _, bl := range r.Blockers {
		fmt.Fprintf(&b, "\n# BLOCKER [%s] %s: %s\n", bl.Reason, printable(bl.Object), printable(bl.Message))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// hclLabel makes a valid HCL block label: letters, digits, '_' and '-',
// starting with a letter or '_'.
func hclLabel(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, s)
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		s = "_" + s
	}
	return s
}

// showGUID is a client or tenant ID for the text plan: as it is when it is
// a GUID, else Go-quoted and marked, so that it reads as the data it is.
func showGUID(s string) string {
	if s == "" || isGUID(s) {
		return orDash(s)
	}
	return strconv.Quote(s) + " (not a GUID, see Blockers)"
}

// orDash is s for the text plan, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return printable(s)
}
