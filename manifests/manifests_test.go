// Package manifests_test renders the kustomize base in this directory with
// kustomize's own library, as `kubectl apply -k manifests/` does, and checks
// what an operator relies on: the inventory, least-privilege RBAC, the
// webhook configuration of docs/design/contract.md section 5, the Deployment's hardening,
// and that both images follow `kustomize edit set image`.
package manifests_test

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/component-helpers/auth/rbac/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/podidentity/injector/internal/names"
)

const (
	namespace   = "pod-identity-system"
	webhookName = "pod-identity-webhook"
	// clusterName names the cluster-scoped objects, which must not collide
	// with the EKS pod identity webhook's pod-identity-webhook.
	clusterName    = "pod-identity-injector"
	webhookFQDN    = clusterName + "." + names.Prefix
	webhookImage   = "ghcr.io/podidentity/pod-identity-webhook"
	sidecarImage   = "ghcr.io/podidentity/pod-identity-sidecar"
	sidecarEnvName = "SIDECAR_IMAGE"
	// metricsReader may get the webhook's HTTPS /metrics.
	metricsReader = clusterName + "-metrics-reader"
)

// rendered is the kustomize output, decoded strictly into API types, so a
// misspelt field fails here rather than being dropped by the API server.
type rendered struct {
	ids []string // kind/namespace/name of every object, in output order

	namespaces   []corev1.Namespace
	crds         []apiextensionsv1.CustomResourceDefinition
	sas          []corev1.ServiceAccount
	clusterRoles []rbacv1.ClusterRole
	bindings     []rbacv1.ClusterRoleBinding
	deployments  []appsv1.Deployment
	services     []corev1.Service
	pdbs         []policyv1.PodDisruptionBudget
	webhooks     []admissionregistrationv1.MutatingWebhookConfiguration
	issuers      []cmapi.Issuer
	certificates []cmapi.Certificate
	netpols      []networkingv1.NetworkPolicy
}

// repoFS copies manifests/ and certs/ (everything kustomize may read) into
// an in-memory filesystem at /repo, so tests can edit kustomizations
// without touching the tree.
func repoFS(t *testing.T) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	for _, dir := range []string{"manifests", "certs"} {
		root := filepath.Join("..", dir)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, err := filepath.Rel("..", p)
			if err != nil {
				return err
			}
			return mem.WriteFile(path.Join("/repo", filepath.ToSlash(rel)), data)
		})
		require.NoError(t, err)
	}
	require.True(t, mem.Exists("/repo/manifests/crds/kustomization.yaml"), "manifests/crds is part of the base")
	return mem
}

func build(t *testing.T, fsys filesys.FileSystem, dir string) *rendered {
	t.Helper()
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	require.NoError(t, err, "kustomize build %s", dir)

	var r rendered
	for _, res := range resMap.Resources() {
		data, err := res.AsYAML()
		require.NoError(t, err)
		id := fmt.Sprintf("%s/%s/%s", res.GetKind(), res.GetNamespace(), res.GetName())
		r.ids = append(r.ids, id)
		var target any
		switch res.GetKind() {
		case "Namespace":
			target = appendNew(&r.namespaces)
		case "CustomResourceDefinition":
			target = appendNew(&r.crds)
		case "ServiceAccount":
			target = appendNew(&r.sas)
		case "ClusterRole":
			target = appendNew(&r.clusterRoles)
		case "ClusterRoleBinding":
			target = appendNew(&r.bindings)
		case "Deployment":
			target = appendNew(&r.deployments)
		case "Service":
			target = appendNew(&r.services)
		case "PodDisruptionBudget":
			target = appendNew(&r.pdbs)
		case "MutatingWebhookConfiguration":
			target = appendNew(&r.webhooks)
		case "Issuer":
			target = appendNew(&r.issuers)
		case "Certificate":
			target = appendNew(&r.certificates)
		case "NetworkPolicy":
			target = appendNew(&r.netpols)
		default:
			t.Fatalf("%s: a kind this test does not know; add it to the inventory", id)
		}
		require.NoError(t, yaml.UnmarshalStrict(data, target), "%s decodes strictly into its API type", id)
	}
	return &r
}

// appendNew appends a zero T to *list and returns a pointer to it.
func appendNew[T any](list *[]T) *T {
	*list = append(*list, *new(T))
	return &(*list)[len(*list)-1]
}

func one[T any](t *testing.T, list []T) *T {
	t.Helper()
	require.Len(t, list, 1)
	return &list[0]
}

func buildBase(t *testing.T) *rendered {
	t.Helper()
	return build(t, repoFS(t), "/repo/manifests")
}

func TestInventory(t *testing.T) {
	r := buildBase(t)
	assert.ElementsMatch(t, []string{
		"CustomResourceDefinition//azureidentities.aadpodidentity.k8s.io",
		"CustomResourceDefinition//azureidentitybindings.aadpodidentity.k8s.io",
		"CustomResourceDefinition//azurepodidentityexceptions.aadpodidentity.k8s.io",
		"Namespace//" + namespace,
		"ServiceAccount/" + namespace + "/" + webhookName,
		"ClusterRole//" + clusterName,
		"ClusterRole//" + clusterName + "-aggregate-to-edit",
		"ClusterRole//" + clusterName + "-aggregate-to-view",
		"ClusterRole//" + metricsReader,
		"ClusterRoleBinding//" + clusterName,
		"Deployment/" + namespace + "/" + webhookName,
		"Service/" + namespace + "/" + webhookName,
		"PodDisruptionBudget/" + namespace + "/" + webhookName,
		"MutatingWebhookConfiguration//" + clusterName,
		"Issuer/" + namespace + "/pod-identity-selfsigned",
		"Issuer/" + namespace + "/pod-identity-ca",
		"Certificate/" + namespace + "/pod-identity-webhook-ca",
		"Certificate/" + namespace + "/" + webhookName,
	}, r.ids)
	for _, id := range r.ids {
		if strings.Contains(id, "//") && !strings.HasPrefix(id, "CustomResourceDefinition//") && !strings.HasPrefix(id, "Namespace//") {
			assert.True(t, strings.HasPrefix(id, strings.SplitN(id, "/", 2)[0]+"//"+clusterName),
				"cluster-scoped %s is named %s...: the EKS pod identity webhook owns pod-identity-webhook", id, clusterName)
		}
	}
	ns := one(t, r.namespaces)
	assert.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/enforce"],
		"the webhook's namespace enforces the restricted Pod Security Standard")
}

func TestRBAC(t *testing.T) {
	r := buildBase(t)
	role, binding, sa := clusterRole(t, r, clusterName), one(t, r.bindings), one(t, r.sas)
	reader := clusterRole(t, r, metricsReader)
	deploy := one(t, r.deployments)

	assert.Equal(t, sa.Name, deploy.Spec.Template.Spec.ServiceAccountName, "the Deployment runs as the bound ServiceAccount")
	assert.Equal(t, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}, binding.RoleRef)
	assert.Equal(t, []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: sa.Namespace}}, binding.Subjects)

	rule := func(group, resource, verb string) []rbacv1.PolicyRule {
		return []rbacv1.PolicyRule{{APIGroups: []string{group}, Resources: []string{resource}, Verbs: []string{verb}}}
	}
	var needed []string
	for _, res := range []string{"azureidentities", "azureidentitybindings", "azurepodidentityexceptions"} {
		needed = append(needed, names.Group+"/"+res)
	}
	needed = append(needed, "/namespaces")
	for _, gr := range needed {
		group, resource, _ := strings.Cut(gr, "/")
		for _, verb := range []string{"get", "list", "watch"} {
			covered, _ := validation.Covers(role.Rules, rule(group, resource, verb))
			assert.True(t, covered, "the webhook can %s %s", verb, gr)
		}
	}

	// The metrics filter asks the API server who the caller is and whether
	// it may get /metrics.
	for _, gr := range []string{"authentication.k8s.io/tokenreviews", "authorization.k8s.io/subjectaccessreviews"} {
		group, resource, _ := strings.Cut(gr, "/")
		covered, _ := validation.Covers(role.Rules, rule(group, resource, "create"))
		assert.True(t, covered, "the webhook can create %s", gr)
	}
	// Whoever is bound to the reader role may read /metrics, and nothing else.
	assert.Equal(t, []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}, reader.Rules)

	denied := map[string]struct{ group, resource, verb string }{
		"get secrets":            {"", "secrets", "get"},
		"list secrets":           {"", "secrets", "list"},
		"watch secrets":          {"", "secrets", "watch"},
		"create pods":            {"", "pods", "create"},
		"update namespaces":      {"", "namespaces", "update"},
		"create identities":      {names.Group, "azureidentities", "create"},
		"delete bindings":        {names.Group, "azureidentitybindings", "delete"},
		"create tokens":          {"", "serviceaccounts/token", "create"},
		"read configmaps":        {"", "configmaps", "get"},
		"patch webhook configs":  {admissionregistrationv1.GroupName, "mutatingwebhookconfigurations", "patch"},
		"escalate cluster roles": {rbacv1.GroupName, "clusterroles", "escalate"},
		"impersonate anyone":     {"", "users", "impersonate"},
		"get secrets, any group": {"*", "secrets", "get"},
	}
	for name, d := range denied {
		covered, _ := validation.Covers(role.Rules, rule(d.group, d.resource, d.verb))
		assert.False(t, covered, "the webhook must not %s", name)
	}
	for _, r := range role.Rules {
		for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
			assert.NotContains(t, list, "*", "no wildcards in rule %+v", r)
		}
		assert.Empty(t, r.ResourceNames)
		assert.Empty(t, r.NonResourceURLs)
	}
}

func TestWebhookConfiguration(t *testing.T) {
	r := buildBase(t)
	cfg := one(t, r.webhooks)
	svc := one(t, r.services)
	serving := servingCertificate(t, r)

	assert.Equal(t, clusterName, cfg.Name)
	assert.Equal(t, "true", cfg.Labels["admissions.enforcer/disabled"],
		"AKS's Admissions Enforcer leaves the configuration alone, so GitOps tools see no drift")
	assert.Equal(t, serving.Namespace+"/"+serving.Name, cfg.Annotations["cert-manager.io/inject-ca-from"],
		"cainjector fills caBundle from the serving Certificate")

	wh := one(t, cfg.Webhooks)
	assert.Equal(t, webhookFQDN, wh.Name)
	assert.Empty(t, wh.ClientConfig.CABundle, "caBundle is cainjector's to fill")
	assert.Nil(t, wh.ClientConfig.URL)
	require.NotNil(t, wh.ClientConfig.Service)
	assert.Equal(t, admissionregistrationv1.ServiceReference{
		Namespace: svc.Namespace, Name: svc.Name, Path: new("/mutate-v1-pod"), Port: new(int32(443)),
	}, *wh.ClientConfig.Service)
	assert.Contains(t, serving.Spec.DNSNames, fmt.Sprintf("%s.%s.svc", svc.Name, svc.Namespace),
		"the serving certificate names the Service the API server calls")

	assert.Equal(t, []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule: admissionregistrationv1.Rule{
			APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
			Scope: new(admissionregistrationv1.NamespacedScope),
		},
	}}, wh.Rules)
	assert.Equal(t, []string{"v1"}, wh.AdmissionReviewVersions)
	assert.Equal(t, new(admissionregistrationv1.SideEffectClassNone), wh.SideEffects)
	assert.Equal(t, new(admissionregistrationv1.IfNeededReinvocationPolicy), wh.ReinvocationPolicy)
	assert.Equal(t, new(admissionregistrationv1.Fail), wh.FailurePolicy)
	assert.Equal(t, new(admissionregistrationv1.Equivalent), wh.MatchPolicy)
	require.NotNil(t, wh.TimeoutSeconds)
	assert.LessOrEqual(t, *wh.TimeoutSeconds, int32(10), "a small timeout: pod creation waits on it")

	objects, err := metav1.LabelSelectorAsSelector(wh.ObjectSelector)
	require.NoError(t, err)
	namespaces, err := metav1.LabelSelectorAsSelector(wh.NamespaceSelector)
	require.NoError(t, err)
	selects := map[string]struct {
		sel    labels.Selector
		labels labels.Set
		want   bool
	}{
		"labelled pod":                        {objects, labels.Set{names.BindingLabel: "blob-reader"}, true},
		"labelled pod with an empty selector": {objects, labels.Set{names.BindingLabel: ""}, true},
		"unlabelled pod":                      {objects, labels.Set{"app": "web"}, false},
		"user namespace":                      {namespaces, labels.Set{"kubernetes.io/metadata.name": "team-a"}, true},
		"kube-system":                         {namespaces, labels.Set{"kubernetes.io/metadata.name": "kube-system"}, false},
		"the webhook's own namespace":         {namespaces, labels.Set{"kubernetes.io/metadata.name": namespace}, false},
	}
	for name, s := range selects {
		assert.Equal(t, s.want, s.sel.Matches(s.labels), name)
	}
}

func TestDeployment(t *testing.T) {
	r := buildBase(t)
	deploy := one(t, r.deployments)
	spec := deploy.Spec.Template.Spec
	c := one(t, spec.Containers)
	flags := containerFlags(t, c)

	assert.Equal(t, new(int32(2)), deploy.Spec.Replicas)
	assert.Equal(t, "system-cluster-critical", spec.PriorityClassName)
	assert.Equal(t, map[string]string{corev1.LabelOSStable: "linux"}, spec.NodeSelector, "the Linux-only image keeps off Windows node pools")
	podLabels := labels.Set(deploy.Spec.Template.Labels)

	t.Run("spread across nodes", func(t *testing.T) {
		i := slices.IndexFunc(spec.TopologySpreadConstraints, func(c corev1.TopologySpreadConstraint) bool {
			return c.TopologyKey == corev1.LabelHostname
		})
		require.GreaterOrEqual(t, i, 0, "a topologySpreadConstraint on %s", corev1.LabelHostname)
		tsc := spec.TopologySpreadConstraints[i]
		assert.Equal(t, int32(1), tsc.MaxSkew)
		assert.Equal(t, corev1.DoNotSchedule, tsc.WhenUnsatisfiable)
		sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
		require.NoError(t, err)
		assert.True(t, sel.Matches(podLabels), "the constraint counts the webhook's own pods")
	})

	t.Run("hardening", func(t *testing.T) {
		psc := spec.SecurityContext
		require.NotNil(t, psc)
		assert.Equal(t, new(true), psc.RunAsNonRoot)
		require.NotNil(t, psc.SeccompProfile)
		assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type)
		assert.False(t, spec.HostNetwork || spec.HostPID || spec.HostIPC)

		sc := c.SecurityContext
		require.NotNil(t, sc)
		assert.Equal(t, new(false), sc.AllowPrivilegeEscalation)
		assert.Equal(t, new(true), sc.ReadOnlyRootFilesystem)
		assert.Equal(t, new(true), sc.RunAsNonRoot)
		assert.Nil(t, sc.Privileged)
		require.NotNil(t, sc.Capabilities)
		assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
		assert.Empty(t, sc.Capabilities.Add)
		require.NotNil(t, sc.SeccompProfile)
		assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type)
	})

	t.Run("resources", func(t *testing.T) {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, lim := c.Resources.Requests[name], c.Resources.Limits[name]
			assert.False(t, req.IsZero(), "%s request", name)
			assert.False(t, lim.IsZero(), "%s limit", name)
			assert.LessOrEqual(t, req.Cmp(lim), 0, "%s request within limit", name)
		}
	})

	t.Run("ports and probes match the flags", func(t *testing.T) {
		port := func(name string) int32 {
			i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == name })
			require.GreaterOrEqual(t, i, 0, "container port %q", name)
			return c.Ports[i].ContainerPort
		}
		assert.Equal(t, fmt.Sprint(port("webhook")), flags["port"])
		assert.Equal(t, fmt.Sprintf(":%d", port("health")), flags["health-probe-bind-address"])
		assert.Equal(t, fmt.Sprintf(":%d", port("metrics")), flags["metrics-bind-address"])
		svc := one(t, r.services)
		assert.Equal(t, "webhook", one(t, svc.Spec.Ports).TargetPort.String(), "the Service sends 443 to the webhook port")
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		assert.True(t, sel.Matches(podLabels), "the Service selects the webhook pods")

		for name, probe := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
			require.NotNil(t, probe, name)
			require.NotNil(t, probe.HTTPGet, name)
			assert.Equal(t, name, probe.HTTPGet.Path)
			assert.Equal(t, "health", probe.HTTPGet.Port.String())
		}
	})

	t.Run("mounts the serving Secret read-only at --cert-dir", func(t *testing.T) {
		serving := servingCertificate(t, r)
		i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool {
			return v.Secret != nil && v.Secret.SecretName == serving.Spec.SecretName
		})
		require.GreaterOrEqual(t, i, 0, "a volume of Secret %s", serving.Spec.SecretName)
		j := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == spec.Volumes[i].Name })
		require.GreaterOrEqual(t, j, 0)
		assert.True(t, c.VolumeMounts[j].ReadOnly)
		assert.Equal(t, flags["cert-dir"], c.VolumeMounts[j].MountPath)
	})

	t.Run("the PodDisruptionBudget keeps one replica", func(t *testing.T) {
		pdb := one(t, r.pdbs)
		require.NotNil(t, pdb.Spec.MinAvailable)
		assert.Equal(t, 1, pdb.Spec.MinAvailable.IntValue())
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		require.NoError(t, err)
		assert.True(t, sel.Matches(podLabels))
	})

	assert.Equal(t, webhookImage+":v0.1.0", c.Image)
	assert.Contains(t, c.Args, "--sidecar-image=$("+sidecarEnvName+")", "the flag reads the env var that kustomize's images: rewrites")
	assert.Equal(t, sidecarImage+":v0.1.0", flags["sidecar-image"])
}

// TestImagesSettable checks that `kustomize edit set image` moves both
// images, both when run in manifests/ itself and in an overlay.
func TestImagesSettable(t *testing.T) {
	const (
		newWebhook = "registry.example/team/webhook"
		newSidecar = "registry.example/team/sidecar"
		digest     = "sha256:2f1b8c6f0fe1a7f0b2cd0a1c6e6d2a3e6a47f3f3ab58d07c6a1c0cbb0f2c9a11"
	)
	tests := map[string]struct {
		images      []types.Image
		inPlace     bool
		wantWebhook string
		wantSidecar string
	}{
		"in manifests/, by tag": {
			inPlace:     true,
			images:      []types.Image{{Name: webhookImage, NewName: newWebhook, NewTag: "v9"}, {Name: sidecarImage, NewName: newSidecar, NewTag: "v9"}},
			wantWebhook: newWebhook + ":v9",
			wantSidecar: newSidecar + ":v9",
		},
		"in an overlay, by tag": {
			images:      []types.Image{{Name: webhookImage, NewName: newWebhook, NewTag: "v9"}, {Name: sidecarImage, NewName: newSidecar, NewTag: "v9"}},
			wantWebhook: newWebhook + ":v9",
			wantSidecar: newSidecar + ":v9",
		},
		"in an overlay, by digest": {
			images:      []types.Image{{Name: sidecarImage, Digest: digest}},
			wantWebhook: webhookImage + ":v0.1.0",
			wantSidecar: sidecarImage + "@" + digest,
		},
		"in an overlay, the sidecar only": {
			images:      []types.Image{{Name: sidecarImage, NewTag: "v2"}},
			wantWebhook: webhookImage + ":v0.1.0",
			wantSidecar: sidecarImage + ":v2",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			fsys := repoFS(t)
			dir := "/repo/overlay"
			if tt.inPlace {
				dir = "/repo/manifests"
				setImages(t, fsys, dir, tt.images)
			} else {
				k := types.Kustomization{
					TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
					Resources: []string{"../manifests"},
				}
				writeKustomization(t, fsys, dir, &k)
				setImages(t, fsys, dir, tt.images)
			}
			r := build(t, fsys, dir)
			c := one(t, one(t, r.deployments).Spec.Template.Spec.Containers)
			assert.Equal(t, tt.wantWebhook, c.Image)
			assert.Equal(t, tt.wantSidecar, containerFlags(t, c)["sidecar-image"])
		})
	}
}

// setImages does what `kustomize edit set image` does to the
// kustomization in dir: replace the entry of the same name, or add one.
func setImages(t *testing.T, fsys filesys.FileSystem, dir string, images []types.Image) {
	t.Helper()
	data, err := fsys.ReadFile(path.Join(dir, "kustomization.yaml"))
	require.NoError(t, err)
	var k types.Kustomization
	require.NoError(t, yaml.UnmarshalStrict(data, &k))
	for _, img := range images {
		i := slices.IndexFunc(k.Images, func(have types.Image) bool { return have.Name == img.Name })
		if i < 0 {
			k.Images = append(k.Images, img)
		} else {
			k.Images[i] = img
		}
	}
	writeKustomization(t, fsys, dir, &k)
}

func writeKustomization(t *testing.T, fsys filesys.FileSystem, dir string, k *types.Kustomization) {
	t.Helper()
	data, err := yaml.Marshal(k)
	require.NoError(t, err)
	require.NoError(t, fsys.MkdirAll(dir))
	require.NoError(t, fsys.WriteFile(path.Join(dir, "kustomization.yaml"), data))
}

// clusterRole returns the rendered ClusterRole called name.
func clusterRole(t *testing.T, r *rendered, name string) *rbacv1.ClusterRole {
	t.Helper()
	i := slices.IndexFunc(r.clusterRoles, func(c rbacv1.ClusterRole) bool { return c.Name == name })
	require.GreaterOrEqual(t, i, 0, "ClusterRole %s", name)
	return &r.clusterRoles[i]
}

func servingCertificate(t *testing.T, r *rendered) *cmapi.Certificate {
	t.Helper()
	i := slices.IndexFunc(r.certificates, func(c cmapi.Certificate) bool { return !c.Spec.IsCA })
	require.GreaterOrEqual(t, i, 0, "a serving (non-CA) Certificate")
	return &r.certificates[i]
}

// envRef is the $(VAR) syntax the kubelet expands in args from the
// container's env.
var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// containerFlags returns the container's --name=value args, with $(VAR)
// references expanded from its env as the kubelet would.
func containerFlags(t *testing.T, c *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	flags := map[string]string{}
	for _, arg := range c.Args {
		name, value, ok := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		require.True(t, ok && strings.HasPrefix(arg, "--"), "arg %q is --name=value", arg)
		flags[name] = envRef.ReplaceAllStringFunc(value, func(ref string) string {
			v, ok := env[envRef.FindStringSubmatch(ref)[1]]
			require.True(t, ok, "arg %q refers to an env var the container does not set", arg)
			return v
		})
	}
	return flags
}

// TestNamespaceOverlay: an overlay that moves the install to another
// namespace with `namespace:` must move every place that names it, or TLS
// breaks: kustomize's namespace transformer moves metadata.namespace, the
// ClusterRoleBinding's subject and the webhook's Service reference, but not
// the serving Certificate's DNS names, cainjector's annotation or the
// excluded namespace of the webhook's namespaceSelector. The overlay lists
// transformers/namespace, which rewrites those after its namespace:, with
// and without the label-opt-in component.
func TestNamespaceOverlay(t *testing.T) {
	const moved = "identity-platform"
	for name, components := range map[string][]string{
		"base":         nil,
		"label opt-in": {"../manifests/components/label-opt-in"},
	} {
		t.Run(name, func(t *testing.T) {
			fsys := repoFS(t)
			k := types.Kustomization{
				TypeMeta:     types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
				Namespace:    moved,
				Resources:    []string{"../manifests"},
				Components:   components,
				Transformers: []string{"../manifests/transformers/namespace"},
			}
			writeKustomization(t, fsys, "/repo/overlay", &k)
			r := build(t, fsys, "/repo/overlay")

			for _, id := range r.ids {
				assert.NotContains(t, id, namespace, "an object left in the base's namespace")
			}
			assert.Equal(t, moved, one(t, r.namespaces).Name)
			svc := one(t, r.services)
			require.Equal(t, moved, svc.Namespace)
			serving := servingCertificate(t, r)
			assert.Equal(t, []string{
				fmt.Sprintf("%s.%s.svc", svc.Name, moved),
				fmt.Sprintf("%s.%s.svc.cluster.local", svc.Name, moved),
			}, serving.Spec.DNSNames, "the serving certificate names the Service the API server calls")

			cfg := one(t, r.webhooks)
			assert.Equal(t, moved+"/"+serving.Name, cfg.Annotations["cert-manager.io/inject-ca-from"],
				"cainjector fills caBundle from the moved Certificate")
			wh := one(t, cfg.Webhooks)
			require.NotNil(t, wh.ClientConfig.Service)
			assert.Equal(t, moved, wh.ClientConfig.Service.Namespace)
			nsSel, err := metav1.LabelSelectorAsSelector(wh.NamespaceSelector)
			require.NoError(t, err)
			assert.False(t, nsSel.Matches(labels.Set{"kubernetes.io/metadata.name": moved, names.InjectAnnotation: "enabled"}),
				"the webhook's own namespace is never sent to it")
			assert.False(t, nsSel.Matches(labels.Set{"kubernetes.io/metadata.name": "kube-system", names.InjectAnnotation: "enabled"}))
			assert.True(t, nsSel.Matches(labels.Set{"kubernetes.io/metadata.name": namespace, names.InjectAnnotation: "enabled"}),
				"the old namespace is an ordinary one now")

			binding := one(t, r.bindings)
			assert.Equal(t, moved, one(t, binding.Subjects).Namespace)
		})
	}
}
