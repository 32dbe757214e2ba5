package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/decision/decisiontest"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/admissionreview"
)

// exposedEndpoint serves h as the webhook binary does (LimitBody around
// controller-runtime's admission.Webhook) on a real loopback server.
func exposedEndpoint(t *testing.T, h *Handler) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(Path, LimitBody(&admission.Webhook{Handler: h}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// review is the AdmissionReview an API server, or anyone else, POSTs.
func review(t testing.TB, uid, namespace string, pod *corev1.Pod) []byte {
	t.Helper()
	b, err := admissionreview.PodCreate("uid-"+uid, namespace, pod)
	require.NoError(t, err)
	return b
}

func labelledPod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{names.BindingLabel: "reader"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}
}

// post sends body and decodes the AdmissionReview answer.
func post(t testing.TB, c *http.Client, url string, body []byte) (int, admissionv1.AdmissionResponse, string) {
	t.Helper()
	resp, err := c.Post(url+Path, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out admissionv1.AdmissionReview
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(b, &out), "%s", b)
		require.NotNil(t, out.Response)
		return resp.StatusCode, *out.Response, string(b)
	}
	return resp.StatusCode, admissionv1.AdmissionResponse{}, string(b)
}

// namespaceLabels are the distinct pod_namespace label values of the
// handler's metrics.
func namespaceLabels(t *testing.T, m *Metrics) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	require.NoError(t, m.Register(reg))
	families, err := reg.Gather()
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, f := range families {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "pod_namespace" {
					seen[l.GetValue()] = true
				}
			}
		}
	}
	return seen
}

// TestEndpointMadeUpNamespacesAddNoSeries: anyone who reaches port 9443
// can POST an AdmissionReview that names any namespace. 10,000 of them,
// with distinct, valid names of namespaces that do not exist, leave at
// most one metric series more than the namespaces that exist have, cost
// live API reads at the limiter's rate alone, and the webhook still
// injects a real pod after them.
func TestEndpointMadeUpNamespacesAddNoSeries(t *testing.T) {
	objs := []client.Object{decisiontest.OptedIn("team-a"), decisiontest.OptedIn("team-b"),
		&aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Name: "id", Namespace: "team-a"}, Spec: aadv1.AzureIdentitySpec{ClientID: "c", TenantID: "t"}},
		&aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "team-a"}, Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "reader"}},
	}
	live := &decisiontest.CountingReader{Reader: decisiontest.FakeReader(t, objs...)}
	const perSecond, burst = 5, 20
	h, err := NewHandler(&decision.Planner{
		Lookup:       decision.CacheThenLive(decisiontest.FakeReader(t, objs...), live, time.Second, rate.NewLimiter(perSecond, burst)),
		Defaults:     decision.Defaults{TokenSource: names.TokenSourceFederated},
		Inject:       testInjectConfig(),
		RequireOptIn: true,
	}, NewMetrics())
	require.NoError(t, err)
	srv := exposedEndpoint(t, h)
	c := srv.Client()

	for _, ns := range []string{"team-a", "team-b"} {
		code, resp, body := post(t, c, srv.URL, review(t, "real-"+ns, ns, labelledPod("web")))
		require.Equal(t, http.StatusOK, code, body)
		require.Equal(t, ns == "team-a", resp.Allowed, body)
	}

	live.Reads = 0 // team-b's pod read its bindings live: it has none
	start := time.Now()
	var limited, missing int
	for i := range 10000 {
		code, resp, body := post(t, c, srv.URL, review(t, fmt.Sprint(i), fmt.Sprintf("made-up-%05d", i), labelledPod("web")))
		require.Equal(t, http.StatusOK, code, body)
		require.False(t, resp.Allowed, "a pod of a namespace that does not exist is never admitted: %s", body)
		switch msg := resp.Result.Message; {
		case strings.Contains(msg, "does not exist"):
			missing++
		case strings.Contains(msg, "retry in a few seconds"):
			limited++
		default:
			t.Fatalf("unexpected answer %q", msg)
		}
	}
	elapsed := time.Since(start)

	labels := namespaceLabels(t, h.metrics)
	assert.Equal(t, map[string]bool{"team-a": true, "team-b": true, NamespaceOther: true}, labels,
		"series only for namespaces that exist, plus one bucket")
	allowed := burst + int(elapsed.Seconds()*perSecond) + 1
	assert.LessOrEqual(t, live.Reads, allowed, "live reads stay within the limiter's rate over %s", elapsed)
	assert.Equal(t, live.Reads, missing, "every live read found the namespace missing; the rest were refused without one")
	assert.Equal(t, 10000, missing+limited)

	code, resp, body := post(t, c, srv.URL, review(t, "after", "team-a", labelledPod("web-2")))
	require.Equal(t, http.StatusOK, code)
	assert.True(t, resp.Allowed, "the webhook still injects after the flood: %s", body)
	assert.NotEmpty(t, resp.Patch)
}

// TestEndpointBodyCap: every pod etcd can store (1.5 MiB) is admitted,
// and a body over MaxRequestBytes is refused before it is read, with a
// message that says the limit.
func TestEndpointBodyCap(t *testing.T) {
	objs := []client.Object{decisiontest.OptedIn("team-a"),
		&aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Name: "id", Namespace: "team-a"}, Spec: aadv1.AzureIdentitySpec{ClientID: "c", TenantID: "t"}},
		&aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "team-a"}, Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "reader"}},
	}
	srv := exposedEndpoint(t, newTestHandler(t, decisiontest.FakeReader(t, objs...), nil, testInjectConfig(), testSecret))

	big := labelledPod("big")
	big.Annotations = map[string]string{"example.com/blob": strings.Repeat("x", 1536*1024)}
	body := review(t, "big", "team-a", big)
	require.Greater(t, len(body), 1536*1024)
	code, resp, out := post(t, srv.Client(), srv.URL, body)
	require.Equal(t, http.StatusOK, code, out)
	assert.True(t, resp.Allowed, "a 1.5 MiB pod is injected: %s", resp.Result)
	assert.NotEmpty(t, resp.Patch)

	huge := labelledPod("huge")
	huge.Annotations = map[string]string{"example.com/blob": strings.Repeat("x", MaxRequestBytes)}
	code, _, out = post(t, srv.Client(), srv.URL, review(t, "huge", "team-a", huge))
	assert.Equal(t, http.StatusRequestEntityTooLarge, code)
	assert.Contains(t, out, fmt.Sprintf("%d bytes", MaxRequestBytes))

	// Without a Content-Length the cap holds while reading: the admission
	// webhook's read fails and it answers with a refusal.
	req, err := http.NewRequest(http.MethodPost, srv.URL+Path, io.MultiReader(strings.NewReader(strings.Repeat(" ", MaxRequestBytes)), strings.NewReader("{}")))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = -1
	r, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer r.Body.Close()
	var ar admissionv1.AdmissionReview
	require.NoError(t, json.NewDecoder(r.Body).Decode(&ar))
	require.NotNil(t, ar.Response)
	assert.False(t, ar.Response.Allowed)
	assert.Equal(t, int32(http.StatusBadRequest), ar.Response.Result.Code)
	assert.Contains(t, ar.Response.Result.Message, "request body too large")
}

// TestHandlerInvalidNamespace: a namespace that is not a DNS-1123 label
// came from no API server: a 400 that names the field, repeats at most a
// short prefix of the value, and reads nothing.
func TestHandlerInvalidNamespace(t *testing.T) {
	for name, ns := range map[string]string{
		"2 MiB":      strings.Repeat("a", 2<<20),
		"64 bytes":   strings.Repeat("a", 64),
		"upper case": "Team-A",
		"underscore": NamespaceOther,
		"slash":      "team-a/../kube-system",
	} {
		t.Run(name, func(t *testing.T) {
			live := &decisiontest.CountingReader{Reader: decisiontest.FakeReader(t)}
			cache := &decisiontest.CountingReader{Reader: decisiontest.FakeReader(t)}
			h := newTestHandler(t, cache, live, testInjectConfig(), testSecret)
			raw, err := json.Marshal(labelledPod("web"))
			require.NoError(t, err)
			resp := h.Handle(context.Background(), podRequest(t, ns, raw))
			assert.False(t, resp.Allowed)
			assert.Equal(t, int32(http.StatusBadRequest), resp.Result.Code)
			assert.Contains(t, resp.Result.Message, "metadata.namespace")
			assert.Less(t, len(resp.Result.Message), 600, "the message does not repeat the value: %.200s", resp.Result.Message)
			assert.Zero(t, cache.Reads+live.Reads, "nothing is read for a name no namespace can have")
			assert.Equal(t, map[string]bool{NamespaceOther: true}, namespaceLabels(t, h.metrics))
		})
	}
}

// TestHandlerLiveReadLimited: past the live-read rate, a pod whose
// objects are not cached yet is denied, never admitted uninjected, with a
// message that says to retry.
func TestHandlerLiveReadLimited(t *testing.T) {
	objs := []client.Object{decisiontest.OptedIn("team-a"),
		&aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Name: "id", Namespace: "team-a"}, Spec: aadv1.AzureIdentitySpec{ClientID: "c", TenantID: "t"}},
		&aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "team-a"}, Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: "id", Selector: "reader"}},
	}
	live := &decisiontest.CountingReader{Reader: decisiontest.FakeReader(t, objs...)}
	h, err := NewHandler(&decision.Planner{
		Lookup:       decision.CacheThenLive(decisiontest.FakeReader(t, decisiontest.OptedIn("team-a")), live, time.Second, rate.NewLimiter(rate.Every(time.Hour), 2)),
		Defaults:     decision.Defaults{TokenSource: names.TokenSourceFederated},
		Inject:       testInjectConfig(),
		RequireOptIn: true,
	}, NewMetrics())
	require.NoError(t, err)
	raw, err := json.Marshal(labelledPod("web"))
	require.NoError(t, err)

	first := h.Handle(context.Background(), podRequest(t, "team-a", raw))
	assert.True(t, first.Allowed, "two live reads (binding, identity) fit the burst: %v", first.Result)
	assert.Equal(t, 2, live.Reads)

	second := h.Handle(context.Background(), podRequest(t, "team-a", raw))
	assert.False(t, second.Allowed, "past the rate the pod is denied, not admitted without its identity")
	assert.Equal(t, 2, live.Reads, "no read past the rate")
	for _, want := range []string{"pod team-a/web", "retry in a few seconds", "not in its cache", "burst 2"} {
		assert.Contains(t, second.Result.Message, want)
	}
}
