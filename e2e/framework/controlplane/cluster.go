// Package controlplane runs a real Kubernetes control plane on 127.0.0.1 for
// the e2e suites and `make demo`: etcd, kube-apiserver and
// kube-controller-manager, as built by hack/build-tools.sh, each a child
// process with its own log file in a temporary work directory.
//
// It is the bottom of the e2e environments and stacks on nothing:
// webhookenv adds the webhook and the fake Entra ID on top of it, nodeparts
// adds a real node to it, and nodeenv stacks both. It is test and demo
// infrastructure, not part of the webhook or the sidecar.
// The cluster has no nodes, kubelet or scheduler: pods are admitted (so the
// webhook mutates them), and Deployments become ReplicaSets and Pods, but no
// pod ever runs. Its service-account issuer is the apiserver itself, which
// serves /.well-known/openid-configuration and /openid/v1/jwks to anonymous
// clients, as a cloud issuer would; Start adds the ClusterRoleBinding that
// allows this.
package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Defaults for Options.
const (
	DefaultServiceClusterIPRange = "10.0.0.0/24"
	DefaultReadyTimeout          = 2 * time.Minute
	DefaultStopGracePeriod       = 10 * time.Second
)

// serviceAccountTokenTTL is how long tokens from ServiceAccountKubeconfig
// last: longer than any e2e run or demo, so that nothing needs to refresh.
const serviceAccountTokenTTL = 24 * time.Hour

// Options configure Start. The zero value is usable once the tools are built.
type Options struct {
	// Binaries to run. If all paths are empty, FindBinaries supplies them.
	Binaries Binaries
	// WorkDir is the directory in which Start creates the cluster's own
	// temporary directory (certificates, etcd data, kubeconfigs, logs).
	// Empty means os.TempDir().
	WorkDir string
	// KeepWorkDir leaves the cluster's directory in place after Stop, for
	// reading the component logs.
	KeepWorkDir bool
	// Log receives one line per start-up step, with how long it took. Nil
	// discards them. Component output goes to files, never here.
	Log io.Writer
	// ServiceClusterIPRange is the apiserver's --service-cluster-ip-range.
	ServiceClusterIPRange string
	// ExtraAPIServerFlags are appended to kube-apiserver's command line, so
	// they override the defaults (for example --feature-gates=...).
	ExtraAPIServerFlags []string
	// NodeAddress, when set, prepares the control plane for a real node
	// (package nodeparts): the apiserver listens on every address of its network
	// namespace, advertises NodeAddress (which its serving certificate then
	// names), reaches kubelets by their InternalIP with the admin client
	// certificate, and calls webhook Services through their endpoints
	// (--enable-aggregator-routing), since no kube-proxy runs. Set it only
	// inside a network namespace of the caller's own, where NodeAddress is
	// an address on its loopback: every address there is private.
	NodeAddress string
	// WebhookClientAuth makes the apiserver present a client certificate to
	// every admission webhook (an AdmissionConfiguration whose
	// kubeConfigFile holds it), from a CA of its own: WebhookClientCA.
	WebhookClientAuth bool
	// ReadyTimeout bounds the wait for each component to become ready.
	ReadyTimeout time.Duration
	// StopGracePeriod is how long Stop waits after SIGTERM before SIGKILL.
	StopGracePeriod time.Duration
}

func (o *Options) setDefaults() error {
	if o.Binaries == (Binaries{}) {
		b, err := FindBinaries()
		if err != nil {
			return err
		}
		o.Binaries = b
	} else if err := o.Binaries.check(false); err != nil {
		return fmt.Errorf("Options.Binaries: %w", err)
	}
	if o.WorkDir == "" {
		o.WorkDir = os.TempDir()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.ServiceClusterIPRange == "" {
		o.ServiceClusterIPRange = DefaultServiceClusterIPRange
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.StopGracePeriod <= 0 {
		o.StopGracePeriod = DefaultStopGracePeriod
	}
	return nil
}

// Cluster is a running control plane. Its methods are safe for concurrent
// use; call Stop when done with it.
type Cluster struct {
	opts    Options
	workDir string
	pki     *pki

	host       string // https://127.0.0.1:<port>
	issuer     string
	kubeconfig string
	restConfig *rest.Config
	client     kubernetes.Interface

	webhookClient *webhookClient // with Options.WebhookClientAuth

	mu    sync.Mutex
	procs []*process // in start order; Stop ends them in reverse

	stopOnce sync.Once
	stopErr  error
}

// Start brings up etcd, kube-apiserver and kube-controller-manager and
// returns once the apiserver is ready and the controller manager has created
// the default ServiceAccount. ctx bounds only the start: the processes run
// until Stop. On error Start has already stopped whatever it started and
// removed its directory (unless Options.KeepWorkDir); a component that failed
// is reported as a *StartError carrying the tail of its log.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	_, serviceNet, err := net.ParseCIDR(opts.ServiceClusterIPRange)
	if err != nil {
		return nil, fmt.Errorf("Options.ServiceClusterIPRange %q is not a CIDR: %w", opts.ServiceClusterIPRange, err)
	}
	workDir, err := os.MkdirTemp(opts.WorkDir, "testcluster-")
	if err != nil {
		return nil, fmt.Errorf("create work directory in Options.WorkDir %q: %w", opts.WorkDir, err)
	}
	c := &Cluster{opts: opts, workDir: workDir}
	defer func() {
		if err != nil {
			if stopErr := c.Stop(); stopErr != nil {
				err = errors.Join(err, stopErr)
			}
		}
	}()

	begin := time.Now()
	c.logf("work directory %s", workDir)
	for _, d := range []string{"logs", "etcd", "kubectl-cache"} {
		if err := os.Mkdir(filepath.Join(workDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	var extraIPs []net.IP
	if opts.NodeAddress != "" {
		ip := net.ParseIP(opts.NodeAddress)
		if ip == nil {
			return nil, fmt.Errorf("Options.NodeAddress %q is not an IP address", opts.NodeAddress)
		}
		extraIPs = append(extraIPs, ip)
	}
	if c.pki, err = newPKI(filepath.Join(workDir, "pki"), firstIP(serviceNet), extraIPs...); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	c.host = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.issuer = c.host
	c.logf("certificates and ports ready after %s", since(begin))

	if err := c.startEtcd(ctx, etcdClient, etcdPeer); err != nil {
		return nil, err
	}
	c.logf("etcd ready after %s", since(begin))
	if err := c.startAPIServer(ctx, apiPort, etcdClient); err != nil {
		return nil, err
	}
	c.logf("kube-apiserver ready at %s after %s", c.host, since(begin))
	if err := c.writeAdminKubeconfig(); err != nil {
		return nil, err
	}
	if err := c.startControllerManager(ctx); err != nil {
		return nil, err
	}
	c.logf("kube-controller-manager ready (default ServiceAccount exists) after %s", since(begin))
	return c, nil
}

func (c *Cluster) startEtcd(ctx context.Context, clientPort, peerPort int) error {
	clientURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	p, err := c.run("etcd", c.opts.Binaries.Etcd, nil,
		"--name=testcluster",
		"--data-dir="+filepath.Join(c.workDir, "etcd"),
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=testcluster="+peerURL,
		"--initial-cluster-state=new",
		// The data dies with the work directory, so durability buys nothing.
		"--unsafe-no-fsync",
		"--quota-backend-bytes="+strconv.Itoa(2<<30),
	)
	if err != nil {
		return err
	}
	httpClient := &http.Client{Transport: &http.Transport{Proxy: nil}}
	return p.waitReady(ctx, c.opts.ReadyTimeout, func(ctx context.Context) error {
		return expectOK(ctx, httpClient, clientURL+"/health")
	})
}

func (c *Cluster) startAPIServer(ctx context.Context, port, etcdPort int) error {
	args := []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(c.workDir, "pki"),
		"--tls-cert-file=" + c.pki.serverCert,
		"--tls-private-key-file=" + c.pki.serverKey,
		"--client-ca-file=" + c.pki.caCert,
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(etcdPort),
		"--authorization-mode=Node,RBAC",
		// Anonymous requests stay on so that the issuer discovery documents
		// can be read without credentials (see allowAnonymousIssuerDiscovery).
		"--anonymous-auth=true",
		"--service-account-issuer=" + c.issuer,
		"--service-account-key-file=" + c.pki.saPub,
		"--service-account-signing-key-file=" + c.pki.saKey,
		"--api-audiences=" + c.issuer,
		"--service-cluster-ip-range=" + c.opts.ServiceClusterIPRange,
		// There are no other apiservers and no network to advertise on.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	}
	if addr := c.opts.NodeAddress; addr != "" {
		args = append(args,
			"--bind-address=0.0.0.0",
			"--advertise-address="+addr,
			"--kubelet-preferred-address-types=InternalIP",
			"--kubelet-client-certificate="+c.pki.adminCert,
			"--kubelet-client-key="+c.pki.adminKey,
			"--enable-aggregator-routing=true",
		)
	}
	if c.opts.WebhookClientAuth {
		flag, err := c.setupWebhookClient(filepath.Join(c.workDir, "pki"))
		if err != nil {
			return err
		}
		args = append(args, flag)
	}
	p, err := c.run("kube-apiserver", c.opts.Binaries.KubeAPIServer, nil, append(args, c.opts.ExtraAPIServerFlags...)...)
	if err != nil {
		return err
	}
	cfg := c.adminRESTConfig()
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("build admin HTTP client: %w", err)
	}
	if err := p.waitReady(ctx, c.opts.ReadyTimeout, func(ctx context.Context) error {
		return expectOK(ctx, httpClient, c.host+"/readyz")
	}); err != nil {
		return err
	}
	c.restConfig = cfg
	c.client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("build admin client: %w", err)
	}
	return c.allowAnonymousIssuerDiscovery(ctx, p)
}

// allowAnonymousIssuerDiscovery lets unauthenticated clients read the OIDC
// discovery document and JWKS, as a cloud issuer serves them publicly to
// Azure AD. The default binding of system:service-account-issuer-discovery
// covers only ServiceAccounts; the Kubernetes documentation suggests this
// extra binding for a public issuer. It returns once an anonymous GET of the
// JWKS succeeds, since RBAC sees new bindings through a cache.
func (c *Cluster) allowAnonymousIssuerDiscovery(ctx context.Context, apiserver *process) error {
	_, err := c.client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "testcluster:anonymous-service-account-issuer-discovery"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:service-account-issuer-discovery"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:unauthenticated"}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("bind ClusterRole system:service-account-issuer-discovery to system:unauthenticated: %w", err)
	}
	anon := c.AnonymousHTTPClient()
	return apiserver.waitReady(ctx, c.opts.ReadyTimeout, func(ctx context.Context) error {
		return expectOK(ctx, anon, c.issuer+"/openid/v1/jwks")
	})
}

func (c *Cluster) startControllerManager(ctx context.Context) error {
	p, err := c.run("kube-controller-manager", c.opts.Binaries.KubeControllerManager, nil,
		"--kubeconfig="+c.kubeconfig,
		"--controllers=*",
		"--service-account-private-key-file="+c.pki.saKey,
		"--root-ca-file="+c.pki.caCert,
		"--use-service-account-credentials=false",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		// Nothing probes it; the default ServiceAccount is the readiness signal.
		"--secure-port=0",
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	return p.waitReady(ctx, c.opts.ReadyTimeout, func(ctx context.Context) error {
		_, err := c.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// run starts a component and records it for Stop.
func (c *Cluster) run(name, bin string, extraEnv []string, args ...string) (*process, error) {
	env := []string{"HOME=" + c.workDir, "PATH=" + os.Getenv("PATH")}
	if tmp := os.Getenv("TMPDIR"); tmp != "" {
		env = append(env, "TMPDIR="+tmp)
	}
	env = append(env, extraEnv...)
	p, err := startProcess(name, bin, args, c.workDir, filepath.Join(c.workDir, "logs", name+".log"), env)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// Stop ends every process the cluster started, newest first (SIGTERM to its
// process group, SIGKILL after Options.StopGracePeriod), waits for them, and
// removes the work directory unless Options.KeepWorkDir. It is safe to call
// more than once; later calls return the first result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		procs := c.procs
		c.procs = nil
		c.mu.Unlock()
		var errs []error
		for i := len(procs) - 1; i >= 0; i-- {
			begin := time.Now()
			errs = append(errs, procs[i].stop(c.opts.StopGracePeriod))
			c.logf("%s stopped after %s", procs[i].name, since(begin))
		}
		if !c.opts.KeepWorkDir {
			if err := os.RemoveAll(c.workDir); err != nil {
				errs = append(errs, fmt.Errorf("remove work directory: %w", err))
			}
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// RESTConfig returns a fresh copy of the admin configuration (a client
// certificate in group system:masters).
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// KubeconfigPath is the admin kubeconfig file, for kubectl and other tools.
func (c *Cluster) KubeconfigPath() string { return c.kubeconfig }

// Host is the apiserver's URL, https://127.0.0.1:<port>.
func (c *Cluster) Host() string { return c.host }

// Issuer is the service-account token issuer (the "iss" claim). It is the
// apiserver's URL, so Issuer()+"/.well-known/openid-configuration" and
// Issuer()+"/openid/v1/jwks" are served, to anonymous clients too (Start
// binds system:unauthenticated to system:service-account-issuer-discovery).
func (c *Cluster) Issuer() string { return c.issuer }

// CACertPEM is the CA that signed the apiserver's serving certificate.
func (c *Cluster) CACertPEM() []byte { return bytes.Clone(c.pki.caCertPEM) }

// WorkDir is the cluster's directory: pki/, etcd/, logs/<component>.log and
// the kubeconfig files.
func (c *Cluster) WorkDir() string { return c.workDir }

// WriteLogTails writes the last lines of each component's log to w, for a
// failing test to show what the control plane saw.
func (c *Cluster) WriteLogTails(w io.Writer, lines int) {
	c.mu.Lock()
	procs := append([]*process(nil), c.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		fmt.Fprintf(w, "--- last %d lines of %s ---\n%s\n", lines, p.logPath, tailFile(p.logPath, lines))
	}
}

// ServiceAccountKubeconfig requests a token for the ServiceAccount
// namespace/name through the TokenRequest API, with the apiserver as its
// audience, and writes a kubeconfig that authenticates with it. A client
// using it has exactly the RBAC permissions of that ServiceAccount, which
// must already exist. The token lasts 24 hours.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, namespace, name string) (string, *rest.Config, error) {
	ttl := int64(serviceAccountTokenTTL.Seconds())
	tr, err := c.client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl},
	}, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil, fmt.Errorf("request token for ServiceAccount %s/%s: it does not exist; create it first: %w", namespace, name, err)
	}
	if err != nil {
		return "", nil, fmt.Errorf("request token for ServiceAccount %s/%s: %w", namespace, name, err)
	}
	cfg := &rest.Config{
		Host:            c.host,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CACertPEM()},
	}
	path := filepath.Join(c.workDir, "kubeconfig-sa-"+namespace+"-"+name)
	user := "system:serviceaccount:" + namespace + ":" + name
	if err := writeKubeconfig(path, c.host, c.pki.caCertPEM, user, &clientcmdapi.AuthInfo{Token: tr.Status.Token}); err != nil {
		return "", nil, err
	}
	return path, cfg, nil
}

// NodeKubeconfig writes a kubeconfig for the kubelet of node name: a client
// certificate for system:node:<name> in group system:nodes, so that the
// Node authorizer and NodeRestriction treat it as that node. server is the
// apiserver URL the kubelet dials; empty means Host().
func (c *Cluster) NodeKubeconfig(name, server string) (string, error) {
	if server == "" {
		server = c.host
	}
	user := "system:node:" + name
	certPEM, keyPEM, err := c.pki.clientCertificate(user, "system:nodes")
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.workDir, "kubeconfig-node-"+name)
	if err := writeKubeconfig(path, server, c.pki.caCertPEM, user, &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}); err != nil {
		return "", err
	}
	return path, nil
}

// CACertPath is the file of CACertPEM, for components that read a path.
func (c *Cluster) CACertPath() string { return c.pki.caCert }

// Kubectl runs kubectl with the admin kubeconfig and returns its stdout. On
// failure the error carries kubectl's stderr. A later --kubeconfig in args
// wins, so a path from ServiceAccountKubeconfig runs it as that account.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"--kubeconfig=" + c.kubeconfig, "--cache-dir=" + filepath.Join(c.workDir, "kubectl-cache")}, args...)
	cmd := exec.CommandContext(ctx, c.opts.Binaries.Kubectl, full...)
	cmd.Env = []string{"HOME=" + c.workDir, "PATH=" + os.Getenv("PATH"), "KUBECONFIG=" + c.kubeconfig}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func (c *Cluster) adminRESTConfig() *rest.Config {
	return &rest.Config{
		Host: c.host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.pki.caCertPEM,
			CertData: c.pki.adminCertPEM,
			KeyData:  c.pki.adminKeyPEM,
		},
		QPS:   100,
		Burst: 200,
	}
}

func (c *Cluster) writeAdminKubeconfig() error {
	c.kubeconfig = filepath.Join(c.workDir, "kubeconfig")
	return writeKubeconfig(c.kubeconfig, c.host, c.pki.caCertPEM, "admin", &clientcmdapi.AuthInfo{
		ClientCertificateData: c.pki.adminCertPEM,
		ClientKeyData:         c.pki.adminKeyPEM,
	})
}

// writeKubeconfig writes a kubeconfig with one cluster, user and context,
// all credentials inline, readable only by the owner.
func writeKubeconfig(path, host string, caPEM []byte, user string, auth *clientcmdapi.AuthInfo) error {
	const name = "testcluster"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = auth
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user, Namespace: metav1.NamespaceDefault}
	cfg.CurrentContext = name
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.opts.Log, "testcluster: "+format+"\n", args...)
}

// expectOK GETs url and wants 200.
func expectOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment
// ago. All listeners stay open until all are chosen, so the ports differ.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// firstIP is the network address plus one: the apiserver's service IP.
func firstIP(n *net.IPNet) net.IP {
	ip := make(net.IP, len(n.IP))
	copy(ip, n.IP)
	for i := len(ip) - 1; i >= 0; i-- {
		ip[i]++
		if ip[i] != 0 {
			break
		}
	}
	return ip
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// AnonymousHTTPClient returns an HTTP client that trusts only the cluster's
// CA and presents no credentials: what a cloud token exchange uses to fetch
// Issuer()+"/openid/v1/jwks".
func (c *Cluster) AnonymousHTTPClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.pki.caCertPEM)
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:           nil,
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		},
	}
}
