package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/pmezard/go-difflib/difflib"
	corev1 "k8s.io/api/core/v1"
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
	outputDiff = "diff"
)

// headerPlaceholder stands for every IDENTITY_HEADER value in what explain
// prints: the real value is random, made by the webhook for each pod, and
// explain never makes or shows one.
const headerPlaceholder = "(generated-per-pod-by-the-webhook)"

// explainConfig is the command line of `explain`.
type explainConfig struct {
	cluster   clusterFlags
	decision  decision.Flags
	Files     []string
	Live      bool
	Output    string
	Namespace string
	Timeout   time.Duration
}

func (c *explainConfig) AddFlags(fs *pflag.FlagSet) {
	c.cluster.AddFlags(fs)
	c.decision = decision.DefaultFlags()
	c.decision.AddFlags(fs)
	fs.StringArrayVarP(&c.Files, "filename", "f", nil, "a manifest file (YAML or JSON, several documents), a directory of them, or - for standard input; repeat for more")
	fs.BoolVar(&c.Live, "live", false, "read AzureIdentities, AzureIdentityBindings, AzurePodIdentityExceptions and Namespaces from the current kubeconfig context instead of the files")
	fs.StringVarP(&c.Output, "output", "o", outputText, "output: text (the decision and why), yaml (the mutated objects) or diff (a unified diff of each object)")
	fs.StringVarP(&c.Namespace, "namespace", "n", "default", "namespace of objects that name none")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "how long to read the cluster, with --live")
}

func (c *explainConfig) Validate() error {
	var errs []error
	if len(c.Files) == 0 {
		errs = append(errs, errors.New("-f is required: name a manifest file, or - for standard input"))
	}
	switch c.Output {
	case outputText, outputYAML, outputDiff:
	default:
		errs = append(errs, fmt.Errorf("-o %q: want text, yaml or diff", c.Output))
	}
	if err := c.decision.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
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
		return fmt.Errorf("explain takes files with -f, not arguments: %q", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	set, err := readFiles(cfg.Files, stdin, cfg.Namespace)
	if err != nil {
		return err
	}
	if len(set.Workloads) == 0 {
		return fmt.Errorf("%w: no Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob in %s; give explain the workloads to explain",
			manifest.ErrInput, strings.Join(cfg.Files, ", "))
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
	if err := render(stdout, results, cfg.Output); err != nil {
		return err
	}
	if denied {
		return errFindings
	}
	return nil
}

// readFiles reads every -f into one set; "-" is standard input, and a
// directory stands for its .yaml, .yml and .json files, as with kubectl.
func readFiles(args []string, stdin io.Reader, namespace string) (*manifest.Set, error) {
	set := &manifest.Set{}
	var files []string
	for _, f := range args {
		if info, err := os.Stat(f); err == nil && info.IsDir() {
			entries, err := os.ReadDir(f)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", manifest.ErrInput, err)
			}
			for _, e := range entries {
				if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
					files = append(files, filepath.Join(f, e.Name()))
				}
			}
			continue
		}
		files = append(files, f)
	}
	for _, f := range files {
		if f == "-" {
			if err := set.Read("-", stdin, namespace); err != nil {
				return nil, err
			}
			continue
		}
		file, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", manifest.ErrInput, err)
		}
		err = set.Read(f, file, namespace)
		file.Close()
		if err != nil {
			return nil, err
		}
	}
	return set, nil
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
		restCfg, err := c.cluster.RESTConfig()
		if err != nil {
			return nil, err
		}
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
