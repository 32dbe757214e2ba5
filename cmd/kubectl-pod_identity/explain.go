package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/pmezard/go-difflib/difflib"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/manifest"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/webhook"
)

// Output formats of explain.
const (
	outputText = "text"
	outputYAML = "yaml"
	outputJSON = "json"
	outputDiff = "diff"
)

// headerPlaceholder stands for every IDENTITY_HEADER value in what explain
// prints: the real value is random, made by the webhook for each pod, and
// explain never makes or shows one.
const headerPlaceholder = "(generated-per-pod-by-the-webhook)"

// explainConfig is the command line of `explain`.
type explainConfig struct {
	// kube are kubectl's --kubeconfig, --context, --cluster, --user and
	// -n, with kubectl's meaning.
	kube      *genericclioptions.ConfigFlags
	decision  decision.Flags
	Files     []string
	Recursive bool
	Kustomize string
	Live      bool
	Output    string
	Timeout   time.Duration
}

func (c *explainConfig) AddFlags(fs *pflag.FlagSet) {
	// Only the flags that choose a cluster and a namespace: explain reads
	// with the kubeconfig's credentials, as kubectl does, and takes none
	// on its command line.
	c.kube = &genericclioptions.ConfigFlags{
		KubeConfig: ptr.To(""), Context: ptr.To(""), ClusterName: ptr.To(""), AuthInfoName: ptr.To(""), Namespace: ptr.To(""),
	}
	c.kube.AddFlags(fs)
	fs.Lookup("namespace").Usage = "namespace of the objects that name none; default: default, or with --live the context's namespace"
	c.decision = decision.DefaultFlags()
	c.decision.AddFlags(fs)
	fs.StringArrayVarP(&c.Files, "filename", "f", nil, "a manifest file (YAML or JSON, several documents, any kinds), a directory of them, a glob, or - for standard input; repeat for more")
	fs.BoolVarP(&c.Recursive, "recursive", "R", false, "walk the directories of -f into their subdirectories")
	fs.StringVarP(&c.Kustomize, "kustomize", "k", "", "build this kustomization directory and explain its output, as kubectl apply -k")
	fs.BoolVar(&c.Live, "live", false, "read AzureIdentities, AzureIdentityBindings, AzurePodIdentityExceptions and Namespaces from the cluster (--kubeconfig, --context) instead of the files")
	fs.StringVarP(&c.Output, "output", "o", outputText, "output: text (the decision and why), yaml (the mutated objects), json (a report per workload; see docs/explain-json.md) or diff (a unified diff of each object)")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "how long to read the cluster, with --live")
}

func (c *explainConfig) Validate() error {
	var errs []error
	if err := c.inputs(nil, "").Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.Output {
	case outputText, outputYAML, outputJSON, outputDiff:
	default:
		errs = append(errs, fmt.Errorf("-o %q: want text, yaml, json or diff", c.Output))
	}
	if err := c.decision.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// inputs are the manifests that -f, -R and -k name.
func (c *explainConfig) inputs(stdin io.Reader, namespace string) manifest.Options {
	return manifest.Options{Filenames: c.Files, Recursive: c.Recursive, Kustomize: c.Kustomize, Namespace: namespace, Stdin: stdin}
}

// namespace is where objects without one go: -n, else with --live the
// context's namespace as kubectl has it, else default. Offline, explain
// does not read the kubeconfig, so that a CI gate gives every machine the
// same answer.
func (c *explainConfig) namespace() (string, error) {
	if *c.kube.Namespace != "" {
		return *c.kube.Namespace, nil
	}
	if !c.Live {
		return metav1.NamespaceDefault, nil
	}
	ns, _, err := c.kube.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("load kubeconfig: %w", err)
	}
	return ns, nil
}

// explained is one workload and what the webhook would do to it.
type explained struct {
	w manifest.Workload
	d decision.Decision
}

func runExplain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var cfg explainConfig
	fs := pflag.NewFlagSet("kubectl pod-identity explain", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("explain takes manifests with -f or -k, not arguments: %q", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	namespace, err := cfg.namespace()
	if err != nil {
		return err
	}
	set, err := manifest.Load(cfg.inputs(stdin, namespace))
	if err != nil {
		return err
	}
	if len(set.Workloads) == 0 {
		others := ""
		if len(set.Others) > 0 {
			others = fmt.Sprintf(" (only %s)", set.OtherKinds())
		}
		return fmt.Errorf("%w: no Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob in %s%s; give explain the workloads to explain%s",
			manifest.ErrInput, cfg.inputNames(), others, cfg.recursiveHint())
	}
	if cfg.Live {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	planner, err := cfg.planner(ctx, set)
	if err != nil {
		return err
	}
	var results []explained
	denied := false
	for _, w := range set.Workloads {
		d := planner.Plan(ctx, w.Pod)
		if d.Outcome == decision.OutcomeInjected {
			// The webhook answers with this patch; one it cannot make is a
			// failed admission.
			if _, err := webhook.Patch(d.Injection); err != nil {
				d = decision.Decision{Outcome: decision.OutcomeErrored, Err: err, Warnings: d.Warnings}
			} else {
				d.Injection.Mutated = redactHeaders(d.Injection.Mutated)
			}
		}
		denied = denied || d.Outcome == decision.OutcomeDenied || d.Outcome == decision.OutcomeErrored
		results = append(results, explained{w: w, d: d})
	}
	if cfg.Output == outputJSON {
		if err := renderJSON(stdout, results, set); err != nil {
			return err
		}
	} else {
		if err := render(stdout, results, cfg.Output); err != nil {
			return err
		}
		if n := len(set.Others); n == 1 {
			fmt.Fprintf(stderr, "skipped 1 object that is not a workload: %s\n", set.OtherKinds())
		} else if n > 1 {
			fmt.Fprintf(stderr, "skipped %d objects that are not workloads: %s\n", n, set.OtherKinds())
		}
	}
	if denied {
		return errFindings
	}
	return nil
}

// recursiveHint points at -R when a directory of -f was read without it.
func (c *explainConfig) recursiveHint() string {
	if c.Recursive {
		return ""
	}
	for _, f := range c.Files {
		if info, err := os.Stat(f); err == nil && info.IsDir() {
			return ", or add -R to read the subdirectories of " + f
		}
	}
	return ""
}

// inputNames names the inputs in messages.
func (c *explainConfig) inputNames() string {
	if c.Kustomize != "" {
		return "kustomize build " + c.Kustomize
	}
	return strings.Join(c.Files, ", ")
}

// planner is the webhook's Planner over the files, or over the cluster
// with --live.
func (c *explainConfig) planner(ctx context.Context, set *manifest.Set) (*decision.Planner, error) {
	memory := decision.NewMemoryLookup(set)
	var lookup decision.Lookup = memory
	var peers decision.Peers = memory
	native := c.decision.NativeSidecar != "false"
	if c.Live {
		if n := len(set.Identities) + len(set.Bindings) + len(set.Exceptions) + len(set.Namespaces); n > 0 {
			return nil, fmt.Errorf("%w: with --live, AzureIdentities, AzureIdentityBindings, AzurePodIdentityExceptions and Namespaces come from the cluster, but the files hold %d of them; remove them from the files, or drop --live",
				manifest.ErrInput, n)
		}
		restCfg, err := c.kube.ToRESTConfig()
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig: %w", err)
		}
		restCfg.UserAgent = "kubectl-pod_identity"
		cl, err := newClient(restCfg)
		if err != nil {
			return nil, err
		}
		lookup = decision.ReaderLookup{Reader: cl}
		peers = decision.ReaderPeers{Reader: cl}
		if c.decision.NativeSidecar == "auto" {
			if native, _, err = decision.NativeSidecar("auto", restCfg); err != nil {
				return nil, err
			}
		}
	}
	p, err := c.decision.NewPlanner(lookup, peers, native)
	if err != nil {
		return nil, err
	}
	p.NewSecret = func() (string, error) { return headerPlaceholder, nil }
	return p, nil
}

func render(w io.Writer, results []explained, format string) error {
	var b strings.Builder
	for i, r := range results {
		if i > 0 && format != outputDiff {
			b.WriteString(map[bool]string{true: "---\n", false: "\n"}[format == outputYAML])
		}
		var err error
		switch format {
		case outputYAML:
			err = renderYAML(&b, r)
		case outputDiff:
			err = renderDiff(&b, r)
		default:
			renderText(&b, r)
		}
		if err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// reportSchema names the schema of -o json; a change that is not an
// addition gets a new name.
const reportSchema = "kubectl-pod-identity/explain/v1"

// report is -o json, documented in docs/explain-json.md.
type report struct {
	Schema       string           `json:"schema"`
	Summary      reportSummary    `json:"summary"`
	Workloads    []reportWorkload `json:"workloads"`
	NotWorkloads []reportObject   `json:"notWorkloads"`
}

type reportSummary struct {
	Workloads    int `json:"workloads"`
	Injected     int `json:"injected"`
	Skipped      int `json:"skipped"`
	Denied       int `json:"denied"`
	Errored      int `json:"errored"`
	NotWorkloads int `json:"notWorkloads"`
}

type reportWorkload struct {
	reportObject
	// Ref is "Deployment team-a/app", as the text output names it.
	Ref        string           `json:"ref"`
	Outcome    decision.Outcome `json:"outcome"`
	Message    string           `json:"message,omitempty"`
	Warnings   []string         `json:"warnings"`
	Identities []reportIdentity `json:"identities"`
}

type reportObject struct {
	APIVersion string       `json:"apiVersion,omitempty"`
	Kind       string       `json:"kind"`
	Namespace  string       `json:"namespace,omitempty"`
	Name       string       `json:"name"`
	Source     reportSource `json:"source"`
}

type reportSource struct {
	File     string `json:"file"`
	Document int    `json:"document"`
	Item     int    `json:"item,omitempty"`
}

type reportIdentity struct {
	Name       string   `json:"name"`
	Namespace  string   `json:"namespace"`
	Default    bool     `json:"default"`
	Source     string   `json:"source"`
	ClientID   string   `json:"clientID,omitempty"`
	TenantID   string   `json:"tenantID,omitempty"`
	ResourceID string   `json:"resourceID,omitempty"`
	Weight     int      `json:"weight"`
	BoundBy    []string `json:"boundBy"`
}

func sourceOf(s manifest.Source) reportSource {
	return reportSource{File: s.File, Document: s.Document, Item: s.Item}
}

// renderJSON writes the report; its lists are never null, so that a
// pipeline's jq need not guard them.
func renderJSON(w io.Writer, results []explained, set *manifest.Set) error {
	r := report{Schema: reportSchema, Workloads: []reportWorkload{}, NotWorkloads: []reportObject{}}
	for _, e := range results {
		apiVersion, _ := e.w.Object["apiVersion"].(string)
		rw := reportWorkload{
			reportObject: reportObject{APIVersion: apiVersion, Kind: e.w.Kind, Namespace: e.w.Namespace, Name: e.w.Name, Source: sourceOf(e.w.Source)},
			Ref:          e.w.Ref(),
			Outcome:      e.d.Outcome,
			Warnings:     append([]string{}, e.d.Warnings...),
			Identities:   []reportIdentity{},
		}
		switch e.d.Outcome {
		case decision.OutcomeInjected:
			r.Summary.Injected++
			for _, id := range e.d.Injection.Identities {
				rw.Identities = append(rw.Identities, reportIdentity{
					Name: id.Name, Namespace: id.Namespace, Default: id.Name == e.d.Injection.DefaultIdentity,
					Source: id.Source, ClientID: id.ClientID, TenantID: id.TenantID, ResourceID: id.ResourceID,
					Weight: id.Weight, BoundBy: append([]string{}, e.d.Injection.BoundBy[id.Name]...),
				})
			}
		case decision.OutcomeSkipped:
			r.Summary.Skipped++
		case decision.OutcomeDenied:
			r.Summary.Denied++
		default:
			r.Summary.Errored++
		}
		if e.d.Outcome != decision.OutcomeInjected {
			rw.Message = reasonOf(e.d)
		}
		r.Workloads = append(r.Workloads, rw)
	}
	for _, o := range set.Others {
		r.NotWorkloads = append(r.NotWorkloads, reportObject{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Source: sourceOf(o.Source)})
	}
	r.Summary.Workloads, r.Summary.NotWorkloads = len(r.Workloads), len(r.NotWorkloads)
	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(out, '\n'))
	return err
}

// mutatedObject is the workload as the webhook would have its pods, or
// the workload unchanged when nothing would be injected.
func mutatedObject(r explained) (map[string]any, error) {
	if r.d.Outcome != decision.OutcomeInjected {
		return r.w.Object, nil
	}
	return r.w.WithPod(r.d.Injection.Mutated)
}

func renderYAML(b *strings.Builder, r explained) error {
	obj, err := mutatedObject(r)
	if err != nil {
		return err
	}
	out, err := yaml.Marshal(obj)
	if err != nil {
		return fmt.Errorf("%s: %w", r.w.Ref(), err)
	}
	fmt.Fprintf(b, "# %s (%s): %s\n", r.w.Ref(), r.w.Source, r.d.Outcome)
	b.Write(out)
	return nil
}

func renderDiff(b *strings.Builder, r explained) error {
	before, err := yaml.Marshal(r.w.Object)
	if err != nil {
		return fmt.Errorf("%s: %w", r.w.Ref(), err)
	}
	obj, err := mutatedObject(r)
	if err != nil {
		return err
	}
	after, err := yaml.Marshal(obj)
	if err != nil {
		return fmt.Errorf("%s: %w", r.w.Ref(), err)
	}
	diff, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(string(before)), B: difflib.SplitLines(string(after)),
		FromFile: r.w.Ref() + " (" + r.w.Source.String() + ")", ToFile: r.w.Ref() + " as the webhook admits its pods", Context: 3,
	})
	if err != nil {
		return err
	}
	if diff == "" {
		fmt.Fprintf(b, "# %s (%s): %s, no change: %s\n", r.w.Ref(), r.w.Source, r.d.Outcome, reasonOf(r.d))
	}
	b.WriteString(diff)
	return nil
}

func renderText(b *strings.Builder, r explained) {
	d := r.d
	fmt.Fprintf(b, "%s (%s)\n", r.w.Ref(), r.w.Source)
	fmt.Fprintf(b, "  decision: %s\n", d.Outcome)
	if d.Outcome != decision.OutcomeInjected {
		fmt.Fprintf(b, "  reason:   %s\n", reasonOf(d))
	}
	if len(d.Warnings) > 0 {
		b.WriteString("  warnings:\n")
		for _, w := range d.Warnings {
			fmt.Fprintf(b, "    - %s\n", w)
		}
	}
	if d.Outcome != decision.OutcomeInjected {
		return
	}
	b.WriteString("  identities:\n")
	for _, id := range d.Injection.Identities {
		mark := ""
		if id.Name == d.Injection.DefaultIdentity {
			mark = " (default: highest weight, then smallest name)"
		}
		fmt.Fprintf(b, "    %s%s\n", id.Name, mark)
		fmt.Fprintf(b, "      source %s, client ID %s, tenant %s, weight %d, bound by %s\n",
			id.Source, orDash(id.ClientID), orDash(id.TenantID), id.Weight, strings.Join(d.Injection.BoundBy[id.Name], ", "))
	}
	renderSidecar(b, d.Injection.Mutated)
	renderEnv(b, r.w.Pod, d.Injection.Mutated)
}

// renderSidecar describes the injected token server.
func renderSidecar(b *strings.Builder, pod *corev1.Pod) {
	kind := "native sidecar (first init container, restartPolicy Always)"
	c := findContainer(pod.Spec.InitContainers, names.SidecarContainerName)
	if c == nil {
		kind = "regular container (no native sidecars: init containers get no tokens)"
		c = findContainer(pod.Spec.Containers, names.SidecarContainerName)
	}
	if c == nil {
		return
	}
	fmt.Fprintf(b, "  sidecar: %s, %s\n", c.Name, kind)
	fmt.Fprintf(b, "    image %s, requests %s, limits %s\n", c.Image, quantities(c.Resources.Requests), quantities(c.Resources.Limits))
	for _, m := range c.VolumeMounts {
		fmt.Fprintf(b, "    mount %s <- volume %s\n", m.MountPath, m.Name)
	}
}

// renderEnv lists, per container, the variables the injection adds.
func renderEnv(b *strings.Builder, before, after *corev1.Pod) {
	b.WriteString("  env added:\n")
	all := func(p *corev1.Pod) []corev1.Container {
		return append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...)
	}
	orig := all(before)
	for _, c := range all(after) {
		if c.Name == names.SidecarContainerName {
			continue
		}
		had := map[string]bool{}
		if o := findContainer(orig, c.Name); o != nil {
			for _, e := range o.Env {
				had[e.Name] = true
			}
		}
		var added []string
		for _, e := range c.Env {
			if !had[e.Name] {
				added = append(added, e.Name+"="+e.Value)
			}
		}
		if len(added) == 0 {
			fmt.Fprintf(b, "    %s: none\n", c.Name)
			continue
		}
		fmt.Fprintf(b, "    %s: %s\n", c.Name, strings.Join(added, " "))
	}
}

// redactHeaders returns a copy of pod whose IDENTITY_HEADER values all
// read headerPlaceholder. With per-container identities the webhook
// derives each container's header from the pod's secret; derived from the
// placeholder they would look like real values, and are not.
func redactHeaders(pod *corev1.Pod) *corev1.Pod {
	out := pod.DeepCopy()
	for _, cs := range [][]corev1.Container{out.Spec.InitContainers, out.Spec.Containers} {
		for i := range cs {
			for j := range cs[i].Env {
				if cs[i].Env[j].Name == names.EnvIdentityHeader {
					cs[i].Env[j].Value = headerPlaceholder
				}
			}
		}
	}
	return out
}

// reasonOf is why a pod was skipped, denied or failed, as kubectl would
// show it.
func reasonOf(d decision.Decision) string {
	if d.Message == "" && d.Err != nil {
		return d.Err.Error()
	}
	return d.Message
}

func findContainer(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func quantities(l corev1.ResourceList) string {
	if len(l) == 0 {
		return "none"
	}
	var parts []string
	for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := l[n]; ok {
			parts = append(parts, string(n)+"="+q.String())
		}
	}
	return strings.Join(parts, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
