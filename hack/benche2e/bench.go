package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podidentity/injector/e2e/framework/nodeenv"
	"github.com/podidentity/injector/e2e/framework/webhookenv"
	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/names"
)

// The objects the benchmark makes, and what it reads.
const (
	benchNamespace = "bench"
	// plainNamespace is not opted in, for the NotOptedIn phases.
	plainNamespace = "bench-plain"
	benchSelector  = "bench"
	benchClientID  = "00000000-0000-0000-0000-00000000b3c4"
	// webhookName is the webhook's name in the MutatingWebhookConfiguration,
	// which is the "name" label of the apiserver's webhook metrics.
	webhookName = "pod-identity-injector.podidentity.github.io"

	apiserverWebhookLatency  = "apiserver_admission_webhook_admission_duration_seconds"
	apiserverWebhookRequests = "apiserver_admission_webhook_request_total"
	apiserverWebhookRejected = "apiserver_admission_webhook_rejection_count"
	apiserverWebhookFailOpen = "apiserver_admission_webhook_fail_open_count"
	handlerHTTPLatency       = "controller_runtime_webhook_latency_seconds"
	handlerLatency           = "pod_identity_injector_admission_duration_seconds"
	handlerDecisions         = "pod_identity_injector_decisions_total"
)

// Label filters of the series above.
var (
	ourWebhookCreates = map[string]string{"name": webhookName, "type": "admit", "operation": "CREATE"}
)

// Kind is what a phase creates, and whether the webhook is registered.
type Kind int

// The kinds of phase. Without and With are the comparison the targets are
// about; Preinjected splits the difference between them into what the
// bigger pod costs and what the admission call costs.
const (
	// Without creates plain labelled pods with the webhook unregistered.
	Without Kind = iota
	// With creates the same pods with the webhook registered.
	With
	// Preinjected creates, with the webhook unregistered, pods that
	// already look as the webhook leaves them.
	Preinjected
	// Paced creates plain pods with the webhook at a fixed rate well under
	// saturation, for latencies that are not queueing for the CPU.
	Paced
	// NotOptedIn creates the same labelled pods, with the webhook
	// registered, in a namespace that is not opted in: the objectSelector
	// still sends them to the webhook, which reads the opt-in annotation
	// itself and lets them through unchanged (node mode only).
	NotOptedIn
	numKinds
)

func (k Kind) String() string {
	return [...]string{"without webhook", "with webhook", "pre-injected, no webhook", "with webhook, paced", "namespace not opted in"}[k]
}

// webhook reports whether the webhook is registered in phases of kind k.
func (k Kind) webhook() bool { return k == With || k == Paced || k == NotOptedIn }

// namespace is where phases of kind k create their pods.
func (k Kind) namespace() string {
	if k == NotOptedIn {
		return plainNamespace
	}
	return benchNamespace
}

// Phase is one timed batch of pod creations.
type Phase struct {
	Round int
	Kind  Kind
	// Created and Failed count the creates; Failed includes those not
	// attempted before the phase's deadline.
	Created, Failed int
	FirstError      string
	Elapsed         time.Duration
	// Latencies are the successful creates' times as the client saw them.
	Latencies []time.Duration
	// Injected is how many of the pods in the namespace afterwards carry
	// the sidecar.
	Injected int
	// Apiserver and Webhook are the metrics' deltas over the phase.
	Apiserver, Webhook Delta
	// CPU is the CPU time each process used during the creates.
	CPU CPUTimes
	// Size is that of one stored pod of the phase.
	Size PodSize
}

// PodSize is the size of a stored pod as JSON, and of its managedFields,
// which the apiserver writes for every field the client sent and not for
// those a webhook added.
type PodSize struct {
	JSON, ManagedFields int
}

// sizeOf measures a pod as the apiserver returned it.
func sizeOf(pod *corev1.Pod) (PodSize, error) {
	all, err := json.Marshal(pod)
	if err != nil {
		return PodSize{}, err
	}
	mf, err := json.Marshal(pod.ManagedFields)
	if err != nil {
		return PodSize{}, err
	}
	return PodSize{JSON: len(all), ManagedFields: len(mf)}, nil
}

// Rate is pods created per second.
func (p Phase) Rate() float64 { return float64(p.Created) / p.Elapsed.Seconds() }

// Delta is what one endpoint's metrics gained over a phase.
type Delta struct {
	Latency  Histogram
	Requests map[string]float64
	// Rejections and FailOpen are apiserver counters.
	Rejections, FailOpen float64
	// HTTP is the webhook's controller-runtime handler latency.
	HTTP Histogram
}

// Report is everything a run measured, before any arithmetic.
type Report struct {
	Config        Config
	Date          time.Time
	CPUs          int
	LoadBefore    string
	LoadAfter     string
	ServerVersion string
	Phases        []Phase
}

// bench holds the running environment and its clients.
type bench struct {
	cfg  Config
	env  *webhookenv.Env
	cs   kubernetes.Interface
	http *http.Client
	// injected is the webhook's output for benchPod, the template of the
	// Preinjected phases.
	injected *corev1.Pod
	// cluster is the real node of node mode (node.go), nil otherwise. Its
	// webhook runs as the Deployment, which the apiserver reaches through
	// the Service; env's host-process webhook is stopped.
	cluster *nodeenv.Env
}

func runBench(ctx context.Context, cfg Config, log io.Writer) (*Report, error) {
	rep := &Report{Config: cfg, Date: time.Now().UTC(), CPUs: runtime.NumCPU(), LoadBefore: loadAverage()}
	start := startBench
	if cfg.Node {
		start = startNodeBench
	}
	b, stop, err := start(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer stop()
	if v, err := b.cs.Discovery().ServerVersion(); err == nil {
		rep.ServerVersion = v.GitVersion
	}
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	// webhookenv registered the webhook; take the template while it is.
	if err := b.waitMutated(ctx, true); err != nil {
		return nil, err
	}
	if err := b.takeTemplate(ctx); err != nil {
		return nil, err
	}
	if err := b.warmup(ctx); err != nil {
		return nil, err
	}
	// The phases without the webhook are adjacent, and so are those with
	// it, so that it is toggled twice a round.
	kinds := []Kind{Without}
	if cfg.Preinjected {
		kinds = append(kinds, Preinjected)
	}
	kinds = append(kinds, With)
	if cfg.Node {
		kinds = append(kinds, NotOptedIn)
	}
	if cfg.PacedPods > 0 {
		kinds = append(kinds, Paced)
	}
	for round := 1; round <= cfg.Rounds; round++ {
		for _, kind := range kinds {
			p, err := b.phase(ctx, round, kind)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(log, ">> round %d, %-24s: %d pods in %s, %.1f pods/s, %d failed, %d with the sidecar\n",
				round, kind, p.Created, p.Elapsed.Round(time.Millisecond), p.Rate(), p.Failed, p.Injected)
			rep.Phases = append(rep.Phases, p)
		}
	}
	rep.LoadAfter = loadAverage()
	return rep, nil
}

// startBench starts the local environment and the clients; stop stops it.
func startBench(ctx context.Context, cfg Config, log io.Writer) (*bench, func(), error) {
	// controller-runtime's client logs through this; keep its warnings.
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn})))
	envLog := io.Discard
	if cfg.Verbose {
		envLog = log
	}
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	env, err := webhookenv.Start(startCtx, webhookenv.Options{
		RepoRoot:      cfg.RepoRoot,
		WebhookBinary: cfg.WebhookBinary,
		Log:           envLog,
		WebhookArgs:   append([]string{"--log-level=" + cfg.WebhookLogLevel}, cfg.WebhookArgs...),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("start the local environment: %w", err)
	}
	fmt.Fprintf(log, ">> environment ready in %s\n", time.Since(start).Round(time.Millisecond))

	rc := env.Cluster.RESTConfig()
	rc.QPS, rc.Burst, rc.UserAgent = float32(cfg.QPS), cfg.Burst, "benche2e"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		env.Stop()
		return nil, nil, err
	}
	return &bench{cfg: cfg, env: env, cs: cs, http: &http.Client{Timeout: 10 * time.Second}}, env.Stop, nil
}

// setup makes the opted-in namespace, its identity and binding.
func (b *bench) setup(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        benchNamespace,
		Annotations: map[string]string{names.InjectAnnotation: names.InjectEnabled},
	}}
	if err := b.env.Client.Create(ctx, ns); err != nil {
		return fmt.Errorf("create Namespace %s: %w", benchNamespace, err)
	}
	id := &aadv1.AzureIdentity{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-identity", Namespace: benchNamespace},
		Spec:       aadv1.AzureIdentitySpec{Type: 0, ClientID: benchClientID},
	}
	if err := b.env.Client.Create(ctx, id); err != nil {
		return fmt.Errorf("create AzureIdentity %s/%s: %w", id.Namespace, id.Name, err)
	}
	bind := &aadv1.AzureIdentityBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-binding", Namespace: benchNamespace},
		Spec:       aadv1.AzureIdentityBindingSpec{AzureIdentity: id.Name, Selector: benchSelector},
	}
	if err := b.env.Client.Create(ctx, bind); err != nil {
		return fmt.Errorf("create AzureIdentityBinding %s/%s: %w", bind.Namespace, bind.Name, err)
	}
	namespaces := []string{benchNamespace}
	if b.cluster != nil {
		plain := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: plainNamespace}}
		if err := b.env.Client.Create(ctx, plain); err != nil {
			return fmt.Errorf("create Namespace %s: %w", plainNamespace, err)
		}
		namespaces = append(namespaces, plainNamespace)
	}
	// The ServiceAccount admission plugin refuses pods until
	// kube-controller-manager has made the default ServiceAccount.
	for _, ns := range namespaces {
		err := b.poll(ctx, "the default ServiceAccount of namespace "+ns, func() (bool, error) {
			_, err := b.cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err == nil, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// warmup creates and deletes unmeasured pods with the webhook in place,
// so that the first measured phase does not pay for cold caches.
func (b *bench) warmup(ctx context.Context) error {
	if b.cfg.Warmup == 0 {
		return nil
	}
	p := b.create(ctx, "warmup", b.cfg.Warmup, 0, b.podIn(benchNamespace))
	if p.Failed > 0 {
		return fmt.Errorf("warm-up: %d of %d pods failed, first: %s", p.Failed, b.cfg.Warmup, p.FirstError)
	}
	return b.deletePods(ctx, benchNamespace)
}

// phase switches the webhook on or off, creates the pods, counts the
// injected ones and deletes them, with the metrics scraped around the
// creates only.
func (b *bench) phase(ctx context.Context, round int, kind Kind) (Phase, error) {
	makePod, n, rate := b.podIn(kind.namespace()), b.cfg.Pods, 0.0
	if kind == Paced {
		n, rate = b.cfg.PacedPods, b.cfg.PacedRate
	}
	if kind.webhook() {
		if err := b.registerWebhook(ctx); err != nil {
			return Phase{}, err
		}
	} else if err := b.unregisterWebhook(ctx); err != nil {
		return Phase{}, err
	}
	if kind == Preinjected {
		makePod = func(name string) *corev1.Pod {
			p := b.injected.DeepCopy()
			p.Name = name
			return p
		}
	}
	apiBefore, hookBefore, err := b.scrape(ctx)
	if err != nil {
		return Phase{}, err
	}
	webhookContainers, err := b.webhookContainers(ctx)
	if err != nil {
		return Phase{}, err
	}
	cpuBefore, err := cpuTimes(webhookContainers)
	if err != nil {
		return Phase{}, err
	}
	p := b.create(ctx, fmt.Sprintf("r%d-k%d", round, kind), n, rate, makePod)
	cpuAfter, err := cpuTimes(webhookContainers)
	if err != nil {
		return Phase{}, err
	}
	p.Round, p.Kind, p.CPU = round, kind, cpuAfter.Sub(cpuBefore)
	apiAfter, hookAfter, err := b.scrape(ctx)
	if err != nil {
		return Phase{}, err
	}
	if p.Apiserver, err = apiserverDelta(apiBefore, apiAfter); err != nil {
		return Phase{}, err
	}
	if p.Webhook, err = webhookDelta(hookBefore, hookAfter); err != nil {
		return Phase{}, err
	}
	if p.Injected, p.Size, err = b.inspect(ctx, kind.namespace()); err != nil {
		return Phase{}, err
	}
	return p, b.deletePods(ctx, kind.namespace())
}

// create makes n pods named prefix-NNNNN with cfg.Workers concurrent
// clients sharing one clientset, and times the whole batch. With rate 0
// the clients go as fast as the server lets them; otherwise a pod is
// released to them every 1/rate seconds.
func (b *bench) create(ctx context.Context, prefix string, n int, rate float64, makePod func(name string) *corev1.Pod) Phase {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PhaseTimeout)
	defer cancel()
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	for i := range errs {
		errs[i] = errNotAttempted
	}
	jobs := make(chan int, n)
	var wg sync.WaitGroup
	start := time.Now()
	for range b.cfg.Workers {
		wg.Go(func() {
			for i := range jobs {
				if ctx.Err() != nil {
					return
				}
				pod := makePod(fmt.Sprintf("%s-%05d", prefix, i))
				t0 := time.Now()
				_, errs[i] = b.cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
				lat[i] = time.Since(t0)
			}
		})
	}
	release(ctx, jobs, n, rate, start)
	wg.Wait()
	p := Phase{Elapsed: time.Since(start)}
	for i, err := range errs {
		if err != nil {
			p.Failed++
			if p.FirstError == "" {
				p.FirstError = err.Error()
			}
			continue
		}
		p.Created++
		p.Latencies = append(p.Latencies, lat[i])
	}
	slices.Sort(p.Latencies)
	return p
}

var errNotAttempted = errors.New("not attempted before -phase-timeout")

// release sends 0..n-1 to jobs and closes it: all at once with rate 0,
// else the i-th at start + i/rate, or not at all once ctx is done.
func release(ctx context.Context, jobs chan<- int, n int, rate float64, start time.Time) {
	defer close(jobs)
	for i := range n {
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		jobs <- i
	}
}

// benchPod is a labelled pod with one small container. Nothing runs it:
// the local cluster has no nodes, and on the real node (podIn) it is gated.
func benchPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchNamespace, Labels: map[string]string{names.BindingLabel: benchSelector}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "app",
			Image: "registry.k8s.io/pause:3.10",
		}}},
	}
}

// podIn makes benchPods in namespace ns. On the real node they carry a
// scheduling gate, so that they stay Pending and unscheduled: the phases
// measure the apiserver and the webhook, not a 2-core kubelet starting
// hundreds of containers.
func (b *bench) podIn(ns string) func(name string) *corev1.Pod {
	return func(name string) *corev1.Pod {
		p := benchPod(name)
		p.Namespace = ns
		if b.cluster != nil {
			p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: schedulingGate}}
		}
		return p
	}
}

// takeTemplate dry-runs benchPod through the webhook and keeps what it
// returns, less what the apiserver added, as the Preinjected template.
func (b *bench) takeTemplate(ctx context.Context) error {
	got, err := b.cs.CoreV1().Pods(benchNamespace).Create(ctx, b.podIn(benchNamespace)("template"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return fmt.Errorf("dry-run pod %s/template: %w", benchNamespace, err)
	}
	if !hasSidecar(got) {
		return fmt.Errorf("dry-run pod %s/template came back without the sidecar; see the webhook's log:\n%s", benchNamespace, b.webhookLogTail(10))
	}
	b.injected = preinjected(got)
	return nil
}

// serviceAccountVolumePrefix names the volume of the apiserver's
// ServiceAccount admission plugin, which mounts it into every container.
const serviceAccountVolumePrefix = "kube-api-access-"

// preinjected turns a pod the apiserver returned into one to create: the
// webhook's changes stay, the apiserver's identity fields go, and so does
// the ServiceAccount plugin's token volume, which it adds again to every
// container, the sidecar included, as on the webhook's path.
func preinjected(got *corev1.Pod) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Namespace:   got.Namespace,
		Labels:      maps.Clone(got.Labels),
		Annotations: maps.Clone(got.Annotations),
	}}
	p.Spec = *got.Spec.DeepCopy()
	p.Spec.Volumes = slices.DeleteFunc(p.Spec.Volumes, func(v corev1.Volume) bool {
		return strings.HasPrefix(v.Name, serviceAccountVolumePrefix)
	})
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			list[i].VolumeMounts = slices.DeleteFunc(list[i].VolumeMounts, func(m corev1.VolumeMount) bool {
				return strings.HasPrefix(m.Name, serviceAccountVolumePrefix)
			})
		}
	}
	return p
}

func hasSidecar(pod *corev1.Pod) bool {
	_, err := webhookenv.Container(pod, names.SidecarContainerName)
	return err == nil
}

// inspect lists namespace ns's labelled pods, counts those with the
// sidecar and measures the first.
func (b *bench) inspect(ctx context.Context, ns string) (int, PodSize, error) {
	list, err := b.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: names.BindingLabel + "=" + benchSelector})
	if err != nil {
		return 0, PodSize{}, fmt.Errorf("list pods in %s: %w", ns, err)
	}
	n := 0
	for i := range list.Items {
		if hasSidecar(&list.Items[i]) {
			n++
		}
	}
	var size PodSize
	if len(list.Items) > 0 {
		if size, err = sizeOf(&list.Items[0]); err != nil {
			return 0, PodSize{}, err
		}
	}
	return n, size, nil
}

// deletePods removes namespace ns's labelled pods and waits until they
// are gone. Pods on no node are deleted at once, without a grace period.
func (b *bench) deletePods(ctx context.Context, ns string) error {
	sel := metav1.ListOptions{LabelSelector: names.BindingLabel + "=" + benchSelector}
	if err := b.cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, sel); err != nil {
		return fmt.Errorf("delete the pods of namespace %s: %w", ns, err)
	}
	return b.poll(ctx, "the deletion of the pods of namespace "+ns, func() (bool, error) {
		list, err := b.cs.CoreV1().Pods(ns).List(ctx, sel)
		if err != nil {
			return false, err
		}
		return len(list.Items) == 0, nil
	})
}

// unregisterWebhook deletes the MutatingWebhookConfiguration and waits
// until the apiserver stops calling the webhook.
func (b *bench) unregisterWebhook(ctx context.Context) error {
	err := b.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, webhookenv.WebhookConfigName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete MutatingWebhookConfiguration %s: %w", webhookenv.WebhookConfigName, err)
	}
	return b.waitMutated(ctx, false)
}

// registerWebhook creates the MutatingWebhookConfiguration as webhookenv
// does and waits until the apiserver calls the webhook.
func (b *bench) registerWebhook(ctx context.Context) error {
	// On the real node the configuration calls the Service, as manifests/
	// writes it; locally, the host process's URL.
	url := b.env.WebhookURL
	if b.cluster != nil {
		url = ""
	}
	mwc, err := b.env.WebhookConfiguration(ctx, url, b.env.CABundle())
	if err != nil {
		return err
	}
	if b.cfg.Reinvocation != "" {
		for i := range mwc.Webhooks {
			mwc.Webhooks[i].ReinvocationPolicy = ptr.To(admissionregistrationv1.ReinvocationPolicyType(b.cfg.Reinvocation))
		}
	}
	_, err = b.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create MutatingWebhookConfiguration %s: %w", mwc.Name, err)
	}
	return b.waitMutated(ctx, true)
}

// waitMutated dry-runs a labelled pod until the apiserver's answer has the
// sidecar (want true) or has not (want false): the webhook configuration
// reaches the apiserver's admission chain through an informer.
func (b *bench) waitMutated(ctx context.Context, want bool) error {
	what := "a dry-run pod to be mutated"
	if !want {
		what = "a dry-run pod to pass unmutated"
	}
	return b.poll(ctx, what, func() (bool, error) {
		got, err := b.cs.CoreV1().Pods(benchNamespace).Create(ctx, b.podIn(benchNamespace)("dry-run"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err
		}
		return hasSidecar(got) == want, nil
	})
}

// poll calls cond every 100ms until it is true, for at most PhaseTimeout.
// An error from cond is kept for the timeout message but does not stop
// the wait, since the apiserver may refuse while a change propagates.
func (b *bench) poll(ctx context.Context, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PhaseTimeout)
	defer cancel()
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waited %s for %s (last error: %v): %w", b.cfg.PhaseTimeout, what, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// scrape reads the apiserver's and the webhook's /metrics.
func (b *bench) scrape(ctx context.Context) (api, hook Metrics, err error) {
	raw, err := b.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").SetHeader("Accept", "text/plain").DoRaw(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("GET the apiserver's /metrics: %w", err)
	}
	if api, err = ParseMetrics(bytes.NewReader(raw)); err != nil {
		return nil, nil, fmt.Errorf("the apiserver's /metrics: %w", err)
	}
	if b.cluster != nil {
		// The Deployment serves /metrics over HTTPS to authorized callers
		// only (--metrics-secure); node mode reads the apiserver's side.
		return api, Metrics{}, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.env.MetricsURL, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("GET the webhook's metrics %s: %w", b.env.MetricsURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET the webhook's metrics %s: %s", b.env.MetricsURL, resp.Status)
	}
	if hook, err = ParseMetrics(resp.Body); err != nil {
		return nil, nil, fmt.Errorf("the webhook's metrics %s: %w", b.env.MetricsURL, err)
	}
	return api, hook, nil
}

// apiserverDelta is what the apiserver counted between two scrapes.
func apiserverDelta(before, after Metrics) (Delta, error) {
	var d Delta
	var err error
	if d.Latency, err = histDelta(before, after, apiserverWebhookLatency, ourWebhookCreates); err != nil {
		return Delta{}, err
	}
	d.Requests = counterDelta(before, after, apiserverWebhookRequests, ourWebhookCreates, "code")
	d.Rejections = counterDelta(before, after, apiserverWebhookRejected, ourWebhookCreates, "")[""]
	d.FailOpen = counterDelta(before, after, apiserverWebhookFailOpen, map[string]string{"name": webhookName, "type": "admit"}, "")[""]
	return d, nil
}

// webhookDelta is what the webhook counted between two scrapes.
func webhookDelta(before, after Metrics) (Delta, error) {
	var d Delta
	var err error
	if d.Latency, err = histDelta(before, after, handlerLatency, map[string]string{"outcome": "injected"}); err != nil {
		return Delta{}, err
	}
	if d.HTTP, err = histDelta(before, after, handlerHTTPLatency, map[string]string{"webhook": "/mutate-v1-pod"}); err != nil {
		return Delta{}, err
	}
	d.Requests = counterDelta(before, after, handlerDecisions, nil, "outcome")
	return d, nil
}

func histDelta(before, after Metrics, name string, want map[string]string) (Histogram, error) {
	b, err := before.Histogram(name, want)
	if err != nil {
		return Histogram{}, err
	}
	a, err := after.Histogram(name, want)
	if err != nil {
		return Histogram{}, err
	}
	return a.Sub(b)
}

func counterDelta(before, after Metrics, name string, want map[string]string, by string) map[string]float64 {
	b := before.Counter(name, want, by)
	out := map[string]float64{}
	for k, v := range after.Counter(name, want, by) {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// loadAverage is the 1, 5 and 15 minute load of /proc/loadavg.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
