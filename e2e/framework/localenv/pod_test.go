package localenv

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/podidentity/injector/e2e/framework/fakeaad"
)

func TestContainerEnv(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Env: []corev1.EnvVar{{Name: "A", Value: "1"}}}},
		Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{
			{Name: "AZURE_CLIENT_ID", Value: "cid"},
			{Name: "AZCOPY_MSI_CLIENT_ID", Value: "$(AZURE_CLIENT_ID)"},
			{Name: "LATER", Value: "$(UNSET)x"},
		}}},
	}}
	env, err := ContainerEnv(pod, "app")
	require.NoError(t, err)
	assert.Equal(t, []string{"AZURE_CLIENT_ID=cid", "AZCOPY_MSI_CLIENT_ID=cid", "LATER=$(UNSET)x"}, env, "$(VAR) expands as the kubelet expands it")

	env, err = ContainerEnv(pod, "init")
	require.NoError(t, err)
	assert.Equal(t, []string{"A=1"}, env)

	_, err = ContainerEnv(pod, "ghost")
	assert.ErrorContains(t, err, `no container "ghost"`)

	pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{Name: "S", ValueFrom: &corev1.EnvVarSource{}})
	_, err = ContainerEnv(pod, "app")
	assert.ErrorContains(t, err, "valueFrom")
}

func TestCountIssued(t *testing.T) {
	reqs := []fakeaad.Request{
		{ClientID: "C-1", Grant: fakeaad.GrantAssertion, Status: 200},
		{ClientID: "c-1", Grant: fakeaad.GrantAssertion, Status: 400},
		{ClientID: "c-2", Grant: fakeaad.GrantAssertion, Status: 200},
		{ClientID: "c-1", Grant: fakeaad.GrantClientSecret, Status: 200},
	}
	assert.Equal(t, 1, CountIssued(reqs, fakeaad.GrantAssertion, "c-1"), "only issued tokens of that grant and client, case-insensitively")
}
