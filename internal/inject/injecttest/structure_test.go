package injecttest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podidentity/injector/internal/inject/injecttest"
)

// TestCheckStructure: each property the golden tests and fuzz targets rely
// on is caught, and a well-formed pod passes.
func TestCheckStructure(t *testing.T) {
	good := func() *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{
			Volumes:        []corev1.Volume{{Name: "data"}},
			InitContainers: []corev1.Container{{Name: "init"}},
			Containers: []corev1.Container{{
				Name:         "app",
				Env:          []corev1.EnvVar{{Name: "A"}, {Name: "B"}},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
				},
			}},
		}}
	}
	assert.NoError(t, injecttest.CheckStructure(good()))
	tests := map[string]struct {
		mutate func(*corev1.Pod)
		want   string
	}{
		"container name used by an init and an app container": {
			func(p *corev1.Pod) { p.Spec.InitContainers[0].Name = "app" }, `container name already used by spec.initContainers[0] ("app")`},
		"env name twice": {
			func(p *corev1.Pod) { p.Spec.Containers[0].Env[1].Name = "A" }, `env[1] "A" repeats env[0]`},
		"mount of a missing volume": {
			func(p *corev1.Pod) { p.Spec.Volumes = nil }, `names volume "data", which the pod does not have`},
		"request above limit": {
			func(p *corev1.Pod) {
				p.Spec.Containers[0].Resources.Requests[corev1.ResourceMemory] = resource.MustParse("128Mi")
			}, "requests 128Mi of memory, above its limit 64Mi"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := good()
			tc.mutate(p)
			err := injecttest.CheckStructure(p)
			if assert.Error(t, err) {
				assert.Contains(t, err.Error(), tc.want)
			}
		})
	}
}
