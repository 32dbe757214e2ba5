package webhookenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/podidentity/injector/test/fakeaad"
)

// SeedPodTemplate reads the pod template of a Deployment manifest, such as
// the seed's deployment.yaml, as a Pod in namespace.
func SeedPodTemplate(deploymentPath, namespace string) (*corev1.Pod, error) {
	data, err := os.ReadFile(deploymentPath)
	if err != nil {
		return nil, err
	}
	var dep struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &dep); err != nil {
		return nil, fmt.Errorf("read the pod template of %s: %w", deploymentPath, err)
	}
	pod := &corev1.Pod{ObjectMeta: dep.Spec.Template.ObjectMeta, Spec: dep.Spec.Template.Spec}
	pod.Namespace = namespace
	return pod, nil
}

// DryRunWarnings creates pod as a server-side dry run and returns the
// warnings the API server answered with, the webhook's among them. pod is
// updated with what the API server would store.
func (e *Env) DryRunWarnings(ctx context.Context, pod *corev1.Pod) ([]string, error) {
	w := &warningCollector{}
	cfg := e.Cluster.RESTConfig()
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return nil, err
	}
	if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
		return nil, fmt.Errorf("dry-run create pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return w.list(), nil
}

// warningCollector records the warnings the API server returns.
type warningCollector struct {
	mu       sync.Mutex
	warnings []string
}

// HandleWarningHeader implements rest.WarningHandler.
func (w *warningCollector) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningCollector) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.warnings...)
}

// Issued counts the access tokens the fake Entra ID issued to clientID for
// requests of one grant (fakeaad.Grant*).
func (e *Env) Issued(grant, clientID string) int {
	return CountIssued(e.AAD.Requests(), grant, clientID)
}

// CountIssued counts the successful requests of one grant for clientID,
// whose case Entra ID ignores.
func CountIssued(reqs []fakeaad.Request, grant, clientID string) int {
	n := 0
	for _, r := range reqs {
		if r.Grant == grant && strings.EqualFold(r.ClientID, clientID) && r.Status == 200 {
			n++
		}
	}
	return n
}

// RunCAInjector builds test/cainjector (cert-manager's cainjector, run from
// its library) and runs it against kubeconfig, logging to log, until the
// returned stop is called.
func RunCAInjector(repoRoot, kubeconfig string, log io.Writer) (stop func(), err error) {
	dir, err := os.MkdirTemp("", "pod-identity-cainjector-")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "cainjector")
	build := exec.Command("go", "build", "-o", bin, "./test/cainjector")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("go build ./test/cainjector: %w: %s", err, out)
	}
	cmd := exec.Command(bin, "--kubeconfig="+kubeconfig, "--crd-wait=30s")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start cainjector: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	return func() {
		once.Do(func() {
			terminate(cmd.Process, done, 10*time.Second)
			_ = os.RemoveAll(dir)
		})
	}, nil
}

// terminate stops a process the way the kubelet stops a container: SIGTERM,
// then SIGKILL after grace. done receives the process's Wait result; it
// returns once the process has exited.
func terminate(p *os.Process, done <-chan error, grace time.Duration) {
	_ = p.Signal(syscall.SIGTERM)
	// The exit status of a process told to stop says nothing.
	select {
	case _ = <-done:
	case <-time.After(grace):
		_ = p.Kill()
		_ = <-done
	}
}
