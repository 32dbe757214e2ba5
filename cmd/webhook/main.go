// Command pod-identity-webhook is the mutating admission webhook that
// injects the token-server sidecar into pods labelled aadpodidbinding. Flags
// go into one Config; run does the rest.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/memtune"
	buildinfo "github.com/podidentity/injector/internal/version"
	"github.com/podidentity/injector/internal/webhook"
)

// runtimeSettings: the webhook's live heap is mostly its informer cache,
// which grows with the cluster's namespaces, and Go's default (GOGC=100)
// lets the heap grow to twice that between collections. GOGC=50 cut its
// growth from 4.8 to 4.0 KB per namespace at 5,000 namespaces without
// moving the admission latency (BENCHMARKS.md, "The webhook at scale"). The
// soft limit, 75% of the container's, makes the collector work harder
// before the OOM killer would act.
var runtimeSettings = memtune.Settings{GCPercent: 50, LimitShare: 0.75}

func main() {
	memtune.Apply(runtimeSettings, os.Getenv, os.ReadFile)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pod-identity-webhook:", err)
		os.Exit(1)
	}
}

// run parses args into a Config and serves until ctx is done.
func run(ctx context.Context, args []string) error {
	cfg := defaultConfig()
	fs := pflag.NewFlagSet("pod-identity-webhook", pflag.ContinueOnError)
	cfg.AddFlags(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println(buildinfo.String("pod-identity-webhook"))
		return nil
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	level, _ := parseLevel(cfg.LogLevel)
	log := logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctrl.SetLogger(log)
	klog.SetLogger(log)

	restCfg, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	restCfg.UserAgent = "pod-identity-webhook"
	restCfg.QPS, restCfg.Burst = cfg.clientRates()

	// The server version is asked once, here; the handler gets a plain bool.
	native, serverVersion, err := decision.NativeSidecar(cfg.NativeSidecar, restCfg)
	if err != nil {
		return err
	}
	log.Info("starting", "clientCAFile", cfg.ClientCAFile, "serverVersion", serverVersion, "nativeSidecar", native, "sidecarImage", cfg.SidecarImage,
		"allowedAuthorityHosts", cfg.AllowedHosts(), "memoryLimit", memtune.Limit())

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := aadv1.AddToScheme(scheme); err != nil {
		return err
	}
	watches := newWatchHealth(time.Now, "so the cache may serve deleted or stale bindings")
	webhookTLSOptions := tlsOptions(cfg)
	if cfg.ClientCAFile != "" {
		ca, err := newClientCA(cfg.ClientCAFile)
		if err != nil {
			return err
		}
		webhookTLSOptions = append(webhookTLSOptions, ca.tlsOption)
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme: scheme,
		// The handler only reads what it gets from the cache, so the cache
		// may hand out its own objects instead of a deep copy per read. The
		// transforms keep only the fields it reads: the cache holds every
		// namespace of the cluster. Watch failures feed readiness. Pods are
		// not in it (podsWatch).
		Cache: cache.Options{
			DefaultUnsafeDisableDeepCopy: ptr.To(true),
			DefaultTransform:             webhook.CacheDefaultTransform,
			ByObject:                     webhook.CacheByObject(),
			DefaultWatchErrorHandler:     watches.handler,
		},
		Metrics:                metricsOptions(cfg),
		HealthProbeBindAddress: cfg.ProbeAddr,
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host: cfg.Host, Port: cfg.Port, CertDir: cfg.CertDir, TLSOpts: webhookTLSOptions,
		}),
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}

	// Before the cache starts: the decision finds the bindings of a
	// selector in every namespace through it (decision.CacheThenLive).
	if err := decision.IndexBindingSelector(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}

	metrics := webhook.NewMetrics()
	if err := metrics.Register(ctrlmetrics.Registry); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	var peers decision.Peers
	if cfg.WarnSharedServiceAccount {
		clientset, err := kubernetes.NewForConfig(restCfg)
		if err != nil {
			return fmt.Errorf("watch pods: %w", err)
		}
		pods, err := newPodsWatch(clientset, time.Now, log)
		if err != nil {
			return fmt.Errorf("watch pods: %w", err)
		}
		if err := ctrlmetrics.Registry.Register(pods.healthyGauge()); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
		// Not the manager's cache, whose sync gates readiness.
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			pods.informer.RunWithContext(ctx)
			return nil
		})); err != nil {
			return err
		}
		peers = pods.peers()
	}
	lookup := decision.CacheThenLive(mgr.GetCache(), mgr.GetAPIReader(), cfg.LiveReadTimeout,
		rate.NewLimiter(rate.Limit(cfg.LiveReadsPerSecond), cfg.LiveReadBurst))
	planner, err := cfg.NewPlanner(lookup, peers, native)
	if err != nil {
		return err
	}
	handler, err := webhook.NewHandler(planner, metrics)
	if err != nil {
		return err
	}
	mgr.GetWebhookServer().Register(webhook.Path, webhook.LimitBody(&admission.Webhook{Handler: handler}))

	synced := &atomic.Bool{}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		return warmCache(ctx, mgr, synced, log)
	})); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("cache", func(*http.Request) error {
		if !synced.Load() {
			return errors.New("informer cache not synced yet")
		}
		return nil
	}); err != nil {
		return err
	}
	// Synced once is not enough: a broken watch serves deleted bindings.
	if err := mgr.AddReadyzCheck("watch", watches.check); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// warmCache starts the informers the handler reads, so that readiness
// means every lookup is served from memory, and marks synced. The pods of
// the shared service account warning are not among them (podsWatch).
func warmCache(ctx context.Context, mgr manager.Manager, synced *atomic.Bool, log logr.Logger) error {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	objs := []client.Object{&aadv1.AzureIdentity{}, &aadv1.AzureIdentityBinding{}, &aadv1.AzurePodIdentityException{}, ns}
	for _, obj := range objs {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("watch %T: %w (are the CRDs installed? kubectl apply -k manifests/crds)", obj, err)
		}
	}
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return ctx.Err()
	}
	synced.Store(true)
	log.Info("informer cache synced; ready")
	return nil
}

// tlsOptions are the TLS settings of both servers: HTTP/1.1 only unless
// --enable-http2, since HTTP/2's rapid reset (CVE-2023-44487) lets one
// client tie up a server, and with failurePolicy Fail a stuck webhook stops
// every labelled pod.
func tlsOptions(cfg Config) []func(*tls.Config) {
	if cfg.EnableHTTP2 {
		return nil
	}
	return []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
}

// metricsOptions serve /metrics over HTTPS to callers that the API server
// authenticates (TokenReview) and authorizes to get /metrics
// (SubjectAccessReview), as kubebuilder projects do. The serving
// certificate is the webhook's own when --cert-dir is set, else a
// self-signed one.
func metricsOptions(cfg Config) metricsserver.Options {
	o := metricsserver.Options{BindAddress: cfg.MetricsAddr, TLSOpts: tlsOptions(cfg)}
	if cfg.MetricsSecure {
		o.SecureServing = true
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
		if cfg.CertDir != "" {
			o.CertDir, o.CertName, o.KeyName = cfg.CertDir, "tls.crt", "tls.key"
		}
	}
	return o
}

// restConfig loads a kubeconfig file, or the in-cluster config.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load --kubeconfig %s: %w", kubeconfig, err)
		}
		return c, nil
	}
	c, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config (outside a cluster, pass --kubeconfig): %w", err)
	}
	return c, nil
}

// parseLevel maps --log-level to a slog level.
func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
