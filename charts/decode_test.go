package charts_test

import (
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/podidentity/injector/e2e/framework/webhookenv"
)

// typed are the kinds the chart renders whose Go types this module has:
// each rendered object is decoded strictly into its type, so a misspelt
// field fails here instead of being dropped by the API server.
var typed = map[string]func() any{
	"v1/Namespace":      func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount": func() any { return &corev1.ServiceAccount{} },
	"v1/Service":        func() any { return &corev1.Service{} },
	"apps/v1/Deployment": func() any {
		return &appsv1.Deployment{}
	},
	"policy/v1/PodDisruptionBudget":                                func() any { return &policyv1.PodDisruptionBudget{} },
	"rbac.authorization.k8s.io/v1/ClusterRole":                     func() any { return &rbacv1.ClusterRole{} },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding":              func() any { return &rbacv1.ClusterRoleBinding{} },
	"rbac.authorization.k8s.io/v1/Role":                            func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding":                     func() any { return &rbacv1.RoleBinding{} },
	"admissionregistration.k8s.io/v1/MutatingWebhookConfiguration": func() any { return &admissionregistrationv1.MutatingWebhookConfiguration{} },
	"networking.k8s.io/v1/NetworkPolicy":                           func() any { return &networkingv1.NetworkPolicy{} },
	"cert-manager.io/v1/Issuer":                                    func() any { return &cmapi.Issuer{} },
	"cert-manager.io/v1/Certificate":                               func() any { return &cmapi.Certificate{} },
	"apiextensions.k8s.io/v1/CustomResourceDefinition":             func() any { return &apiextensionsv1.CustomResourceDefinition{} },
}

// untyped are kinds whose types this module does not import (the
// Prometheus Operator's); they are checked by the goldens only.
var untyped = map[string]bool{
	"monitoring.coreos.com/v1/PodMonitor":     true,
	"monitoring.coreos.com/v1/ServiceMonitor": true,
	"monitoring.coreos.com/v1/PrometheusRule": true,
	// AKS's managed Prometheus reads these (metrics.monitorsAPIGroup).
	"azmonitoring.coreos.com/v1/PodMonitor":     true,
	"azmonitoring.coreos.com/v1/ServiceMonitor": true,
}

// decodeStrict splits a rendered stream into objects and decodes each
// strictly into its API type.
func decodeStrict(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	objs, err := webhookenv.DecodeObjects(data)
	require.NoError(t, err)
	for _, o := range objs {
		gvk := o.GetAPIVersion() + "/" + o.GetKind()
		id := gvk + " " + o.GetNamespace() + "/" + o.GetName()
		if untyped[gvk] {
			continue
		}
		newObj, ok := typed[gvk]
		require.True(t, ok, "%s: a kind the tests do not know; add it to typed", id)
		raw, err := yaml.Marshal(o.Object)
		require.NoError(t, err)
		require.NoError(t, yaml.UnmarshalStrict(raw, newObj()), "%s does not decode strictly", id)
	}
	return objs
}
