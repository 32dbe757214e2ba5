package manifests_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/component-helpers/auth/rbac/validation"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"

	"github.com/podidentity/injector/internal/names"
)

// TestUserRoles: the aggregated ClusterRoles give the built-in admin and
// edit roles write access to the three CRDs, view read access, and nothing
// else.
func TestUserRoles(t *testing.T) {
	r := buildBase(t)
	edit := clusterRole(t, r, clusterName+"-aggregate-to-edit")
	view := clusterRole(t, r, clusterName+"-aggregate-to-view")
	const label = "rbac.authorization.k8s.io/aggregate-to-"
	assert.Equal(t, "true", edit.Labels[label+"admin"])
	assert.Equal(t, "true", edit.Labels[label+"edit"])
	assert.Empty(t, edit.Labels[label+"view"], "viewers must not write")
	for _, role := range []string{"admin", "edit", "view"} {
		assert.Equal(t, "true", view.Labels[label+role], "every built-in role reads")
	}

	covers := func(role *rbacv1.ClusterRole, resource, verb string) bool {
		ok, _ := validation.Covers(role.Rules, []rbacv1.PolicyRule{{APIGroups: []string{names.Group}, Resources: []string{resource}, Verbs: []string{verb}}})
		return ok
	}
	for _, res := range []string{"azureidentities", "azureidentitybindings", "azurepodidentityexceptions"} {
		for _, verb := range []string{"create", "update", "patch", "delete", "deletecollection"} {
			assert.True(t, covers(edit, res, verb), "edit can %s %s", verb, res)
			assert.False(t, covers(view, res, verb), "view cannot %s %s", verb, res)
		}
		for _, verb := range []string{"get", "list", "watch"} {
			assert.True(t, covers(view, res, verb), "view can %s %s", verb, res)
		}
	}
	for _, role := range []*rbacv1.ClusterRole{edit, view} {
		for _, rule := range role.Rules {
			assert.Equal(t, []string{names.Group}, rule.APIGroups, "%s grants on the project's group only", role.Name)
			assert.NotContains(t, rule.Verbs, "*")
			assert.NotContains(t, rule.Resources, "*")
		}
	}
}

// overlay renders an overlay of manifests/ with the given components.
func overlay(t *testing.T, components ...string) *rendered {
	t.Helper()
	fsys := repoFS(t)
	k := types.Kustomization{
		TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
		Resources: []string{"../manifests"},
	}
	for _, c := range components {
		k.Components = append(k.Components, "../manifests/components/"+c)
	}
	writeKustomization(t, fsys, "/repo/overlay", &k)
	return build(t, fsys, "/repo/overlay")
}

// TestLabelOptIn: with the component, the API server itself calls the
// webhook only for namespaces labelled podidentity.github.io/inject=enabled,
// and still never for kube-system or the webhook's own namespace.
func TestLabelOptIn(t *testing.T) {
	base := one(t, one(t, buildBase(t).webhooks).Webhooks)
	r := overlay(t, "label-opt-in")
	wh := one(t, one(t, r.webhooks).Webhooks)
	sel, err := metav1.LabelSelectorAsSelector(wh.NamespaceSelector)
	require.NoError(t, err)

	nsLabels := func(name string, extra map[string]string) labels.Set {
		l := labels.Set{corev1.LabelMetadataName: name}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
	tests := map[string]struct {
		labels labels.Set
		want   bool
	}{
		"labelled namespace":                     {nsLabels("team-a", map[string]string{names.InjectAnnotation: names.InjectEnabled}), true},
		"unlabelled namespace":                   {nsLabels("team-a", nil), false},
		"label disabled":                         {nsLabels("team-a", map[string]string{names.InjectAnnotation: names.InjectDisabled}), false},
		"the legacy label is not matched":        {nsLabels("team-a", map[string]string{names.LegacyKey(names.InjectAnnotation): names.InjectEnabled}), false},
		"kube-system, even labelled":             {nsLabels("kube-system", map[string]string{names.InjectAnnotation: names.InjectEnabled}), false},
		"the webhook's namespace, even labelled": {nsLabels(namespace, map[string]string{names.InjectAnnotation: names.InjectEnabled}), false},
	}
	for name, tt := range tests {
		assert.Equal(t, tt.want, sel.Matches(tt.labels), name)
	}

	// Only the namespaceSelector changes.
	wh.NamespaceSelector, base.NamespaceSelector = nil, nil
	assert.Equal(t, base, wh)
}

// TestNetworkPolicyComponent: the policy selects the webhook's pods and
// admits ingress on the port the Service sends the API server to, only.
func TestNetworkPolicyComponent(t *testing.T) {
	assert.Empty(t, buildBase(t).netpols, "the base ships no NetworkPolicy; it is opt-in")
	r := overlay(t, "network-policy")
	np := one(t, r.netpols)
	deploy := one(t, r.deployments)
	c := one(t, deploy.Spec.Template.Spec.Containers)

	assert.Equal(t, namespace, np.Namespace)
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	require.NoError(t, err)
	assert.True(t, sel.Matches(labels.Set(deploy.Spec.Template.Labels)), "the policy selects the webhook pods")
	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, np.Spec.PolicyTypes)

	rule := one(t, np.Spec.Ingress)
	assert.Empty(t, rule.From, "any peer: the API server's address differs between clusters")
	port := one(t, rule.Ports)
	require.NotNil(t, port.Port)
	var webhookPort int32
	for _, p := range c.Ports {
		if p.Name == "webhook" {
			webhookPort = p.ContainerPort
		}
	}
	assert.Equal(t, fmt.Sprint(webhookPort), port.Port.String(), "ingress on the serving port")
	assert.Equal(t, corev1.ProtocolTCP, *port.Protocol)
	assert.Equal(t, fmt.Sprint(webhookPort), containerFlags(t, c)["port"])
}

// TestDocsMetricsPolicy: the policy docs/security.md gives for a
// Prometheus scraper selects the webhook's pods in the namespace of the
// install and opens the port the Deployment serves metrics on, the
// container port named metrics and its --metrics-bind-address. A wrong port
// leaves the scraper shut out and opens a port nothing serves.
func TestDocsMetricsPolicy(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "security.md"))
	require.NoError(t, err)
	var np *networkingv1.NetworkPolicy
	for _, block := range yamlBlocks(string(doc)) {
		var p networkingv1.NetworkPolicy
		if yaml.Unmarshal([]byte(block), &p) == nil && p.Kind == "NetworkPolicy" && p.Name == webhookName+"-metrics" {
			np = &p
		}
	}
	require.NotNil(t, np, "docs/security.md has no NetworkPolicy %s-metrics in a yaml block", webhookName)

	deploy := one(t, buildBase(t).deployments)
	c := one(t, deploy.Spec.Template.Spec.Containers)
	var metricsPort int32
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			metricsPort = p.ContainerPort
		}
	}
	require.NotZero(t, metricsPort, "the Deployment names no metrics port")
	assert.Equal(t, ":"+fmt.Sprint(metricsPort), containerFlags(t, c)["metrics-bind-address"])

	assert.Equal(t, namespace, np.Namespace)
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	require.NoError(t, err)
	assert.True(t, sel.Matches(labels.Set(deploy.Spec.Template.Labels)), "the policy selects the webhook pods")
	rule := one(t, np.Spec.Ingress)
	port := one(t, rule.Ports)
	require.NotNil(t, port.Port)
	assert.Equal(t, fmt.Sprint(metricsPort), port.Port.String(), "docs/security.md's policy must open the Deployment's metrics port")
}

// yamlBlocks returns the bodies of the ```yaml fences of a Markdown file.
func yamlBlocks(md string) []string {
	var blocks []string
	for _, part := range strings.Split(md, "```yaml\n")[1:] {
		body, _, ok := strings.Cut(part, "```")
		if ok {
			blocks = append(blocks, body)
		}
	}
	return blocks
}
