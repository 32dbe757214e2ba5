package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// migrateCmd runs `kubectl pod-identity migrate ARGS` and returns its exit
// code and what it printed.
func migrateCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"migrate"}, args...), strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

const estate = "../../internal/migrate/testdata/estate/objects.yaml"

// TestMigrateOffline: migrate plans from files, as a pull request shows
// them, with the webhook's flags, and exits 1 when something blocks.
func TestMigrateOffline(t *testing.T) {
	code, out, errOut := migrateCmd(t, "", append(blogArgs(t), tenant, "--issuer", "https://oidc.example/c/", "--cluster-name", "prod")...)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "--name prod-default-default-")
	assert.Contains(t, out, "Nothing blocks the switch.")

	code, out, errOut = migrateCmd(t, "", "-f", estate, "--issuer", "https://oidc.example/c/", "-o", "json")
	require.Equal(t, exitFindings, code, errOut)
	assert.Contains(t, out, `"reason": "secret-provider-class-uses-pod-identity"`, "SecretProviderClasses are read from files")
	assert.Contains(t, out, `"cluster": "oidc-example-`, "the cluster name defaults from the issuer")

	data, err := os.ReadFile(estate)
	require.NoError(t, err)
	code, stdinOut, errOut := migrateCmd(t, string(data), "-f", "-", "--issuer", "https://oidc.example/c/", "-o", "json")
	require.Equal(t, exitFindings, code, errOut)
	assert.Equal(t, out, stdinOut, "standard input reads as the file does")

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "estate.yaml"), data, 0o644))
	code, dirOut, errOut := migrateCmd(t, "", "-f", dir, "--issuer", "https://oidc.example/c/", "-o", "json")
	require.Equal(t, exitFindings, code, errOut)
	assert.Equal(t, out, dirOut, "a directory reads as its files")
}

func TestMigrateFlags(t *testing.T) {
	tests := map[string]struct {
		args     []string
		inStderr string
	}{
		"no issuer offline":    {args: []string{"-f", estate}, inStderr: "--issuer is required with -f"},
		"bad cluster name":     {args: []string{"-f", estate, "--issuer", "https://i/", "--cluster-name", "a.b"}, inStderr: `--cluster-name "a.b": want 1-40 letters`},
		"webhook flag checked": {args: []string{"-f", estate, "--issuer", "https://i/", "--allowed-authority-hosts", "http://x"}, inStderr: "--allowed-authority-hosts"},
		"missing file":         {args: []string{"-f", "/nonexistent.yaml", "--issuer", "https://i/"}, inStderr: "bad input"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, _, errOut := migrateCmd(t, "", tc.args...)
			assert.Equal(t, exitBadInput, code, errOut)
			assert.Contains(t, errOut, tc.inStderr)
		})
	}
}

// TestReadSecretProviderClassesLive: live, SecretProviderClasses are read
// as unstructured objects, and a cluster without their CRD has none.
func TestReadSecretProviderClassesLive(t *testing.T) {
	spc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
		"metadata": map[string]any{"name": "vault", "namespace": "team-a"},
		"spec":     map[string]any{"provider": "azure", "parameters": map[string]any{"usePodIdentity": "true"}},
	}}
	c := fake.NewClientBuilder().WithObjects(spc).Build()
	got, err := readSecretProviderClasses(context.Background(), c)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "team-a", got[0].Namespace)
	assert.True(t, got[0].UsesPodIdentity())

	noCRD := interceptor.NewClient(fake.NewClientBuilder().Build(), interceptor.Funcs{
		List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			return &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "secrets-store.csi.x-k8s.io", Kind: "SecretProviderClass"}}
		},
	})
	got, err = readSecretProviderClasses(context.Background(), noCRD)
	require.NoError(t, err, "no CRD, no SecretProviderClasses")
	assert.Empty(t, got)

	forbidden := interceptor.NewClient(fake.NewClientBuilder().Build(), interceptor.Funcs{
		List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			return apierrors.NewForbidden(schema.GroupResource{Group: "secrets-store.csi.x-k8s.io", Resource: "secretproviderclasses"}, "", nil)
		},
	})
	_, err = readSecretProviderClasses(context.Background(), forbidden)
	assert.True(t, apierrors.IsForbidden(err), "any other failure is an error: %v", err)
}

// TestMigrateCrossNamespace: migrate binds the webhook's flags, the
// compatibility mode's included, and plans as the webhook in that mode
// would; without it, the plan offers both ways out in its JSON.
func TestMigrateCrossNamespace(t *testing.T) {
	const objects = "../../internal/migrate/testdata/crossnamespace/objects.yaml"
	code, out, errOut := migrateCmd(t, "", "-f", objects, "--issuer", "https://oidc.example/c/", "-o", "json")
	require.Equal(t, exitFindings, code, errOut)
	assert.Contains(t, out, `"reason": "cross-namespace-binding"`)
	assert.Contains(t, out, `"copyToNamespace": [`)
	assert.Contains(t, out, `"servesAll": true`)

	code, out, errOut = migrateCmd(t, "", "-f", objects, "--issuer", "https://oidc.example/c/", "-o", "json", "--aad-pod-identity-cross-namespace")
	require.Equal(t, exitOK, code, errOut)
	assert.NotContains(t, out, `"copyToNamespace"`)
	assert.Contains(t, out, `"enabled": true`)
	assert.Contains(t, out, `"subject": "system:serviceaccount:team-b:api"`)
}
