package inject

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podidentity/injector/internal/names"
)

// addEnvToAll gives every init and app container except the sidecar, and
// except those the pod asks to skip, the identity environment. Ephemeral
// containers are left alone: they are added through another subresource and
// are not ours to change. It says whether anything changed.
func addEnvToAll(pod *corev1.Pod, st *state) bool {
	skip := skipSet(pod)
	changed := false
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			c := &cs[i]
			if c.Name == names.SidecarContainerName || skip[c.Name] {
				continue
			}
			if addEnv(c, st) {
				changed = true
			}
		}
	}
	return changed
}

// addEnv appends to c each identity variable that c does not define yet. A
// value the user set, literal or valueFrom, always wins, and nothing is
// added twice, which is what makes Inject idempotent.
func addEnv(c *corev1.Container, st *state) bool {
	base := "http://127.0.0.1:" + strconv.Itoa(st.config.Port)
	clientID := st.defaultClientID()
	// azcopy should log in as the identity the user chose for the SDKs. The
	// kubelet expands $(VAR) from variables defined earlier in the list, and
	// the user's AZURE_CLIENT_ID always precedes what is appended here.
	azcopyClientID := clientID
	if _, userSet := lookupEnv(c.Env, names.EnvAzureClientID); userSet {
		azcopyClientID = "$(" + names.EnvAzureClientID + ")"
	}
	want := [...]corev1.EnvVar{
		{Name: names.EnvIdentityEndpoint, Value: base + names.PathAppService},
		st.header,
		{Name: names.EnvAzureClientID, Value: clientID},
		{Name: names.EnvAuthorityHost, Value: base},
		{Name: names.EnvAzcopyAutoLoginType, Value: names.AzcopyAutoLoginMSI},
		{Name: names.EnvAzcopyMSIClientID, Value: azcopyClientID},
	}
	changed := false
	for _, e := range want {
		if _, ok := lookupEnv(c.Env, e.Name); ok {
			continue
		}
		// Copy so that a valueFrom header never shares memory between
		// containers of the returned pod.
		c.Env = append(c.Env, *e.DeepCopy())
		changed = true
	}
	return changed
}

// lookupEnv returns the first entry of env named name.
func lookupEnv(env []corev1.EnvVar, name string) (corev1.EnvVar, bool) {
	for _, e := range env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// skipSet is the set of container names in the skip-containers annotation,
// comma-separated with optional spaces.
func skipSet(pod *corev1.Pod) map[string]bool {
	v, _ := names.Lookup(pod.Annotations, names.SkipContainersAnnotation)
	if strings.TrimSpace(v) == "" {
		return nil
	}
	set := map[string]bool{}
	for name := range strings.SplitSeq(v, ",") {
		if name = strings.TrimSpace(name); name != "" {
			set[name] = true
		}
	}
	return set
}
