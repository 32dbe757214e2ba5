//go:build e2e

// Package node_test runs the seed on a real node: the control plane of
// package testcluster with the project's manifests and webhook (package
// localenv), and containerd, runc, a kubelet and kube-scheduler from
// package node, with the images built here and served from a registry
// inside the suite's namespace. TestMain re-runs the test binary under
// `unshare --net --mount`, so that every server, the pod bridge and every
// mount live in namespaces of the suite's own. It needs root, as CI runs it.
package node_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podidentity/injector/e2e/framework/localenv"
	"github.com/podidentity/injector/e2e/framework/node"
	"github.com/podidentity/injector/e2e/framework/testcluster"
)

// sidecarImage is what the webhook injects; the registry serves it.
const sidecarImage = "ghcr.io/podidentity/pod-identity-sidecar:v0.1.0"

// seedBlob is what the seed's data-init copies from Azurite.
const seedBlob = "hello from the blob emulator\n"

var (
	repoRoot string
	env      *localenv.Env
	reg      *node.Registry
	theNode  *node.Node
	azurite  *node.Azurite
	dns      *node.DNS
	cs       kubernetes.Interface
)

func TestMain(m *testing.M) {
	if !node.InNamespace() {
		code, err := node.Reexec()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(code)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// Clients log through controller-runtime; keep only its warnings.
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(filepath.Dir(file)))
	if err := start(); err != nil {
		fmt.Fprintln(os.Stderr, "start the real node:", err)
		stop()
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprint(os.Stderr, theNode.LogTails(40))
		fmt.Fprintf(os.Stderr, "---- webhook log (tail) ----\n%s\n", env.WebhookLogTail(40))
		fmt.Fprintf(os.Stderr, "---- azurite log (tail) ----\n%s\n", azurite.LogTail(20))
	}
	stop()
	return code
}

var binDir string

func stop() {
	if theNode != nil {
		theNode.Stop()
	}
	if env != nil {
		env.Stop()
	}
	if reg != nil {
		reg.Close()
	}
	if dns != nil {
		dns.Close()
	}
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

func start() error {
	if err := node.SetupNamespace(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	begin := time.Now()
	bins, err := testcluster.FindBinaries()
	if err != nil {
		return err
	}
	if binDir, err = os.MkdirTemp("", "pod-identity-node-bin-"); err != nil {
		return err
	}
	for name, pkg := range map[string]string{"pod-identity-webhook": "./cmd/webhook", "pod-identity-sidecar": "./cmd/sidecar"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(binDir, name), pkg)
		cmd.Dir, cmd.Env = repoRoot, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w\n%s", pkg, err, out)
		}
	}
	if reg, err = node.StartRegistry(); err != nil {
		return err
	}
	env, err = localenv.Start(ctx, localenv.Options{
		RepoRoot:         repoRoot,
		WebhookBinary:    filepath.Join(binDir, "pod-identity-webhook"),
		SidecarBinary:    filepath.Join(binDir, "pod-identity-sidecar"),
		Log:              os.Stderr,
		Cluster:          testcluster.Options{NodeAddress: node.Address},
		AADListenAddress: node.Address,
		SidecarImage:     sidecarImage,
	})
	if err != nil {
		return err
	}
	if err := reg.PushPause(ctx, repoRoot); err != nil {
		return err
	}
	if err := reg.PushSeedImages(ctx, node.SeedImages{
		RepoRoot: repoRoot, SidecarRef: sidecarImage, CAPEM: env.AAD.CAPEM(), Azcopy: bins.Azcopy, Busybox: "/bin/busybox",
	}); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, ">> images pushed to %s after %s\n", reg.Host, time.Since(begin).Round(time.Millisecond))
	if dns, err = node.StartDNS(node.Address, map[string]string{node.StorageHost: node.Address}); err != nil {
		return err
	}
	certPEM, keyPEM, err := env.AAD.ServingCertificatePEM(node.StorageHost)
	if err != nil {
		return err
	}
	if azurite, err = node.StartAzurite(ctx, node.AzuriteOptions{
		Cluster: env.Cluster, CertPEM: certPEM, KeyPEM: keyPEM,
		RootCAs: &tls.Config{RootCAs: env.AAD.CertPool(), MinVersion: tls.VersionTLS12},
	}); err != nil {
		return err
	}
	if err := seedStorage(ctx); err != nil {
		return err
	}
	if theNode, err = node.Start(ctx, node.Options{Cluster: env.Cluster, RegistryHost: reg.Host, Log: os.Stderr}); err != nil {
		return err
	}
	if cs, err = kubernetes.NewForConfig(env.Cluster.RESTConfig()); err != nil {
		return err
	}
	if err := deployWebhook(ctx); err != nil {
		return fmt.Errorf("run the webhook in the cluster: %w", err)
	}
	fmt.Fprintf(os.Stderr, ">> webhook runs as a Deployment of 2 replicas after %s\n", time.Since(begin).Round(time.Millisecond))
	fmt.Fprintf(os.Stderr, ">> real node ready in %s\n", time.Since(begin).Round(time.Millisecond))
	return nil
}

// seedStorage writes the blob the seed copies, as an administrator would,
// with a storage token from the fake Entra ID for a client of its own.
func seedStorage(ctx context.Context) error {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	const admin = "00000000-0000-0000-0000-00000000adm1"
	env.AAD.AddClientSecret(admin, hex.EncodeToString(secret))
	cred, err := azidentity.NewClientSecretCredential(localenv.TenantID, admin, hex.EncodeToString(secret), &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: env.AAD.AuthorityHost()},
			Transport: env.AAD.HTTPClient(),
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
	return azurite.Put(ctx, tok.Token, "data", "hello.txt", []byte(seedBlob))
}
