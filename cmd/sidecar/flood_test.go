package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podidentity/injector/internal/names"
)

// The flood helper's environment: the address to flood and how many
// connections to open. Set only in the child process that
// TestBinaryConnectionFlood starts.
const (
	envFloodAddr  = "POD_IDENTITY_TEST_FLOOD_ADDR"
	envFloodCount = "POD_IDENTITY_TEST_FLOOD_COUNT"
)

// sidecarMemoryLimit is the sidecar container's default memory limit.
const sidecarMemoryLimit = 64 << 20

// TestBinaryConnectionFlood is issue 22's first finding: another process
// of the pod opens 10,000 idle connections to the real sidecar binary. Its
// resident memory stays under the container's 64Mi limit throughout (so
// the OOM killer never frees the port for a squatter), and a legitimate
// caller is served a token while the connections are held and after they
// are gone, by the same process.
func TestBinaryConnectionFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sidecar and opens 10,000 connections")
	}
	bin := buildSidecar(t)
	sc := startSidecar(t, bin, "--log-level", "warn")
	p, srv, exited, logs := sc.pod, sc.cmd, sc.exited, sc.logs
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Config.Port))
	token := func(t *testing.T, what string) {
		t.Helper()
		var last string
		// Bounded in count: a caller retries as the SDKs do.
		for range 50 {
			status, body, err := getToken(addr, p.IdentityHeader)
			if err == nil && status == http.StatusOK {
				return
			}
			last = fmt.Sprintf("status %d, %v, %s", status, err, body)
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: no token in 50 tries; last: %s\nsidecar logs:\n%s", what, last, logs.String())
	}
	token(t, "before the flood")
	pid := srv.Process.Pid
	before := vmRSS(t, pid)

	// The peak is sampled while the flood runs, until it is over.
	var peak int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := readVMRSS(pid); err == nil {
				peak = max(peak, rss)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	flood := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFloodHelper$", "-test.count=1")
	flood.Env = append(os.Environ(), envFloodAddr+"="+addr, envFloodCount+"=10000")
	stdin, err := flood.StdinPipe()
	require.NoError(t, err)
	stdout, err := flood.StdoutPipe()
	require.NoError(t, err)
	var floodErr bytes.Buffer
	flood.Stderr = &floodErr
	require.NoError(t, flood.Start())
	lines := bufio.NewScanner(stdout)
	var opened string
	for lines.Scan() {
		if rest, ok := strings.CutPrefix(lines.Text(), "holding "); ok {
			opened = rest
			break
		}
	}
	require.NotEmpty(t, opened, "the flood helper did not report; stderr:\n%s", floodErr.String())
	t.Logf("the flood helper opened %s connections", opened)

	token(t, "during the flood")
	_ = stdin.Close() // the helper closes its connections and exits
	go func() { _, _ = bufio.NewReader(stdout).WriteTo(&bytes.Buffer{}) }()
	require.NoError(t, flood.Wait(), "flood helper: %s", floodErr.String())
	token(t, "after the flood")
	close(stop)
	<-sampled

	select {
	case err := <-exited:
		t.Fatalf("the sidecar exited during the flood: %v\n%s", err, logs.String())
	default:
	}
	assert.Equal(t, pid, srv.Process.Pid)
	t.Logf("VmRSS before %d KiB, peak %d KiB", before>>10, peak>>10)
	assert.Less(t, peak, int64(sidecarMemoryLimit), "the sidecar's resident memory passed its 64Mi limit during the flood")
	assert.NotContains(t, logs.String(), p.IdentityHeader)
}

// TestFloodHelper is the flooding process of TestBinaryConnectionFlood, run
// as its child. It opens the connections, sends nothing on them, reports
// "holding N" on stdout, and holds them until its stdin closes or a
// minute has passed.
func TestFloodHelper(t *testing.T) {
	addr := os.Getenv(envFloodAddr)
	if addr == "" {
		t.Skip("only run as TestBinaryConnectionFlood's child process")
	}
	n, err := strconv.Atoi(os.Getenv(envFloodCount))
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	var wg sync.WaitGroup
	deadline := time.Now().Add(30 * time.Second)
	for range 64 {
		wg.Go(func() {
			for range work {
				if time.Now().After(deadline) {
					return
				}
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	fmt.Printf("holding %d\n", len(conns))
	done := make(chan struct{})
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
	}
}

// getToken asks for a token on a connection of its own.
func getToken(addr, header string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+names.PathAppService+"?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net", nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set(names.HeaderIdentity, header)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	body := b.String()
	if resp.StatusCode == http.StatusOK {
		body = "(a token)"
	}
	return resp.StatusCode, body, nil
}

// readVMRSS is a process's resident memory, from /proc/<pid>/status.
func readVMRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	rss, err := readVMRSS(pid)
	require.NoError(t, err)
	return rss
}
