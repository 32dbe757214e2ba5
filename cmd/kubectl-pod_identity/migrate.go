package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podidentity/injector/internal/manifest"
	"github.com/podidentity/injector/internal/migrate"
	"github.com/podidentity/injector/internal/names"
)

// migrateConfig is the command line of `migrate`.
type migrateConfig struct {
	cluster            clusterFlags
	Issuer             string
	DefaultTenantID    string
	DefaultTokenSource string
	RequireOptIn       bool
	Output             string
	Timeout            time.Duration
}

func (c *migrateConfig) AddFlags(fs *flag.FlagSet) {
	c.cluster.AddFlags(fs)
	fs.StringVar(&c.Issuer, "issuer", "", "the cluster's service account issuer URL; default: read from the API server's /.well-known/openid-configuration")
	fs.StringVar(&c.DefaultTenantID, "default-tenant-id", "", "the webhook's --default-tenant-id, for identities without spec.tenantID")
	fs.StringVar(&c.DefaultTokenSource, "default-token-source", names.TokenSourceFederated, "the webhook's --default-token-source: federated or imds")
	fs.BoolVar(&c.RequireOptIn, "require-namespace-opt-in", true, "the webhook's --require-namespace-opt-in")
	fs.StringVar(&c.Output, "o", migrate.FormatText, "output: text, json or terraform")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "how long to read the cluster")
}

func (c *migrateConfig) Validate() error {
	var errs []error
	switch c.Output {
	case migrate.FormatText, migrate.FormatJSON, migrate.FormatTerraform:
	default:
		errs = append(errs, fmt.Errorf("-o %q: want text, json or terraform", c.Output))
	}
	switch c.DefaultTokenSource {
	case names.TokenSourceFederated, names.TokenSourceIMDS:
	default:
		errs = append(errs, fmt.Errorf("--default-token-source %q: want federated or imds", c.DefaultTokenSource))
	}
	if c.Issuer != "" {
		if u, err := url.Parse(c.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("--issuer %q: want an https URL, the iss of the cluster's service account tokens", c.Issuer))
		}
	}
	return errors.Join(errs...)
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg migrateConfig
	fs := flag.NewFlagSet("kubectl pod-identity migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("migrate takes no arguments, got %q", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	restCfg, err := cfg.cluster.RESTConfig()
	if err != nil {
		return err
	}
	c, err := newClient(restCfg)
	if err != nil {
		return err
	}
	set, secrets, err := readCluster(ctx, c)
	if err != nil {
		return err
	}
	if secrets == nil {
		fmt.Fprintln(stderr, "warning: cannot list Secrets' metadata; missing Secrets of type 1 and 2 identities are not checked")
	}
	issuer := cfg.Issuer
	if issuer == "" {
		if issuer, err = discoverIssuer(ctx, restCfg); err != nil {
			return err
		}
	}
	report := migrate.Plan(set, migrate.Options{
		Issuer:             issuer,
		DefaultTenantID:    cfg.DefaultTenantID,
		DefaultTokenSource: cfg.DefaultTokenSource,
		RequireOptIn:       cfg.RequireOptIn,
		Secrets:            secrets,
	})
	if err := migrate.Render(stdout, report, cfg.Output); err != nil {
		return err
	}
	if len(report.Blockers) > 0 {
		return errFindings
	}
	return nil
}

// readCluster lists what migrate plans over: the aad-pod-identity objects,
// namespaces, labelled pods and the pod templates of workloads. secrets
// is nil when the caller may not list them.
func readCluster(ctx context.Context, c client.Client) (*manifest.Set, map[string]bool, error) {
	set := &manifest.Set{}
	if err := readAADObjects(ctx, c, set); err != nil {
		return nil, nil, err
	}
	var nss metav1.PartialObjectMetadataList
	nss.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := c.List(ctx, &nss); err != nil {
		return nil, nil, fmt.Errorf("list namespaces: %w", err)
	}
	set.Namespaces = nss.Items

	labelled := client.HasLabels{names.BindingLabel}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, labelled); err != nil {
		return nil, nil, fmt.Errorf("list pods labelled %s: %w", names.BindingLabel, err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		set.Workloads = append(set.Workloads, manifest.Workload{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, Pod: p})
	}
	add := func(kind string, meta metav1.ObjectMeta, tmpl corev1.PodTemplateSpec) {
		if _, ok := tmpl.Labels[names.BindingLabel]; !ok {
			return
		}
		pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
		pod.Namespace = meta.Namespace
		set.Workloads = append(set.Workloads, manifest.Workload{Kind: kind, Namespace: meta.Namespace, Name: meta.Name, Pod: pod})
	}
	var (
		deps appsv1.DeploymentList
		sts  appsv1.StatefulSetList
		dss  appsv1.DaemonSetList
		jobs batchv1.JobList
		cjs  batchv1.CronJobList
	)
	for kind, list := range map[string]client.ObjectList{"Deployment": &deps, "StatefulSet": &sts, "DaemonSet": &dss, "Job": &jobs, "CronJob": &cjs} {
		if err := c.List(ctx, list); err != nil {
			return nil, nil, fmt.Errorf("list %ss: %w", kind, err)
		}
	}
	for _, o := range deps.Items {
		add("Deployment", o.ObjectMeta, o.Spec.Template)
	}
	for _, o := range sts.Items {
		add("StatefulSet", o.ObjectMeta, o.Spec.Template)
	}
	for _, o := range dss.Items {
		add("DaemonSet", o.ObjectMeta, o.Spec.Template)
	}
	for _, o := range jobs.Items {
		if len(o.OwnerReferences) == 0 { // a CronJob's Job is its CronJob's template
			add("Job", o.ObjectMeta, o.Spec.Template)
		}
	}
	for _, o := range cjs.Items {
		add("CronJob", o.ObjectMeta, o.Spec.JobTemplate.Spec.Template)
	}

	var secretList metav1.PartialObjectMetadataList
	secretList.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := c.List(ctx, &secretList); err != nil {
		if apierrors.IsForbidden(err) {
			return set, nil, nil
		}
		return nil, nil, fmt.Errorf("list Secrets' metadata: %w", err)
	}
	secrets := map[string]bool{}
	for _, s := range secretList.Items {
		secrets[s.Namespace+"/"+s.Name] = true
	}
	return set, secrets, nil
}

// discoverIssuer reads the service account issuer from the API server's
// OIDC discovery document, which every conformant API server serves.
func discoverIssuer(ctx context.Context, cfg *rest.Config) (string, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return "", fmt.Errorf("HTTP client for the API server: %w", err)
	}
	u, err := url.JoinPath(cfg.Host, "/.well-known/openid-configuration")
	if err != nil {
		return "", fmt.Errorf("API server URL %q: %w", cfg.Host, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("read the service account issuer (pass --issuer): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("read the service account issuer from %s: %s (pass --issuer)", u, resp.Status)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil || doc.Issuer == "" {
		return "", fmt.Errorf("the API server's OIDC discovery document names no issuer (pass --issuer): %v", err)
	}
	return doc.Issuer, nil
}
