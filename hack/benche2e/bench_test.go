package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podidentity/injector/internal/names"
)

func TestPreinjected(t *testing.T) {
	saMount := corev1.VolumeMount{Name: "kube-api-access-abcde", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}
	tokenMount := corev1.VolumeMount{Name: names.TokenVolumeName, MountPath: names.TokenMountPath}
	got := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "template", Namespace: benchNamespace, UID: "1234", ResourceVersion: "42",
			Labels:      map[string]string{names.BindingLabel: benchSelector},
			Annotations: map[string]string{names.InjectedAnnotation: "bench/bench-identity"},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: names.SidecarContainerName, VolumeMounts: []corev1.VolumeMount{tokenMount, saMount}}},
			Containers:     []corev1.Container{{Name: "app", VolumeMounts: []corev1.VolumeMount{saMount}}},
			Volumes: []corev1.Volume{
				{Name: "kube-api-access-abcde"},
				{Name: names.TokenVolumeName},
			},
		},
	}
	p := preinjected(got)

	assert.Empty(t, p.Name, "the apiserver's identity fields go")
	assert.Empty(t, p.UID)
	assert.Empty(t, p.ResourceVersion)
	assert.Equal(t, got.Labels, p.Labels)
	assert.Equal(t, got.Annotations, p.Annotations, "the webhook's annotation stays")
	assert.Equal(t, []corev1.Volume{{Name: names.TokenVolumeName}}, p.Spec.Volumes, "only the ServiceAccount plugin's volume goes")
	assert.Equal(t, []corev1.VolumeMount{tokenMount}, p.Spec.InitContainers[0].VolumeMounts)
	assert.Empty(t, p.Spec.Containers[0].VolumeMounts)
	assert.True(t, hasSidecar(p))

	assert.Len(t, got.Spec.Volumes, 2, "the input is not modified")
	assert.Len(t, got.Spec.InitContainers[0].VolumeMounts, 2)
}

func TestRelease(t *testing.T) {
	drain := func(jobs <-chan int) []int {
		var got []int
		for i := range jobs {
			got = append(got, i)
		}
		return got
	}
	t.Run("all at once", func(t *testing.T) {
		jobs := make(chan int, 5)
		release(context.Background(), jobs, 5, 0, time.Now())
		assert.Equal(t, []int{0, 1, 2, 3, 4}, drain(jobs))
	})
	t.Run("paced, in order", func(t *testing.T) {
		jobs := make(chan int, 3)
		release(context.Background(), jobs, 3, 1000, time.Now())
		assert.Equal(t, []int{0, 1, 2}, drain(jobs))
	})
	t.Run("a done context stops the pacing and closes the channel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		jobs := make(chan int, 3)
		// One pod an hour: only a done context ends this promptly.
		release(ctx, jobs, 3, 1.0/3600, time.Now())
		assert.Equal(t, []int{0}, drain(jobs), "the first is due at once")
	})
}

func TestSizeOf(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "benche2e"}}}}
	got, err := sizeOf(pod)
	assert.NoError(t, err)
	assert.Equal(t, len(`[{"manager":"benche2e"}]`), got.ManagedFields)
	assert.Greater(t, got.JSON, got.ManagedFields)
}
