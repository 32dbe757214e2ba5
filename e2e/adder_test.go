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

// registerOtherWebhook serves mutate as another mutating webhook on
// loopback and registers it as MutatingWebhookConfiguration configName
// (the API server orders configurations by name, so the name places it
// before or after manifests/' pod-identity-injector), for labelled pods of
// namespace only, with the given reinvocation policy. mutate changes the
// pod it is given and says whether it did.
func registerOtherWebhook(t *testing.T, configName, webhookName, namespace string, reinvoke admissionregistrationv1.ReinvocationPolicyType,
	mutate func(*corev1.Pod) bool) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	hook := &admission.Webhook{Handler: admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		var pod corev1.Pod
		if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
			return admission.Errored(400, err)
		}
		if !mutate(&pod) {
			return admission.Allowed("nothing to change")
		}
		return patchFrom(req, &pod)
	})}
	srv := httptest.NewTLSServer(hook)
	t.Cleanup(srv.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: configName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    webhookName,
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To(srv.URL + "/"), CABundle: caPEM},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: names.BindingLabel, Operator: metav1.LabelSelectorOpExists}}},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{namespace},
			}}},
			SideEffects:        ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:      ptr.To(admissionregistrationv1.Fail),
			ReinvocationPolicy: ptr.To(reinvoke),
			TimeoutSeconds:     ptr.To(int32(5)),
		}},
	}
	require.NoError(t, env.Client.Create(context.Background(), mwc))
	return mwc
}

// startContainerAdder runs a second mutating webhook on loopback that adds
// a container named "late" to labelled pods in namespace reinvoke, and
// registers it under a name that sorts after ours, so that it runs after
// our webhook and forces a reinvocation.
func startContainerAdder(t *testing.T) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	mwc := registerOtherWebhook(t, "zz-e2e-container-adder", "container-adder.e2e.test", "reinvoke", admissionregistrationv1.NeverReinvocationPolicy,
		func(pod *corev1.Pod) bool {
			if slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == "late" }) {
				return false
			}
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "late", Image: "busybox"})
			return true
		})
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
