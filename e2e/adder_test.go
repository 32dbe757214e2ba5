//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podidentity/injector/internal/names"
)

// startContainerAdder runs a second mutating webhook on loopback that adds
// a container named "late" to labelled pods in namespace reinvoke, and
// registers it under a name that sorts after ours, so that it runs after
// our webhook and forces a reinvocation.
func startContainerAdder(t *testing.T) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	hook := &admission.Webhook{Handler: admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		var pod corev1.Pod
		if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
			return admission.Errored(400, err)
		}
		if slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == "late" }) {
			return admission.Allowed("already added")
		}
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "late", Image: "busybox"})
		return patchFrom(req, &pod)
	})}
	srv := httptest.NewTLSServer(hook)
	t.Cleanup(srv.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-e2e-container-adder"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "container-adder.e2e.test",
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To(srv.URL + "/"), CABundle: caPEM},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: names.BindingLabel, Operator: metav1.LabelSelectorOpExists}}},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{"reinvoke"},
			}}},
			SideEffects:        ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:      ptr.To(admissionregistrationv1.Fail),
			ReinvocationPolicy: ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
			TimeoutSeconds:     ptr.To(int32(5)),
		}},
	}
	require.NoError(t, env.Client.Create(context.Background(), mwc))
	// Wait until the API server calls it: a dry run grows a "late" container.
	require.Eventually(t, func() bool {
		p := labelledPod("reinvoke", "probe-adder", "app")
		if err := env.Client.Create(context.Background(), p, dryRun); err != nil {
			return false
		}
		return slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == "late" })
	}, waitLong, waitTick, "the API server calls the second webhook")
	return mwc
}

const (
	waitLong = 30 * time.Second
	waitTick = 100 * time.Millisecond
)

var dryRun = client.DryRunAll

// patchFrom answers with the patch from the request's object to pod.
func patchFrom(req admission.Request, pod *corev1.Pod) admission.Response {
	b, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(500, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, b)
}
