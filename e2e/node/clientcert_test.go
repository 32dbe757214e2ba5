//go:build e2e

package node_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podidentity/injector/e2e/framework/nodeparts"
	"github.com/podidentity/injector/e2e/framework/webhookenv"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/admissionreview"
)

// TestWebhookServesOnlyTheAPIServer: the cluster's apiserver presents a
// client certificate to webhooks (its AdmissionConfiguration's
// kubeConfigFile) and the webhook Deployment runs with --client-ca-file.
// A labelled pod created through the apiserver is injected, while a
// caller inside the cluster's network that POSTs an AdmissionReview to a
// webhook pod is refused in the TLS handshake, unless it holds the
// apiserver's certificate.
func TestWebhookServesOnlyTheAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "node-client-cert"
	optInNamespace(ctx, t, ns, seedClientID)

	created, err := cs.CoreV1().Pods(ns).Create(ctx, azcopyPod(ns, seedClientID), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	require.NoError(t, err, "the apiserver, with its client certificate, is served")
	assert.True(t, hasSidecar(created), "the pod is injected")

	// A replica that serves: the suite's rollout of the Deployment may
	// leave an old pod terminating, whose address leads nowhere.
	pods, err := cs.CoreV1().Pods(webhookenv.WebhookNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=pod-identity-webhook"})
	require.NoError(t, err)
	i := slices.IndexFunc(pods.Items, func(p corev1.Pod) bool {
		return p.DeletionTimestamp == nil && p.Status.PodIP != "" &&
			slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue })
	})
	require.GreaterOrEqual(t, i, 0, "a ready webhook replica among %d pods", len(pods.Items))
	endpoint := fmt.Sprintf("https://%s/mutate-v1-pod", net.JoinHostPort(pods.Items[i].Status.PodIP, "9443"))

	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(env.CABundle()))
	body := admissionReview(t, ns)
	call := func(certs ...tls.Certificate) (*admissionv1.AdmissionResponse, error) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: roots, Certificates: certs, ServerName: "pod-identity-webhook." + webhookenv.WebhookNamespace + ".svc",
		}}}
		defer c.CloseIdleConnections()
		resp, err := c.Post(endpoint, "application/json", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return nil, fmt.Errorf("status %d: %w", resp.StatusCode, err)
		}
		return out.Response, nil
	}

	_, err = call()
	require.Error(t, err, "a caller without a client certificate is refused")
	t.Logf("without a client certificate: %v", err)
	assert.NotContains(t, err.Error(), "status ", "the refusal is in the handshake, before any request is read")

	apiserverCert, err := env.Cluster.WebhookClientCertificate()
	require.NoError(t, err)
	resp, err := call(apiserverCert)
	require.NoError(t, err, "the apiserver's certificate is served")
	require.NotNil(t, resp)
	assert.True(t, resp.Allowed, "%v", resp.Result)
	assert.NotEmpty(t, resp.Patch, "the pod is injected")
}

// admissionReview is what the apiserver sends for a labelled pod in ns.
func admissionReview(t *testing.T, ns string) []byte {
	t.Helper()
	b, err := admissionreview.PodCreate("direct-1", ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "direct", Namespace: ns, Labels: map[string]string{names.BindingLabel: "app"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: nodeparts.PauseImage}}}})
	require.NoError(t, err)
	return b
}
