package sidecarconfig

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// The authority host decides where a sidecar sends its credentials: the
// client secret, the certificate's signed assertion, or the pod's service
// account token. Whoever may edit an AzureIdentity may set spec.adEndpoint,
// so the host is checked against an allow-list that the cluster operator
// owns, twice: by the webhook before it injects, and by the sidecar at
// start, from the list the webhook wrote into its config.

// PublicAuthorityHosts are the Entra clouds that answer instance discovery:
// the public cloud, Azure China and Azure US Government. They are the
// allow-list when none is given.
var PublicAuthorityHosts = []string{"login.microsoftonline.com", "login.chinacloudapi.cn", "login.microsoftonline.us"}

// DefaultAuthorityHost is the authority of an identity that names none, so
// that azidentity never falls back on $AZURE_AUTHORITY_HOST.
const DefaultAuthorityHost = "https://login.microsoftonline.com/"

// Errors of authority checks, for errors.Is.
var (
	// ErrAuthorityNotHTTPS: the authority is not an https URL with a host.
	ErrAuthorityNotHTTPS = errors.New("authority is not an https URL with a host")
	// ErrAuthorityNotAllowed: the authority's host is not on the allow-list.
	ErrAuthorityNotAllowed = errors.New("authority host is not on the allow-list")
)

// AuthorityHost returns the canonical host of an authority URL: the
// lower-case host name, with the port only when it is not 443. The URL must
// be https, with a host and no user info, query or fragment.
func AuthorityHost(authority string) (string, error) {
	u, err := url.Parse(authority)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("%w: %q; write it as https://<host>/, such as %s", ErrAuthorityNotHTTPS, authority, DefaultAuthorityHost)
	}
	return canonicalHost(u.Hostname(), u.Port())
}

// AllowedHost returns the canonical form of one allow-list entry, which is
// a host, a host:port, or an https URL.
func AllowedHost(entry string) (string, error) {
	entry = strings.TrimSpace(entry)
	if strings.Contains(entry, "://") {
		return AuthorityHost(entry)
	}
	if entry == "" || strings.ContainsAny(entry, "/?#@ ") {
		return "", fmt.Errorf("allowed authority host %q is not a host, a host:port or an https URL", entry)
	}
	host, port := entry, ""
	if h, p, err := net.SplitHostPort(entry); err == nil {
		host, port = h, p
	}
	return canonicalHost(host, port)
}

func canonicalHost(host, port string) (string, error) {
	host = strings.ToLower(strings.Trim(host, "[]"))
	if host == "" {
		return "", fmt.Errorf("%w: no host", ErrAuthorityNotHTTPS)
	}
	if port == "" || port == "443" {
		if strings.Contains(host, ":") {
			return "[" + host + "]", nil
		}
		return host, nil
	}
	return net.JoinHostPort(host, port), nil
}

// CheckAuthority returns nil when authority is an https URL whose host is on
// allowed (canonical forms, see AllowedHost). Its errors wrap
// ErrAuthorityNotHTTPS or ErrAuthorityNotAllowed.
func CheckAuthority(authority string, allowed []string) error {
	host, err := AuthorityHost(authority)
	if err != nil {
		return err
	}
	for _, a := range allowed {
		if c, err := AllowedHost(a); err == nil && c == host {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is not among %s", ErrAuthorityNotAllowed, host, strings.Join(allowed, ", "))
}

// IsPublicAuthority reports whether authority is one of the Entra clouds
// that answer instance discovery. Only for the others may discovery be
// turned off, and only once the host is on the allow-list: discovery is the
// library's own refusal of an unknown host.
func IsPublicAuthority(authority string) bool {
	host, err := AuthorityHost(authority)
	return err == nil && slices.Contains(PublicAuthorityHosts, host)
}

// AllowedAuthorities is the config's allow-list, or PublicAuthorityHosts
// when the document names none.
func (c *Config) AllowedAuthorities() []string {
	if len(c.AllowedAuthorityHosts) == 0 {
		return PublicAuthorityHosts
	}
	return c.AllowedAuthorityHosts
}
