package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podidentity/injector/e2e/framework/fakeaad"
	"github.com/podidentity/injector/e2e/framework/localenv"
	"github.com/podidentity/injector/e2e/framework/testcluster"
	"github.com/podidentity/injector/internal/names"
)

// The seed's values, as the fixtures' README fills in its placeholders.
const (
	// seedClientID is ${identity_client_id}: the AzureIdentity's ClientID,
	// and the --identity-client-id the init container passes to azcopy.
	seedClientID = "11111111-2222-3333-4444-555555555555"
	// seedNamespace is the article's namespace; the Deployment's pods run
	// as its default ServiceAccount.
	seedNamespace      = "default"
	seedServiceAccount = "default"
	seedAppLabel       = "my-app" // the template's run= label
	appContainer       = "my-app"
	initContainer      = "data-init"
	tokenResource      = "https://storage.azure.com"
)

// Step timeouts: generous for a busy 2-core machine, but a hang still ends
// with a message rather than a silent wait.
const (
	startTimeout = 5 * time.Minute
	stepTimeout  = 2 * time.Minute
)

// demo runs the steps and owns what they start.
type demo struct {
	cfg     Config
	out     io.Writer
	bins    testcluster.Binaries
	env     *localenv.Env
	sidecar *localenv.Sidecar
	tmp     string
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// step prints a heading, so the output reads as the path a user takes.
func (d *demo) step(format string, args ...any) { d.say("\n== "+format, args...) }

func (d *demo) run(ctx context.Context) (err error) {
	d.say("pod-identity-injector demo: the blog-era manifests from %s, unchanged,", d.cfg.Seed())
	d.say("on a real etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, with the webhook")
	d.say("as a real HTTPS process and a fake Entra ID (the only fake) on loopback.")
	for _, b := range []string{"pod-identity-webhook", "pod-identity-sidecar", "gettoken"} {
		if _, err := os.Stat(filepath.Join(d.cfg.Bin(), b)); err != nil {
			return fmt.Errorf("binary %s is missing; run `make demo` (it builds it) or `make build`: %w", b, err)
		}
	}
	if d.bins, err = ensureTools(ctx, d.cfg.RepoRoot, d.out); err != nil {
		return err
	}
	if d.tmp, err = os.MkdirTemp("", "pod-identity-demo-"); err != nil {
		return err
	}
	defer os.RemoveAll(d.tmp)

	d.step("1. start the local control plane, the webhook and the fake Entra ID")
	begin := time.Now()
	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	d.env, err = localenv.Start(startCtx, localenv.Options{
		RepoRoot:      d.cfg.RepoRoot,
		WebhookBinary: filepath.Join(d.cfg.Bin(), "pod-identity-webhook"),
		SidecarBinary: filepath.Join(d.cfg.Bin(), "pod-identity-sidecar"),
		Log:           d.out,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("start the local environment: %w", err)
	}
	defer d.stop()
	d.say(">> ready in %s", time.Since(begin).Round(100*time.Millisecond))

	pod, err := d.applySeed(ctx)
	if err != nil {
		return err
	}

	d.step("3. the pod %s/%s that kube-controller-manager created, as the webhook injected it", pod.Namespace, pod.Name)
	writeContainers(d.out, pod)

	d.step("4. run the pod's sidecar as the kubelet would")
	d.env.DeclareFederatedCredential(seedClientID, pod.Namespace, serviceAccount(pod))
	d.say("federated credential declared in the fake Entra ID (what `az identity federated-credential create` does):")
	d.say("  client %s trusts issuer %s, subject %s", seedClientID, d.env.Cluster.Issuer(), fakeaad.ServiceAccountSubject(pod.Namespace, serviceAccount(pod)))
	if d.sidecar, err = d.env.RunSidecar(ctx, pod); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("run the sidecar: %w (the demo writes the projected token where the pod mounts it, under %s, which needs root: run make demo as root)", err, names.TokenMountPath)
		}
		return fmt.Errorf("run the sidecar of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	d.say("sidecar up: bin/pod-identity-sidecar %s with the container's exact args and env, a projected token from the TokenRequest API in %s; startupProbe passed",
		strings.Join(sidecarArgs(pod), " "), names.TokenMountPath)

	d.step("5. get tokens with nothing but the injected environment")
	if err := d.appToken(ctx, pod); err != nil {
		return err
	}
	if err := d.azcopyLogin(ctx, pod); err != nil {
		return err
	}
	n := d.env.Issued(fakeaad.GrantAssertion, seedClientID)
	d.say("the fake Entra ID issued %d token(s) to client %s, each for the pod's service account token, verified against the apiserver's JWKS", n, seedClientID)
	if n == 1 {
		d.say("(one token served both callers: the sidecar caches tokens per identity and resource)")
	}

	if d.cfg.KeepRunning {
		d.step("left running until Ctrl-C; poke at it with kubectl:")
		d.say("  export KUBECONFIG=%s", d.env.Cluster.KubeconfigPath())
		d.say("  %s get pod -n %s -l run=%s -o yaml", d.bins.Kubectl, seedNamespace, seedAppLabel)
		<-ctx.Done()
	}
	return nil
}

// stop tears everything down that run started after the environment: the
// sidecar first, then the webhook, the fake Entra ID and the control plane.
// Every path out of run, Ctrl-C included, comes through here.
func (d *demo) stop() {
	d.say("\n>> tearing down")
	begin := time.Now()
	if d.sidecar != nil {
		d.sidecar.Stop()
	}
	d.env.Stop()
	d.say(">> stopped the sidecar, the webhook, the fake Entra ID and the control plane, and removed their files, in %s",
		time.Since(begin).Round(100*time.Millisecond))
}

// applySeed applies the seed manifests verbatim, shows the warnings the
// webhook returns for their pod template, and returns the Deployment's pod.
func (d *demo) applySeed(ctx context.Context) (*corev1.Pod, error) {
	d.step("2. apply the seed manifests verbatim")
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	for _, f := range seedFiles {
		if f == "deployment.yaml" {
			if err := d.showWarnings(ctx, filepath.Join(d.cfg.Seed(), f)); err != nil {
				return nil, err
			}
		}
		out, err := d.env.Cluster.Kubectl(ctx, "apply", "-f", filepath.Join(d.cfg.Seed(), f))
		if err != nil {
			return nil, fmt.Errorf("apply seed manifest %s: %w", f, err)
		}
		d.say("$ kubectl apply -f %s\n  %s", f, strings.TrimSpace(string(out)))
	}
	return d.waitForPod(ctx)
}

// showWarnings creates the Deployment's pod template once as a dry run and
// prints the warnings the webhook returns for the legacy keys: for the
// Deployment's own pods they go to kube-controller-manager, which nobody
// reads.
func (d *demo) showWarnings(ctx context.Context, deployment string) error {
	pod, err := localenv.SeedPodTemplate(deployment, seedNamespace)
	if err != nil {
		return err
	}
	pod.Name = "seed-dry-run"
	warnings, err := d.env.DryRunWarnings(ctx, pod)
	if err != nil {
		return err
	}
	d.say("the webhook's warnings for the Deployment's pod template (a dry-run create; kube-controller-manager gets them for the real pods):")
	for _, w := range warnings {
		d.say("  Warning: %s", w)
	}
	return nil
}

// waitForPod waits for kube-controller-manager to create the Deployment's
// pod, through the webhook.
func (d *demo) waitForPod(ctx context.Context) (*corev1.Pod, error) {
	for {
		var pods corev1.PodList
		err := d.env.Client.List(ctx, &pods, client.InNamespace(seedNamespace), client.MatchingLabels{"run": seedAppLabel})
		if err == nil && len(pods.Items) > 0 {
			return &pods.Items[0], nil
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return nil, fmt.Errorf("kube-controller-manager created no pod for Deployment %s/%s within %s (last list error: %v)", seedNamespace, seedAppLabel, stepTimeout, err)
			}
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// appToken runs gettoken, azidentity's DefaultAzureCredential, with exactly
// the app container's env.
func (d *demo) appToken(ctx context.Context, pod *corev1.Pod) error {
	env, err := localenv.ContainerEnv(pod, appContainer)
	if err != nil {
		return err
	}
	home, err := os.MkdirTemp(d.tmp, "app-")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(d.cfg.Bin(), "gettoken"), "--credential=default", "--resource="+tokenResource)
	cmd.Env = append(env, "HOME="+home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("gettoken with container %s's env: %w: %s\nsidecar log:\n%s", appContainer, err, strings.TrimSpace(stderr.String()), d.sidecar.Logs())
	}
	var got struct {
		Claims map[string]any `json:"claims"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		return fmt.Errorf("read gettoken's output: %w", err)
	}
	d.say("container %s, azidentity DefaultAzureCredential (the token's decoded claims; never the token):", appContainer)
	d.say("  %s", claimLine(got.Claims, time.Now()))
	return nil
}

// azcopyLogin runs the real azcopy's `login --identity`, as the seed's init
// container does, with exactly that container's env.
func (d *demo) azcopyLogin(ctx context.Context, pod *corev1.Pod) error {
	env, err := localenv.ContainerEnv(pod, initContainer)
	if err != nil {
		return err
	}
	home, err := os.MkdirTemp(d.tmp, "azcopy-")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	args := []string{"login", "--identity", "--identity-client-id", seedClientID, "--skip-version-check"}
	cmd := exec.CommandContext(ctx, d.bins.Azcopy, args...)
	cmd.Env = append(env, "HOME="+home, "AZCOPY_LOG_LOCATION="+home, "AZCOPY_JOB_PLAN_LOCATION="+home, "PATH=/usr/bin:/bin")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("azcopy %s with init container %s's env: %w: %s\nsidecar log:\n%s", strings.Join(args, " "), initContainer, err, strings.TrimSpace(string(out)), d.sidecar.Logs())
	}
	d.say("init container %s, the real azcopy %s:\n  $ azcopy %s\n  %s", initContainer, testcluster.AzcopyVersion, strings.Join(args, " "), azcopyResult(string(out)))
	return nil
}

// ensureTools finds the control plane's binaries and azcopy in the cache,
// and builds the missing ones with hack/build-tools.sh, saying first how
// long that takes.
func ensureTools(ctx context.Context, repo string, out io.Writer) (testcluster.Binaries, error) {
	bins, err := testcluster.FindBinaries()
	if err == nil || !errors.Is(err, testcluster.ErrBinariesMissing) {
		return bins, err
	}
	cache, _ := testcluster.CacheDir()
	fmt.Fprintf(out, "\n>> some tools are not built yet: %v\n", err)
	fmt.Fprintf(out, ">> building them once into %s with hack/build-tools.sh.\n", cache)
	fmt.Fprintf(out, ">> A cold build takes about 15-20 minutes on 2 cores (kube-apiserver alone ~12); with a warm Go build cache, seconds.\n")
	fmt.Fprintf(out, ">> Later runs find them cached and start at once.\n")
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "hack", "build-tools.sh"))
	cmd.Stdout, cmd.Stderr = io.Discard, out
	// The script runs go build children: end the whole group on Ctrl-C.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return bins, ctx.Err()
		}
		return bins, fmt.Errorf("hack/build-tools.sh: %w (its output is above; rerun `make tools` to retry)", err)
	}
	return testcluster.FindBinaries()
}

// serviceAccount is the pod's ServiceAccount, "default" when unset.
func serviceAccount(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName != "" {
		return pod.Spec.ServiceAccountName
	}
	return seedServiceAccount
}

// sidecarArgs are the injected sidecar's args, for the one line about it.
func sidecarArgs(pod *corev1.Pod) []string {
	c, err := localenv.Container(pod, names.SidecarContainerName)
	if err != nil {
		return nil
	}
	return c.Args
}
