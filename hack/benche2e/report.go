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

// Summary is a Report's arithmetic: throughputs over all rounds, and the
// webhook phases' histograms summed.
type Summary struct {
	Report *Report
	// Rates are pods/s per round, without [0] and with [1] the webhook.
	Rates [2][]float64
	// Rate is created pods over the phases' summed time.
	Rate        [2]float64
	Ratio       float64
	CostPercent float64
	Created     [2]int
	Failed      [2]int
	Injected    [2]int
	FirstError  string
	// Client are the creates' client-side latencies, sorted.
	Client [2][]time.Duration
	// PodPosts is the apiserver's own latency of pod creates.
	PodPosts [2]Histogram
	// WebhookLatency is the apiserver's histogram of calls to our webhook
	// during the webhook phases; CallsWithout counts its observations in
	// the phases without it, which must be none.
	WebhookLatency Histogram
	CallsWithout   float64
	// Requests is apiserver_admission_webhook_request_total by code.
	Requests             map[string]float64
	Rejections, FailOpen float64
	// Handler and HandlerHTTP are the webhook's own histograms: its
	// admission logic, and controller-runtime's whole HTTP handler.
	Handler, HandlerHTTP Histogram
	Decisions            map[string]float64
	// CPU is the CPU time of each process over the creates.
	CPU [2]CPUTimes
	// Err collects histograms that could not be combined.
	Err error
}

// Summarize adds up the phases.
func (r *Report) Summarize() Summary {
	s := Summary{Report: r, Requests: map[string]float64{}, Decisions: map[string]float64{}, CPU: [2]CPUTimes{{}, {}}}
	var elapsed [2]time.Duration
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
		i := 0
		if p.WithWebhook {
			i = 1
		}
		s.Rates[i] = append(s.Rates[i], p.Rate())
		elapsed[i] += p.Elapsed
		s.Created[i] += p.Created
		s.Failed[i] += p.Failed
		s.Injected[i] += p.Injected
		if s.FirstError == "" && p.FirstError != "" {
			s.FirstError = p.FirstError
		}
		s.Client[i] = append(s.Client[i], p.Latencies...)
		for k, v := range p.CPU {
			s.CPU[i][k] += v
		}
		add(&s.PodPosts[i], p.Apiserver.PodPosts)
		if !p.WithWebhook {
			s.CallsWithout += p.Apiserver.Latency.Count()
			continue
		}
		add(&s.WebhookLatency, p.Apiserver.Latency)
		add(&s.Handler, p.Webhook.Latency)
		add(&s.HandlerHTTP, p.Webhook.HTTP)
		for k, v := range p.Apiserver.Requests {
			s.Requests[k] += v
		}
		for k, v := range p.Webhook.Requests {
			s.Decisions[k] += v
		}
		s.Rejections += p.Apiserver.Rejections
		s.FailOpen += p.Apiserver.FailOpen
	}
	for i := range 2 {
		slices.Sort(s.Client[i])
		if elapsed[i] > 0 {
			s.Rate[i] = float64(s.Created[i]) / elapsed[i].Seconds()
		}
	}
	s.Ratio, s.CostPercent = costOf(s.Rate[0], s.Rate[1])
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

// clientComponent is benche2e itself, which a real cluster's clients
// would not run beside the control plane.
var clientComponent = componentName("benche2e")

// CPUPerPod is the CPU time per created pod of one component, or of the
// whole server side (every component but the client) when name is "".
func (s Summary) CPUPerPod(i int, name string) time.Duration {
	if s.Created[i] == 0 {
		return 0
	}
	var total time.Duration
	for k, v := range s.CPU[i] {
		if k == name || (name == "" && k != clientComponent) {
			total += v
		}
	}
	return total / time.Duration(s.Created[i])
}

// CPUCostPercent is the throughput the webhook would cost a server side
// bound by its CPU: throughput is then inversely proportional to CPU time
// per pod, so the cost is 1 - without/with.
func (s Summary) CPUCostPercent() float64 {
	with := s.CPUPerPod(1, "")
	if with <= 0 {
		return math.NaN()
	}
	return (1 - float64(s.CPUPerPod(0, ""))/float64(with)) * 100
}

// cpuComponents lists the components seen, servers first, client last.
func (s Summary) cpuComponents() []string {
	seen := map[string]bool{}
	for i := range 2 {
		for k := range s.CPU[i] {
			seen[k] = true
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

func perPod(d time.Duration) string { return seconds(d.Seconds()) }

// AdmissionErrors is every failure the client or the apiserver saw in the
// webhook phases.
func (s Summary) AdmissionErrors() int {
	n := float64(s.Failed[1]) + s.Rejections + s.FailOpen
	for code, v := range s.Requests {
		if code != "200" {
			n += v
		}
	}
	return int(n)
}

// Failure is non-nil if the run does not measure what it claims: a pod
// was not created, a webhook-phase pod lacks the sidecar, or a phase
// without the webhook still reached it.
func (s Summary) Failure() error {
	var errs []error
	if s.Failed[0]+s.Failed[1] > 0 {
		errs = append(errs, fmt.Errorf("%d pod creates failed (first: %s)", s.Failed[0]+s.Failed[1], s.FirstError))
	}
	if s.Injected[1] != s.Created[1] {
		errs = append(errs, fmt.Errorf("%d of %d pods created with the webhook carry the sidecar; see the webhook's log", s.Injected[1], s.Created[1]))
	}
	if s.Injected[0] > 0 || s.CallsWithout > 0 {
		errs = append(errs, fmt.Errorf("with the webhook configuration deleted, %d pods were injected and the apiserver called the webhook %v times", s.Injected[0], s.CallsWithout))
	}
	if n := s.AdmissionErrors() - s.Failed[1]; n > 0 {
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
func (s Summary) p99Verdict() Verdict {
	r, err := HistogramQuantile(0.99, s.WebhookLatency)
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

// WriteText prints the result table.
func (s Summary) WriteText(w io.Writer) {
	r, c := s.Report, s.Report.Config
	fmt.Fprintf(w, "benche2e: %d pods per phase x %d rounds, %d concurrent clients, webhook --log-level=%s\n", c.Pods, c.Rounds, c.Workers, c.WebhookLogLevel)
	fmt.Fprintf(w, "%s, kube-apiserver %s, %d CPUs, load average before %s, after %s\n\n", r.Date.Format(time.RFC3339), r.ServerVersion, r.CPUs, r.LoadBefore, r.LoadAfter)
	fmt.Fprintf(w, "%-52s %-22s %s\n", "", "without webhook", "with webhook")
	row := func(name, a, b string) { fmt.Fprintf(w, "%-52s %-22s %s\n", name, a, b) }
	row("pods/s, all rounds", fmt.Sprintf("%.1f", s.Rate[0]), fmt.Sprintf("%.1f", s.Rate[1]))
	row("pods/s per round", rates(s.Rates[0]), rates(s.Rates[1]))
	row("pods created / failed", fmt.Sprintf("%d / %d", s.Created[0], s.Failed[0]), fmt.Sprintf("%d / %d", s.Created[1], s.Failed[1]))
	row("pods with the sidecar", strconv.Itoa(s.Injected[0]), strconv.Itoa(s.Injected[1]))
	row("client create latency p50 / p99 (exact)", exact(s.Client[0], .5)+" / "+exact(s.Client[0], .99), exact(s.Client[1], .5)+" / "+exact(s.Client[1], .99))
	row("apiserver POST pods p50 (bucket-interpolated)", quantileText(.5, s.PodPosts[0]), quantileText(.5, s.PodPosts[1]))
	row("apiserver POST pods p99 (bucket-interpolated)", quantileText(.99, s.PodPosts[0]), quantileText(.99, s.PodPosts[1]))
	for _, c := range s.cpuComponents() {
		row("CPU per pod, "+c, perPod(s.CPUPerPod(0, c)), perPod(s.CPUPerPod(1, c)))
	}
	row("CPU per pod, server side (all but the client)", perPod(s.CPUPerPod(0, "")), perPod(s.CPUPerPod(1, "")))
	fmt.Fprintln(w)
	fmt.Fprintf(w, "throughput ratio with/without: %.3f; webhook cost: %.1f %% of pod-create throughput (target <= %.0f %%: %s)\n",
		s.Ratio, s.CostPercent, MaxCostPercent, s.costVerdict())
	fmt.Fprintf(w, "CPU-bound estimate: on a server side bound by its CPU the webhook would cost %.1f %% of throughput (1 - CPU per pod without / with; CPU time is in %s ticks)\n",
		s.CPUCostPercent(), clockTick)
	fmt.Fprintf(w, "webhook admission latency, apiserver's %s{name=%q,type=\"admit\",operation=\"CREATE\"}, delta over the webhook phases, %v calls, bucket-interpolated:\n",
		apiserverWebhookLatency, webhookName, s.WebhookLatency.Count())
	fmt.Fprintf(w, "  p50 %s\n  p99 %s (target < %s: %s)\n", quantileText(.5, s.WebhookLatency), quantileText(.99, s.WebhookLatency), seconds(MaxP99), s.p99Verdict())
	fmt.Fprintf(w, "webhook-side, %s (controller-runtime, whole HTTP handler): p50 %s, p99 %s\n", handlerHTTPLatency, quantileText(.5, s.HandlerHTTP), quantileText(.99, s.HandlerHTTP))
	fmt.Fprintf(w, "webhook-side, %s{outcome=\"injected\"} (admission logic): p50 %s, p99 %s\n", handlerLatency, quantileText(.5, s.Handler), quantileText(.99, s.Handler))
	fmt.Fprintf(w, "admission errors: %d (create failures %d, %s by code: %s, %s %v, %s %v); webhook decisions: %s; apiserver calls with the webhook deleted: %v\n",
		s.AdmissionErrors(), s.Failed[1], apiserverWebhookRequests, counts(s.Requests), apiserverWebhookRejected, s.Rejections,
		apiserverWebhookFailOpen, s.FailOpen, counts(s.Decisions), s.CallsWithout)
}

// WriteMarkdown prints the tables of the BENCHMARKS.md section.
func (s Summary) WriteMarkdown(w io.Writer) {
	r, c := s.Report, s.Report.Config
	fmt.Fprintf(w, "Run %s on kube-apiserver %s, %d CPUs, load average %s before and %s after; %d pods per phase, %d rounds, %d concurrent clients, webhook `--log-level=%s`.\n\n",
		r.Date.Format("2006-01-02 15:04 MST"), r.ServerVersion, r.CPUs, r.LoadBefore, r.LoadAfter, c.Pods, c.Rounds, c.Workers, c.WebhookLogLevel)
	fmt.Fprintln(w, "| | without webhook | with webhook |")
	fmt.Fprintln(w, "|---|---|---|")
	fmt.Fprintf(w, "| pods/s, all rounds | %.1f | %.1f |\n", s.Rate[0], s.Rate[1])
	fmt.Fprintf(w, "| pods/s per round | %s | %s |\n", rates(s.Rates[0]), rates(s.Rates[1]))
	fmt.Fprintf(w, "| pods created / failed | %d / %d | %d / %d |\n", s.Created[0], s.Failed[0], s.Created[1], s.Failed[1])
	fmt.Fprintf(w, "| pods with the sidecar | %d | %d |\n", s.Injected[0], s.Injected[1])
	fmt.Fprintf(w, "| client create latency p50 / p99 (exact) | %s / %s | %s / %s |\n", exact(s.Client[0], .5), exact(s.Client[0], .99), exact(s.Client[1], .5), exact(s.Client[1], .99))
	fmt.Fprintf(w, "| apiserver POST pods p99 (bucket-interpolated) | %s | %s |\n", quantileText(.99, s.PodPosts[0]), quantileText(.99, s.PodPosts[1]))
	for _, c := range s.cpuComponents() {
		fmt.Fprintf(w, "| CPU per pod, %s | %s | %s |\n", c, perPod(s.CPUPerPod(0, c)), perPod(s.CPUPerPod(1, c)))
	}
	fmt.Fprintf(w, "| CPU per pod, server side (all but the client) | %s | %s |\n\n", perPod(s.CPUPerPod(0, "")), perPod(s.CPUPerPod(1, "")))
	fmt.Fprintln(w, "| Measure | Result | Target | |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| webhook cost in pod-create throughput | %.1f %% (ratio %.3f) | at most %.0f %% | %s |\n", s.CostPercent, s.Ratio, MaxCostPercent, s.costVerdict())
	fmt.Fprintf(w, "| webhook cost if the server side is CPU-bound (1 - CPU per pod without / with) | %.1f %% | at most %.0f %% | %s |\n",
		s.CPUCostPercent(), MaxCostPercent, percentVerdict(s.CPUCostPercent()))
	fmt.Fprintf(w, "| webhook admission p50, apiserver's metric, bucket-interpolated | %s | | |\n", quantileText(.5, s.WebhookLatency))
	fmt.Fprintf(w, "| webhook admission p99, apiserver's metric, bucket-interpolated | %s | under %s | %s |\n", quantileText(.99, s.WebhookLatency), seconds(MaxP99), s.p99Verdict())
	fmt.Fprintf(w, "| webhook-side HTTP handler p50 / p99 (controller-runtime) | %s / %s | | |\n", quantileText(.5, s.HandlerHTTP), quantileText(.99, s.HandlerHTTP))
	fmt.Fprintf(w, "| webhook-side admission logic p50 / p99 | %s / %s | | |\n", quantileText(.5, s.Handler), quantileText(.99, s.Handler))
	fmt.Fprintf(w, "| admission errors | %d (webhook calls by code: %s; rejections %v; fail-open %v) | 0 | %s |\n",
		s.AdmissionErrors(), counts(s.Requests), s.Rejections, s.FailOpen, boolVerdict(s.AdmissionErrors() == 0))
}
