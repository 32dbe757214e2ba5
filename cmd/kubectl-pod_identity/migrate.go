package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/pflag"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/manifest"
	"github.com/podidentity/injector/internal/migrate"
	"github.com/podidentity/injector/internal/names"
)

// migrateConfig is the command line of `migrate`.
type migrateConfig struct {
	cluster clusterFlags
	// decision are the webhook's flags: migrate decides every workload
	// with the Planner they build, as the webhook and explain do.
	decision    decision.Flags
	Files       []string
	Namespace   string
	Issuer      string
	ClusterName string
	Output      string
	Timeout     time.Duration
}

func (c *migrateConfig) AddFlags(fs *pflag.FlagSet) {
	c.cluster.AddFlags(fs)
	c.decision = decision.DefaultFlags()
	c.decision.AddFlags(fs)
	fs.StringArrayVarP(&c.Files, "filename", "f", nil, "plan offline from a manifest file (YAML or JSON, several documents), a directory of them, or - for standard input; repeat for more. Needs --issuer")
	fs.StringVarP(&c.Namespace, "namespace", "n", "default", "with -f, the namespace of objects that name none")
	fs.StringVar(&c.Issuer, "issuer", "", "the cluster's service account issuer URL; required with -f, else read from the API server's /.well-known/openid-configuration")
	fs.StringVar(&c.ClusterName, "cluster-name", "", "the cluster part of every federated credential name, unique in the fleet; default: the issuer's host and a hash of the issuer")
	fs.StringVarP(&c.Output, "output", "o", migrate.FormatText, "output: text, json or terraform")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "how long to read the cluster")
}

func (c *migrateConfig) Validate() error {
	var errs []error
	switch c.Output {
	case migrate.FormatText, migrate.FormatJSON, migrate.FormatTerraform:
	default:
		errs = append(errs, fmt.Errorf("-o %q: want text, json or terraform", c.Output))
	}
	if err := c.decision.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Issuer != "" {
		if u, err := url.Parse(c.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("--issuer %q: want an https URL, the iss of the cluster's service account tokens", c.Issuer))
		}
	} else if len(c.Files) > 0 {
		errs = append(errs, errors.New("--issuer is required with -f: pass the cluster's service account issuer URL (kubectl get --raw /.well-known/openid-configuration shows it)"))
	}
	if c.ClusterName != "" {
		if err := migrate.ValidateClusterName(c.ClusterName); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func runMigrate(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var cfg migrateConfig
	fs := pflag.NewFlagSet("kubectl pod-identity migrate", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("migrate takes no arguments, got %q; give manifests with -f", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	opts := migrate.Options{Issuer: cfg.Issuer, ClusterName: cfg.ClusterName, Decision: cfg.decision}
	var set *manifest.Set
	var err error
	if len(cfg.Files) > 0 {
		set, opts.SecretProviderClasses, err = readMigrateFiles(cfg.Files, stdin, cfg.Namespace)
		if err != nil {
			return err
		}
	} else {
		restCfg, err := cfg.cluster.RESTConfig()
		if err != nil {
			return err
		}
		c, err := newClient(restCfg)
		if err != nil {
			return err
		}
		if set, opts.Secrets, err = readCluster(ctx, c); err != nil {
			return err
		}
		if opts.Secrets == nil {
			fmt.Fprintln(stderr, "warning: cannot list Secrets' metadata; missing Secrets of type 1 and 2 identities are not checked")
		}
		if opts.SecretProviderClasses, err = readSecretProviderClasses(ctx, c); err != nil {
			return err
		}
		if opts.Issuer == "" {
			if opts.Issuer, err = discoverIssuer(ctx, restCfg); err != nil {
				return err
			}
		}
	}
	report, err := migrate.Plan(ctx, set, opts)
	if err != nil {
		return err
	}
	if err := migrate.Render(stdout, report, cfg.Output); err != nil {
		return err
	}
	if len(report.Blockers) > 0 {
		return errFindings
	}
	return nil
}

// readMigrateFiles reads every -f with manifest.Load, the reader explain
// uses ("-" is standard input, and a directory stands for its .yaml, .yml
// and .json files, as with kubectl), and takes the SecretProviderClasses
// from the objects the set keeps whole.
func readMigrateFiles(args []string, stdin io.Reader, namespace string) (*manifest.Set, []migrate.SecretProviderClass, error) {
	set, err := manifest.Load(manifest.Options{Filenames: args, Namespace: namespace, Stdin: stdin})
	if err != nil {
		return nil, nil, err
	}
	spcs, err := migrate.SecretProviderClassesOf(set.Others, namespace)
	if err != nil {
		return nil, nil, err
	}
	return set, spcs, nil
}

// readSecretProviderClasses lists the Secrets Store CSI driver's
// SecretProviderClasses, as unstructured objects: a cluster without the
// CRD has none, which is no error.
func readSecretProviderClasses(ctx context.Context, c client.Reader) ([]migrate.SecretProviderClass, error) {
	var list unstructured.UnstructuredList
	list.SetGroupVersionKind(schema.GroupVersionKind{Group: migrate.SecretProviderClassGroup, Version: migrate.SecretProviderClassVersion, Kind: migrate.SecretProviderClassKind + "List"})
	if err := c.List(ctx, &list); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list %ss (%s): %w", migrate.SecretProviderClassKind, migrate.SecretProviderClassGroup, err)
	}
	var out []migrate.SecretProviderClass
	for _, item := range list.Items {
		spc := migrate.SecretProviderClass{Namespace: item.GetNamespace(), Name: item.GetName()}
		spc.Spec.Provider, _, _ = unstructured.NestedString(item.Object, "spec", "provider")
		params, _, err := unstructured.NestedStringMap(item.Object, "spec", "parameters")
		if err != nil {
			return nil, fmt.Errorf("%s %s/%s: spec.parameters: %w", migrate.SecretProviderClassKind, spc.Namespace, spc.Name, err)
		}
		spc.Spec.Parameters = params
		out = append(out, spc)
	}
	return out, nil
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
		pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
		if _, ok := tmpl.Labels[names.BindingLabel]; !ok && !migrate.MountsSecretsStore(pod) {
			return
		}
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
