package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
	"github.com/podidentity/injector/internal/names"
)

// The scale mode (-scale 1,1000,5000) measures what the cluster's size
// costs the webhook, whose informer cache holds every namespace and every
// identity, binding and exception. For each N in increasing order it makes
// namespaces up to N in all, each opted in with one AzureIdentity and one
// AzureIdentityBinding, and then records:
//   - the webhook's RSS once the cache has the new objects;
//   - the apiserver's admission latency histogram for our webhook over
//     -paced-pods pods created at -paced-rate in the bench namespace;
//   - the time from a restart of the webhook to its readiness (a synced
//     cache), and its RSS after the restart, which holds only the cache
//     and none of the garbage of creating the objects.

// ScaleStep is what one N measured.
type ScaleStep struct {
	Namespaces int
	// CreateTime is how long making the new namespaces and objects took.
	CreateTime time.Duration
	// RSS is the running webhook's; RSSRestarted the restarted one's.
	RSS, RSSRestarted int64
	// HeapRestarted is the restarted webhook's go_memstats_heap_inuse_bytes:
	// the part of its RSS that is Go heap, live objects and garbage alike.
	HeapRestarted float64
	// Ready is exec to /readyz 200 after the restart.
	Ready time.Duration
	// Admission is the apiserver's histogram delta over the paced pods.
	Admission Histogram
	Created   int
	Failed    int
}

// scaleSteps parses -scale: increasing namespace counts.
func scaleSteps(s string) ([]int, error) {
	var steps []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 20_000 {
			return nil, fmt.Errorf("-scale %q: %q is not a namespace count in 1-20000", s, f)
		}
		if len(steps) > 0 && n <= steps[len(steps)-1] {
			return nil, fmt.Errorf("-scale %q: counts must increase", s)
		}
		steps = append(steps, n)
	}
	return steps, nil
}

func runScale(ctx context.Context, cfg Config, stdout, log io.Writer) error {
	steps, err := scaleSteps(cfg.Scale)
	if err != nil {
		return err
	}
	b, stop, err := startBench(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stop()
	if err := b.setup(ctx); err != nil {
		return err
	}
	if err := b.waitMutated(ctx, true); err != nil {
		return err
	}
	if err := b.warmup(ctx); err != nil {
		return err
	}
	loadBefore := loadAverage()
	var results []ScaleStep
	made := 0
	for _, n := range steps {
		st := ScaleStep{Namespaces: n}
		t0 := time.Now()
		if err := b.makeNamespaces(ctx, made, n); err != nil {
			return err
		}
		st.CreateTime = time.Since(t0)
		made = n
		fmt.Fprintf(log, ">> %d namespaces with an identity and a binding (%s to create the new ones)\n", n, st.CreateTime.Round(time.Millisecond))
		// Let the informers take in the last events.
		time.Sleep(5 * time.Second)
		if st.RSS, err = processRSS(b.env.WebhookPID()); err != nil {
			return err
		}
		api0, _, err := b.scrape(ctx)
		if err != nil {
			return err
		}
		p := b.create(ctx, fmt.Sprintf("scale-%d", n), b.cfg.PacedPods, b.cfg.PacedRate, b.podIn(benchNamespace))
		api1, _, err := b.scrape(ctx)
		if err != nil {
			return err
		}
		d, err := apiserverDelta(api0, api1)
		if err != nil {
			return err
		}
		st.Admission, st.Created, st.Failed = d.Latency, p.Created, p.Failed
		if err := b.deletePods(ctx, benchNamespace); err != nil {
			return err
		}
		if st.Ready, err = b.env.RestartWebhook(ctx); err != nil {
			return fmt.Errorf("restart the webhook at %d namespaces: %w", n, err)
		}
		// The restarted webhook listens on a new port.
		if err := b.unregisterWebhook(ctx); err != nil {
			return err
		}
		if err := b.registerWebhook(ctx); err != nil {
			return err
		}
		time.Sleep(5 * time.Second)
		if st.RSSRestarted, err = processRSS(b.env.WebhookPID()); err != nil {
			return err
		}
		_, hook, err := b.scrape(ctx)
		if err != nil {
			return err
		}
		st.HeapRestarted = gauge(hook, "go_memstats_heap_inuse_bytes")
		fmt.Fprintf(log, ">> %d namespaces: webhook RSS %s, after restart %s, ready in %s, admission p99 %s\n",
			n, mib(st.RSS), mib(st.RSSRestarted), st.Ready.Round(time.Millisecond), quantileText(0.99, st.Admission))
		results = append(results, st)
	}
	writeScale(stdout, cfg, results, loadBefore, loadAverage())
	for _, st := range results {
		if st.Failed > 0 {
			return fmt.Errorf("%d namespaces: %d pods could not be created", st.Namespaces, st.Failed)
		}
	}
	return nil
}

// makeNamespaces creates namespaces from (exclusive) .. to (inclusive),
// each with an identity and a binding, with cfg.Workers clients.
func (b *bench) makeNamespaces(ctx context.Context, from, to int) error {
	jobs := make(chan int)
	errs := make(chan error, b.cfg.Workers)
	var wg sync.WaitGroup
	for range b.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := b.makeNamespace(ctx, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := from + 1; i <= to; i++ {
		select {
		case jobs <- i:
		case err = <-errs:
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err = <-errs:
		return err
	default:
		return nil
	}
}

// makeNamespace creates one opted-in namespace with what a team migrating
// from aad-pod-identity has: an identity and its binding.
func (b *bench) makeNamespace(ctx context.Context, i int) error {
	name := fmt.Sprintf("scale-%05d", i)
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{names.InjectAnnotation: names.InjectEnabled}}},
		&aadv1.AzureIdentity{
			ObjectMeta: metav1.ObjectMeta{Name: "identity", Namespace: name},
			Spec:       aadv1.AzureIdentitySpec{Type: aadv1.IdentityTypeUserAssignedMSI, ClientID: benchClientID},
		},
		&aadv1.AzureIdentityBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "binding", Namespace: name},
			Spec:       aadv1.AzureIdentityBindingSpec{AzureIdentity: "identity", Selector: benchSelector},
		},
	}
	for _, o := range objs {
		if err := b.env.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %T %s/%s: %w", o, o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}

// processRSS reads VmRSS of a process.
func processRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// gauge is the value of an unlabelled gauge, or 0.
func gauge(ms Metrics, name string) float64 {
	f := ms[name]
	if f == nil || len(f.GetMetric()) == 0 {
		return 0
	}
	return f.GetMetric()[0].GetGauge().GetValue()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// perNamespace is the growth of the restarted webhook's RSS per namespace
// from the first step to st, or "" for the first step.
func perNamespace(first, st ScaleStep) string {
	if st.Namespaces == first.Namespaces {
		return ""
	}
	return fmt.Sprintf("%.1f KB", float64(st.RSSRestarted-first.RSSRestarted)/float64(st.Namespaces-first.Namespaces)/1000)
}

func writeScale(w io.Writer, cfg Config, steps []ScaleStep, loadBefore, loadAfter string) {
	fmt.Fprintf(w, "machine: %d CPUs, %s, load average %s before, %s after\n", runtime.NumCPU(), runtime.Version(), loadBefore, loadAfter)
	fmt.Fprintf(w, "admission: %d pods at %v/s per step, apiserver histogram %s\n\n", cfg.PacedPods, cfg.PacedRate, apiserverWebhookLatency)
	fmt.Fprintln(w, "| namespaces (1 identity + 1 binding each) | webhook RSS, running | webhook RSS after restart | growth per namespace (after restart, from the first step) | Go heap in use after restart | ready after restart | admission p50 | admission p99 | pods |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, st := range steps {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %d (%d failed) |\n",
			st.Namespaces, mib(st.RSS), mib(st.RSSRestarted), perNamespace(steps[0], st), mib(int64(st.HeapRestarted)), st.Ready.Round(time.Millisecond),
			quantileText(0.5, st.Admission), quantileText(0.99, st.Admission), st.Created, st.Failed)
	}
}
