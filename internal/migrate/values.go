package migrate

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// The values migrate prints as shell words and HCL strings come from
// AzureIdentity objects, which any namespace editor may write. The plan
// goes to a cluster admin who runs it, so a value is printed in a command
// only once it has the shape Azure gives it: client and tenant IDs are
// GUIDs, and a resource ID is a user-assigned identity's ARM ID. Quoting
// stays on top of that, for the values no check covers (the issuer).

const guid = `[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`

var (
	guidPattern = regexp.MustCompile(`^` + guid + `$`)
	// resourceIDPattern is a user-assigned identity's ARM ID. Azure
	// compares the segment names without case. Resource group names are
	// 1 to 90 letters, digits, '_', '-', '.', '(' and ')', not ending in
	// '.'; identity names 3 to 128 letters, digits, '-' and '_', starting
	// with a letter or digit.
	resourceIDPattern = regexp.MustCompile(`(?i)^/subscriptions/(` + guid + `)/resourcegroups/([\p{L}\p{N}_.()-]{0,89}[\p{L}\p{N}_()-])/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/([a-z0-9][a-z0-9_-]{2,127})$`)
)

// isGUID reports whether s is a GUID in its usual 8-4-4-4-12 form.
func isGUID(s string) bool { return guidPattern.MatchString(s) }

type armID struct{ subscription, resourceGroup, name string }

// parseResourceID splits a user-assigned identity's ARM ID.
func parseResourceID(id string) (armID, bool) {
	m := resourceIDPattern.FindStringSubmatch(id)
	if m == nil {
		return armID{}, false
	}
	return armID{subscription: m[1], resourceGroup: m[2], name: m[3]}, true
}

// shellQuote leaves a plain word alone and single-quotes anything else;
// inside single quotes the shell expands nothing, and a ' is closed,
// written as "'" and reopened.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@,+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// hclString quotes s as an HCL string literal, by the rules of hclwrite:
// backslash escapes for '\\', '"' and control characters, and the
// template introducers ${ and %{ doubled to $${ and %%{, so that a value
// is never interpolated or run as a directive.
func hclString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch r {
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '$', '%':
			b.WriteRune(r)
			if strings.HasPrefix(s[i+1:], "{") {
				b.WriteRune(r)
			}
		default:
			switch {
			case unicode.IsPrint(r):
				b.WriteRune(r)
			case r < 0x10000:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				fmt.Fprintf(&b, `\U%08x`, r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// printable escapes what could break a line of the text plan or of an HCL
// comment, or make it read other than it is: control characters, line and
// paragraph separators, and format characters such as bidi overrides.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) || r == unicode.ReplacementChar {
			fmt.Fprintf(&b, `\u%04x`, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
