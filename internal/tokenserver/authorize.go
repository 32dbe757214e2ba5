package tokenserver

// Who may ask, decided before anything of the request is parsed: the
// request must come straight from a process of the pod (checkLocal), carry
// its protocol's own header, and hold a secret that names its caller. With
// per-container identities the secret also says which identities that
// caller may use (its grant), which identity choice (identity.go) then
// honours. Kept apart from the protocols so that one reader can check every
// way in.

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// grant is what one container's header may ask for.
type grant struct {
	// container names it in messages; "" for headerless IMDS requests.
	container string
	sum       [sha256.Size]byte
	// allowed are the identities it may use; def is the one it gets when
	// a request names none, nil when none is shared (headerless).
	allowed []*identity
	def     *identity
}

// may reports whether g allows id.
func (g *grant) may(id *identity) bool { return slices.Contains(g.allowed, id) }

// grants builds the per-container grants of c and the grant of headerless
// IMDS requests, which allows nothing. A request without a header cannot
// be told from one of a container that has no entry in the table: one that
// skip-containers or inject-containers left out, one added after
// admission, or an ephemeral debug container. Those get no identity, so
// neither does a request without a header, even for an identity that
// every listed container may use.
func grants(c *sidecarconfig.Config, byName map[string]*identity) ([]grant, *grant) {
	if len(c.Containers) == 0 {
		return nil, nil
	}
	gs := make([]grant, 0, len(c.Containers))
	for _, ct := range c.Containers {
		g := grant{container: ct.Name}
		// Validate checked that the sum is hex of the right size.
		_, _ = hex.Decode(g.sum[:], []byte(ct.HeaderSHA256))
		for _, n := range ct.Identities {
			id := byName[n]
			if id == nil || g.may(id) {
				continue
			}
			g.allowed = append(g.allowed, id)
		}
		g.def = g.allowed[0]
		gs = append(gs, g)
	}
	return gs, &grant{}
}

// authorize admits a request of protocol p and finds its caller's grant:
// nil when the pod has one header for every identity. It refuses a request
// that is not local, that lacks the protocol's own header, or whose
// X-IDENTITY-HEADER is missing or wrong.
func (s *Server) authorize(p *protocol, r *http.Request) (*grant, *apiError) {
	if e := checkLocal(r, s.localPort(r)); e != nil {
		return nil, e
	}
	if p.checkHeader != nil {
		if e := p.checkHeader(r.Header); e != nil {
			return nil, e
		}
	}
	return s.grantOf(p, r.Header.Values(names.HeaderIdentity))
}

// grantOf finds the grant of a request's X-IDENTITY-HEADER values. The
// header is compared with each container's sum in constant time, and with
// all of them, so that timing tells nothing about which sums are close.
func (s *Server) grantOf(p *protocol, got []string) (*grant, *apiError) {
	if p.headerOptional && len(got) == 0 && s.imdsNeedsHeader {
		return nil, errIMDSHeaderRequired()
	}
	if len(s.grants) == 0 {
		if p.headerOptional && len(got) == 0 {
			return nil, nil
		}
		if len(got) == 0 {
			return nil, errHeaderMissing()
		}
		// Length is not secret; the content is compared in constant time.
		if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), s.header) != 1 {
			return nil, errHeaderWrong()
		}
		return nil, nil
	}
	if len(got) == 0 {
		if p.headerOptional {
			return s.headerless, nil
		}
		return nil, errHeaderMissing()
	}
	if len(got) != 1 {
		return nil, errHeaderWrong()
	}
	sum := sha256.Sum256([]byte(got[0]))
	var match *grant
	for i := range s.grants {
		if subtle.ConstantTimeCompare(sum[:], s.grants[i].sum[:]) == 1 {
			match = &s.grants[i]
		}
	}
	if match == nil {
		return nil, errHeaderWrong()
	}
	return match, nil
}

// localPort is the port the request arrived on: the listener's, which
// --port may have set, else the config's.
func (s *Server) localPort(r *http.Request) int {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		return a.Port
	}
	return s.port
}

// checkLocal refuses a request that did not come straight from a process of
// the pod. The sidecar listens on loopback only, but that alone does not
// make a caller local:
//   - a browser in the pod, or one whose DNS an attacker rebinds to
//     127.0.0.1, sends another Host, and Origin or Sec-Fetch-* headers;
//   - a reverse proxy or an SSRF in the pod relays a remote caller's
//     request and marks it with Forwarded, Via, X-Real-IP or X-Forwarded-*.
//
// IMDS refuses forwarded requests for the same reason. The Host must name a
// loopback address and the server's own port; every SDK sends exactly that
// for IDENTITY_ENDPOINT and AZURE_POD_IDENTITY_AUTHORITY_HOST.
func checkLocal(r *http.Request, port int) *apiError {
	for key := range r.Header {
		if refusedHeader(key) {
			return &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf(
				"requests with the %s header are refused: tokens are only for processes in this pod, not for browsers or requests relayed by a proxy",
				truncate(key))}
		}
	}
	p := strconv.Itoa(port)
	switch strings.ToLower(r.Host) {
	case net.JoinHostPort("127.0.0.1", p), net.JoinHostPort("localhost", p), net.JoinHostPort("::1", p):
		return nil
	}
	return &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf(
		"Host %q is refused: send requests to 127.0.0.1:%s, localhost:%s or [::1]:%s, as IDENTITY_ENDPOINT says", truncate(r.Host), p, p, p)}
}

// refusedHeader reports whether a header marks a browser's or a proxy's
// request.
func refusedHeader(key string) bool {
	k := http.CanonicalHeaderKey(key)
	switch k {
	case "Origin", "Via", "Forwarded", "X-Real-Ip":
		return true
	}
	return strings.HasPrefix(k, "Sec-Fetch-") || strings.HasPrefix(k, "X-Forwarded-")
}

func errHeaderMissing() *apiError {
	return &apiError{http.StatusUnauthorized, "unauthorized", "the " + names.HeaderIdentity + " header is missing; send the value of the " + names.EnvIdentityHeader + " environment variable"}
}

// errIMDSHeaderRequired refuses an IMDS-path request without the header
// in a pod whose config requires it there (Config.IMDSRequiresHeader): a
// port-forward or an ephemeral container reaches the loopback too, and
// "Metadata: true" alone proves nothing.
func errIMDSHeaderRequired() *apiError {
	return &apiError{http.StatusUnauthorized, "unauthorized", "the " + names.HeaderIdentity + " header is missing: this pod requires it on " + names.PathIMDS +
		" too (pod annotation " + names.IMDSRequiresHeaderAnnotation + ", on by default with " + names.ContainerIdentitiesAnnotation +
		"); send the value of the " + names.EnvIdentityHeader + " environment variable, or use " + names.EnvIdentityEndpoint + ", which the Azure SDKs do when it is set"}
}

func errHeaderWrong() *apiError {
	return &apiError{http.StatusUnauthorized, "unauthorized", "the " + names.HeaderIdentity + " header is wrong; send the value of the " + names.EnvIdentityHeader + " environment variable of this container"}
}
