// Package nodeenv brings up the whole real one-node cluster that the e2e
// suite e2e/node and `make demo` run the seed on. It is the top of the
// stacked e2e environments: the control plane of package controlplane, the
// manifests and the fake Entra ID of package webhookenv on it, a registry
// with the images built here, a DNS server and Azurite for the seed's
// storage host, containerd, runc, a kubelet and kube-scheduler from package
// nodeparts, and the webhook as manifests/' two-replica Deployment. It is
// one piece of code for both, so the demo shows exactly what the suite tests.
//
// Start runs only inside the namespaces of nodeparts.Reexec; the tools it
// needs come from the tools cache (EnsureTools builds the missing ones, before
// Reexec, since the namespace has no network).
//
// It is test and demo infrastructure; nothing in cmd/ or internal/ imports it.
package nodeenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"k8s.io/client-go/kubernetes"

	"github.com/podidentity/injector/e2e/framework/controlplane"
	"github.com/podidentity/injector/e2e/framework/nodeparts"
	"github.com/podidentity/injector/e2e/framework/webhookenv"
)

// The images the webhook injects and runs as, as manifests/ and the
// webhook's --sidecar-image name them; the registry serves both.
const (
	SidecarImage = "ghcr.io/podidentity/pod-identity-sidecar:v0.1.0"
	WebhookImage = "ghcr.io/podidentity/pod-identity-webhook:v0.1.0"
)

// The blob the seed's data-init copies from Azurite: container "data",
// blob "hello.txt", as the seed's storage URL names them.
const (
	SeedContainer = "data"
	SeedBlobName  = "hello.txt"
	SeedBlob      = "hello from the blob emulator\n"
)

// startTimeout bounds Start: generous for a busy 2-core machine, but a hang
// still ends with a message.
const startTimeout = 5 * time.Minute

// Options configure Start.
type Options struct {
	// RepoRoot is the repository, for manifests/, certs/ and cmd/.
	RepoRoot string
	// Log receives one line per step; nil discards them.
	Log io.Writer
}

// Env is the running cluster. Stop it when done; Stop also undoes a Start
// that failed half-way.
type Env struct {
	// Local is the control plane with manifests/ applied and the fake
	// Entra ID.
	Local *webhookenv.Env
	// Registry serves the images; containerd mirrors docker.io, ghcr.io
	// and registry.k8s.io to it.
	Registry *nodeparts.Registry
	// Node is containerd, runc, the kubelet and kube-scheduler.
	Node *nodeparts.Node
	// Azurite serves nodeparts.StorageHost, which DNS answers.
	Azurite *nodeparts.Azurite
	DNS     *nodeparts.DNS
	// Clientset is an admin client.
	Clientset kubernetes.Interface

	opts   Options
	binDir string
}

// Start brings the cluster up and returns once the webhook Deployment
// injects pods. It sets up the namespaces nodeparts.Reexec made, so call it once
// per process, from the re-executed child.
func Start(ctx context.Context, opts Options) (*Env, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	e := &Env{opts: opts}
	if err := e.start(ctx); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

func (e *Env) logf(format string, args ...any) {
	fmt.Fprintf(e.opts.Log, ">> "+format+"\n", args...)
}

func (e *Env) start(ctx context.Context) error {
	if err := nodeparts.SetupNamespace(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	begin := time.Now()
	bins, err := controlplane.FindBinaries()
	if err != nil {
		return err
	}
	if e.binDir, err = os.MkdirTemp("", "pod-identity-node-bin-"); err != nil {
		return err
	}
	for name, pkg := range map[string]string{"pod-identity-webhook": "./cmd/webhook"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(e.binDir, name), pkg)
		cmd.Dir, cmd.Env = e.opts.RepoRoot, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w\n%s", pkg, err, out)
		}
	}
	if e.Registry, err = nodeparts.StartRegistry(); err != nil {
		return err
	}
	e.Local, err = webhookenv.Start(ctx, webhookenv.Options{
		RepoRoot:      e.opts.RepoRoot,
		WebhookBinary: filepath.Join(e.binDir, "pod-identity-webhook"),
		Log:           e.opts.Log,
		// The apiserver authenticates to the webhook with a client
		// certificate, and the Deployment accepts no other caller
		// (--client-ca-file): docs/security.md's hardened setup.
		Cluster:          controlplane.Options{NodeAddress: nodeparts.Address, WebhookClientAuth: true},
		AADListenAddress: nodeparts.Address,
		SidecarImage:     SidecarImage,
	})
	if err != nil {
		return err
	}
	e.logf("building the images (pause, sidecar, azcopy and nginx stand-ins) and pushing them to the registry at %s", e.Registry.Host)
	if err := e.Registry.PushPause(ctx, e.opts.RepoRoot); err != nil {
		return err
	}
	if err := e.Registry.PushSeedImages(ctx, nodeparts.SeedImages{
		RepoRoot: e.opts.RepoRoot, SidecarRef: SidecarImage, CAPEM: e.Local.AAD.CAPEM(), Azcopy: bins.Azcopy, Busybox: "/bin/busybox",
	}); err != nil {
		return err
	}
	e.logf("images pushed to %s after %s", e.Registry.Host, time.Since(begin).Round(time.Millisecond))
	if e.DNS, err = nodeparts.StartDNS(nodeparts.Address, map[string]string{nodeparts.StorageHost: nodeparts.Address}); err != nil {
		return err
	}
	certPEM, keyPEM, err := e.Local.AAD.ServingCertificatePEM(nodeparts.StorageHost)
	if err != nil {
		return err
	}
	if e.Azurite, err = nodeparts.StartAzurite(ctx, nodeparts.AzuriteOptions{
		Cluster: e.Local.Cluster, CertPEM: certPEM, KeyPEM: keyPEM,
		RootCAs: &tls.Config{RootCAs: e.Local.AAD.CertPool(), MinVersion: tls.VersionTLS12},
	}); err != nil {
		return err
	}
	if err := e.seedStorage(ctx); err != nil {
		return err
	}
	if e.Node, err = nodeparts.Start(ctx, nodeparts.Options{Cluster: e.Local.Cluster, RegistryHost: e.Registry.Host, Log: e.opts.Log}); err != nil {
		return err
	}
	if e.Clientset, err = kubernetes.NewForConfig(e.Local.Cluster.RESTConfig()); err != nil {
		return err
	}
	if err := e.deployWebhook(ctx); err != nil {
		return fmt.Errorf("run the webhook in the cluster: %w", err)
	}
	e.logf("webhook runs as a Deployment of 2 replicas after %s", time.Since(begin).Round(time.Millisecond))
	e.logf("real node ready in %s", time.Since(begin).Round(time.Millisecond))
	return nil
}

// Stop stops everything Start started, the node first.
func (e *Env) Stop() {
	if e.Node != nil {
		e.Node.Stop()
	}
	if e.Local != nil {
		e.Local.Stop()
	}
	if e.Registry != nil {
		e.Registry.Close()
	}
	if e.DNS != nil {
		e.DNS.Close()
	}
	if e.binDir != "" {
		os.RemoveAll(e.binDir)
	}
}

// LogTails is the last lines of the node's, the webhook's and Azurite's
// logs, for a failure report.
func (e *Env) LogTails(lines int) string {
	var s string
	if e.Node != nil {
		s += e.Node.LogTails(lines)
	}
	if e.Local != nil {
		s += fmt.Sprintf("---- webhook log (tail) ----\n%s\n", e.Local.WebhookLogTail(lines))
	}
	if e.Azurite != nil {
		s += fmt.Sprintf("---- azurite log (tail) ----\n%s\n", e.Azurite.LogTail(lines/2))
	}
	return s
}

// seedStorage writes the blob the seed copies, as an administrator would,
// with a storage token from the fake Entra ID for a client of its own.
func (e *Env) seedStorage(ctx context.Context) error {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	const admin = "00000000-0000-0000-0000-00000000adm1"
	e.Local.AAD.AddClientSecret(admin, hex.EncodeToString(secret))
	cred, err := azidentity.NewClientSecretCredential(webhookenv.TenantID, admin, hex.EncodeToString(secret), &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: e.Local.AAD.AuthorityHost()},
			Transport: e.Local.AAD.HTTPClient(),
		},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		return err
	}
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://storage.azure.com/.default"}})
	if err != nil {
		return fmt.Errorf("storage token for the seeding client: %w", err)
	}
	return e.Azurite.Put(ctx, tok.Token, SeedContainer, SeedBlobName, []byte(SeedBlob))
}

// EnsureTools finds every tool the cluster runs in the tools cache (the
// control plane, azcopy, the node's programs and Azurite) and builds the
// missing ones with hack/build-tools.sh, saying first what and how long.
// It runs outside the namespace of nodeparts.Reexec, which has no network for
// the Go module proxy or npm.
func EnsureTools(ctx context.Context, repoRoot string, out io.Writer) error {
	var missing []error
	if _, err := controlplane.FindBinaries(); err != nil {
		missing = append(missing, err)
	}
	if _, err := nodeparts.FindBinaries(); err != nil {
		missing = append(missing, err)
	}
	if _, err := nodeparts.AzuriteDir(); err != nil {
		missing = append(missing, err)
	}
	err := errors.Join(missing...)
	cache, _ := controlplane.CacheDir()
	if err == nil {
		fmt.Fprintf(out, ">> every tool is built already, in %s\n", cache)
		return nil
	}
	if !errors.Is(err, controlplane.ErrBinariesMissing) {
		return err
	}
	fmt.Fprintf(out, ">> some tools are not built yet:\n%v\n", err)
	fmt.Fprintf(out, ">> building them once into %s with hack/build-tools.sh (Azurite from npm).\n", cache)
	fmt.Fprintf(out, ">> A cold build of everything takes about 25-30 minutes on 2 cores; with a warm Go build cache, a few minutes.\n")
	fmt.Fprintf(out, ">> Later runs find them cached.\n")
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "hack", "build-tools.sh"))
	cmd.Stdout, cmd.Stderr = io.Discard, out
	// The script runs go build and npm children: end the whole group on
	// Ctrl-C.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("hack/build-tools.sh: %w (its output is above; rerun `make tools` to retry)", err)
	}
	return nil
}
