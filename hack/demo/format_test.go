package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

func TestRedact(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJl"
	tests := []struct {
		name, log string
		secrets   []string
		want      string
	}{
		{"claims stay", `token claims {"aud":"https://storage.azure.com","appid":"c-1"}`, nil, `token claims {"aud":"https://storage.azure.com","appid":"c-1"}`},
		{"a header value goes", "header " + headerSecret + " sent", []string{headerSecret}, "header (IDENTITY_HEADER value, redacted) sent"},
		{"a token goes", "Bearer " + jwt + "\n", nil, "Bearer (a token, redacted)\n"},
		{"an unsigned token goes", "eyJhbGciOiJub25lIn0.eyJhIjoxfQ.", nil, "(a token, redacted)"},
		{"empty secrets are ignored", "nothing", []string{""}, "nothing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, redact(tc.log, tc.secrets))
		})
	}
}

func TestHeaderValues(t *testing.T) {
	assert.Equal(t, []string{headerSecret, headerSecret, headerSecret}, headerValues(injectedPod()), "every container's IDENTITY_HEADER")
	assert.Empty(t, headerValues(&corev1.Pod{}))
}

func TestWriteStatuses(t *testing.T) {
	at := func(s string) metav1.Time {
		tm, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return metav1.NewTime(tm)
	}
	pod := &corev1.Pod{
		Spec: corev1.PodSpec{
			NodeName:       "pod-identity-node",
			InitContainers: []corev1.Container{{Name: names.SidecarContainerName, StartupProbe: &corev1.Probe{}}, {Name: "data-init"}},
			Containers:     []corev1.Container{{Name: "my-app"}, {Name: "other"}, {Name: "app2"}},
		},
		Status: corev1.PodStatus{
			PodIP: "10.88.0.5",
			InitContainerStatuses: []corev1.ContainerStatus{
				{Name: names.SidecarContainerName, Started: ptr.To(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at("2026-01-02T03:04:05Z")}}},
				{Name: "data-init", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					Reason: "Completed", StartedAt: at("2026-01-02T03:04:06Z"), FinishedAt: at("2026-01-02T03:04:08Z"),
				}}},
			},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "my-app", Started: ptr.To(false), State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}},
				{Name: "other"},
				{Name: "app2", Started: ptr.To(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at("2026-01-02T03:04:09Z")}}},
			},
		},
	}
	var buf bytes.Buffer
	writeStatuses(&buf, pod)
	assert.Equal(t, `on node pod-identity-node, pod IP 10.88.0.5:
  init container  pod-identity-sidecar running since 03:04:05, started: its startupProbe passed
  init container  data-init            terminated: Completed, exit code 0 (ran 03:04:06 to 03:04:08)
  container       my-app               waiting: ContainerCreating
  container       other                no state yet
  container       app2                 running since 03:04:09, started
`, buf.String())
}

func TestWriteEvents(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	events := []corev1.Event{
		{Type: "Normal", Reason: "Started", Source: corev1.EventSource{Component: "kubelet"}, InvolvedObject: corev1.ObjectReference{FieldPath: "spec.containers{my-app}"}, Message: "Container started", LastTimestamp: metav1.NewTime(base.Add(3 * time.Second))},
		{Type: "Normal", Reason: "Scheduled", ReportingController: "default-scheduler", Message: "Successfully assigned default/p to n", EventTime: metav1.NewMicroTime(base)},
		{Type: "Warning", Reason: "Unhealthy", Source: corev1.EventSource{Component: "kubelet"}, Message: "Startup probe failed", ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(base.Add(time.Second))}},
	}
	var buf bytes.Buffer
	writeEvents(&buf, events)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 3)
	assert.Equal(t, "Normal  Scheduled              default-scheduler  Successfully assigned default/p to n", strings.TrimSpace(lines[0]), "oldest first; the reporting controller when there is no source")
	assert.Contains(t, lines[1], "Warning Unhealthy")
	assert.Contains(t, lines[2], "kubelet            spec.containers{my-app}: Container started", "the container an event is about")
}

func TestStoryLines(t *testing.T) {
	const log = "INFO: Login with identity succeeded.\nINFO: Scanning...\n\n  Number of File Transfers Completed: 1\nFinal Job Status: Completed\n"
	lines, total := storyLines(log, azcopyStory)
	assert.Equal(t, []string{"INFO: Login with identity succeeded.", "Number of File Transfers Completed: 1", "Final Job Status: Completed"}, lines)
	assert.Equal(t, 5, total)

	lines, total = storyLines("failed to perform LOGIN command\n", azcopyStory)
	assert.Equal(t, []string{"failed to perform LOGIN command"}, lines, "a failed login is kept, in any case")
	assert.Equal(t, 1, total)

	lines, total = storyLines("a\n  b\n", nil)
	assert.Equal(t, []string{"a", "  b"}, lines, "no filter keeps every line as it is")
	assert.Equal(t, 2, total)

	lines, total = storyLines("", nil)
	assert.Empty(t, lines)
	assert.Zero(t, total)
}
