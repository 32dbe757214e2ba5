package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/test/fakeaad"
)

// sidecar is one running sidecar process.
type sidecar struct {
	cmd    *exec.Cmd
	exited chan error
	base   string // http://127.0.0.1:port
}

// world is what bench starts once: the fakes and the sidecar's files.
type world struct {
	pod  *fakeaad.Pod
	bin  string
	env  []string
	args []string
	// logs receives the sidecar's stderr: a file, as a container runtime's
	// log pipe costs the sidecar a write per line and costs loadgen nothing.
	logs *os.File
}

func newWorld(cfg Config, dir string) (*world, error) {
	bin, err := filepath.Abs(cfg.Sidecar)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("-sidecar: %w; build it with `make build`", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	def := fakeaad.IdentitySecret
	if ids := cfg.identities(); len(ids) > 0 {
		def = ids[0]
	}
	pod, err := fakeaad.NewPod(fakeaad.PodOptions{Dir: dir, Port: port, Default: def})
	if err != nil {
		return nil, err
	}
	if ids := cfg.identities(); len(ids) > 0 {
		kept := pod.Config.Identities[:0]
		for _, id := range pod.Config.Identities {
			if slices.Contains(ids, id.Name) {
				kept = append(kept, id)
			}
		}
		pod.Config.Identities = kept
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pod.AAD.CAPEM(), 0o600); err != nil {
		pod.Close()
		return nil, err
	}
	doc, err := pod.Config.Marshal()
	if err != nil {
		pod.Close()
		return nil, err
	}
	logs, err := os.Create(filepath.Join(dir, "sidecar.log"))
	if err != nil {
		pod.Close()
		return nil, err
	}
	return &world{
		logs: logs,
		pod:  pod,
		bin:  bin,
		env:  append([]string{names.EnvSidecarConfig + "=" + doc, names.EnvIdentityHeader + "=" + pod.IdentityHeader}, cfg.sidecarEnv()...),
		args: []string{names.SidecarServeCommand, "--ca-file", caFile, "--imds-endpoint", pod.IMDS.URL, "--log-level", cfg.LogLevel},
	}, nil
}

// start starts the sidecar and waits until it is ready, by the exec probe
// (as the kubelet does) or by polling /healthz over HTTP every millisecond.
// It returns the time from exec to ready.
func (w *world) start(ctx context.Context, byProbe bool) (*sidecar, time.Duration, error) {
	cmd := exec.Command(w.bin, w.args...)
	cmd.Env = w.env
	cmd.Stderr = w.logs
	s := &sidecar{cmd: cmd, exited: make(chan error, 1), base: "http://127.0.0.1:" + strconv.Itoa(w.pod.Config.Port)}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	go func() { s.exited <- cmd.Wait() }()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 100 * time.Millisecond}
	for {
		var ready bool
		if byProbe {
			p := exec.CommandContext(ctx, w.bin, names.SidecarProbeCommand)
			p.Env = w.env
			ready = p.Run() == nil
		} else if resp, err := client.Get(s.base + names.PathHealth); err == nil {
			_ = resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
		}
		if ready {
			return s, time.Since(t0), nil
		}
		select {
		case err := <-s.exited:
			return nil, 0, fmt.Errorf("sidecar exited during start: %v", err)
		case <-ctx.Done():
			_ = s.stop() // the start failed; that is the error to report
			return nil, 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if time.Since(t0) > 10*time.Second {
			_ = s.stop() // the start failed; that is the error to report
			return nil, 0, errors.New("sidecar not ready after 10s")
		}
	}
}

func (s *sidecar) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		return err
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		return errors.New("sidecar ignored SIGTERM for 10s")
	}
}

// cpuTime reads the CPU time (user + system, all threads) the process has
// used, from /proc/<pid>/stat in USER_HZ ticks (100 per second on Linux).
func (s *sidecar) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields count from after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b)[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// memory is a process's resident set from /proc/<pid>/status.
type memory struct {
	// RSS is VmRSS, Peak VmHWM; Anon is RssAnon (heap, stacks, runtime
	// data: what the process allocated) and File is RssFile (the binary's
	// pages the kernel mapped in).
	RSS, Peak, Anon, File int64
}

func (m memory) String() string {
	mib := func(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }
	return fmt.Sprintf("%s MiB (anon %s + file %s)", mib(m.RSS), mib(m.Anon), mib(m.File))
}

// rss reads the process's resident set size, its parts and its peak from /proc.
func (s *sidecar) rss() (m memory, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return m, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			m.RSS = kb << 10
		case "VmHWM":
			m.Peak = kb << 10
		case "RssAnon":
			m.Anon = kb << 10
		case "RssFile":
			m.File = kb << 10
		}
	}
	return m, sc.Err()
}

func bench(ctx context.Context, cfg Config, out io.Writer) error {
	dir, err := os.MkdirTemp("", "loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	loadAtStart := loadAvg()
	w, err := newWorld(cfg, dir)
	if err != nil {
		return err
	}
	defer w.pod.Close()
	defer w.logs.Close()

	// Start-up, measured both ways, several times.
	var byProbe, byHTTP []time.Duration
	for range cfg.Repeats {
		for _, probe := range []bool{true, false} {
			s, d, err := w.start(ctx, probe)
			if err != nil {
				return err
			}
			if err := s.stop(); err != nil {
				return fmt.Errorf("stop: %w", err)
			}
			if probe {
				byProbe = append(byProbe, d)
			} else {
				byHTTP = append(byHTTP, d)
			}
		}
	}

	s, _, err := w.start(ctx, false)
	if err != nil {
		return err
	}
	// On an early return; the stop below reports its error.
	defer func() { _ = s.stop() }()
	time.Sleep(time.Second) // let the runtime settle before reading idle RSS
	idle, err := s.rss()
	if err != nil {
		return err
	}
	q := url.Values{"api-version": {"2019-08-01"}, "resource": {"https://vault.azure.net"}}
	lcfg := cfg
	lcfg.URL = s.base + names.PathAppService + "?" + q.Encode()
	lcfg.IdentityHeader = w.pod.IdentityHeader
	// One cold request fetches the token from the fake Entra ID.
	warm := lcfg
	warm.Requests, warm.Workers, warm.Rate = 1, 1, 0
	if _, err := load(ctx, warm); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	closed := lcfg
	closed.Rate = 0
	cpu0, err := s.cpuTime()
	if err != nil {
		return err
	}
	thr, err := load(ctx, closed)
	if err != nil {
		return err
	}
	cpu1, err := s.cpuTime()
	if err != nil {
		return err
	}
	perReq := (cpu1 - cpu0) / time.Duration(thr.Requests)
	afterLoad, err := s.rss()
	if err != nil {
		return err
	}
	fixed := lcfg
	if fixed.Rate == 0 {
		fixed.Rate = 1000
	}
	fixed.Requests = int(float64(fixed.Rate) * cfg.RateDuration.Seconds())
	fixed.Duration = cfg.RateDuration + 5*time.Second
	lat, err := load(ctx, fixed)
	if err != nil {
		return err
	}
	final, err := s.rss()
	if err != nil {
		return err
	}
	var settled memory
	if cfg.Settle > 0 {
		time.Sleep(cfg.Settle)
		if settled, err = s.rss(); err != nil {
			return err
		}
	}
	if err := s.stop(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	st, err := os.Stat(w.bin)
	if err != nil {
		return err
	}
	lines, err := countLines(w.logs.Name(), `"msg":"token request"`)
	if err != nil {
		return err
	}

	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(out, "machine: %d CPUs, %s, load average %s at start, %s at end\n", runtime.NumCPU(), runtime.Version(), loadAtStart, loadAvg())
	fmt.Fprintf(out, "identities: %s; sidecar env: %s\n", strings.Join(configured(w.pod), ","), strings.Join(cfg.sidecarEnv(), " "))
	fmt.Fprintf(out, "closed loop: %s\n", thr)
	fmt.Fprintf(out, "fixed rate %d/s: %s\n", fixed.Rate, lat)
	fmt.Fprintf(out, "sidecar log: %d request lines\n\n", lines)
	fmt.Fprintln(out, "| figure | measured |")
	fmt.Fprintln(out, "|---|---|")
	fmt.Fprintf(out, "| cached token requests/s, %d keep-alive workers, %d requests | %.0f (errors %d) |\n", closed.Workers, thr.Requests, thr.Rate(), thr.Errors)
	fmt.Fprintf(out, "| sidecar CPU time per cached request (user+system) -> capacity of 2 dedicated cores | %s -> %.0f req/s |\n", perReq, 2*float64(time.Second)/float64(perReq))
	fmt.Fprintf(out, "| latency at %d req/s for %s, from due time: p50 / p99 / max | %s / %s / %s (errors %d) |\n", fixed.Rate, cfg.RateDuration, lat.Quantile(0.5), lat.Quantile(0.99), lat.Quantile(1), lat.Errors)
	fmt.Fprintf(out, "| latency at %d req/s, from send: p50 / p99 | %s / %s |\n", fixed.Rate, lat.ServiceQuantile(0.5), lat.ServiceQuantile(0.99))
	fmt.Fprintf(out, "| idle RSS after start | %s |\n", idle)
	fmt.Fprintf(out, "| RSS after %d requests | %s |\n", thr.Requests+1, afterLoad)
	fmt.Fprintf(out, "| RSS after the fixed-rate phase / peak (VmHWM) | %s / %s |\n", final, mib(final.Peak))
	if cfg.Settle > 0 {
		fmt.Fprintf(out, "| RSS after %s idle that follow the load | %s |\n", cfg.Settle, settled)
	}
	fmt.Fprintf(out, "| start to exec-probe success, median of %d (min-max) | %s (%s-%s) |\n", len(byProbe), median(byProbe), slices.Min(byProbe), slices.Max(byProbe))
	fmt.Fprintf(out, "| start to /healthz 200 over HTTP, median of %d (min-max) | %s (%s-%s) |\n", len(byHTTP), median(byHTTP), slices.Min(byHTTP), slices.Max(byHTTP))
	fmt.Fprintf(out, "| binary size | %s (%d bytes) |\n", mib(st.Size()), st.Size())
	return nil
}

func configured(p *fakeaad.Pod) []string {
	var ids []string
	for _, id := range p.Config.Identities {
		ids = append(ids, id.Name+"("+id.Source+")")
	}
	return ids
}

// countLines counts the lines of a file that contain substr.
func countLines(path, substr string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			n++
		}
	}
	return n, sc.Err()
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(100 * time.Microsecond)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
