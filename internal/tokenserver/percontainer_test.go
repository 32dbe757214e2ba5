package tokenserver

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
	"github.com/podidentity/injector/test/fakeaad"
)

// perContainerPod is a pod whose containers have identities of their own:
// data-init may use the federated identity, my-app the client-secret one,
// and, when shared is set, both may use the IMDS identity too.
type perContainerPod struct {
	pod                *fakeaad.Pod
	srv                *running
	initHeader, appHdr string
}

func startPerContainer(t *testing.T, shared bool) *perContainerPod {
	t.Helper()
	p := newPod(t, "")
	// Every identity gets an ARM ID, so that mi_res_id can select each.
	for i := range p.Config.Identities {
		if p.Config.Identities[i].ResourceID == "" {
			p.Config.Identities[i].ResourceID = "/subscriptions/" + uuid.NewString() + "/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" + p.Config.Identities[i].Name
		}
	}
	pc := &perContainerPod{pod: p, initHeader: "init-" + uuid.NewString(), appHdr: "app-" + uuid.NewString()}
	initIDs, appIDs := []string{fakeaad.IdentityFederated}, []string{fakeaad.IdentitySecret}
	if shared {
		initIDs, appIDs = append(initIDs, fakeaad.IdentityIMDS), append(appIDs, fakeaad.IdentityIMDS)
	}
	p.Config.Containers = []sidecarconfig.Container{
		{Name: "data-init", HeaderSHA256: sidecarconfig.HeaderSum(pc.initHeader), Identities: initIDs},
		{Name: "my-app", HeaderSHA256: sidecarconfig.HeaderSum(pc.appHdr), Identities: appIDs},
	}
	require.NoError(t, p.Config.Validate())
	pc.srv = startServer(t, p, func(o *Options) { o.IdentityHeader = "" })
	return pc
}

// request asks for a token on path ("appService" or "imds") with header as
// X-IDENTITY-HEADER (none when empty) and one selector.
func (pc *perContainerPod) request(t *testing.T, protocol, header, selector, value string) response {
	t.Helper()
	q := url.Values{"resource": {uniqueResource(t)}}
	if selector != "" {
		q.Set(selector, value)
	}
	h := http.Header{}
	if header != "" {
		h.Set(names.HeaderIdentity, header)
	}
	path := names.PathAppService
	if protocol == "imds" {
		path = names.PathIMDS
		h.Set(names.HeaderMetadata, "true")
		q.Set("api-version", oldestIMDSAPIVersion)
	} else {
		q.Set("api-version", appServiceAPIVersion)
	}
	return pc.srv.get(t, path+"?"+q.Encode(), h)
}

// TestPerContainerOwnIdentity: each container's header gets its own
// identity, by default and when it names it, on both protocols.
func TestPerContainerOwnIdentity(t *testing.T) {
	pc := startPerContainer(t, false)
	for _, protocol := range []string{"appService", "imds"} {
		for _, c := range []struct{ header, identity string }{
			{pc.initHeader, fakeaad.IdentityFederated},
			{pc.appHdr, fakeaad.IdentitySecret},
		} {
			want := pc.pod.Identity(c.identity).ClientID
			got := pc.request(t, protocol, c.header, "", "")
			require.Equal(t, http.StatusOK, got.status, "%s %s: %v", protocol, c.identity, got.body)
			assert.Equal(t, want, got.str("client_id"))
			got = pc.request(t, protocol, c.header, paramClientID, want)
			require.Equal(t, http.StatusOK, got.status, "%s %s by client_id: %v", protocol, c.identity, got.body)
			assert.Equal(t, want, got.str("client_id"))
		}
	}
}

// TestPerContainerCrossRefused is the promise: with data-init's
// header, asking for my-app's identity fails, on both protocols and with
// every selector, and the answer gives away nothing of my-app's header.
// client_id and the ARM ID selectors get 403; object_id and principal_id
// get the 404 they always get, since the sidecar knows no object IDs, so
// they can select nothing at all.
func TestPerContainerCrossRefused(t *testing.T) {
	pc := startPerContainer(t, false)
	other := pc.pod.Identity(fakeaad.IdentitySecret)
	selectors := map[string]struct {
		value  string
		status int
	}{
		paramClientID:    {other.ClientID, http.StatusForbidden},
		paramMIResID:     {other.ResourceID, http.StatusForbidden},
		paramMSIResID:    {other.ResourceID, http.StatusForbidden},
		paramObjectID:    {uuid.NewString(), http.StatusNotFound},
		paramPrincipalID: {uuid.NewString(), http.StatusNotFound},
	}
	for _, protocol := range []string{"appService", "imds"} {
		for sel, c := range selectors {
			t.Run(protocol+"/"+sel, func(t *testing.T) {
				got := pc.request(t, protocol, pc.initHeader, sel, c.value)
				require.Equal(t, c.status, got.status, "%v", got.body)
				assert.Empty(t, got.str("access_token"))
				desc := got.str("error_description")
				for _, leak := range []string{pc.appHdr, sidecarconfig.HeaderSum(pc.appHdr), pc.initHeader, sidecarconfig.HeaderSum(pc.initHeader), `"my-app"`} {
					assert.NotContains(t, desc, leak)
				}
				if c.status == http.StatusForbidden {
					assert.Equal(t, "forbidden", got.str("error"))
					assert.Equal(t, `container "data-init" may not use AzureIdentity default/`+fakeaad.IdentitySecret+`: the pod's `+
						names.ContainerIdentitiesAnnotation+` annotation gives it default/`+fakeaad.IdentityFederated+
						`; ask for that identity, or change the annotation and recreate the pod`, desc)
				}
			})
		}
	}
	// The other way round too.
	got := pc.request(t, "appService", pc.appHdr, paramClientID, pc.pod.Identity(fakeaad.IdentityFederated).ClientID)
	assert.Equal(t, http.StatusForbidden, got.status)
	assert.NotContains(t, got.str("error_description"), pc.initHeader)
}

// TestPerContainerHeaders: without a header of one of the containers the
// App Service path refuses as it always did; a pod-wide secret means
// nothing to a per-container sidecar.
func TestPerContainerHeaders(t *testing.T) {
	pc := startPerContainer(t, false)
	for name, c := range map[string]struct {
		header string
		want   string
	}{
		"none":               {"", "X-IDENTITY-HEADER header is missing"},
		"pod-wide":           {pc.pod.IdentityHeader, "X-IDENTITY-HEADER header is wrong"},
		"another container+": {pc.initHeader + "x", "X-IDENTITY-HEADER header is wrong"},
		"the sum itself":     {sidecarconfig.HeaderSum(pc.initHeader), "X-IDENTITY-HEADER header is wrong"},
	} {
		t.Run(name, func(t *testing.T) {
			got := pc.request(t, "appService", c.header, "", "")
			assert.Equal(t, http.StatusUnauthorized, got.status)
			assert.Contains(t, got.str("error_description"), c.want)
		})
	}
	got := pc.request(t, "imds", pc.initHeader+"x", "", "")
	assert.Equal(t, http.StatusUnauthorized, got.status, "a wrong header on the IMDS path is refused, not ignored")
}

// TestPerContainerIMDSWithoutHeader: the IMDS path without a header
// serves nothing, not even an identity that every listed container may
// use: such a request may come from a container without an entry (one
// skip-containers left out, one added later, an ephemeral one), which
// gets nothing (issue 22).
func TestPerContainerIMDSWithoutHeader(t *testing.T) {
	for name, shared := range map[string]bool{"nothing shared": false, "one shared": true} {
		t.Run(name, func(t *testing.T) {
			pc := startPerContainer(t, shared)
			selectors := map[string]string{
				"":            "",
				paramClientID: pc.pod.Identity(fakeaad.IdentityFederated).ClientID,
			}
			if shared {
				selectors[paramClientID] = pc.pod.Identity(fakeaad.IdentityIMDS).ClientID
			}
			for sel, v := range selectors {
				got := pc.request(t, "imds", "", sel, v)
				assert.Equal(t, http.StatusForbidden, got.status, "selector %q: %v", sel, got.body)
				assert.Empty(t, got.str("access_token"))
				assert.Contains(t, got.str("error_description"), "a request without the header gets no identity")
			}
		})
	}
	t.Run("with a header the shared one is served", func(t *testing.T) {
		pc := startPerContainer(t, true)
		shared := pc.pod.Identity(fakeaad.IdentityIMDS).ClientID
		for _, protocol := range []string{"imds", "appService"} {
			got := pc.request(t, protocol, pc.appHdr, paramClientID, shared)
			require.Equal(t, http.StatusOK, got.status, "%s: %v", protocol, got.body)
			assert.Equal(t, shared, got.str("client_id"))
		}
	})
}

// TestNotFoundListsOnlyGranted: a 404 for an identity that is not bound
// lists what the caller may use, never the identities of other containers
// (issue 22).
func TestNotFoundListsOnlyGranted(t *testing.T) {
	pc := startPerContainer(t, false)
	mine, theirs := pc.pod.Identity(fakeaad.IdentityFederated), pc.pod.Identity(fakeaad.IdentitySecret)
	for _, sel := range []string{paramClientID, paramObjectID} {
		got := pc.request(t, "appService", pc.initHeader, sel, uuid.NewString())
		require.Equal(t, http.StatusNotFound, got.status, "%v", got.body)
		desc := got.str("error_description")
		assert.Contains(t, desc, "default/"+mine.Name+" (client_id "+mine.ClientID+")", sel)
		assert.NotContains(t, desc, theirs.Name, sel)
		assert.NotContains(t, desc, theirs.ClientID, sel)
	}
	// Without a header on the IMDS path the caller may use nothing, so a
	// 404 names nothing either.
	got := pc.request(t, "imds", "", paramClientID, uuid.NewString())
	require.Equal(t, http.StatusNotFound, got.status, "%v", got.body)
	for _, id := range fakeaad.PodIdentities {
		assert.NotContains(t, got.str("error_description"), pc.pod.Identity(id).ClientID)
	}
	assert.Contains(t, got.str("error_description"), "bound: none for this caller")
}

// TestIMDSRequiresHeader: with the config's imdsRequiresHeader, the IMDS
// path refuses a request without X-IDENTITY-HEADER, as a port-forward or an
// ephemeral container would send it, and checks the header when sent; in
// a pod-wide and in a per-container pod. Without the setting a pod-wide
// pod serves "Metadata: true" alone, as before.
func TestIMDSRequiresHeader(t *testing.T) {
	imdsGet := func(t *testing.T, srv *running, header string) response {
		t.Helper()
		h := http.Header{names.HeaderMetadata: {"true"}}
		if header != "" {
			h.Set(names.HeaderIdentity, header)
		}
		q := url.Values{"resource": {uniqueResource(t)}, "api-version": {oldestIMDSAPIVersion}}
		return srv.get(t, names.PathIMDS+"?"+q.Encode(), h)
	}
	t.Run("pod-wide, off", func(t *testing.T) {
		p := newPod(t, "")
		srv := startServer(t, p)
		got := imdsGet(t, srv, "")
		assert.Equal(t, http.StatusOK, got.status, "%v", got.body)
	})
	t.Run("pod-wide, on", func(t *testing.T) {
		p := newPod(t, "")
		p.Config.IMDSRequiresHeader = true
		srv := startServer(t, p)
		got := imdsGet(t, srv, "")
		require.Equal(t, http.StatusUnauthorized, got.status, "%v", got.body)
		assert.Empty(t, got.str("access_token"))
		assert.Contains(t, got.str("error_description"), names.IMDSRequiresHeaderAnnotation)
		got = imdsGet(t, srv, p.IdentityHeader+"x")
		assert.Equal(t, http.StatusUnauthorized, got.status, "a wrong header is refused")
		got = imdsGet(t, srv, p.IdentityHeader)
		require.Equal(t, http.StatusOK, got.status, "%v", got.body)
		assert.Equal(t, p.Identity(p.Config.DefaultIdentity).ClientID, got.str("client_id"))
	})
	t.Run("per-container, on", func(t *testing.T) {
		p := newPod(t, "")
		header := "h-" + uuid.NewString()
		p.Config.Containers = []sidecarconfig.Container{{Name: "app", HeaderSHA256: sidecarconfig.HeaderSum(header), Identities: []string{fakeaad.IdentitySecret}}}
		p.Config.IMDSRequiresHeader = true
		srv := startServer(t, p, func(o *Options) { o.IdentityHeader = "" })
		got := imdsGet(t, srv, "")
		require.Equal(t, http.StatusUnauthorized, got.status, "%v", got.body)
		assert.Contains(t, got.str("error_description"), names.IMDSRequiresHeaderAnnotation)
		got = imdsGet(t, srv, header)
		require.Equal(t, http.StatusOK, got.status, "%v", got.body)
		assert.Equal(t, p.Identity(fakeaad.IdentitySecret).ClientID, got.str("client_id"))
	})
}

func TestNewRefusesPodWideHeaderWithContainers(t *testing.T) {
	p := newPod(t, "")
	p.Config.Containers = []sidecarconfig.Container{{Name: "a", HeaderSHA256: sidecarconfig.HeaderSum("x"), Identities: []string{fakeaad.IdentityFederated}}}
	_, err := New(Options{Config: p.Config, Sources: map[string]Source{}, IdentityHeader: "pod-wide"})
	assert.ErrorIs(t, err, ErrPodWideHeader)
	assert.ErrorContains(t, err, "remove IDENTITY_HEADER from the pod-identity-sidecar container")
}

// FuzzPerContainerAccess: whatever a request sends, a per-container server
// serves only an identity that the sent header's container may use, and
// nothing without a header.
func FuzzPerContainerAccess(f *testing.F) {
	f.Add(true, "a-secret", "client_id", "c-a", "")
	f.Add(false, "b-secret", "mi_res_id", "/r/a", "")
	f.Add(false, "", "client_id", "c-shared", "")
	f.Add(true, "a-secret", "", "", "b-secret")
	f.Fuzz(func(t *testing.T, appService bool, header, selector, value, second string) {
		cfg := &sidecarconfig.Config{
			APIVersion: sidecarconfig.APIVersion, Port: names.DefaultTokenPort, DefaultIdentity: "a",
			Containers: []sidecarconfig.Container{
				{Name: "ca", HeaderSHA256: sidecarconfig.HeaderSum("a-secret"), Identities: []string{"a", "shared"}},
				{Name: "cb", HeaderSHA256: sidecarconfig.HeaderSum("b-secret"), Identities: []string{"b", "shared"}},
			},
		}
		sources := map[string]Source{}
		for _, n := range []string{"a", "b", "shared"} {
			cfg.Identities = append(cfg.Identities, sidecarconfig.Identity{Name: n, Namespace: "ns", Source: names.TokenSourceClientSecret,
				ClientID: "c-" + n, ResourceID: "/r/" + n, TenantID: "t", SecretDir: "/s"})
			sources[n] = &fakeSource{now: time.Now, lifetime: time.Hour}
		}
		srv, err := New(Options{Config: cfg, Sources: sources, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
		require.NoError(t, err)
		defer srv.Close()
		q := url.Values{"resource": {"https://vault.azure.net"}}
		if selector != "" {
			q.Set(selector, value)
		}
		path := names.PathIMDS
		q.Set("api-version", oldestIMDSAPIVersion)
		if appService {
			path = names.PathAppService
			q.Set("api-version", appServiceAPIVersion)
		}
		r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8181"+path+"?"+q.Encode(), nil)
		r.Header.Set(names.HeaderMetadata, "true")
		if header != "" {
			r.Header.Add(names.HeaderIdentity, header)
		}
		if second != "" {
			r.Header.Add(names.HeaderIdentity, second)
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			return
		}
		var body struct {
			ClientID string `json:"client_id"`
		}
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
		allowed := map[string][]string{"a-secret": {"c-a", "c-shared"}, "b-secret": {"c-b", "c-shared"}}
		switch {
		case second != "":
			t.Fatalf("served %s for two headers", body.ClientID)
		case header == "":
			t.Fatalf("served %s without a header (App Service path: %v)", body.ClientID, appService)
		default:
			require.Contains(t, allowed[header], body.ClientID, "header %q", header)
		}
	})
}

// TestPerContainerSharedClientID: two identities with one client ID (say,
// two sources) are both grantable; the one listed second is not lost
// behind the first in the client-ID index.
func TestPerContainerSharedClientID(t *testing.T) {
	cfg := &sidecarconfig.Config{
		APIVersion: sidecarconfig.APIVersion, Port: names.DefaultTokenPort, DefaultIdentity: "a",
		Identities: []sidecarconfig.Identity{
			{Name: "a", Namespace: "ns", Source: names.TokenSourceClientSecret, ClientID: "same", TenantID: "t", SecretDir: "/s"},
			{Name: "b", Namespace: "ns", Source: names.TokenSourceIMDS, ClientID: "same"},
		},
		Containers: []sidecarconfig.Container{{Name: "app", HeaderSHA256: sidecarconfig.HeaderSum("h"), Identities: []string{"b"}}},
	}
	src := &fakeSource{now: time.Now, lifetime: time.Hour}
	srv, err := New(Options{Config: cfg, Sources: map[string]Source{"a": src, "b": src}, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	require.NoError(t, err)
	defer srv.Close()
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8181/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net", nil)
	r.Header.Set(names.HeaderIdentity, "h")
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, r)
	assert.Equal(t, http.StatusOK, w.Code, w.Body.String())
}
