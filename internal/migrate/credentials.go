package migrate

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/podidentity/injector/internal/names"
)

// Entra ID's rules for a federated identity credential's name: 3 to 120
// characters, letters, digits, '-' and '_', the first a letter or digit.
// The name is immutable, and it is unique per managed identity only: two
// clusters that write the same name to one identity overwrite each other
// (`az identity federated-credential create` is an upsert).
const (
	maxCredentialName = 120
	// credentialHashLen is the hex length of the hash that makes a name
	// unique where its readable part is not (a-b/c and a/b-c, or a cut).
	credentialHashLen = 10
	// maxClusterName bounds --cluster-name, so that the namespace and
	// service account stay readable in the name.
	maxClusterName = 40
)

// clusterNamePattern is what --cluster-name may hold: it starts every
// federated credential name, whose rule (TestCredentialName) it follows.
var clusterNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

// ValidateClusterName checks a --cluster-name: it starts every credential
// name, so it follows their rules, and is at most 40 characters.
func ValidateClusterName(name string) error {
	if len(name) > maxClusterName || !clusterNamePattern.MatchString(name) {
		return fmt.Errorf("--cluster-name %q: want 1-%d letters, digits, '-' and '_', starting with a letter or digit (it starts every federated credential name, which Entra ID restricts so)",
			name, maxClusterName)
	}
	return nil
}

// DefaultClusterName is the cluster part of credential names when no
// --cluster-name is given: the issuer's host and a short hash of the
// whole issuer. Clusters of one region share a host (AKS issuers differ
// in their path), so the hash is what tells them apart.
func DefaultClusterName(issuer string) string {
	host := "cluster"
	if u, err := url.Parse(issuer); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	host = strings.Trim(nameChars(host), "-_")
	sum := sha256.Sum256([]byte(issuer))
	suffix := hex.EncodeToString(sum[:])[:8]
	host = cmp.Or(host, "cluster")
	if len(host) > maxClusterName-1-len(suffix) {
		host = strings.TrimRight(host[:maxClusterName-1-len(suffix)], "-_")
	}
	return host + "-" + suffix
}

// CredentialName is the federated credential's name for a subject of one
// cluster: deterministic, so that running the plan twice names the same
// credential, and unique per (cluster, namespace, service account), so
// that neither another cluster nor another subject of this one reuses it.
// The readable part is the three joined by '-'; a hash of the exact
// triple makes it unique where that joining or a cut is not.
func CredentialName(cluster, namespace, serviceAccount string) string {
	sum := sha256.Sum256([]byte(cluster + "\x00" + namespace + "\x00" + serviceAccount))
	hash := hex.EncodeToString(sum[:])[:credentialHashLen]
	readable := strings.TrimLeft(nameChars(cluster+"-"+namespace+"-"+serviceAccount), "-_")
	if limit := maxCredentialName - 1 - credentialHashLen; len(readable) > limit {
		readable = readable[:limit]
	}
	if readable == "" {
		return hash
	}
	return readable + "-" + hash
}

// nameChars maps every character a credential name may not hold to '-'.
func nameChars(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, s)
}

// managedIdentity is one managed identity in Azure and the AzureIdentity
// copies that name it, by client ID or resource ID.
type managedIdentity struct {
	copies []int // indexes into report.Identities
}

// groupCopies groups the AzureIdentities by the managed identity they
// name: copies that share a client ID or a resource ID (compared without
// case, as Azure does) are one identity, in every namespace.
func groupCopies(ids []Identity) []managedIdentity {
	parent := make([]int, len(ids))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if parent[i] != i {
			parent[i] = find(parent[i])
		}
		return parent[i]
	}
	first := map[string]int{}
	for i, id := range ids {
		for _, k := range []string{"client:" + strings.ToLower(id.ClientID), "resource:" + strings.ToLower(id.ResourceID)} {
			if strings.HasSuffix(k, ":") {
				continue
			}
			if j, ok := first[k]; ok {
				parent[find(i)] = find(j)
			} else {
				first[k] = i
			}
		}
	}
	byRoot := map[int]*managedIdentity{}
	var out []*managedIdentity
	for i := range ids {
		r := find(i)
		if byRoot[r] == nil {
			byRoot[r] = &managedIdentity{}
			out = append(out, byRoot[r])
		}
		byRoot[r].copies = append(byRoot[r].copies, i)
	}
	groups := make([]managedIdentity, len(out))
	for i, g := range out {
		groups[i] = *g
	}
	return groups
}

// credentials counts the subjects of every managed identity across its
// copies, blocks one over Entra ID's limit, and lists each credential
// once, under the first copy (in the order read) that is well formed.
func (p *plan) credentials() {
	for _, g := range groupCopies(p.report.Identities) {
		subjects := map[string]string{} // namespace/serviceAccount -> audience of the listed credential
		var copies []string
		for _, i := range g.copies {
			id := &p.report.Identities[i]
			copies = append(copies, fmt.Sprintf("%s/%s", id.Namespace, id.Name))
			federated := slices.ContainsFunc(id.Subjects, func(s Subject) bool { return s.federated })
			if !federated || !p.wellFormed(*id, p.copies[key(id.Namespace, id.Name)].ai) {
				for _, s := range id.Subjects {
					if s.federated {
						subjects[key(s.Namespace, s.ServiceAccount)] = cmp.Or(subjects[key(s.Namespace, s.ServiceAccount)], s.Audience)
					}
				}
				continue
			}
			ref := fmt.Sprintf("AzureIdentity %s/%s", id.Namespace, id.Name)
			arm, parsed := parseResourceID(id.ResourceID)
			if !parsed {
				p.block(ReasonResourceIDMissing, ref, "%s has no spec.resourceID, so its federated credentials cannot be named; set it to %s",
					ref, resourceIDForm)
			}
			for _, s := range id.Subjects {
				if !s.federated {
					continue
				}
				k := key(s.Namespace, s.ServiceAccount)
				if have, ok := subjects[k]; ok {
					if have != s.Audience {
						p.block(ReasonAudienceConflict, ref, "system:serviceaccount:%s:%s presents tokens of audience %q to %s (%s) and %q to the same managed identity elsewhere; Entra ID keeps one credential per issuer and subject, with one audience: give these pods one audience (annotation %s, or --token-audience)",
							s.Namespace, s.ServiceAccount, s.Audience, ref, strings.Join(s.Workloads, ", "), have, names.TokenAudienceAnnotation)
					}
					continue
				}
				subjects[k] = s.Audience
				if !parsed {
					continue
				}
				id.Credentials = append(id.Credentials, Credential{
					Name:          CredentialName(p.cluster, s.Namespace, s.ServiceAccount),
					Subscription:  arm.subscription,
					ResourceGroup: arm.resourceGroup,
					IdentityName:  arm.name,
					Issuer:        p.opts.Issuer,
					Subject:       "system:serviceaccount:" + s.Namespace + ":" + s.ServiceAccount,
					Audience:      s.Audience,
				})
			}
		}
		if len(subjects) > MaxFederatedCredentials {
			p.tooMany(g, copies, len(subjects))
		}
	}
}

// tooMany blocks a managed identity that needs more federated credentials
// than Entra ID allows on one.
func (p *plan) tooMany(g managedIdentity, copies []string, n int) {
	first := p.report.Identities[g.copies[0]]
	object := "managed identity " + first.ClientID
	what := "client ID " + first.ClientID
	if arm, ok := parseResourceID(first.ResourceID); ok {
		object = "managed identity " + arm.name
		what += ", resource ID " + first.ResourceID
	}
	p.block(ReasonTooManySubjects, object,
		"the managed identity (%s), named by AzureIdentity %s, needs %d federated credentials from this cluster alone (one per namespace and service account whose pods use it), and Entra ID allows %d per managed identity, counting those of other clusters; "+
			"split it: give some namespaces a managed identity of their own (its client ID and resource ID in their AzureIdentity's spec.clientID and spec.resourceID), "+
			"or use the token broker (issue 'One federated credential per identity'), which needs one credential for the whole cluster",
		what, strings.Join(copies, ", "), n, MaxFederatedCredentials)
}
