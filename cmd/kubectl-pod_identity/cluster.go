package main

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/manifest"
)

// clusterFlags choose the cluster the way kubectl does: $KUBECONFIG or
// ~/.kube/config, and its current context, unless told otherwise. migrate
// binds them on the standard library's flag set; explain, on pflag, takes
// kubectl's own genericclioptions.ConfigFlags instead.
type clusterFlags struct {
	Kubeconfig string
	Context    string
}

// stringFlags is a flag set that binds strings: the standard library's or
// pflag's.
type stringFlags interface {
	StringVar(p *string, name, value, usage string)
}

func (c *clusterFlags) AddFlags(fs stringFlags) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file; default $KUBECONFIG or ~/.kube/config")
	fs.StringVar(&c.Context, "context", "", "kubeconfig context; default the current one")
}

// RESTConfig loads the kubeconfig.
func (c *clusterFlags) RESTConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = c.Kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: c.Context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.UserAgent = "kubectl-pod_identity"
	return cfg, nil
}

// newClient is a client that reads the kinds the plugin needs.
func newClient(cfg *rest.Config) (client.Client, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, aadv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	return c, nil
}

// readAADObjects adds every AzureIdentity, AzureIdentityBinding and
// AzurePodIdentityException of the cluster to set.
func readAADObjects(ctx context.Context, c client.Reader, set *manifest.Set) error {
	var ids aadv1.AzureIdentityList
	if err := c.List(ctx, &ids); err != nil {
		return fmt.Errorf("list AzureIdentities (are the aadpodidentity.k8s.io CRDs installed?): %w", err)
	}
	var bindings aadv1.AzureIdentityBindingList
	if err := c.List(ctx, &bindings); err != nil {
		return fmt.Errorf("list AzureIdentityBindings: %w", err)
	}
	var excs aadv1.AzurePodIdentityExceptionList
	if err := c.List(ctx, &excs); err != nil {
		return fmt.Errorf("list AzurePodIdentityExceptions: %w", err)
	}
	set.Identities, set.Bindings, set.Exceptions = ids.Items, bindings.Items, excs.Items
	return nil
}
