// Package nodeparts adds a real node to a control plane of package
// controlplane, on which it stacks, the way kind
// does but without Docker: containerd v2 with runc, a kubelet and
// kube-scheduler, all built from Go modules by hack/build-tools.sh, with
// pod networking from the CNI bridge, host-local and loopback plugins.
//
// Everything runs in a network and mount namespace that the suite makes for
// itself (Reexec, then SetupNamespace): the node's address is Address on
// that namespace's loopback, pods get addresses from PodCIDR on a bridge
// inside it, and images come from a registry on 127.0.0.1 inside it, which
// containerd mirrors docker.io, ghcr.io and registry.k8s.io to. No packet
// leaves the namespace.
//
// The settings are those this machine kind needs (cgroup v1 only, no
// CAP_SYS_RESOURCE): the kubelet's failCgroupV1: false and cgroupDriver:
// cgroupfs with eviction thresholds at 0 %, and containerd's CRI
// restrict_oom_score_adj, without which runc cannot lower the sandbox's
// oom_score_adj and fails.
//
// It is the node's parts, not a whole environment: package nodeenv puts
// them together with webhookenv. It is test and demo infrastructure; nothing
// in cmd/ or internal/ imports it.
package nodeparts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podidentity/injector/e2e/framework/controlplane"
)

// The node's network. Address is on the loopback of the suite's network
// namespace; the bridge gateway is the first address of PodCIDR.
const (
	Address     = "10.89.0.1"
	PodCIDR     = "10.88.0.0/16"
	Name        = "pod-identity-node"
	Bridge      = "cni0"
	kubeletPort = 10250
)

// PauseImage is the sandbox image containerd pins; PushPause puts it in the
// registry.
const PauseImage = "registry.k8s.io/pause:3.10"

// Binaries are the programs the node runs, from the tools cache.
type Binaries struct {
	Kubelet, KubeScheduler, Containerd, ContainerdShim, Runc string
}

// FindBinaries locates the node's programs in the tools cache, naming every
// one that is missing and how to build it.
func FindBinaries() (Binaries, error) {
	cache, err := controlplane.CacheDir()
	if err != nil {
		return Binaries{}, err
	}
	kube := filepath.Join(cache, "k8s-"+controlplane.KubeVersion)
	ctrd := filepath.Join(cache, "containerd-"+controlplane.ContainerdVersion)
	b := Binaries{
		Kubelet:        filepath.Join(kube, "kubelet"),
		KubeScheduler:  filepath.Join(kube, "kube-scheduler"),
		Containerd:     filepath.Join(ctrd, "containerd"),
		ContainerdShim: filepath.Join(ctrd, "containerd-shim-runc-v2"),
		Runc:           filepath.Join(cache, "runc-"+controlplane.RuncVersion, "runc"),
	}
	var missing []string
	for _, p := range []string{b.Kubelet, b.KubeScheduler, b.Containerd, b.ContainerdShim, b.Runc} {
		if info, err := os.Stat(p); err != nil || info.Mode().Perm()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return Binaries{}, fmt.Errorf("%w: %s; run `hack/build-tools.sh kube-scheduler kubelet containerd runc`",
			controlplane.ErrBinariesMissing, strings.Join(missing, ", "))
	}
	return b, nil
}

// Options configure Start.
type Options struct {
	// Cluster is the control plane, started with NodeAddress: Address.
	Cluster *controlplane.Cluster
	// Binaries; zero means FindBinaries.
	Binaries Binaries
	// RegistryHost is host:port of the registry that docker.io, ghcr.io and
	// registry.k8s.io are mirrored to (see Registry).
	RegistryHost string
	// Nameserver is written into the pods' resolv.conf (the kubelet's
	// resolvConf); empty means Address.
	Nameserver string
	// Log receives one line per step; nil discards them.
	Log io.Writer
}

// Node is a running node. Stop it (or the cluster) when done.
type Node struct {
	opts       Options
	dir        string
	cgroupRoot string
	containerd *controlplane.Component
	kubelet    *controlplane.Component
	scheduler  *controlplane.Component
	client     kubernetes.Interface
}

// Start starts containerd, the kubelet and kube-scheduler, and returns once
// the node is Ready. It must run in the namespaces Reexec made.
func Start(ctx context.Context, opts Options) (_ *Node, err error) {
	if !InNamespace() {
		return nil, errors.New("nodeparts.Start runs only inside the suite's own namespaces: call nodeparts.Reexec and nodeparts.SetupNamespace from TestMain")
	}
	if opts.Cluster == nil || opts.RegistryHost == "" {
		return nil, errors.New("nodeparts.Options: Cluster and RegistryHost are required")
	}
	if opts.Binaries == (Binaries{}) {
		if opts.Binaries, err = FindBinaries(); err != nil {
			return nil, err
		}
	}
	if opts.Nameserver == "" {
		opts.Nameserver = Address
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	n := &Node{opts: opts, dir: filepath.Join(opts.Cluster.WorkDir(), "node")}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	if n.client, err = kubernetes.NewForConfig(opts.Cluster.RESTConfig()); err != nil {
		return nil, err
	}
	begin := time.Now()
	if err := n.makeCgroupRoot(); err != nil {
		return nil, err
	}
	if err := n.writeFiles(); err != nil {
		return nil, err
	}
	if err := n.startContainerd(ctx); err != nil {
		return nil, err
	}
	n.logf("containerd ready after %s", since(begin))
	if err := n.startScheduler(ctx); err != nil {
		return nil, err
	}
	if err := n.startKubelet(ctx); err != nil {
		return nil, err
	}
	n.logf("node %s Ready after %s", Name, since(begin))
	return n, nil
}

func (n *Node) logf(format string, args ...any) {
	fmt.Fprintf(n.opts.Log, "node: "+format+"\n", args...)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

func (n *Node) path(parts ...string) string {
	return filepath.Join(append([]string{n.dir}, parts...)...)
}

// writeFiles writes containerd's config, the registry mirrors, the CNI
// network, the kubelet's config and the pods' resolv.conf.
func (n *Node) writeFiles() error {
	files := map[string]string{
		"containerd.toml":        n.containerdConfig(),
		"cni/10-bridge.conflist": n.cniConfig(),
		"kubelet.yaml":           n.kubeletConfig(),
		"resolv.conf":            "nameserver " + n.opts.Nameserver + "\noptions ndots:1\n",
	}
	for _, host := range []string{"docker.io", "ghcr.io", "registry.k8s.io"} {
		// server is the local registry too, so that containerd never falls
		// back to the real host.
		files["certs.d/"+host+"/hosts.toml"] = fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n",
			"http://"+n.opts.RegistryHost, "http://"+n.opts.RegistryHost)
	}
	for name, data := range files {
		p := n.path(name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) containerdConfig() string {
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  # runc cannot lower oom_score_adj without CAP_SYS_RESOURCE.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = %[5]q
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = %[6]q

[plugins."io.containerd.cri.v1.images"]
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %[7]q
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = %[8]q
`, n.path("containerd", "root"), n.path("containerd", "state"), n.socket(), n.path("containerd", "ttrpc.sock"),
		n.opts.Binaries.Runc, n.path("cni"), PauseImage, n.path("certs.d"))
}

func (n *Node) socket() string { return n.path("containerd", "containerd.sock") }

func (n *Node) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "pod-identity-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    }
  ]
}
`, Bridge, PodCIDR, n.path("cni-ipam"))
}

func (n *Node) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine kind has cgroup v1 only; kubelet v1.35+ refuses it otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]q
containerRuntimeEndpoint: unix://%[2]s
address: %[3]s
port: %[4]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %[5]q
authorization:
  mode: AlwaysAllow
# A small test disk must not make the node evict or refuse pods.
evictionHard:
  memory.available: "0%%"
  nodefs.available: "0%%"
  nodefs.inodesFree: "0%%"
  imagefs.available: "0%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
failSwapOn: false
resolvConf: %[6]q
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 5s
nodeStatusUpdateFrequency: 5s
`, n.cgroupRoot, n.socket(), Address, kubeletPort, n.opts.Cluster.CACertPath(), n.path("resolv.conf"))
}

func (n *Node) startContainerd(ctx context.Context) error {
	path := filepath.Dir(n.opts.Binaries.ContainerdShim) + ":" + filepath.Dir(n.opts.Binaries.Runc) + ":" + os.Getenv("PATH")
	c, err := n.opts.Cluster.Run("containerd", n.opts.Binaries.Containerd, []string{"PATH=" + path},
		"--config="+n.path("containerd.toml"))
	if err != nil {
		return err
	}
	n.containerd = c
	return c.WaitReady(ctx, time.Minute, func(context.Context) error {
		_, err := os.Stat(n.socket())
		return err
	})
}

func (n *Node) startScheduler(ctx context.Context) error {
	c, err := n.opts.Cluster.Run("kube-scheduler", n.opts.Binaries.KubeScheduler, nil,
		"--kubeconfig="+n.opts.Cluster.KubeconfigPath(),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
	)
	if err != nil {
		return err
	}
	n.scheduler = c
	return nil
}

func (n *Node) startKubelet(ctx context.Context) error {
	kubeconfig, err := n.opts.Cluster.NodeKubeconfig(Name, "https://"+Address+":"+port(n.opts.Cluster.Host()))
	if err != nil {
		return err
	}
	c, err := n.opts.Cluster.Run("kubelet", n.opts.Binaries.Kubelet, nil,
		"--config="+n.path("kubelet.yaml"),
		"--kubeconfig="+kubeconfig,
		"--root-dir="+n.path("kubelet"),
		"--hostname-override="+Name,
		"--node-ip="+Address,
		"--v=1",
	)
	if err != nil {
		return err
	}
	n.kubelet = c
	return c.WaitReady(ctx, 2*time.Minute, func(ctx context.Context) error {
		node, err := n.client.CoreV1().Nodes().Get(ctx, Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s not Ready: %s", Name, cond.Message)
			}
		}
		return fmt.Errorf("node %s has no Ready condition yet", Name)
	})
}

func port(hostURL string) string {
	i := strings.LastIndex(hostURL, ":")
	return hostURL[i+1:]
}

// StatsSummary returns the kubelet's /stats/summary through the apiserver's
// node proxy.
func (n *Node) StatsSummary(ctx context.Context) ([]byte, error) {
	return n.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", Name, "proxy", "stats", "summary").DoRaw(ctx)
}

// LogTails returns the last lines of the kubelet's, containerd's and the
// scheduler's logs.
func (n *Node) LogTails(lines int) string {
	var b strings.Builder
	for _, c := range []*controlplane.Component{n.kubelet, n.containerd, n.scheduler} {
		if c != nil {
			fmt.Fprintf(&b, "--- last %d lines of %s ---\n%s\n", lines, c.LogPath(), c.LogTail(lines))
		}
	}
	return b.String()
}

// Stop ends the kubelet, the scheduler and containerd, then every process
// left in the node's cgroups (pod containers and runc shims), and unmounts
// what the kubelet and containerd mounted under the node's directory.
func (n *Node) Stop() {
	for _, c := range []*controlplane.Component{n.kubelet, n.scheduler, n.containerd} {
		if c != nil {
			_ = c.Stop(5 * time.Second)
		}
	}
	if n.cgroupRoot != "" {
		killCgroup(n.cgroupRoot)
	}
	unmountUnder(n.dir)
}
