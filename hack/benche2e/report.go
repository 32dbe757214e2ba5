package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The targets of the issue.
const (
	// MaxCostPercent: the webhook may cost at most this share of pod-create
	// throughput.
	MaxCostPercent = 15.0
	// MaxP99 is the bound on the webhook's p99 admission latency, seconds.
	MaxP99 = 0.010
)

// Summary is a Report's arithmetic: each kind of phase summed over the
// rounds. Arrays are indexed by Kind.
type Summary struct {
	Report *Report
	// Kinds are the kinds the run had, in display order.
	Kinds []Kind
	// Rates are pods/s per round.
	Rates [numKinds][]float64
	// Rate is created pods over the phases' summed time.
	Rate     [numKinds]float64
	Created  [numKinds]int
	Failed   [numKinds]int
	Injected [numKinds]int
	// Client are the creates' client-side latencies, sorted.
	Client [numKinds][]time.Duration
	// Size is that of a stored pod, from the last phase of the kind.
	Size [numKinds]PodSize
	// CPU is the CPU time of each process over the creates.
	CPU        [numKinds]CPUTimes
	FirstError string

	// Ratio is Rate[With]/Rate[Without]; CostPercent is 1 - Ratio in %.
	Ratio, CostPercent float64

	// WebhookLatency is the apiserver's histogram of calls to our webhook
	// during the phases with it; CallsWithout counts its observations in
	// the others, which must be none.
	WebhookLatency [numKinds]Histogram
	CallsWithout   float64
	// Handler and HandlerHTTP are the webhook's own histograms: its
	// admission logic, and controller-runtime's whole HTTP handler.
	Handler, HandlerHTTP [numKinds]Histogram
	// Requests is apiserver_admission_webhook_request_total by code,
	// over all phases with the webhook.
	Requests             map[string]float64
	Rejections, FailOpen float64
	// Decisions is the webhook's count of admissions by outcome.
	Decisions map[string]float64
	// Err collects histograms that could not be combined.
	Err error
}

// Summarize adds up the phases.
func (r *Report) Summarize() Summary {
	s := Summary{Report: r, Requests: map[string]float64{}, Decisions: map[string]float64{}}
	var elapsed [numKinds]time.Duration
	var errs []error
	add := func(dst *Histogram, h Histogram) {
		sum, err := dst.Add(h)
		if err != nil {
			errs = append(errs, err)
			return
		}
		*dst = sum
	}
	for _, p := range r.Phases {
		k := p.Kind
		if !slices.Contains(s.Kinds, k) {
			s.Kinds = append(s.Kinds, k)
			s.CPU[k] = CPUTimes{}
		}
		s.Rates[k] = append(s.Rates[k], p.Rate())
		elapsed[k] += p.Elapsed
		s.Created[k] += p.Created
		s.Failed[k] += p.Failed
		s.Injected[k] += p.Injected
		if s.FirstError == "" && p.FirstError != "" {
			s.FirstError = p.FirstError
		}
		s.Client[k] = append(s.Client[k], p.Latencies...)
		for name, v := range p.CPU {
			s.CPU[k][name] += v
		}
		if p.Size != (PodSize{}) {
			s.Size[k] = p.Size
		}
		if !k.webhook() {
			s.CallsWithout += p.Apiserver.Latency.Count()
			continue
		}
		add(&s.WebhookLatency[k], p.Apiserver.Latency)
		add(&s.Handler[k], p.Webhook.Latency)
		add(&s.HandlerHTTP[k], p.Webhook.HTTP)
		for code, v := range p.Apiserver.Requests {
			s.Requests[code] += v
		}
		for outcome, v := range p.Webhook.Requests {
			s.Decisions[outcome] += v
		}
		s.Rejections += p.Apiserver.Rejections
		s.FailOpen += p.Apiserver.FailOpen
	}
	slices.Sort(s.Kinds)
	for k := range numKinds {
		slices.Sort(s.Client[k])
		if elapsed[k] > 0 {
			s.Rate[k] = float64(s.Created[k]) / elapsed[k].Seconds()
		}
	}
	s.Ratio, s.CostPercent = costOf(s.Rate[Without], s.Rate[With])
	s.Err = errors.Join(errs...)
	return s
}

// costOf is the ratio of the throughputs and the share of the throughput
// without the webhook that adding it loses.
func costOf(without, with float64) (ratio, costPercent float64) {
	if without <= 0 {
		return math.NaN(), math.NaN()
	}
	ratio = with / without
	return ratio, (1 - ratio) * 100
}

// has reports whether the run had phases of kind k.
func (s Summary) has(k Kind) bool { return slices.Contains(s.Kinds, k) }

// clientComponent is benche2e itself, which a real cluster's clients
// would not run beside the control plane.
var clientComponent = componentName("benche2e")

// CPUPerPod is the CPU time per created pod of one component, or of the
// whole server side (every component but the client) when name is "".
func (s Summary) CPUPerPod(k Kind, name string) time.Duration {
	if s.Created[k] == 0 {
		return 0
	}
	var total time.Duration
	for n, v := range s.CPU[k] {
		if n == name || (name == "" && n != clientComponent) {
			total += v
		}
	}
	return total / time.Duration(s.Created[k])
}

// CPUCostPercent is the share of throughput that going from kind from to
// kind to costs a server side bound by its CPU, as a percentage of the
// throughput without the webhook. Throughput is then inversely
// proportional to CPU time per pod, so the shares of consecutive steps
// add up: (1/cpu[from] - 1/cpu[to]) / (1/cpu[Without]).
func (s Summary) CPUCostPercent(from, to Kind) float64 {
	base, a, b := s.CPUPerPod(Without, ""), s.CPUPerPod(from, ""), s.CPUPerPod(to, "")
	if base <= 0 || a <= 0 || b <= 0 {
		return math.NaN()
	}
	return (float64(base)/float64(a) - float64(base)/float64(b)) * 100
}

// shareOf is the same split for measured throughput.
func (s Summary) shareOf(from, to Kind) float64 {
	if s.Rate[Without] <= 0 {
		return math.NaN()
	}
	return (s.Rate[from] - s.Rate[to]) / s.Rate[Without] * 100
}

// cpuComponents lists the components seen, servers first, client last.
func (s Summary) cpuComponents() []string {
	seen := map[string]bool{}
	for _, k := range s.Kinds {
		for n := range s.CPU[k] {
			seen[n] = true
		}
	}
	var out []string
	for _, c := range components {
		if n := componentName(c); seen[n] {
			out = append(out, n)
		}
	}
	return out
}

// AdmissionErrors is every failure the client or the apiserver saw in the
// phases with the webhook.
func (s Summary) AdmissionErrors() int {
	n := float64(s.createFailuresWithWebhook()) + s.Rejections + s.FailOpen
	for code, v := range s.Requests {
		if code != "200" {
			n += v
		}
	}
	return int(n)
}

// createFailuresWithWebhook counts the failed creates of the phases with
// the webhook registered.
func (s Summary) createFailuresWithWebhook() int {
	n := 0
	for k := range numKinds {
		if k.webhook() {
			n += s.Failed[k]
		}
	}
	return n
}

// Failure is non-nil if the run does not measure what it claims: a pod
// was not created, a pod that should carry the sidecar lacks it, one that
// should not has it, or a phase without the webhook still reached it.
func (s Summary) Failure() error {
	var errs []error
	failed := 0
	for _, k := range s.Kinds {
		failed += s.Failed[k]
	}
	if failed > 0 {
		errs = append(errs, fmt.Errorf("%d pod creates failed (first: %s)", failed, s.FirstError))
	}
	for _, k := range []Kind{With, Preinjected, Paced} {
		if s.has(k) && s.Injected[k] != s.Created[k] {
			errs = append(errs, fmt.Errorf("%d of %d pods created %s carry the sidecar; see the webhook's log", s.Injected[k], s.Created[k], k))
		}
	}
	if s.Injected[Without] > 0 || s.CallsWithout > 0 {
		errs = append(errs, fmt.Errorf("with the webhook configuration deleted, %d pods were injected and the apiserver called the webhook %v times", s.Injected[Without], s.CallsWithout))
	}
	if s.Injected[NotOptedIn] > 0 {
		errs = append(errs, fmt.Errorf("%d of %d pods created in namespace %s, which is not opted in, carry the sidecar", s.Injected[NotOptedIn], s.Created[NotOptedIn], plainNamespace))
	}
	if n := s.AdmissionErrors() - s.createFailuresWithWebhook(); n > 0 {
		errs = append(errs, fmt.Errorf("the apiserver counted %d webhook errors (requests by code %v, rejections %v, fail-open %v)", n, s.Requests, s.Rejections, s.FailOpen))
	}
	if s.Err != nil {
		errs = append(errs, s.Err)
	}
	return errors.Join(errs...)
}

// seconds formats a duration in seconds as milliseconds.
func seconds(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsNaN(v):
		return "n/a"
	}
	ms := v * 1000
	if ms == math.Trunc(ms) {
		return strconv.FormatFloat(ms, 'f', -1, 64) + " ms"
	}
	return strconv.FormatFloat(ms, 'f', 2, 64) + " ms"
}

func perPod(d time.Duration) string { return seconds(d.Seconds()) }

// quantileText is "4.95 ms (in bucket (0, 5 ms])", or why there is none.
func quantileText(q float64, h Histogram) string {
	r, err := HistogramQuantile(q, h)
	if err != nil {
		return "n/a: " + err.Error()
	}
	return fmt.Sprintf("%s (in bucket (%s, %s])", seconds(r.Value), strings.TrimSuffix(seconds(r.Lower), " ms"), seconds(r.Upper))
}

// exact is the nearest-rank q-quantile of sorted durations.
func exact(sorted []time.Duration, q float64) string {
	if len(sorted) == 0 {
		return "n/a"
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return seconds(sorted[i].Seconds())
}

// p99Verdict decides the latency target from the apiserver's buckets.
func (s Summary) p99Verdict(k Kind) Verdict {
	r, err := HistogramQuantile(0.99, s.WebhookLatency[k])
	if err != nil {
		return Undecided
	}
	return r.Below(MaxP99)
}

func (s Summary) costVerdict() Verdict { return percentVerdict(s.CostPercent) }

func percentVerdict(p float64) Verdict {
	if math.IsNaN(p) {
		return Undecided
	}
	if p <= MaxCostPercent {
		return Met
	}
	return NotMet
}

func boolVerdict(ok bool) Verdict {
	if ok {
		return Met
	}
	return NotMet
}

func rates(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.FormatFloat(r, 'f', 1, 64)
	}
	return strings.Join(parts, ", ")
}

func counts(m map[string]float64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// columns are the per-kind rows of both outputs, in display order
// (Without, NotOptedIn, Preinjected, With, Paced).
func (s Summary) columns() []Kind {
	var out []Kind
	for _, k := range []Kind{Without, NotOptedIn, Preinjected, With, Paced} {
		if s.has(k) {
			out = append(out, k)
		}
	}
	return out
}

// rows are the per-kind table: a name and one cell per column.
func (s Summary) rows() [][]string {
	cols := s.columns()
	row := func(name string, cell func(k Kind) string) []string {
		r := []string{name}
		for _, k := range cols {
			r = append(r, cell(k))
		}
		return r
	}
	out := [][]string{
		row("pods/s, all rounds", func(k Kind) string { return fmt.Sprintf("%.1f", s.Rate[k]) }),
		row("pods/s per round", func(k Kind) string { return rates(s.Rates[k]) }),
		row("pods created / failed", func(k Kind) string { return fmt.Sprintf("%d / %d", s.Created[k], s.Failed[k]) }),
		row("pods with the sidecar", func(k Kind) string { return strconv.Itoa(s.Injected[k]) }),
		row("client create latency p50 / p99 (exact)", func(k Kind) string {
			return exact(s.Client[k], .5) + " / " + exact(s.Client[k], .99)
		}),
		row("stored pod, JSON bytes (of which managedFields)", func(k Kind) string {
			return fmt.Sprintf("%d (%d)", s.Size[k].JSON, s.Size[k].ManagedFields)
		}),
	}
	// Over a paced phase the processes' idle work is most of their CPU
	// time, so per pod it means nothing.
	cpu := func(name string) func(k Kind) string {
		return func(k Kind) string {
			if k == Paced {
				return "-"
			}
			return perPod(s.CPUPerPod(k, name))
		}
	}
	for _, c := range s.cpuComponents() {
		out = append(out, row("CPU per pod, "+c, cpu(c)))
	}
	return append(out, row("CPU per pod, server side (all but the client)", cpu("")))
}

// logLevel is the webhook's --log-level as the run set it.
func logLevel(c Config) string {
	if c.Node {
		return "as manifests/"
	}
	return "--log-level=" + c.WebhookLogLevel
}

// nodeModeNote says what the node mode runs and why its pods stay Pending.
const nodeModeNote = "node mode: the real one-node cluster (e2e/framework/nodeenv), the webhook as manifests/' two-replica Deployment called through its Service; " +
	"every pod carries spec.schedulingGates (" + schedulingGate + "), so it stays Pending and unscheduled and nothing runs on the kubelet; " +
	"the webhook-side histograms are not read (the Deployment serves /metrics over HTTPS to authorized callers only)"

// extraArgs says which flags the run added to the webhook's.
func extraArgs(c Config) string {
	if len(c.WebhookArgs) == 0 {
		return ""
	}
	return ", webhook args added: " + strings.Join(c.WebhookArgs, " ")
}

func reinvocation(c Config) string {
	if c.Reinvocation == "" {
		return "as manifests/"
	}
	return c.Reinvocation
}

// WriteText prints the result table.
func (s Summary) WriteText(w io.Writer) {
	r, c := s.Report, s.Report.Config
	fmt.Fprintf(w, "benche2e: %d pods per phase x %d rounds, %d concurrent clients, webhook %s, reinvocationPolicy %s%s\n",
		c.Pods, c.Rounds, c.Workers, logLevel(c), reinvocation(c), extraArgs(c))
	if c.Node {
		fmt.Fprintln(w, nodeModeNote)
	}
	fmt.Fprintf(w, "%s, kube-apiserver %s, %d CPUs, load average before %s, after %s\n\n", r.Date.Format(time.RFC3339), r.ServerVersion, r.CPUs, r.LoadBefore, r.LoadAfter)
	head := []string{""}
	for _, k := range s.columns() {
		head = append(head, k.String())
	}
	for _, row := range append([][]string{head}, s.rows()...) {
		fmt.Fprintf(w, "%-48s", row[0])
		for _, cell := range row[1:] {
			fmt.Fprintf(w, " %-32s", cell)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "throughput ratio with/without: %.3f; webhook cost: %.1f %% of pod-create throughput (target <= %.0f %%: %s)\n",
		s.Ratio, s.CostPercent, MaxCostPercent, s.costVerdict())
	fmt.Fprintf(w, "CPU-bound estimate (1 - server CPU per pod without / with; %s ticks): %.1f %%\n", clockTick, s.CPUCostPercent(Without, With))
	if s.has(Preinjected) {
		fmt.Fprintf(w, "split, in %% of the throughput without: bigger pod (without -> pre-injected) %.1f %%, admission call (pre-injected -> with) %.1f %%; CPU-bound: %.1f %% and %.1f %%\n",
			s.shareOf(Without, Preinjected), s.shareOf(Preinjected, With), s.CPUCostPercent(Without, Preinjected), s.CPUCostPercent(Preinjected, With))
	}
	if s.has(NotOptedIn) {
		fmt.Fprintf(w, "a call that changes nothing (without -> namespace not opted in): %.1f %% of the throughput without; CPU-bound: %.1f %%\n",
			s.shareOf(Without, NotOptedIn), s.CPUCostPercent(Without, NotOptedIn))
	}
	fmt.Fprintf(w, "webhook admission latency from the apiserver's %s{name=%q,type=\"admit\",operation=\"CREATE\"}, delta over the phases, bucket-interpolated:\n",
		apiserverWebhookLatency, webhookName)
	for _, k := range []Kind{With, NotOptedIn, Paced} {
		if !s.has(k) {
			continue
		}
		fmt.Fprintf(w, "  %s: %v calls for %d pods; p50 %s; p99 %s (target < %s: %s)\n", k, s.WebhookLatency[k].Count(), s.Created[k],
			quantileText(.5, s.WebhookLatency[k]), quantileText(.99, s.WebhookLatency[k]), seconds(MaxP99), s.p99Verdict(k))
		if c.Node {
			continue
		}
		fmt.Fprintf(w, "    webhook-side %s (controller-runtime, whole HTTP handler): p50 %s, p99 %s\n", handlerHTTPLatency, quantileText(.5, s.HandlerHTTP[k]), quantileText(.99, s.HandlerHTTP[k]))
		fmt.Fprintf(w, "    webhook-side %s{outcome=\"injected\"} (admission logic): p50 %s, p99 %s\n", handlerLatency, quantileText(.5, s.Handler[k]), quantileText(.99, s.Handler[k]))
	}
	fmt.Fprintf(w, "admission errors: %d (create failures %d, %s by code: %s, %s %v, %s %v); webhook decisions: %s; webhook calls in the phases without it: %v\n",
		s.AdmissionErrors(), s.createFailuresWithWebhook(), apiserverWebhookRequests, counts(s.Requests), apiserverWebhookRejected, s.Rejections,
		apiserverWebhookFailOpen, s.FailOpen, counts(s.Decisions), s.CallsWithout)
}

// WriteMarkdown prints the tables of the BENCHMARKS.md section.
func (s Summary) WriteMarkdown(w io.Writer) {
	r, c := s.Report, s.Report.Config
	fmt.Fprintf(w, "Run %s on kube-apiserver %s, %d CPUs, load average %s before and %s after; %d pods per phase, %d rounds, %d concurrent clients, webhook %s, reinvocationPolicy %s%s.\n\n",
		r.Date.Format("2006-01-02 15:04 MST"), r.ServerVersion, r.CPUs, r.LoadBefore, r.LoadAfter, c.Pods, c.Rounds, c.Workers, logLevel(c), reinvocation(c), extraArgs(c))
	if c.Node {
		fmt.Fprintf(w, "%s.\n\n", nodeModeNote)
	}
	cols := s.columns()
	head, rule := "| |", "|---|"
	for _, k := range cols {
		head += " " + k.String() + " |"
		rule += "---|"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, rule)
	for _, row := range s.rows() {
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Measure | Result | Target | |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| webhook cost in pod-create throughput | %.1f %% (ratio %.3f) | at most %.0f %% | %s |\n", s.CostPercent, s.Ratio, MaxCostPercent, s.costVerdict())
	fmt.Fprintf(w, "| the same if the server side is CPU-bound (1 - CPU per pod without / with) | %.1f %% | at most %.0f %% | %s |\n",
		s.CPUCostPercent(Without, With), MaxCostPercent, percentVerdict(s.CPUCostPercent(Without, With)))
	if s.has(Preinjected) {
		fmt.Fprintf(w, "| of which the bigger pod (without -> pre-injected), measured / CPU-bound | %.1f %% / %.1f %% | | |\n", s.shareOf(Without, Preinjected), s.CPUCostPercent(Without, Preinjected))
		fmt.Fprintf(w, "| of which the admission call (pre-injected -> with), measured / CPU-bound | %.1f %% / %.1f %% | | |\n", s.shareOf(Preinjected, With), s.CPUCostPercent(Preinjected, With))
	}
	if s.has(NotOptedIn) {
		fmt.Fprintf(w, "| a call that changes nothing (without -> namespace not opted in), measured / CPU-bound | %.1f %% / %.1f %% | | |\n", s.shareOf(Without, NotOptedIn), s.CPUCostPercent(Without, NotOptedIn))
	}
	fmt.Fprintf(w, "| webhook calls per pod (apiserver's count) | %.2f | | |\n", s.WebhookLatency[With].Count()/float64(max(1, s.Created[With])))
	for _, k := range []Kind{With, NotOptedIn, Paced} {
		if !s.has(k) {
			continue
		}
		fmt.Fprintf(w, "| %s: webhook admission p50, apiserver's metric, bucket-interpolated | %s | | |\n", k, quantileText(.5, s.WebhookLatency[k]))
		fmt.Fprintf(w, "| %s: webhook admission p99, apiserver's metric, bucket-interpolated | %s | under %s | %s |\n", k, quantileText(.99, s.WebhookLatency[k]), seconds(MaxP99), s.p99Verdict(k))
		if c.Node {
			continue
		}
		fmt.Fprintf(w, "| %s: webhook-side HTTP handler p50 / p99 (controller-runtime) | %s / %s | | |\n", k, quantileText(.5, s.HandlerHTTP[k]), quantileText(.99, s.HandlerHTTP[k]))
		fmt.Fprintf(w, "| %s: webhook-side admission logic p50 / p99 | %s / %s | | |\n", k, quantileText(.5, s.Handler[k]), quantileText(.99, s.Handler[k]))
	}
	fmt.Fprintf(w, "| admission errors | %d (webhook calls by code: %s; rejections %v; fail-open %v) | 0 | %s |\n",
		s.AdmissionErrors(), counts(s.Requests), s.Rejections, s.FailOpen, boolVerdict(s.AdmissionErrors() == 0))
}
