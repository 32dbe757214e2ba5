//go:build e2e

package controlplane

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
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// azureAudience is the audience Azure AD requires of a federated token.
const azureAudience = "api://AzureADTokenExchange"

// TestCluster starts the real control plane, exercises what the e2e suite
// relies on, and checks that Stop leaves no process and no directory.
func TestCluster(t *testing.T) {
	bins, err := FindBinaries()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	parent := t.TempDir()
	c, err := Start(ctx, Options{Binaries: bins, WorkDir: parent, Log: testWriter{t}})
	require.NoError(t, err)
	pids := c.pids()
	require.Len(t, pids, 3, "etcd, kube-apiserver and kube-controller-manager")
	stopped := false
	t.Cleanup(func() {
		if stopped {
			return
		}
		if t.Failed() {
			var b strings.Builder
			c.WriteLogTails(&b, 40)
			t.Log(b.String())
		}
		assert.NoError(t, c.Stop())
	})
	client, err := kubernetes.NewForConfig(c.RESTConfig())
	require.NoError(t, err)

	t.Run("server reports the built version", func(t *testing.T) {
		v, err := client.Discovery().ServerVersion()
		require.NoError(t, err)
		assert.Equal(t, KubeVersion, v.GitVersion)
	})

	const ns = "testcluster-e2e"
	_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)

	t.Run("controller manager turns a Deployment into a Pod", func(t *testing.T) {
		labels := map[string]string{"app": "web"}
		_, err := client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.10"}}},
				},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)

		var pods *corev1.PodList
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			pods, err = client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			require.NoError(ct, err)
			require.Len(ct, pods.Items, 1)
		}, 2*time.Minute, 200*time.Millisecond)
		// The ServiceAccount admission plugin projected a token volume, which
		// needs the kube-root-ca.crt ConfigMap the controller manager publishes.
		assert.Equal(t, "default", pods.Items[0].Spec.ServiceAccountName)
		_, err = client.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		assert.NoError(t, err)
	})

	t.Run("TokenRequest token verifies against the issuer's JWKS", func(t *testing.T) {
		var tr *authenticationv1.TokenRequest
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			// The namespace's default ServiceAccount appears asynchronously.
			tr, err = client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{Audiences: []string{azureAudience}, ExpirationSeconds: ptr.To[int64](3600)},
			}, metav1.CreateOptions{})
			require.NoError(ct, err)
		}, time.Minute, 200*time.Millisecond)

		anon := c.AnonymousHTTPClient()
		var discovery struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		getJSON(t, anon, c.Issuer()+"/.well-known/openid-configuration", &discovery)
		assert.Equal(t, c.Issuer(), discovery.Issuer)
		require.Equal(t, c.Issuer()+"/openid/v1/jwks", discovery.JWKSURI)
		keys := fetchRSAKeys(t, anon, discovery.JWKSURI)
		// Only discovery is public: anonymous clients read nothing else.
		resp, err := anon.Get(c.Host() + "/api/v1/namespaces")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "anonymous GET /api/v1/namespaces")

		claims := jwt.MapClaims{}
		_, err = jwt.ParseWithClaims(tr.Status.Token, claims, func(tok *jwt.Token) (any, error) {
			kid, _ := tok.Header["kid"].(string)
			if key, ok := keys[kid]; ok {
				return key, nil
			}
			return nil, fmt.Errorf("kid %q not in JWKS", kid)
		}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(c.Issuer()), jwt.WithAudience(azureAudience))
		require.NoError(t, err)
		assert.Equal(t, "system:serviceaccount:"+ns+":default", claims["sub"])
	})

	t.Run("ServiceAccountKubeconfig authenticates as the ServiceAccount under RBAC", func(t *testing.T) {
		_, _, err := c.ServiceAccountKubeconfig(ctx, ns, "absent")
		require.Error(t, err)
		assert.True(t, apierrors.IsNotFound(err), "want a NotFound error for a missing ServiceAccount, got %v", err)

		_, err = client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader"}}, metav1.CreateOptions{})
		require.NoError(t, err)
		path, cfg, err := c.ServiceAccountKubeconfig(ctx, ns, "reader")
		require.NoError(t, err)
		require.FileExists(t, path)
		sa, err := kubernetes.NewForConfig(cfg)
		require.NoError(t, err)

		_, err = sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		require.True(t, apierrors.IsForbidden(err), "a ServiceAccount without RBAC must be forbidden, got %v", err)

		_, err = client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "reader"}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		assert.EventuallyWithT(t, func(ct *assert.CollectT) {
			_, err := sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			assert.NoError(ct, err)
		}, 30*time.Second, 100*time.Millisecond)

		out, err := c.Kubectl(ctx, "--kubeconfig="+path, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		require.NoError(t, err)
		assert.Equal(t, "system:serviceaccount:"+ns+":reader", string(out))
	})

	t.Run("kubectl talks to the cluster", func(t *testing.T) {
		out, err := c.Kubectl(ctx, "version")
		require.NoError(t, err)
		assert.Contains(t, string(out), "Client Version: "+KubeVersion)
		assert.Contains(t, string(out), "Server Version: "+KubeVersion)

		out, err = c.Kubectl(ctx, "get", "namespace", ns, "-o", "name")
		require.NoError(t, err)
		assert.Equal(t, "namespace/"+ns+"\n", string(out))
	})

	workDir := c.WorkDir()
	stopped = true
	require.NoError(t, c.Stop())
	for _, pid := range pids {
		assert.False(t, alive(pid), "process %d still running after Stop", pid)
	}
	_, err = os.Stat(workDir)
	assert.True(t, errors.Is(err, os.ErrNotExist), "work directory %s left behind", workDir)
	assert.NoError(t, c.Stop(), "a second Stop must be harmless")
}

// BenchmarkStart measures the time from nothing to a ready cluster (the
// default ServiceAccount exists). Run with -benchtime=1x: each start takes
// seconds.
func BenchmarkStart(b *testing.B) {
	bins, err := FindBinaries()
	require.NoError(b, err)
	for b.Loop() {
		c, err := Start(context.Background(), Options{Binaries: bins})
		require.NoError(b, err)
		b.StopTimer()
		require.NoError(b, c.Stop())
		b.StartTimer()
	}
}

func (c *Cluster) pids() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var pids []int
	for _, p := range c.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

func getJSON(t *testing.T, client *http.Client, url string, into any) {
	t.Helper()
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "anonymous GET %s", url)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(into))
}

// fetchRSAKeys reads a JWKS of RSA keys, by key ID.
func fetchRSAKeys(t *testing.T, client *http.Client, url string) map[string]*rsa.PublicKey {
	t.Helper()
	var jwks struct {
		Keys []struct {
			Kty, Kid, N, E string
		} `json:"keys"`
	}
	getJSON(t, client, url, &jwks)
	keys := map[string]*rsa.PublicKey{}
	for _, k := range jwks.Keys {
		require.Equal(t, "RSA", k.Kty)
		n, err := base64.RawURLEncoding.DecodeString(k.N)
		require.NoError(t, err)
		e, err := base64.RawURLEncoding.DecodeString(k.E)
		require.NoError(t, err)
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	require.NotEmpty(t, keys, "JWKS at %s has no keys", url)
	return keys
}

// testWriter sends the cluster's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
