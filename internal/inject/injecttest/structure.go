package injecttest

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// CheckStructure returns an error for each way pod is not well formed, the
// way the API server's validation would see it:
//
//   - container names are unique across init and app containers;
//   - env names are unique within each container;
//   - every volume mount names a volume of the pod;
//   - no container requests more of a resource than its limit.
//
// The golden tests and the fuzz targets hold Inject to it: an input that has
// the property must give an output that has it too.
func CheckStructure(pod *corev1.Pod) error {
	var errs []error
	vols := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = true
	}
	seen := map[string]string{}
	for _, l := range []struct {
		name string
		cs   []corev1.Container
	}{{"initContainers", pod.Spec.InitContainers}, {"containers", pod.Spec.Containers}} {
		for i := range l.cs {
			c := &l.cs[i]
			at := fmt.Sprintf("spec.%s[%d] (%q)", l.name, i, c.Name)
			if prev, dup := seen[c.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: container name already used by %s", at, prev))
			}
			seen[c.Name] = at
			env := map[string]int{}
			for j, e := range c.Env {
				if prev, dup := env[e.Name]; dup {
					errs = append(errs, fmt.Errorf("%s: env[%d] %q repeats env[%d]", at, j, e.Name, prev))
				}
				env[e.Name] = j
			}
			for j, m := range c.VolumeMounts {
				if !vols[m.Name] {
					errs = append(errs, fmt.Errorf("%s: volumeMounts[%d] names volume %q, which the pod does not have", at, j, m.Name))
				}
			}
			for _, r := range slices.Sorted(maps.Keys(c.Resources.Requests)) {
				req := c.Resources.Requests[r]
				if lim, ok := c.Resources.Limits[r]; ok && req.Cmp(lim) > 0 {
					errs = append(errs, fmt.Errorf("%s: requests %s of %s, above its limit %s", at, req.String(), r, lim.String()))
				}
			}
		}
	}
	return errors.Join(errs...)
}
