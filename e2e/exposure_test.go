//go:build e2e

package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/admissionreview"
)

// rssKiB reads a process's resident set from /proc.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			require.NoError(t, err)
			return kib
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// unauthenticatedReview is an AdmissionReview that anyone who reaches the
// webhook's port can send: a labelled pod of a made-up namespace.
func unauthenticatedReview(t *testing.T, uid, namespace string) []byte {
	t.Helper()
	b, err := admissionreview.PodCreate("exposure-"+uid, namespace, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{names.BindingLabel: "reader"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}})
	require.NoError(t, err)
	return b
}

// TestWebhookMadeUpNamespaces: the admission endpoint of the real webhook
// process serves anyone who reaches it, unless --client-ca-file is set. 30
// POSTs that each name a made-up namespace of 2 MiB are refused as bad
// requests, leave the process's memory within a few MiB of where it
// started, and add no metric series; 1,000 valid but made-up namespaces,
// sent 16 at a time, add none either, and past the live-read rate are
// refused without an API read; and the webhook keeps serving the API
// server.
func TestWebhookMadeUpNamespaces(t *testing.T) {
	pid := env.WebhookPID()
	require.NotZero(t, pid)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(env.CABundle()))
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16, TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer c.CloseIdleConnections()
	post := func(body []byte) (*admissionv1.AdmissionResponse, error) {
		resp, err := c.Post(env.WebhookURL, "application/json", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("status %d: %.300s", resp.StatusCode, b)
		}
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(b, &out); err != nil || out.Response == nil {
			return nil, fmt.Errorf("not an AdmissionReview answer (%v): %.300s", err, b)
		}
		return out.Response, nil
	}
	send := func(body []byte) admissionv1.AdmissionResponse {
		t.Helper()
		resp, err := post(body)
		require.NoError(t, err)
		return *resp
	}
	// One request of each kind first, so that the baseline holds the
	// buffers any request needs.
	send(unauthenticatedReview(t, "warm", "made-up-warm"))
	before := rssKiB(t, pid)

	huge := strings.Repeat("n", 2<<20)
	start := time.Now()
	for i := range 30 {
		resp := send(unauthenticatedReview(t, fmt.Sprint(i), huge+strconv.Itoa(i)))
		require.False(t, resp.Allowed)
		require.Equal(t, int32(http.StatusBadRequest), resp.Result.Code)
		require.Contains(t, resp.Result.Message, "metadata.namespace")
		require.Less(t, len(resp.Result.Message), 1000, "the refusal does not echo the name")
	}
	t.Logf("30 POSTs of 2 MiB namespaces answered in %s", time.Since(start))
	start = time.Now()
	// 16 callers at once, as an attacker would: past the live-read rate
	// the webhook refuses at once instead of reading.
	var mu sync.Mutex
	answers := map[string]int{}
	next := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				resp, err := post(unauthenticatedReview(t, fmt.Sprint("v", i), fmt.Sprintf("made-up-%04d", i)))
				var kind string
				switch {
				case err != nil:
					kind = "error: " + err.Error()
				case resp.Allowed:
					kind = "allowed"
				case strings.Contains(resp.Result.Message, "does not exist"):
					kind = "does not exist"
				case strings.Contains(resp.Result.Message, "retry in a few seconds"):
					kind = "live read refused"
				default:
					kind = "other: " + resp.Result.Message
				}
				mu.Lock()
				answers[kind]++
				mu.Unlock()
			}
		}()
	}
	for i := range 1000 {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("answers to 1,000 made-up namespaces: %v", answers)
	assert.Equal(t, 1000, answers["does not exist"]+answers["live read refused"], "every one denied, none admitted, no error: %v", answers)
	assert.Positive(t, answers["live read refused"], "past the live-read rate the webhook refuses without reading")
	t.Logf("1,000 POSTs of made-up namespaces answered in %s", time.Since(start))
	start = time.Now()
	// What the requests left is garbage: the collector returns it to the
	// kernel within seconds (the scavenger), while lasting state would stay.
	const slackKiB = 8 << 10
	var after int
	require.Eventually(t, func() bool {
		after = rssKiB(t, pid)
		return after <= before+slackKiB
	}, 60*time.Second, 500*time.Millisecond, "RSS %d KiB before, %d KiB after", before, after)
	t.Logf("webhook RSS: %d KiB before, %d KiB after 30 POSTs of 2 MiB namespaces and 1,000 made-up ones (%s to settle)", before, after, time.Since(start))

	metrics, err := http.Get(env.MetricsURL)
	require.NoError(t, err)
	defer metrics.Body.Close()
	b, err := io.ReadAll(metrics.Body)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "made-up-", "no metric series names a namespace that does not exist")
	assert.NotContains(t, string(b), "nnnnnnnn")
	assert.Contains(t, string(b), `pod_namespace="_other"`)

	// The webhook still serves the API server.
	createNamespace(t, "exposure-after", true)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "exposure-after", Labels: map[string]string{names.BindingLabel: "none"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}
	err = env.Client.Create(t.Context(), pod)
	require.Error(t, err)
	assert.Contains(t, err.Error(), denyPrefix, "the webhook answered the API server")
}
