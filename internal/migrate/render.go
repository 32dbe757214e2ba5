package migrate

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/podidentity/injector/internal/names"
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
	if len(r.Identities) == 0 {
		b.WriteString("\nNo AzureIdentity objects found.\n")
	}
	for _, id := range r.Identities {
		fmt.Fprintf(&b, "\nAzureIdentity %s/%s: type %d, source %s\n", printable(id.Namespace), printable(id.Name), id.Type, orDash(id.Source))
		fmt.Fprintf(&b, "  client ID: %s\n  tenant ID: %s\n", showGUID(id.ClientID), showGUID(id.TenantID))
		if len(id.Subjects) == 0 {
			b.WriteString("  subjects: none (no pod or pod template uses it)\n")
		} else if id.Source == names.TokenSourceFederated {
			fmt.Fprintf(&b, "  subjects (%d of at most %d federated credentials):\n", len(id.Subjects), MaxFederatedCredentials)
		} else {
			b.WriteString("  subjects:\n")
		}
		if len(id.Subjects) > 0 {
			for _, s := range id.Subjects {
				fmt.Fprintf(&b, "    system:serviceaccount:%s:%s  <- %s\n", printable(s.Namespace), printable(s.ServiceAccount), printable(strings.Join(s.Workloads, ", ")))
			}
		}
		if len(id.Credentials) > 0 {
			b.WriteString("  create these federated credentials:\n")
			for _, c := range id.Credentials {
				fmt.Fprintf(&b, "    %s\n", AzCommand(c))
			}
		}
	}
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

// AzCommand is the az CLI command that creates c, every value quoted for a
// POSIX shell.
func AzCommand(c Credential) string {
	args := []string{"az", "identity", "federated-credential", "create",
		"--name", c.Name,
		"--identity-name", c.IdentityName,
		"--resource-group", c.ResourceGroup,
		"--subscription", c.Subscription,
		"--issuer", c.Issuer,
		"--subject", c.Subject,
		"--audience", c.Audience,
	}
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	return strings.Join(args, " ")
}

func renderTerraform(w io.Writer, r Report) error {
	var b strings.Builder
	b.WriteString("# Federated identity credentials for pod-identity-injector (azurerm provider 5.x).\n")
	b.WriteString("# With azurerm 3.x or 4.x, write parent_id and resource_group_name instead of user_assigned_identity_id.\n")
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
