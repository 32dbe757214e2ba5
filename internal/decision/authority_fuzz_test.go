package decision

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// FuzzConvertAuthority: for any spec.adEndpoint and allow-list entry, an
// identity the resolver accepts has an https authority on the list, keeps
// instance discovery unless the host is not a public cloud, and gives a
// sidecar config that the sidecar accepts: the webhook and the sidecar
// agree on every authority.
//
//	go test -run '^$' -fuzz FuzzConvertAuthority ./internal/decision
func FuzzConvertAuthority(f *testing.F) {
	f.Add("https://evil.example/", "")
	f.Add("http://login.microsoftonline.com/", "")
	f.Add("https://login.microsoftonline.com@evil.example/", "evil.example")
	f.Add("https://LOGIN.azurestack.example:443/", "login.azurestack.example")
	f.Add("https://127.0.0.1:8443/", "https://127.0.0.1:8443/")
	f.Add("https://[::1]:9/", "[::1]:9")
	f.Fuzz(func(t *testing.T, adEndpoint, allowed string) {
		var list []string
		if allowed != "" {
			list = []string{allowed}
		}
		r := &Planner{Defaults: Defaults{TokenSource: names.TokenSourceFederated, AllowedAuthorityHosts: list}}
		ai := &aadv1.AzureIdentity{
			ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "team-a"},
			Spec:       aadv1.AzureIdentitySpec{ClientID: "c", TenantID: "t", ADEndpoint: adEndpoint},
		}
		id, err := r.convert(ai)
		if err != nil {
			return
		}
		if adEndpoint == "" {
			if id.AuthorityHost != "" || id.DisableInstanceDiscovery {
				t.Fatalf("no adEndpoint gave authority %q, discovery off %v", id.AuthorityHost, id.DisableInstanceDiscovery)
			}
			return
		}
		check := list
		if len(check) == 0 {
			check = sidecarconfig.PublicAuthorityHosts
		}
		if err := sidecarconfig.CheckAuthority(id.AuthorityHost, check); err != nil {
			t.Fatalf("accepted adEndpoint %q with list %q: %v", adEndpoint, list, err)
		}
		if id.DisableInstanceDiscovery == sidecarconfig.IsPublicAuthority(id.AuthorityHost) {
			t.Fatalf("adEndpoint %q: discovery off %v", adEndpoint, id.DisableInstanceDiscovery)
		}
		sc := sidecarconfig.Config{
			APIVersion: sidecarconfig.APIVersion, Port: names.DefaultTokenPort, DefaultIdentity: "x", AllowedAuthorityHosts: list,
			Identities: []sidecarconfig.Identity{{Name: "x", Namespace: "team-a", Source: id.Source, ClientID: "c", TenantID: "t",
				TokenFile: "/t", AuthorityHost: id.AuthorityHost, DisableInstanceDiscovery: id.DisableInstanceDiscovery}},
		}
		if err := sc.Validate(); err != nil {
			t.Fatalf("the webhook accepted adEndpoint %q, the sidecar refuses it: %v", adEndpoint, err)
		}
	})
}
