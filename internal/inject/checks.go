package inject

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	resourcehelper "k8s.io/component-helpers/resource"

	"github.com/podidentity/injector/internal/names"
)

// checkOwnSidecar refuses a pod whose pod-identity-sidecar container is not
// exactly what this webhook would inject for ids: a pod that brings its own
// "sidecar" would otherwise be trusted as it is, and the
// injected-identities annotation would vouch for it. A pod the webhook
// injected itself passes, with whatever defaults the API server filled in
// since, which is what keeps re-invocation working.
func checkOwnSidecar(ref string, pod *corev1.Pod, sc sidecarRef, st *state, ids []Identity, cfg Config) error {
	field := fmt.Sprintf("spec.%s[%d]", sc.list, sc.index)
	foreign := func(what string) error {
		return fmt.Errorf("pod %s: %s (container %q) is not the token sidecar this webhook would inject: %s: %w; "+
			"remove that container from the pod, and the webhook injects its own, or rename it",
			ref, field, names.SidecarContainerName, what, ErrNameConflict)
	}
	if st.header.ValueFrom != nil {
		return foreign(names.EnvIdentityHeader + " comes from valueFrom, where the webhook writes a value")
	}
	want, err := newState(ref, pod, ids, cfg, st.header.Value)
	if err != nil {
		return err
	}
	if want.configJSON != st.configJSON {
		return foreign(names.EnvSidecarConfig + " differs from what the pod's bindings and token port give now")
	}
	wantList := "containers"
	if cfg.NativeSidecar {
		wantList = "initContainers"
	}
	if sc.list != wantList {
		return foreign("it is in spec." + sc.list + ", where the webhook puts it in spec." + wantList)
	}
	vols, mounts := credentialVolumes(want.config)
	if have, exp := withoutDefaults(sc.c, cfg), sidecarContainer(cfg, want, mounts); !equality.Semantic.DeepEqual(have, exp) {
		// Only a refusal pays for finding the field to name.
		return foreign("its field " + strconv.Quote(differingField(have, exp)) + " differs")
	}
	for _, v := range vols {
		i := slices.IndexFunc(pod.Spec.Volumes, func(have corev1.Volume) bool { return have.Name == v.Name })
		if i < 0 {
			return foreign(fmt.Sprintf("the pod has no volume %q for it", v.Name))
		}
		if !equality.Semantic.DeepEqual(volumeWithoutDefaults(pod.Spec.Volumes[i]), v) {
			return foreign(fmt.Sprintf("spec.volumes[%d] (%q) differs", i, v.Name))
		}
	}
	return nil
}

// apiDefaultTerminationMessagePath is what the API server fills in for a
// container that names none.
const apiDefaultTerminationMessagePath = "/dev/termination-log"

// withoutDefaults undoes, on a copy of c, the defaults that the API server
// adds to a container the webhook wrote, so that it compares equal with a
// fresh sidecarContainer.
func withoutDefaults(c *corev1.Container, cfg Config) corev1.Container {
	out := *c.DeepCopy()
	if out.TerminationMessagePath == apiDefaultTerminationMessagePath {
		out.TerminationMessagePath = ""
	}
	if cfg.ImagePullPolicy == "" {
		out.ImagePullPolicy = ""
	}
	for _, p := range []*corev1.Probe{out.StartupProbe, out.LivenessProbe, out.ReadinessProbe} {
		if p != nil && p.SuccessThreshold == 1 {
			p.SuccessThreshold = 0
		}
	}
	// A limit without a request gets the limit as its request.
	for r, q := range out.Resources.Requests {
		if _, set := cfg.Resources.Requests[r]; !set && q.Equal(out.Resources.Limits[r]) {
			delete(out.Resources.Requests, r)
		}
	}
	if len(out.Resources.Requests) == 0 && cfg.Resources.Requests == nil {
		out.Resources.Requests = nil
	}
	return out
}

// volumeWithoutDefaults undoes the API server's defaultMode on a copy of v.
func volumeWithoutDefaults(v corev1.Volume) corev1.Volume {
	out := *v.DeepCopy()
	const apiDefaultMode = 0o644
	if s := out.Secret; s != nil && s.DefaultMode != nil && *s.DefaultMode == apiDefaultMode {
		s.DefaultMode = nil
	}
	if p := out.Projected; p != nil && p.DefaultMode != nil && *p.DefaultMode == apiDefaultMode {
		p.DefaultMode = nil
	}
	return out
}

// differingField names the first field, by its JSON name, in which have
// and want differ, or returns "".
func differingField(have, want corev1.Container) string {
	hv, wv := reflect.ValueOf(have), reflect.ValueOf(want)
	for i := range hv.NumField() {
		if !equality.Semantic.DeepEqual(hv.Field(i).Interface(), wv.Field(i).Interface()) {
			name, _, _ := strings.Cut(hv.Type().Field(i).Tag.Get("json"), ",")
			return name
		}
	}
	return ""
}

// checkUserHeader refuses a container that sets IDENTITY_HEADER itself. The
// webhook makes the header at admission, per pod, and hands the same
// random value to the sidecar and to the containers; a value from the
// manifest would silently win over it and could never match, so every token
// request of that container would fail.
func checkUserHeader(ref string, pod *corev1.Pod, st *state) error {
	skip := skipSet(pod)
	for _, l := range []struct {
		name string
		cs   []corev1.Container
	}{{"initContainers", pod.Spec.InitContainers}, {"containers", pod.Spec.Containers}} {
		for i := range l.cs {
			c := &l.cs[i]
			if c.Name == names.SidecarContainerName || skip[c.Name] {
				continue
			}
			j := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == names.EnvIdentityHeader })
			if j < 0 || equality.Semantic.DeepEqual(c.Env[j], st.header) {
				continue
			}
			return fmt.Errorf("pod %s: spec.%s[%d].env[%d] of container %q: %w; the webhook generates this header per pod, at admission, "+
				"and gives the same random value to the token sidecar and the containers, so a value in the manifest can never match; "+
				"remove %s from the container's env, or list the container in the pod annotation %s if it must not use the sidecar",
				ref, l.name, i, j, c.Name, ErrUserIdentityHeader, names.EnvIdentityHeader, names.SkipContainersAnnotation)
		}
	}
	return nil
}

// checkPodResources refuses an injection that the API server would reject
// because of pod-level resources (spec.resources): the containers'
// aggregate requests, with the sidecar, must fit the pod's requests, and a
// regular container's limits must fit the pod's limits. It only blames the
// sidecar: a pod that did not fit before is left to the API server.
func checkPodResources(ref string, before, after *corev1.Pod) error {
	pr := after.Spec.Resources
	if pr == nil {
		return nil
	}
	opts := resourcehelper.PodResourcesOptions{SkipPodLevelResources: true, ExcludeOverhead: true}
	had := resourcehelper.AggregateContainerRequests(before, opts)
	have := resourcehelper.AggregateContainerRequests(after, opts)
	for _, r := range slices.Sorted(maps.Keys(have)) {
		podReq, ok := pr.Requests[r]
		field := fmt.Sprintf("spec.resources.requests[%q]", r)
		if !ok {
			// Without a request, the API server defaults it to the limit.
			if podReq, ok = pr.Limits[r]; !ok {
				continue
			}
			field = fmt.Sprintf("spec.resources.limits[%q]", r)
		}
		total, prev := have[r], had[r]
		if total.Cmp(podReq) <= 0 || prev.Cmp(podReq) > 0 {
			continue
		}
		need := total.DeepCopy()
		need.Sub(podReq)
		return fmt.Errorf("pod %s: %s is %s, but with the token sidecar the containers request %s of %s in total: %w; "+
			"raise %s by at least %s, to %s, so that the sidecar fits",
			ref, field, podReq.String(), total.String(), r, ErrPodResources, field, need.String(), total.String())
	}
	sc := findSidecar(after)
	if sc.c == nil || sc.list != "containers" {
		return nil
	}
	for _, r := range slices.Sorted(maps.Keys(sc.c.Resources.Limits)) {
		podLim, ok := pr.Limits[r]
		lim := sc.c.Resources.Limits[r]
		if !ok || lim.Cmp(podLim) <= 0 {
			continue
		}
		return fmt.Errorf("pod %s: spec.resources.limits[%q] is %s, below the token sidecar's limit of %s: %w; "+
			"raise spec.resources.limits[%q] to at least %s",
			ref, r, podLim.String(), lim.String(), ErrPodResources, r, lim.String())
	}
	return nil
}

// envWarnings tells the user where the identity environment will not do
// what they may expect:
//   - a container with envFrom: the injected env takes precedence over its
//     ConfigMaps' and Secrets' keys of the same name, which the webhook
//     cannot see without reading them;
//   - a container that azure-workload-identity's webhook already mutated
//     (AZURE_FEDERATED_TOKEN_FILE): DefaultAzureCredential tries workload
//     identity before managed identity, so it never reaches the sidecar.
func envWarnings(ref string, pod *corev1.Pod, st *state) []string {
	var ws, federated []string
	skip := skipSet(pod)
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			c := &cs[i]
			if c.Name == names.SidecarContainerName {
				continue
			}
			if _, ok := lookupEnv(c.Env, "AZURE_FEDERATED_TOKEN_FILE"); ok && !skip[c.Name] {
				federated = append(federated, strconv.Quote(c.Name))
			}
			if len(c.EnvFrom) == 0 || skip[c.Name] {
				continue
			}
			if injected := injectedNames(c, st); len(injected) > 0 {
				ws = append(ws, fmt.Sprintf("pod %s: container %q has envFrom, and the webhook's env %s takes precedence over keys of the same name in its ConfigMaps and Secrets; "+
					"to choose your own value for one of them, set it in the container's env",
					ref, c.Name, strings.Join(injected, ", ")))
			}
		}
	}
	if len(federated) > 0 {
		ws = append(ws, fmt.Sprintf("pod %s: containers %s already have AZURE_FEDERATED_TOKEN_FILE from azure-workload-identity's webhook; "+
			"DefaultAzureCredential tries workload identity before managed identity, so they will not use the token sidecar's identities; "+
			"give the pod only one of the two: remove its %s label or its azure.workload.identity/use label",
			ref, strings.Join(federated, ", "), names.BindingLabel))
	}
	return ws
}

// injectedNames lists the identity variables of c that hold what the
// webhook injects, in the order of identityEnv.
func injectedNames(c *corev1.Container, st *state) []string {
	var out []string
	for _, e := range identityEnv(c, st) {
		have, ok := lookupEnv(c.Env, e.Name)
		if !ok {
			continue
		}
		same := equality.Semantic.DeepEqual(have, e)
		if e.Name == names.EnvAzcopyMSIClientID {
			// Either form the webhook writes.
			same = have.ValueFrom == nil && (have.Value == st.defaultClientID() || have.Value == "$("+names.EnvAzureClientID+")")
		}
		if same {
			out = append(out, e.Name)
		}
	}
	return out
}
