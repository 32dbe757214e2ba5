package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The CPU time of the processes a phase keeps busy is a measure that the
// machine's other load does not distort much, unlike pods/s: on a shared
// two-core machine the wall clock counts other programs' time too.

// clockTick is Linux's USER_HZ, the unit of /proc/<pid>/stat's times. It
// is 100 on every architecture Go supports on Linux.
const clockTick = 10 * time.Millisecond

// procStat is what benche2e reads from /proc/<pid>/stat.
type procStat struct {
	Comm string
	PPID int
	// CPU is user plus system time.
	CPU time.Duration
}

// parseStat reads a /proc/<pid>/stat line. The command name is in
// parentheses and may itself hold spaces or parentheses, so the fields
// are counted from the last ')'.
func parseStat(line string) (procStat, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("stat line %q: no (comm)", line)
	}
	f := strings.Fields(line[end+1:])
	// After comm: state(3) ppid(4) ... utime(14) stime(15).
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("stat line %q: %d fields after comm, want at least 13", line, len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	utime, err2 := strconv.ParseUint(f[11], 10, 64)
	stime, err3 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("stat line %q: %w", line, err)
	}
	return procStat{Comm: line[open+1 : end], PPID: ppid, CPU: time.Duration(utime+stime) * clockTick}, nil
}

// Component names, as the kernel truncates them to 15 bytes. The
// scheduler runs only in node mode, where it sees the gated pods.
var components = []string{"kube-apiserver", "etcd", "pod-identity-we", "kube-controller", "kube-scheduler", "benche2e"}

// componentName shortens a comm to the name shown in the report.
func componentName(comm string) string {
	switch comm {
	case "pod-identity-we":
		return "webhook"
	case "kube-controller":
		return "kube-controller-manager"
	case "benche2e":
		return "client (benche2e)"
	}
	return comm
}

// CPUTimes is the CPU time of each component at one moment.
type CPUTimes map[string]time.Duration

// webhookComm is the webhook binary's name as the kernel truncates it.
const webhookComm = "pod-identity-we"

// cpuTimes reads the CPU time of this process and of its children that
// the environment started (etcd, kube-apiserver, kube-controller-manager,
// the webhook, the scheduler). Only this process's own children are read,
// and, in node mode, the webhook processes of the Deployment's containers
// (ids from the pods' status), which runc started: those are found by
// their cgroup, which names the container.
func cpuTimes(webhookContainers []string) (CPUTimes, error) {
	self := os.Getpid()
	out := CPUTimes{}
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return nil, fmt.Errorf("read /proc/self/stat: %w", err)
	}
	st, err := parseStat(string(data))
	if err != nil {
		return nil, err
	}
	out[componentName("benche2e")] = st.CPU
	paths, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // the process ended since the glob
		}
		st, err := parseStat(string(data))
		if err != nil {
			continue
		}
		if st.PPID != self {
			if st.Comm == webhookComm && len(webhookContainers) > 0 && inContainer(filepath.Join(filepath.Dir(p), "cgroup"), webhookContainers) {
				out[componentName(webhookComm)] += st.CPU
			}
			continue
		}
		for _, c := range components {
			if st.Comm == c {
				out[componentName(c)] += st.CPU
			}
		}
	}
	return out, nil
}

// Sub is the CPU time each component used since before.
func (t CPUTimes) Sub(before CPUTimes) CPUTimes {
	out := CPUTimes{}
	for k, v := range t {
		out[k] = v - before[k]
	}
	return out
}

// inContainer reports whether the /proc/<pid>/cgroup file at path names
// one of the container ids: with the kubelet's cgroupfs driver, a
// container's cgroup is .../pod<uid>/<container id>.
func inContainer(path string, ids []string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	return cgroupNames(string(data), ids)
}

// cgroupNames reports whether a /proc/<pid>/cgroup text has a cgroup
// whose last path element is one of ids.
func cgroupNames(text string, ids []string) bool {
	for _, line := range strings.Split(text, "\n") {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		last := filepath.Base(parts[2])
		for _, id := range ids {
			if id != "" && last == id {
				return true
			}
		}
	}
	return false
}
