package nodeparts

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const cgroupFS = "/sys/fs/cgroup"

// makeCgroupRoot makes the kubelet's cgroupRoot in every cgroup v1
// hierarchy: a child of this process's own memory cgroup, so that pods stay
// inside whatever memory limit the suite itself runs under, and a name of
// its own, so that Stop finds every pod process by it.
func (n *Node) makeCgroupRoot() error {
	base := "/"
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && parts[1] == "memory" {
			base = parts[2]
		}
	}
	n.cgroupRoot = filepath.Join(base, fmt.Sprintf("pod-identity-node-%d", os.Getpid()))
	hierarchies, err := cgroupHierarchies(false)
	if err != nil {
		return err
	}
	for _, h := range hierarchies {
		dir := filepath.Join(h, n.cgroupRoot)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("make the kubelet's cgroup root %s: %w", dir, err)
		}
		if filepath.Base(h) == "cpuset" {
			// A new cpuset is empty until it copies its parent's CPUs and memory nodes.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				for d := dir; d != h; d = filepath.Dir(d) {
					if err := copyFromParent(d, f); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// copyFromParent sets file f of cgroup dir to its parent's value, parents
// first, where it is still empty.
func copyFromParent(dir, f string) error {
	cur, _ := os.ReadFile(filepath.Join(dir, f))
	if strings.TrimSpace(string(cur)) != "" {
		return nil
	}
	parent := filepath.Dir(dir)
	if err := copyFromParent(parent, f); err != nil && parent != cgroupFS {
		return err
	}
	v, err := os.ReadFile(filepath.Join(parent, f))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, f), v, 0o644)
}

// cgroupHierarchies lists the mounted cgroup v1 hierarchies, and the
// hybrid mode's unified one when withUnified (runc makes cgroups there too).
func cgroupHierarchies(withUnified bool) ([]string, error) {
	entries, err := os.ReadDir(cgroupFS)
	if err != nil {
		return nil, fmt.Errorf("the node needs cgroup v1 at %s: %w", cgroupFS, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && (withUnified || e.Name() != "unified") {
			out = append(out, filepath.Join(cgroupFS, e.Name()))
		}
	}
	return out, nil
}

// killCgroup SIGKILLs every process in the cgroup tree root (pod
// containers), and every process left in this network namespace except
// this one (runc shims, which containerd starts in their own sessions),
// then removes the cgroups, deepest first.
func killCgroup(root string) {
	hierarchies, _ := cgroupHierarchies(true)
	self := os.Getpid()
	myNS, _ := os.Readlink("/proc/self/ns/net")
	for range 3 {
		for _, h := range hierarchies {
			_ = filepath.WalkDir(filepath.Join(h, root), func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
					return nil
				}
				for _, pid := range readPids(p) {
					if pid != self {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				return nil
			})
		}
		procs, _ := os.ReadDir("/proc")
		for _, e := range procs {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self {
				continue
			}
			if ns, err := os.Readlink("/proc/" + e.Name() + "/ns/net"); err == nil && ns == myNS && isShim(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, h := range hierarchies {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(h, root), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			_ = syscall.Rmdir(d)
		}
	}
}

// isShim reports whether pid runs containerd's runc shim.
func isShim(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && filepath.Base(exe) == "containerd-shim-runc-v2"
}

func readPids(path string) []int {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var pids []int
	s := bufio.NewScanner(f)
	for s.Scan() {
		if pid, err := strconv.Atoi(strings.TrimSpace(s.Text())); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unmountUnder lazily unmounts every mount point below dir, deepest first:
// pod volumes, container root filesystems and network namespace files.
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}
