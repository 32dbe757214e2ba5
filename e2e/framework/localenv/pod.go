package localenv

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podidentity/injector/e2e/framework/fakeaad"
	"github.com/podidentity/injector/e2e/framework/logbuf"
	"github.com/podidentity/injector/internal/names"
)

// DeclareFederatedCredential does what `az identity federated-credential
// create` does: the fake Entra ID will accept, for clientID, service
// account tokens of namespace/serviceAccount issued by this cluster.
func (e *Env) DeclareFederatedCredential(clientID, namespace, serviceAccount string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.creds = append(e.creds, fakeaad.FederatedCredential{
		ClientID: clientID,
		Issuer:   e.Cluster.Issuer(),
		Subject:  fakeaad.ServiceAccountSubject(namespace, serviceAccount),
		Audience: names.TokenAudience,
		KeyFunc:  e.jwks.keyFunc,
	})
}

// FederatedCredentials are the credentials declared so far, as the fake
// Entra ID holds them.
func (e *Env) FederatedCredentials() []fakeaad.FederatedCredential {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]fakeaad.FederatedCredential(nil), e.creds...)
}

// verifyAssertion checks a federated client assertion against the declared
// credentials, with the signature checked against the apiserver's JWKS.
func (e *Env) verifyAssertion(clientID, tenantID, assertion string) error {
	e.mu.Lock()
	creds := append([]fakeaad.FederatedCredential(nil), e.creds...)
	e.mu.Unlock()
	return fakeaad.VerifyFederated(creds...)(clientID, tenantID, assertion)
}

// jwksCache fetches the apiserver's /openid/v1/jwks anonymously, as Entra
// ID does, and refetches on an unknown key ID.
type jwksCache struct {
	url    string
	client *http.Client
	mu     sync.Mutex
	keys   map[string]*rsa.PublicKey
}

func (c *jwksCache) keyFunc(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.keys[kid]; ok {
		return k, nil
	}
	if err := c.fetch(); err != nil {
		return nil, err
	}
	if k, ok := c.keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("key %q is not in %s", kid, c.url)
}

func (c *jwksCache) fetch() error {
	resp, err := c.client.Get(c.url)
	if err != nil {
		return fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch JWKS %s: %s", c.url, resp.Status)
	}
	var set struct {
		Keys []struct {
			Kty, Kid, N, E string
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return fmt.Errorf("decode JWKS: %w", err)
	}
	c.keys = map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		eb, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("JWKS key %q: %w", k.Kid, err)
		}
		c.keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(eb).Int64())}
	}
	return nil
}

// envRef is a $(VAR) reference in an env value.
var envRef = regexp.MustCompile(`\$\([A-Za-z_][A-Za-z0-9_.-]*\)`)

// Container returns the named container or init container of pod.
func Container(pod *corev1.Pod, name string) (*corev1.Container, error) {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i], nil
			}
		}
	}
	return nil, fmt.Errorf("pod %s/%s has no container %q", pod.Namespace, pod.Name, name)
}

// ContainerEnv returns a container's environment as KEY=VALUE, with
// $(VAR) references expanded as the kubelet expands them. Only literal
// values are supported, which is all the webhook writes.
func ContainerEnv(pod *corev1.Pod, name string) ([]string, error) {
	c, err := Container(pod, name)
	if err != nil {
		return nil, err
	}
	vals := map[string]string{}
	var out []string
	for _, ev := range c.Env {
		if ev.ValueFrom != nil {
			return nil, fmt.Errorf("container %q env %s uses valueFrom, which localenv cannot resolve", name, ev.Name)
		}
		v := envRef.ReplaceAllStringFunc(ev.Value, func(ref string) string {
			if val, ok := vals[ref[2:len(ref)-1]]; ok {
				return val
			}
			return ref // the kubelet leaves a reference to an unknown variable as it is
		})
		vals[ev.Name] = v
		out = append(out, ev.Name+"="+v)
	}
	return out, nil
}

// Sidecar is the injected token server of one pod, run as a real process.
type Sidecar struct {
	cmd   *exec.Cmd
	done  chan error
	files []string
	log   *logbuf.Buffer
	// Env is the environment the process got.
	Env []string
}

// RunSidecar runs the pod's injected sidecar as the kubelet would: it gets
// the projected service account token through the real TokenRequest API
// with the audience and lifetime the pod spec names, writes it, and any
// identity Secret, where the sidecar's volume mounts say, and starts
// SidecarBinary with exactly the container's args and env. Only the trust
// store differs: SSL_CERT_FILE makes the fake Entra ID's CA trusted, as an
// image's CA bundle would a real one. It returns once the container's
// startup probe command succeeds.
func (e *Env) RunSidecar(ctx context.Context, pod *corev1.Pod) (*Sidecar, error) {
	c, err := Container(pod, names.SidecarContainerName)
	if err != nil {
		return nil, err
	}
	s := &Sidecar{done: make(chan error, 1), log: &logbuf.Buffer{}}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	if err := e.writeVolumes(ctx, pod, c, s); err != nil {
		return nil, err
	}
	env, err := ContainerEnv(pod, c.Name)
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(e.dir, "aad-ca.pem")
	if err := os.WriteFile(caFile, e.AAD.CAPEM(), 0o600); err != nil {
		return nil, err
	}
	s.Env = append(env, "SSL_CERT_FILE="+caFile)
	if len(c.Command) != 1 || c.Command[0] != names.SidecarBinary {
		return nil, fmt.Errorf("sidecar command is %q, want [%s]", c.Command, names.SidecarBinary)
	}
	s.cmd = exec.Command(e.opts.SidecarBinary, c.Args...)
	s.cmd.Env = s.Env
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sidecar: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	if err := e.waitProbe(ctx, c, s); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// waitProbe runs the container's startupProbe exec command, with the
// container's env, until it succeeds.
func (e *Env) waitProbe(ctx context.Context, c *corev1.Container, s *Sidecar) error {
	if c.StartupProbe == nil || c.StartupProbe.Exec == nil || len(c.StartupProbe.Exec.Command) == 0 {
		return errors.New("the sidecar has no exec startupProbe")
	}
	argv := c.StartupProbe.Exec.Command
	if argv[0] != names.SidecarBinary {
		return fmt.Errorf("startupProbe runs %q, want %s", argv[0], names.SidecarBinary)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("sidecar exited: %v\n%s", err, s.log.String())
		default:
		}
		probe := exec.CommandContext(ctx, e.opts.SidecarBinary, argv[1:]...)
		probe.Env = s.Env
		if probe.Run() == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sidecar probe did not succeed within 10s\n%s", s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeVolumes materialises the sidecar's projected token and Secret
// volumes at their mount paths.
func (e *Env) writeVolumes(ctx context.Context, pod *corev1.Pod, c *corev1.Container, s *Sidecar) error {
	cs, err := kubernetes.NewForConfig(e.Cluster.RESTConfig())
	if err != nil {
		return err
	}
	vols := map[string]*corev1.Volume{}
	for i := range pod.Spec.Volumes {
		vols[pod.Spec.Volumes[i].Name] = &pod.Spec.Volumes[i]
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		if v == nil {
			return fmt.Errorf("sidecar mounts volume %q, which the pod does not have", m.Name)
		}
		files := map[string][]byte{}
		switch {
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.ServiceAccountToken == nil {
					continue
				}
				tr, err := cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
					Spec: authenticationv1.TokenRequestSpec{
						Audiences:         []string{src.ServiceAccountToken.Audience},
						ExpirationSeconds: src.ServiceAccountToken.ExpirationSeconds,
					},
				}, metav1.CreateOptions{})
				if err != nil {
					return fmt.Errorf("TokenRequest for ServiceAccount %s/%s: %w", pod.Namespace, sa, err)
				}
				files[src.ServiceAccountToken.Path] = []byte(tr.Status.Token)
			}
		case v.Secret != nil:
			secret, err := cs.CoreV1().Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("Secret %s/%s of volume %q: %w", pod.Namespace, v.Secret.SecretName, m.Name, err)
			}
			for k, val := range secret.Data {
				files[k] = val
			}
		default:
			continue
		}
		if err := os.MkdirAll(m.MountPath, 0o755); err != nil {
			return fmt.Errorf("create mount path %s (localenv writes volumes where the pod mounts them, which needs root): %w", m.MountPath, err)
		}
		for name, data := range files {
			path := filepath.Join(m.MountPath, name)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				return err
			}
			s.files = append(s.files, path)
		}
	}
	return nil
}

// Logs returns what the sidecar wrote so far.
func (s *Sidecar) Logs() string { return s.log.String() }

// Stop sends SIGTERM, waits, and removes the files written for it.
func (s *Sidecar) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		terminate(s.cmd.Process, s.done, 5*time.Second)
		s.cmd = nil
	}
	for _, f := range s.files {
		_ = os.Remove(f)
	}
	s.files = nil
}
