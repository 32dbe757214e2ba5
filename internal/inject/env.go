package inject

import (
	"slices"
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

// addEnv gives c each identity variable that c does not define yet. A
// value the user set, literal or valueFrom, always wins, and nothing is
// added twice, which is what makes Inject idempotent.
//
// The kubelet expands $(VAR) in an env value only from variables defined
// earlier in the list. So a variable is inserted just before the first of
// the user's entries whose value references it, and appended otherwise:
// `TOKEN_URL=$(IDENTITY_ENDPOINT)?resource=...` then expands, and the
// user's entries keep their order. docs/design.md explains the choice.
func addEnv(c *corev1.Container, st *state) bool {
	want := identityEnv(c, st)
	// at[i] is the index of the user's entry before which want[i] goes;
	// len(c.Env) means at the end.
	at := make([]int, len(want))
	n := 0
	for i, e := range want {
		at[i] = -1
		if _, ok := lookupEnv(c.Env, e.Name); ok {
			continue
		}
		at[i] = firstReference(c.Env, e.Name)
		n++
	}
	if want[len(want)-1].Value == "$("+names.EnvAzureClientID+")" {
		// AZCOPY_MSI_CLIENT_ID refers to the user's AZURE_CLIENT_ID, so it
		// must come after it whatever references it.
		if i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == names.EnvAzureClientID }); at[len(at)-1] >= 0 && at[len(at)-1] <= i {
			at[len(at)-1] = i + 1
		}
	}
	if n == 0 {
		return false
	}
	out := make([]corev1.EnvVar, 0, len(c.Env)+n)
	for j := 0; j <= len(c.Env); j++ {
		for i := range want {
			if at[i] == j {
				// Copy so that a valueFrom header never shares memory
				// between containers of the returned pod.
				out = append(out, *want[i].DeepCopy())
			}
		}
		if j < len(c.Env) {
			out = append(out, c.Env[j])
		}
	}
	c.Env = out
	return true
}

// identityEnv is the environment every container gets, in order. The last
// entry is AZCOPY_MSI_CLIENT_ID.
func identityEnv(c *corev1.Container, st *state) []corev1.EnvVar {
	base := "http://127.0.0.1:" + strconv.Itoa(st.config.Port)
	clientID := st.defaultClientID()
	// azcopy should log in as the identity the user chose for the SDKs.
	azcopyClientID := clientID
	if _, userSet := lookupEnv(c.Env, names.EnvAzureClientID); userSet {
		azcopyClientID = "$(" + names.EnvAzureClientID + ")"
	}
	return []corev1.EnvVar{
		{Name: names.EnvIdentityEndpoint, Value: base + names.PathAppService},
		st.header,
		{Name: names.EnvAzureClientID, Value: clientID},
		{Name: names.EnvAuthorityHost, Value: base},
		{Name: names.EnvAzcopyAutoLoginType, Value: names.AzcopyAutoLoginMSI},
		{Name: names.EnvAzcopyMSIClientID, Value: azcopyClientID},
	}
}

// firstReference is the index of the first entry of env whose value
// references $(name) as the kubelet expands it, or len(env).
func firstReference(env []corev1.EnvVar, name string) int {
	for i, e := range env {
		if references(e.Value, name) {
			return i
		}
	}
	return len(env)
}

// references reports whether the kubelet would expand $(name) in value:
// "$$" is an escaped "$", and "$(" opens a reference that ends at ")".
func references(value, name string) bool {
	for i := 0; i < len(value)-1; i++ {
		if value[i] != '$' {
			continue
		}
		switch value[i+1] {
		case '$':
			i++
		case '(':
			end := strings.IndexByte(value[i+2:], ')')
			if end < 0 {
				return false
			}
			if value[i+2:i+2+end] == name {
				return true
			}
			i += 1 + end
		}
	}
	return false
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
