// Command cainjector runs cert-manager's CA injector, built from
// cert-manager's own library, against the cluster of --kubeconfig. It is a
// test tool: cert-manager's cainjector binary cannot be built here (its
// cmd/ modules are not served by the module proxy), but the library that the
// binary wraps is, so e2e runs this to show that the
// cert-manager.io/inject-ca-from annotation of manifests/webhook.yaml fills
// the webhook configuration's caBundle from the serving Certificate's Secret.
//
//	go run ./test/cainjector --kubeconfig /path/to/kubeconfig
//
// It sets the manager up as cert-manager's cmd/cainjector does: Secrets are
// read live rather than cached, and reconcilers read only from informers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	cmutil "github.com/cert-manager/cert-manager/pkg/util"
	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cainjector:", err)
		os.Exit(1)
	}
}

// Config is what the command can be told.
type Config struct {
	// Kubeconfig names the cluster. Required: this tool never falls back
	// to an in-cluster or default config, so it cannot touch a cluster by
	// accident.
	Kubeconfig string
	// Namespace scopes the injector to Certificates of one namespace;
	// empty means all.
	Namespace string
	// CRDWait bounds the wait for cert-manager's Certificate CRD, which
	// the injector's watches need.
	CRDWait time.Duration
	// MetricsAddr and ProbeAddr are controller-runtime's endpoints; "0"
	// turns them off.
	MetricsAddr string
	ProbeAddr   string
	// Verbosity is the logr V-level logged; cert-manager logs each
	// injection at 2 ("Updated object").
	Verbosity int
}

// AddFlags binds c to fs.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (required)")
	fs.StringVar(&c.Namespace, "namespace", "", "only inject from Certificates in this namespace; empty for all")
	fs.DurationVar(&c.CRDWait, "crd-wait", time.Minute, "how long to wait for the certificates.cert-manager.io CRD")
	fs.StringVar(&c.MetricsAddr, "metrics-bind-address", "0", "metrics address; 0 disables")
	fs.StringVar(&c.ProbeAddr, "health-probe-bind-address", "0", "health probe address; 0 disables")
	fs.IntVar(&c.Verbosity, "v", 0, "log verbosity: 2 logs every injection, 5 the reconciler's debugging")
}

// Validate reports what is missing.
func (c *Config) Validate() error {
	if c.Kubeconfig == "" {
		return errors.New("--kubeconfig is required: the kubeconfig of the cluster to inject CA bundles into")
	}
	return nil
}

func run(ctx context.Context, args []string) error {
	var cfg Config
	fs := flag.NewFlagSet("cainjector", flag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	// logr's V(n) is slog's level -n.
	log := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.Level(-cfg.Verbosity)}))
	ctrl.SetLogger(log)

	restConfig, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load --kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	// The injector patches with server-side apply under a field manager
	// named after the user agent; without one the API server answers
	// "fieldManager: Required value".
	restConfig = cmutil.RestConfigWithUserAgent(restConfig, "cainjector")

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme,
		admissionregistrationv1.AddToScheme,
		apiextensionsv1.AddToScheme,
		apiregistrationv1.AddToScheme,
		cmapi.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return fmt.Errorf("build scheme: %w", err)
		}
	}

	var namespaces map[string]cache.Config
	if cfg.Namespace != "" {
		namespaces = map[string]cache.Config{cfg.Namespace: {}}
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme: scheme,
		Cache: cache.Options{
			ReaderFailOnMissingInformer: true,
			DefaultNamespaces:           namespaces,
		},
		// Secrets are read live and watched as metadata only, as in
		// cert-manager, so the injector never caches every Secret.
		Client:                 client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		Metrics:                metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress: cfg.ProbeAddr,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}

	if err := waitForCertificateCRD(ctx, mgr, cfg.CRDWait); err != nil {
		return err
	}
	err = cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		Namespace:                    cfg.Namespace,
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   true,
			cainjector.ValidatingWebhookConfigurationName: true,
			cainjector.APIServiceName:                     true,
			cainjector.CustomResourceDefinitionName:       true,
		},
	})
	if err != nil {
		return fmt.Errorf("register injectors: %w", err)
	}
	log.Info("starting cert-manager cainjector", "userAgent", restConfig.UserAgent, "namespace", cfg.Namespace)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}

// waitForCertificateCRD waits, as cert-manager's cainjector does, until the
// Certificate CRD exists: the Certificate watch fails without it.
func waitForCertificateCRD(ctx context.Context, mgr ctrl.Manager, timeout time.Duration) error {
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	name := types.NamespacedName{Name: "certificates." + cmapi.SchemeGroupVersion.Group}
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		err := direct.Get(ctx, name, &apiextensionsv1.CustomResourceDefinition{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("wait for CRD %s (install cert-manager's CRDs first): %w", name.Name, err)
	}
	return nil
}
