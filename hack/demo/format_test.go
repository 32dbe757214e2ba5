package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/podidentity/injector/internal/names"
)

const headerSecret = "s3cr3t-header-value-that-must-never-print"

// injectedPod is shaped like the webhook's output for the seed: the native
// sidecar first, then the user's init container and app.
func injectedPod() *corev1.Pod {
	identityEnv := []corev1.EnvVar{
		{Name: "USER_SETTING", Value: "kept-quiet"},
		{Name: names.EnvIdentityEndpoint, Value: "http://127.0.0.1:8181/msi/token"},
		{Name: names.EnvIdentityHeader, Value: headerSecret},
		{Name: names.EnvAzureClientID, Value: "11111111-2222-3333-4444-555555555555"},
		{Name: names.EnvAuthorityHost, Value: "http://127.0.0.1:8181"},
		{Name: names.EnvAzcopyAutoLoginType, Value: names.AzcopyAutoLoginMSI},
	}
	return &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{
			{
				Name: names.SidecarContainerName, Image: "sidecar:v1",
				RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
				Env: []corev1.EnvVar{
					{Name: names.EnvIdentityHeader, Value: headerSecret},
					{Name: names.EnvSidecarConfig, Value: `{"version":"v1"}`},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: names.TokenVolumeName, MountPath: names.TokenMountPath, ReadOnly: true}},
			},
			{
				Name: "data-init", Image: "datenbetrieb/azcopy", Env: identityEnv,
				VolumeMounts: []corev1.VolumeMount{{Name: "data-init", MountPath: "/var/data"}},
			},
		},
		Containers: []corev1.Container{{Name: "my-app", Image: "nginx", Env: identityEnv}},
	}}
}

func TestWriteContainers(t *testing.T) {
	var buf bytes.Buffer
	writeContainers(&buf, injectedPod())
	out := buf.String()

	assert.NotContains(t, out, headerSecret, "the header secret is never printed")
	assert.Equal(t, 3, strings.Count(out, "IDENTITY_HEADER=(per-pod secret, 41 chars)"), "the header is shown by its length on every container")
	assert.NotContains(t, out, "USER_SETTING", "only the identity env vars are shown")
	assert.NotContains(t, out, names.EnvSidecarConfig, "the sidecar's JSON config is not shown")

	tests := []struct {
		name, want string
	}{
		{"init containers first, in order", "  init container pod-identity-sidecar\n"},
		{"image", "      image          datenbetrieb/azcopy\n"},
		{"restartPolicy of the native sidecar", "      restartPolicy  Always\n"},
		{"endpoint", "      env            IDENTITY_ENDPOINT=http://127.0.0.1:8181/msi/token\n"},
		{"client ID", "      env            AZURE_CLIENT_ID=11111111-2222-3333-4444-555555555555\n"},
		{"authority host", "      env            AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:8181\n"},
		{"azcopy env", "      env            AZCOPY_AUTO_LOGIN_TYPE=MSI\n"},
		{"read-only mount", "      mount          /var/run/secrets/pod-identity/serviceaccount <- volume pod-identity-token (read-only)\n"},
		{"writable mount", "      mount          /var/data <- volume data-init\n"},
		{"app container", "  container my-app\n      image          nginx\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Contains(t, out, tc.want)
		})
	}
	assert.Equal(t, 1, strings.Count(out, "restartPolicy"), "restartPolicy only where it is set")
	assert.Less(t, strings.Index(out, "init container data-init"), strings.Index(out, "container my-app"), "in the kubelet's start order")
}

func TestEnvValue(t *testing.T) {
	tests := []struct {
		name string
		ev   corev1.EnvVar
		want string
	}{
		{"header by length only", corev1.EnvVar{Name: names.EnvIdentityHeader, Value: "abcd"}, "(per-pod secret, 4 chars)"},
		{"empty header", corev1.EnvVar{Name: names.EnvIdentityHeader}, "(per-pod secret, 0 chars)"},
		{"header from a Secret", corev1.EnvVar{Name: names.EnvIdentityHeader, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "h"}}}, "(from valueFrom)"},
		{"client ID verbatim", corev1.EnvVar{Name: names.EnvAzureClientID, Value: "c-1"}, "c-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, envValue(tc.ev))
		})
	}
}

func TestShownEnv(t *testing.T) {
	tests := map[string]bool{
		names.EnvIdentityEndpoint:    true,
		names.EnvIdentityHeader:      true,
		names.EnvAzureClientID:       true,
		names.EnvAuthorityHost:       true,
		names.EnvAzcopyAutoLoginType: true,
		names.EnvAzcopyMSIClientID:   true,
		names.EnvSidecarConfig:       false,
		"PATH":                       false,
		"AZURE_TENANT_ID":            false,
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, want, shownEnv(name))
		})
	}
}

func TestClaimLine(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		claims map[string]any
		want   string
	}{
		{
			name: "the claims that matter, in order, exp as a time",
			claims: map[string]any{
				"exp": float64(now.Add(time.Hour).Unix()), "tid": "t", "appid": "a", "sub": "s", "iss": "i", "aud": "https://storage.azure.com",
				"oid": "not shown", "iat": float64(now.Unix()),
			},
			want: "aud=https://storage.azure.com iss=i sub=s appid=a tid=t exp=2026-01-02T04:00:00Z (in 1h0m0s)",
		},
		{name: "missing claims are left out", claims: map[string]any{"aud": "x"}, want: "aud=x"},
		{name: "exp of the wrong type is left out", claims: map[string]any{"aud": "x", "exp": "soon"}, want: "aud=x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, claimLine(tc.claims, now))
		})
	}
}

func TestAzcopyResult(t *testing.T) {
	tests := []struct {
		name, out, want string
	}{
		{"last line", "INFO: Scanning...\nINFO: Login with identity succeeded.\n", "INFO: Login with identity succeeded."},
		{"trailing blank lines", "Login with identity succeeded.\n\n  \n", "Login with identity succeeded."},
		{"single line", "failed to login", "failed to login"},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, azcopyResult(tc.out))
		})
	}
}
