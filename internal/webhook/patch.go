package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/inject"
)

// Why not a whole-pod diff: jsonpatch.CreatePatch compares arrays index by
// index, so putting the sidecar first in initContainers would come out as a
// rewrite of every shifted container, with remove ops for their fields, and
// would drop fields of the pod that our k8s.io/api does not know. It is also
// most of a peer webhook's admission cost. patchFor instead diffs only the
// subtrees that inject touches, matching list elements by name, so that
// every op is an add: a new container, a new volume, a new env var or a new
// annotation, each at the index the mutated pod gives it.

// op is one RFC 6902 operation. It is marshalled as a plain struct rather
// than as a jsonpatch.Operation, whose MarshalJSON builds a map and makes
// encoding/json compact its output a second time: on the admission path
// that was a quarter of the handler's time.
type op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// add is the only operation patchFor emits.
func add(path string, value any) op { return op{Op: "add", Path: path, Value: value} }

// errNotAdditive is returned when the mutated pod differs from the original
// in a way that an add-only patch cannot express. It means a bug in inject,
// never bad input, so the handler reports it as an internal error.
var errNotAdditive = errors.New("mutation is not additive")

// patchFor returns the JSON Patch (RFC 6902) that turns orig into mutated.
// Both are typed pods: unknown fields of the raw request are in neither, so
// no op can touch them.
func patchFor(orig, mutated *corev1.Pod) ([]op, error) {
	var ops []op
	var err error
	if ops, err = addAnnotations(ops, orig.Annotations, mutated.Annotations); err != nil {
		return nil, err
	}
	if ops, err = addNamed(ops, "/spec/initContainers", orig.Spec.InitContainers, mutated.Spec.InitContainers, containerName, diffContainer); err != nil {
		return nil, err
	}
	if ops, err = addNamed(ops, "/spec/containers", orig.Spec.Containers, mutated.Spec.Containers, containerName, diffContainer); err != nil {
		return nil, err
	}
	if ops, err = addNamed(ops, "/spec/volumes", orig.Spec.Volumes, mutated.Spec.Volumes, volumeName, requireEqual[corev1.Volume]); err != nil {
		return nil, err
	}
	if err := sameOutsideSubtrees(orig, mutated); err != nil {
		return nil, err
	}
	return ops, nil
}

// addAnnotations adds the keys that mutated has and orig lacks.
func addAnnotations(ops []op, orig, mutated map[string]string) ([]op, error) {
	if len(orig) == 0 {
		if len(mutated) == 0 {
			return ops, nil
		}
		return append(ops, add("/metadata/annotations", mutated)), nil
	}
	for _, k := range slices.Sorted(maps.Keys(mutated)) {
		ov, ok := orig[k]
		switch {
		case !ok:
			ops = append(ops, add("/metadata/annotations/"+escapePointer(k), mutated[k]))
		case ov != mutated[k]:
			return nil, fmt.Errorf("%w: annotation %q changed", errNotAdditive, k)
		}
	}
	if len(orig) > len(mutated) {
		return nil, fmt.Errorf("%w: an annotation was removed", errNotAdditive)
	}
	return ops, nil
}

// addNamed appends the ops that turn the list orig into mutated, where
// elements are identified by name, mutated keeps orig's order, and elements
// are only inserted. Elements present in both are compared by same, which
// may add ops below the element's path. Each insert is an add at the index
// the element has in mutated: applied in order, earlier inserts have already
// shifted the list to match.
func addNamed[T any](ops []op, path string, orig, mutated []T, name func(*T) string,
	same func([]op, string, *T, *T) ([]op, error)) ([]op, error) {
	if len(orig) == 0 {
		if len(mutated) == 0 {
			return ops, nil
		}
		return append(ops, add(path, mutated)), nil
	}
	j := 0
	for i := range mutated {
		elemPath := path + "/" + strconv.Itoa(i)
		if j < len(orig) && name(&orig[j]) == name(&mutated[i]) {
			var err error
			if ops, err = same(ops, elemPath, &orig[j], &mutated[i]); err != nil {
				return nil, err
			}
			j++
			continue
		}
		ops = append(ops, add(elemPath, mutated[i]))
	}
	if j != len(orig) {
		return nil, fmt.Errorf("%w: %s lost or reordered %q", errNotAdditive, path, name(&orig[j]))
	}
	return ops, nil
}

// diffContainer allows a container to gain env vars and nothing else.
func diffContainer(ops []op, path string, orig, mutated *corev1.Container) ([]op, error) {
	o, m := *orig, *mutated
	o.Env, m.Env = nil, nil
	if !reflect.DeepEqual(o, m) {
		return nil, fmt.Errorf("%w: container %q changed outside env", errNotAdditive, orig.Name)
	}
	return addNamed(ops, path+"/env", orig.Env, mutated.Env, envName, requireEqual[corev1.EnvVar])
}

// requireEqual is the element comparison for lists whose existing elements
// inject never changes.
func requireEqual[T any](ops []op, path string, orig, mutated *T) ([]op, error) {
	if !reflect.DeepEqual(*orig, *mutated) {
		return nil, fmt.Errorf("%w: %s changed", errNotAdditive, path)
	}
	return ops, nil
}

// sameOutsideSubtrees guards the claim that inject touches only the
// subtrees patchFor diffs. It compares shallow copies with those subtrees
// cleared, which costs no allocation of the containers.
func sameOutsideSubtrees(orig, mutated *corev1.Pod) error {
	o, m := *orig, *mutated
	o.Annotations, m.Annotations = nil, nil
	o.Spec.InitContainers, m.Spec.InitContainers = nil, nil
	o.Spec.Containers, m.Spec.Containers = nil, nil
	o.Spec.Volumes, m.Spec.Volumes = nil, nil
	if !reflect.DeepEqual(o, m) {
		return fmt.Errorf("%w: a field outside annotations, containers, initContainers and volumes changed", errNotAdditive)
	}
	return nil
}

func containerName(c *corev1.Container) string { return c.Name }
func volumeName(v *corev1.Volume) string       { return v.Name }
func envName(e *corev1.EnvVar) string          { return e.Name }

// escapePointer escapes a key for use in a JSON Pointer (RFC 6901).
func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// Patch is the JSON Patch of an injection: add operations only, for the
// subtrees that inject touches. The kubectl plugin makes it too, so that
// it refuses what the webhook would fail to patch.
func Patch(inj *decision.Injection) ([]byte, error) {
	if inj == nil {
		return nil, errors.New("no patch for a pod that was not injected")
	}
	ref := inject.PodRef(inj.PatchBase)
	ops, err := patchFor(inj.PatchBase, inj.Mutated)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", ref, err)
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("pod %s: encode patch: %w", ref, err)
	}
	return patch, nil
}
