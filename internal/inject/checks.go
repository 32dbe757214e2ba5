package inject

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	resourcehelper "k8s.io/component-helpers/resource"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// checkOwnSidecar refuses a pod whose pod-identity-sidecar container is not
// the one this webhook would inject for ids: a pod that brings its own
// "sidecar" would otherwise be trusted as it is, and the
// injected-identities annotation would vouch for it.
//
// Only the fields this webhook owns are compared, so that another mutating
// webhook, ordered before or after this one, may change the rest (an image
// mirror, a proxy's env, a CA mount, a security policy) without the pod
// being denied on re-invocation. The webhook owns:
//   - the container's place: its list, and restartPolicy Always when it is
//     a native sidecar;
//   - the image's repository and tag, and its digest when the webhook's
//     image names one; the registry is not owned (see sameImage);
//   - command and args, which choose what the image runs;
//   - its env entries POD_IDENTITY_SIDECAR_CONFIG and IDENTITY_HEADER, each
//     set once (the kubelet takes the last of several);
//   - the credential mounts (names.NoAPITokenVolumeName, the projected
//     token, the identities' Secrets), which no other mount may lie inside,
//     and their volumes.
//
// Everything else (imagePullPolicy, other env and mounts, securityContext,
// resources, probes, lifecycle) is the cluster's to change. None of it
// widens what the pod's creator can do: whoever can create the pod can mount
// the same Secrets and a projected token of the same service account into
// a container of their own. docs/security.md states the rule.
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
	// Compare with what was injected (see injectedOptions), not with
	// override annotations that may have changed since.
	opts, err := injectedOptions(pod, cfg)
	if err != nil {
		return foreign(err.Error())
	}
	// The header requirement as injected, which stateOf parsed from the
	// config document.
	opts.imdsHeader = st.config.IMDSRequiresHeader
	secret := st.header.Value
	perContainer := len(st.config.Containers) > 0
	if perContainer {
		// The per-container headers cannot be derived again (the pod's
		// secret is gone); the table is taken as injected, since
		// sidecarconfig.Parse checked that it names only the pod's
		// identities.
		secret = "per-container"
	}
	want, err := buildState(ref, pod, ids, cfg, secret, opts)
	if err != nil {
		return err
	}
	if perContainer {
		want.config.Containers, want.header = st.config.Containers, corev1.EnvVar{}
		if err := want.marshal(ref); err != nil {
			return err
		}
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
	vols, mounts := credentialVolumes(want.config, want.opts)
	if what := ownedFieldDiffers(sc.c, sidecarContainer(cfg, want, mounts)); what != "" {
		return foreign(what)
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

// ownedFieldDiffers describes the first field that checkOwnSidecar says
// the webhook owns in which have differs from want, the container the
// webhook would inject, or returns "".
func ownedFieldDiffers(have *corev1.Container, want corev1.Container) string {
	if !sameImage(have.Image, want.Image) {
		return fmt.Sprintf("its image %q is not %q under any registry", have.Image, want.Image)
	}
	if !slices.Equal(have.Command, want.Command) {
		return fmt.Sprintf("its command %q is not %q", have.Command, want.Command)
	}
	if !slices.Equal(have.Args, want.Args) {
		return fmt.Sprintf("its args %q are not %q", have.Args, want.Args)
	}
	if (have.RestartPolicy == nil) != (want.RestartPolicy == nil) {
		if want.RestartPolicy != nil {
			return "its restartPolicy is not Always, which makes it a native sidecar"
		}
		return "it has a restartPolicy, where the webhook injects a regular container"
	}
	// The values were compared by stateOf and the config check; what is
	// left is an entry repeated, of which the kubelet takes the last.
	for _, e := range want.Env {
		if n := countEnvNamed(have.Env, e.Name); n != 1 {
			return fmt.Sprintf("its env sets %s %d times, where the webhook sets it once; the last one wins", e.Name, n)
		}
	}
	for _, m := range want.VolumeMounts {
		i := slices.IndexFunc(have.VolumeMounts, func(h corev1.VolumeMount) bool { return h.Name == m.Name })
		if i < 0 || !equality.Semantic.DeepEqual(have.VolumeMounts[i], m) {
			return fmt.Sprintf("its volumeMount %q at %s is missing or differs", m.Name, m.MountPath)
		}
		// A mount at or under a credential mount would replace what the
		// sidecar reads there.
		for _, h := range have.VolumeMounts {
			if h.Name != m.Name && (h.MountPath == m.MountPath || strings.HasPrefix(h.MountPath, strings.TrimRight(m.MountPath, "/")+"/")) {
				return fmt.Sprintf("its volumeMount %q at %s lies inside the webhook's mount %q at %s", h.Name, h.MountPath, m.Name, m.MountPath)
			}
		}
	}
	return ""
}

// countEnvNamed counts the entries of env named name.
func countEnvNamed(env []corev1.EnvVar, name string) int {
	n := 0
	for _, e := range env {
		if e.Name == name {
			n++
		}
	}
	return n
}

// sameImage reports whether have names the image want names, wherever it
// is pulled from. The registry is not compared: image mirrors and
// pull-through caches rewrite it, in place or under a path prefix
// (harbor.corp/proxy/...), so have's repository path may end in want's.
// The tag must be want's, and so must the digest when want pins one; a
// digest that a policy webhook adds to pin want's tag is accepted. This
// vouches for the image's name, not its content: which registry serves it
// is the cluster's choice.
func sameImage(have, want string) bool {
	h, w := parseImage(have), parseImage(want)
	if h.tag != w.tag || (w.digest != "" && h.digest != w.digest) {
		return false
	}
	return h.path == w.path || strings.HasSuffix(h.path, "/"+w.path)
}

// imageRef is an image reference split as container runtimes read it.
type imageRef struct {
	path, tag, digest string
}

// parseImage splits ref into its repository path (without the registry),
// tag and digest. The first component is a registry when it holds '.' or
// ':' or is localhost. Docker Hub's "library/" is dropped, since mirrors of
// an official image keep or drop it as they please.
func parseImage(ref string) imageRef {
	var r imageRef
	ref, r.digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref, r.tag = ref[:i], ref[i+1:]
	}
	if first, rest, ok := strings.Cut(ref, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		ref = rest
	}
	r.path = strings.TrimPrefix(ref, "library/")
	return r
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

// ownHeader reports whether e is the IDENTITY_HEADER the webhook gives
// container: the pod-wide one, or with per-container identities the one
// whose sum the sidecar's table has for the container.
func (s *state) ownHeader(container string, e corev1.EnvVar) bool {
	if len(s.config.Containers) == 0 {
		return equality.Semantic.DeepEqual(e, s.header)
	}
	i := slices.IndexFunc(s.config.Containers, func(a sidecarconfig.Container) bool { return a.Name == container })
	return i >= 0 && e.ValueFrom == nil && sidecarconfig.HeaderSum(e.Value) == s.config.Containers[i].HeaderSHA256
}

// checkUserHeader refuses a container that sets IDENTITY_HEADER itself. The
// webhook makes the header at admission, per pod, and hands the same
// random value to the sidecar and to the containers; a value from the
// manifest would silently win over it and could never match, so every token
// request of that container would fail.
func checkUserHeader(ref string, pod *corev1.Pod, st *state) error {
	selected := injectedSet(pod)
	for _, l := range []struct {
		name string
		cs   []corev1.Container
	}{{"initContainers", pod.Spec.InitContainers}, {"containers", pod.Spec.Containers}} {
		for i := range l.cs {
			c := &l.cs[i]
			if c.Name == names.SidecarContainerName || !selected(c.Name) {
				continue
			}
			j := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == names.EnvIdentityHeader })
			if j < 0 || st.ownHeader(c.Name, c.Env[j]) {
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
//     identity before managed identity, so it never reaches the sidecar;
//   - a container that sets IDENTITY_ENDPOINT to anything but the
//     sidecar's: the user's value wins (see addEnv), and the SDKs ask it.
func envWarnings(ref string, pod *corev1.Pod, st *state) []string {
	var ws, federated []string
	selected := injectedSet(pod)
	endpoint := "http://127.0.0.1:" + strconv.Itoa(st.config.Port) + names.PathAppService
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			c := &cs[i]
			if c.Name == names.SidecarContainerName {
				continue
			}
			if e, ok := lookupEnv(c.Env, names.EnvIdentityEndpoint); ok && selected(c.Name) && (e.ValueFrom != nil || e.Value != endpoint) {
				ws = append(ws, fmt.Sprintf("pod %s: container %q sets %s itself, which wins over the webhook's %s: the Azure SDKs in it will get their tokens from that endpoint, not from the token sidecar; "+
					"remove %s from the container's env to use the sidecar, or list the container in the pod annotation %s if it must not use it",
					ref, c.Name, names.EnvIdentityEndpoint, endpoint, names.EnvIdentityEndpoint, names.SkipContainersAnnotation))
			}
			if _, ok := lookupEnv(c.Env, "AZURE_FEDERATED_TOKEN_FILE"); ok && selected(c.Name) {
				federated = append(federated, strconv.Quote(c.Name))
			}
			if len(c.EnvFrom) == 0 || !selected(c.Name) {
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
	g, ok := st.grantFor(c)
	if !ok {
		return nil
	}
	var out []string
	for _, e := range identityEnv(c, st, g) {
		have, ok := lookupEnv(c.Env, e.Name)
		if !ok {
			continue
		}
		same := equality.Semantic.DeepEqual(have, e)
		if e.Name == names.EnvAzcopyMSIClientID {
			// Either form the webhook writes.
			same = have.ValueFrom == nil && (have.Value == g.clientID || have.Value == "$("+names.EnvAzureClientID+")")
		}
		if same {
			out = append(out, e.Name)
		}
	}
	return out
}
