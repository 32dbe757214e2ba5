package tokenserver

// Which identity a request gets: the one it names by client or resource
// ID, else the default (the pod's, or with per-container identities its
// caller's), and never one its caller's grant does not allow. The refusals
// here name the identities the caller may use, and only those, so that a
// container learns nothing of the identities of others.

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// identity is a configured identity with its source.
type identity struct {
	cfg    sidecarconfig.Identity
	label  string // namespace/name, for logs and messages
	source Source
}

// addIdentities indexes the identities of c, each with its source from
// sources, by client and resource ID, and sets the default. It returns
// them by name, for the grants.
func (s *Server) addIdentities(c *sidecarconfig.Config, sources map[string]Source) (map[string]*identity, error) {
	s.byClientID = map[string]*identity{}
	s.byResID = map[string]*identity{}
	byName := map[string]*identity{}
	for _, ic := range c.Identities {
		src := sources[ic.Name]
		if src == nil {
			return nil, fmt.Errorf("tokenserver: no source for identity %q", ic.Name)
		}
		id := &identity{cfg: ic, label: ic.Namespace + "/" + ic.Name, source: src}
		byName[ic.Name] = id
		if ic.Name == c.DefaultIdentity {
			s.def = id
		}
		// Two AzureIdentities may name one client ID (say, with different
		// sources); the first listed wins, unless the default is among
		// them (below).
		if k := strings.ToLower(ic.ClientID); s.byClientID[k] == nil {
			s.byClientID[k] = id
		}
		if k := strings.ToLower(ic.ResourceID); k != "" && s.byResID[k] == nil {
			s.byResID[k] = id
		}
	}
	s.byClientID[strings.ToLower(s.def.cfg.ClientID)] = s.def
	return byName, nil
}

// selectIdentity picks the identity a request names, or the default, and
// with per-container identities refuses one the caller's header does not
// allow.
func (s *Server) selectIdentity(req tokenRequest, caller *grant) (*identity, *apiError) {
	if caller != nil {
		id, e := s.selectGranted(req, caller)
		if id != nil || e != nil {
			return id, e
		}
	}
	var id *identity
	switch req.selectorKey {
	case "":
		return s.def, nil
	case paramClientID:
		id = s.byClientID[strings.ToLower(req.selectorValue)]
	case paramMIResID, paramMSIResID:
		id = s.byResID[strings.ToLower(req.selectorValue)]
	case paramObjectID, paramPrincipalID:
		// The webhook knows client and resource IDs only; an object ID would
		// need a Graph lookup the sidecar has no credentials for.
		return nil, &apiError{http.StatusNotFound, "identity_not_found",
			fmt.Sprintf("selecting an identity by %s is not supported by %s, which does not know object IDs; select it with client_id=<clientID of the AzureIdentity> instead (bound: %s)",
				req.selectorKey, names.SidecarContainerName, s.boundList(caller))}
	}
	if id == nil {
		return nil, &apiError{http.StatusNotFound, "identity_not_found",
			fmt.Sprintf("no identity with %s %q is bound to this pod; bound: %s. Add an AzureIdentityBinding for it with this pod's aadpodidbinding label, then recreate the pod",
				req.selectorKey, truncate(req.selectorValue), s.boundList(caller))}
	}
	if caller != nil {
		// Bound to the pod, but not to the caller's container. The message
		// names the caller's own container and grant only: nothing of the
		// container that may use id, and never a header or its sum.
		return nil, notGranted(caller, id)
	}
	return id, nil
}

// selectGranted looks the request's selector up among the identities g
// allows; it returns nil, nil when none of them matches, so that the
// caller can tell "not granted" from "not bound".
func (s *Server) selectGranted(req tokenRequest, g *grant) (*identity, *apiError) {
	match := func(id *identity) bool {
		switch req.selectorKey {
		case paramClientID:
			return strings.EqualFold(id.cfg.ClientID, req.selectorValue)
		case paramMIResID, paramMSIResID:
			return id.cfg.ResourceID != "" && strings.EqualFold(id.cfg.ResourceID, req.selectorValue)
		}
		return false
	}
	if req.selectorKey == "" {
		if g.def == nil {
			return nil, notGranted(g, s.def)
		}
		return g.def, nil
	}
	for _, id := range g.allowed {
		if match(id) {
			return id, nil
		}
	}
	return nil, nil
}

// notGranted is the 403 for an identity that the pod has but the caller's
// header, whose grant is g, does not allow.
func notGranted(g *grant, id *identity) *apiError {
	var mine []string
	for _, a := range g.allowed {
		mine = append(mine, a.label)
	}
	allowed := "none"
	if len(mine) > 0 {
		allowed = strings.Join(mine, ", ")
	}
	if g.container == "" {
		return &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf(
			"AzureIdentity %s is not served on %s without the %s header: this pod gives its containers identities of their own (%s), "+
				"and a request without the header gets no identity, since it may come from a container that has none; send %s with the value of %s, "+
				"or use %s, which the Azure SDKs do when it is set",
			id.label, names.PathIMDS, names.HeaderIdentity, names.ContainerIdentitiesAnnotation, names.HeaderIdentity, names.EnvIdentityHeader, names.EnvIdentityEndpoint)}
	}
	return &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf(
		"container %q may not use AzureIdentity %s: the pod's %s annotation gives it %s; "+
			"ask for that identity, or change the annotation and recreate the pod",
		g.container, id.label, names.ContainerIdentitiesAnnotation, allowed)}
}

// boundList names, for error messages, the identities the caller may use:
// with per-container identities those of its grant g (none without a
// header), so that a message tells a container nothing of the identities
// of others; otherwise every identity of the pod.
func (s *Server) boundList(g *grant) string {
	var parts []string
	seen := map[*identity]bool{}
	ids := slices.Collect(maps.Values(s.byClientID))
	if g != nil {
		ids = g.allowed
	}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			parts = append(parts, fmt.Sprintf("%s (client_id %s)", id.label, id.cfg.ClientID))
		}
	}
	if len(parts) == 0 {
		return "none for this caller"
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
