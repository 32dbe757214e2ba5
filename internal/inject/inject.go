package inject

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// Inject returns a copy of pod with the token sidecar, its volumes, the
// identity environment of every other container and the injected-identities
// annotation. It never modifies pod. secret becomes IDENTITY_HEADER unless
// the pod already has a sidecar, whose value is then reused. With
// per-container identities (names.ContainerIdentitiesAnnotation) each
// container's IDENTITY_HEADER is derived from secret instead (see
// containerSecret), and secret itself is written nowhere.
//
// The pod's override annotations are read when the sidecar is injected; a
// pod that has the sidecar keeps what it was injected with.
//
// Errors wrap ErrNoIdentities, ErrHostNetwork, ErrHostPID, ErrSharedProcessNamespace,
// ErrWindowsPod, ErrBadPortAnnotation, ErrPortCollision, ErrInvalidIdentity,
// ErrInvalidConfig, ErrNameConflict, ErrBadOverride or
// ErrContainerIdentities, and name the pod and the field at fault.
func Inject(pod *corev1.Pod, ids []Identity, cfg Config, secret string) (*corev1.Pod, Result, error) {
	if pod == nil {
		return nil, Result{}, fmt.Errorf("%w: the pod is nil", ErrInvalidConfig)
	}
	out := pod.DeepCopy()
	ref := PodRef(out)
	if len(ids) == 0 {
		return nil, Result{}, fmt.Errorf("pod %s: %w; bind at least one AzureIdentity to the pod's %s label", ref, ErrNoIdentities, names.BindingLabel)
	}
	if out.Spec.HostNetwork {
		return nil, Result{}, fmt.Errorf("pod %s: spec.hostNetwork is true: %w: the token sidecar listens on 127.0.0.1, "+
			"which with hostNetwork is the node's loopback, so it would serve tokens to every pod on the node; "+
			"run the pod without hostNetwork, or remove its %s label", ref, ErrHostNetwork, names.BindingLabel)
	}
	if err := checkHostPID(ref, out); err != nil {
		return nil, Result{}, err
	}
	if err := checkSharedForContainers(ref, out); err != nil {
		return nil, Result{}, err
	}
	procWarning, procErr := checkSharedProcessNamespace(ref, out)
	if procErr != nil {
		return nil, Result{}, procErr
	}

	if field := windowsField(out); field != "" {
		return nil, Result{}, fmt.Errorf("pod %s: %s is windows: %w: the token sidecar is a Linux image and cannot run on a Windows node; "+
			"run the workload on Linux nodes, or remove its %s label and give it credentials another way "+
			"(for example Azure workload identity, which needs no sidecar)", ref, field, ErrWindowsPod, names.BindingLabel)
	}

	var (
		res Result
		st  *state
		err error
	)
	sidecar := findSidecar(out)
	if sidecar.c != nil {
		st, err = stateOf(ref, sidecar)
		if err == nil {
			err = checkOwnSidecar(ref, out, sidecar, st, ids, cfg)
		}
	} else {
		st, err = newState(ref, out, ids, cfg, secret)
	}
	if err != nil {
		return nil, Result{}, err
	}
	if err := checkPorts(ref, out, st.config.Port); err != nil {
		return nil, Result{}, err
	}
	if err := checkInjectContainers(ref, out); err != nil {
		return nil, Result{}, err
	}
	if len(st.config.Containers) > 0 && out.Spec.ShareProcessNamespace != nil && *out.Spec.ShareProcessNamespace {
		// A later webhook may have shared the process namespace of a pod
		// injected with per-container identities.
		return nil, Result{}, fmt.Errorf("pod %s: spec.shareProcessNamespace is true and the sidecar serves per-container identities: %w: "+
			"with a shared process namespace every container can read the others' %s through /proc/<pid>/environ; set spec.shareProcessNamespace to false",
			ref, ErrContainerIdentities, names.EnvIdentityHeader)
	}
	if err := checkUserHeader(ref, out, st); err != nil {
		return nil, Result{}, err
	}

	if sidecar.c == nil {
		if err := addSidecar(ref, out, st, cfg); err != nil {
			return nil, Result{}, err
		}
		res.Changed = true
		sidecar = findSidecar(out)
	}
	envChanged, envWarns := addEnvToAll(ref, out, st)
	if envChanged {
		res.Changed = true
	}
	if setAnnotation(out, names.InjectedAnnotation, injectedValue(st.config)) {
		res.Changed = true
	}
	if err := checkPodResources(ref, pod, out); err != nil {
		return nil, Result{}, err
	}
	res.DefaultIdentity = st.config.DefaultIdentity
	res.Warnings = append(append(warnings(ref, out, sidecar), envWarns...), envWarnings(ref, out, st)...)
	if procWarning != "" {
		res.Warnings = append(res.Warnings, procWarning)
	}
	if w := legacyInjectedWarning(ref, out); w != "" {
		res.Warnings = append(res.Warnings, w)
	}
	return out, res, nil
}

// legacyInjectedWarning warns about the aadpodidentity.k8s.io/ spelling of
// names.InjectedAnnotation on pod, most likely copied from an old manifest.
// The webhook neither reads nor writes it, and cannot remove it (its patch
// only adds), so a reader would take a stale value for what the pod was
// given; the warning says where that is and what to do.
func legacyInjectedWarning(ref string, pod *corev1.Pod) string {
	legacy := names.LegacyKey(names.InjectedAnnotation)
	v, ok := pod.Annotations[legacy]
	if !ok {
		return ""
	}
	return fmt.Sprintf("pod %s: metadata.annotations[%q] is %q, a legacy key that the webhook no longer reads or writes, so it says nothing about this pod; "+
		"the identities the pod was given are in metadata.annotations[%q]: remove the legacy annotation from the pod's manifest or template",
		ref, legacy, truncateValue(v), names.InjectedAnnotation)
}

// labelOSBeta is the deprecated spelling of corev1.LabelOSStable, which
// kubelets still set on their nodes, so node selectors still use it.
const labelOSBeta = "beta.kubernetes.io/os"

// windowsField names the field that keeps pod off Linux nodes, where alone
// the sidecar can run, or returns "": spec.os.name, a nodeSelector on
// either OS label, or a required node affinity that no Linux node
// satisfies (see affinityExcludesLinux).
func windowsField(pod *corev1.Pod) string {
	if pod.Spec.OS != nil && strings.EqualFold(string(pod.Spec.OS.Name), string(corev1.Windows)) {
		return "spec.os.name"
	}
	for _, key := range []string{corev1.LabelOSStable, labelOSBeta} {
		if strings.EqualFold(pod.Spec.NodeSelector[key], string(corev1.Windows)) {
			return fmt.Sprintf("spec.nodeSelector[%q]", key)
		}
	}
	return affinityExcludesLinux(pod.Spec.Affinity)
}

// affinityExcludesLinux names the requirement of a required node affinity
// that keeps the pod off every Linux node, or returns "".
//
// The scheduler ORs the nodeSelectorTerms and ANDs the requirements within
// a term, so a pod is kept off Linux only when every term is: a term that
// a Linux node can satisfy lets the pod land there, and the sidecar runs.
// A term is kept off Linux by a requirement on the OS label (either
// spelling) that a node labelled linux fails: In without "linux", or NotIn
// with it; the values compare as the scheduler compares them, exactly. A
// term without an OS requirement (empty, or on a zone, say), Exists,
// DoesNotExist, Gt and Lt do not count: they say nothing of Windows, and
// the last three match no kubelet's node at all, which the scheduler
// reports. Preferred terms are no requirement. With one term the field
// named is the requirement, with several all of them.
func affinityExcludesLinux(a *corev1.Affinity) string {
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	const terms = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
	ts := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	field := ""
	for i, t := range ts {
		j := slices.IndexFunc(t.MatchExpressions, excludesLinux)
		if j < 0 {
			return ""
		}
		field = fmt.Sprintf("%s[%d].matchExpressions[%d]", terms, i, j)
	}
	if len(ts) > 1 {
		return "every term of " + terms
	}
	return field
}

// excludesLinux reports whether a node labelled linux fails r, a
// requirement on the OS label.
func excludesLinux(r corev1.NodeSelectorRequirement) bool {
	if r.Key != corev1.LabelOSStable && r.Key != labelOSBeta {
		return false
	}
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return !slices.Contains(r.Values, string(corev1.Linux))
	case corev1.NodeSelectorOpNotIn:
		return slices.Contains(r.Values, string(corev1.Linux))
	}
	return false
}

// DefaultIdentity is the identity whose client ID the containers get as
// AZURE_CLIENT_ID: the highest Weight, and on a tie the smallest Name, so
// that the choice does not depend on the order of ids. It returns the zero
// Identity when ids is empty.
func DefaultIdentity(ids []Identity) Identity {
	var best Identity
	for i, id := range ids {
		if i == 0 || id.Weight > best.Weight || (id.Weight == best.Weight && id.Name < best.Name) {
			best = id
		}
	}
	return best
}

// state is what every container's environment derives from: the sidecar's
// configuration and its IDENTITY_HEADER, either about to be injected or read
// back from a sidecar that is already in the pod.
type state struct {
	config *sidecarconfig.Config
	// configJSON is config as written into the sidecar's env.
	configJSON string
	// header is the sidecar's IDENTITY_HEADER entry, copied verbatim into
	// the other containers so that both sides always agree. It is empty
	// with per-container identities (config.Containers).
	header corev1.EnvVar
	// headers are the per-container IDENTITY_HEADER values made by this
	// admission, by container name; nil when the sidecar was already there.
	headers map[string]string
	// opts are the pod's overrides, when the sidecar is about to be injected.
	opts podOptions
}

// clientIDOf is the client ID of the identity named name.
func (s *state) clientIDOf(name string) string {
	for _, id := range s.config.Identities {
		if id.Name == name {
			return id.ClientID
		}
	}
	return ""
}

// defaultClientID is the client ID of the identity served by default.
func (s *state) defaultClientID() string {
	return s.config.Default().ClientID
}

// newState builds the sidecar configuration for a pod without a sidecar,
// with the overrides its annotations ask for.
func newState(ref string, pod *corev1.Pod, ids []Identity, cfg Config, secret string) (*state, error) {
	opts, err := readOptions(ref, pod, ids, cfg)
	if err != nil {
		return nil, err
	}
	return buildState(ref, pod, ids, cfg, secret, opts)
}

// buildState builds the sidecar configuration for ids with the overrides
// opts: per-container headers derived from secret when opts has grants,
// else secret as the pod-wide header.
func buildState(ref string, pod *corev1.Pod, ids []Identity, cfg Config, secret string, opts podOptions) (*state, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pod %s: %w", ref, err)
	}
	if secret == "" {
		return nil, fmt.Errorf("pod %s: %w: the %s value is empty; the webhook must pass a random per-pod value", ref, ErrInvalidConfig, names.EnvIdentityHeader)
	}
	port, err := tokenPort(ref, pod, cfg.Port)
	if err != nil {
		return nil, err
	}
	sc, err := sidecarConfig(ids, port, cfg.AllowedAuthorityHosts)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", ref, err)
	}
	st := &state{config: sc, opts: opts}
	sc.Containers, st.headers = containerAccess(pod, opts.grants, sc.DefaultIdentity, secret)
	sc.IMDSRequiresHeader = opts.imdsHeader || len(sc.Containers) > 0
	if sc.Containers == nil {
		st.header = corev1.EnvVar{Name: names.EnvIdentityHeader, Value: secret}
	}
	if err := st.marshal(ref); err != nil {
		return nil, err
	}
	return st, nil
}

// marshal validates the state's config and sets configJSON.
func (s *state) marshal(ref string) error {
	if err := s.config.Validate(); err != nil {
		return fmt.Errorf("pod %s: %w: %w", ref, ErrInvalidIdentity, err)
	}
	js, err := s.config.Marshal()
	if err != nil {
		return fmt.Errorf("pod %s: %w", ref, err)
	}
	s.configJSON = js
	return nil
}

// stateOf reads the configuration back from a sidecar already in the pod.
// Without it, a container added by a later webhook would get another port or
// header than the sidecar serves.
func stateOf(ref string, sc sidecarRef) (*state, error) {
	field := fmt.Sprintf("spec.%s[%d]", sc.list, sc.index)
	conflict := func(format string, args ...any) error {
		return fmt.Errorf("pod %s: %s (container %q) %s: %w; rename that container so that the webhook can inject its own",
			ref, field, names.SidecarContainerName, fmt.Sprintf(format, args...), ErrNameConflict)
	}
	cfgEnv, ok := lookupEnv(sc.c.Env, names.EnvSidecarConfig)
	if !ok || cfgEnv.Value == "" {
		return nil, conflict("has no %s value, so it is not a sidecar this webhook injected", names.EnvSidecarConfig)
	}
	parsed, err := sidecarconfig.Parse([]byte(cfgEnv.Value))
	if err != nil {
		return nil, fmt.Errorf("%w (%w)", conflict("has an unusable %s", names.EnvSidecarConfig), err)
	}
	header, ok := lookupEnv(sc.c.Env, names.EnvIdentityHeader)
	if len(parsed.Containers) > 0 {
		// Per-container identities: the sidecar holds only the sums of the
		// containers' headers, and a pod-wide one would open every identity.
		if ok {
			return nil, conflict("has a pod-wide %s beside per-container headers, so it is not a sidecar this webhook injected", names.EnvIdentityHeader)
		}
		return &state{config: parsed, configJSON: cfgEnv.Value}, nil
	}
	if !ok || (header.Value == "" && header.ValueFrom == nil) {
		return nil, conflict("has no %s, so it is not a sidecar this webhook injected", names.EnvIdentityHeader)
	}
	return &state{config: parsed, configJSON: cfgEnv.Value, header: header}, nil
}

// MinAnnotatedPort is the lowest port the token-port annotation may choose:
// below it are the privileged ports, which the sidecar, running as a
// non-root user without capabilities, cannot bind.
const MinAnnotatedPort = 1024

// tokenPort is the operator's port unless the pod's annotation overrides it.
func tokenPort(ref string, pod *corev1.Pod, def int) (int, error) {
	v, ok := names.Lookup(pod.Annotations, names.TokenPortAnnotation)
	if !ok {
		return def, nil
	}
	// Name the key the user wrote, which may be the legacy one.
	key := names.TokenPortAnnotation
	if _, set := pod.Annotations[key]; !set {
		key = names.LegacyKey(key)
	}
	p, err := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
	if err != nil || p < MinAnnotatedPort {
		return 0, fmt.Errorf("pod %s: metadata.annotations[%q] is %q: %w: want a port number in %d-65535 that no container of the pod declares; "+
			"fix the value, or remove the annotation to use the default port %d", ref, key, v, ErrBadPortAnnotation, MinAnnotatedPort, def)
	}
	return int(p), nil
}

// checkPorts refuses a pod in which another container listens on the
// sidecar's port, as far as the spec shows: a TCP containerPort, or a probe
// aimed at that port. Both would fight the sidecar for the pod's loopback.
func checkPorts(ref string, pod *corev1.Pod, port int) error {
	for _, l := range []struct {
		name string
		cs   []corev1.Container
	}{{"initContainers", pod.Spec.InitContainers}, {"containers", pod.Spec.Containers}} {
		for i := range l.cs {
			c := &l.cs[i]
			if c.Name == names.SidecarContainerName {
				continue
			}
			field := portUse(c, port)
			if field == "" {
				continue
			}
			if v, ok := names.Lookup(pod.Annotations, names.TokenPortAnnotation); ok && strings.TrimSpace(v) == strconv.Itoa(port) {
				// The pod chose this port itself: say what it clashes
				// with, not "set the annotation".
				key := names.TokenPortAnnotation
				if _, set := pod.Annotations[key]; !set {
					key = names.LegacyKey(key)
				}
				return fmt.Errorf("pod %s: metadata.annotations[%q] is %d, which container %q already uses in spec.%s[%d].%s: %w; "+
					"change the annotation to a port in %d-65535 that no container declares",
					ref, key, port, c.Name, l.name, i, field, ErrPortCollision, MinAnnotatedPort)
			}
			return fmt.Errorf("pod %s: spec.%s[%d].%s of container %q is %d, the token sidecar's port: %w; "+
				"set the pod annotation %s to a port in %d-65535 that no container uses",
				ref, l.name, i, field, c.Name, port, ErrPortCollision, names.TokenPortAnnotation, MinAnnotatedPort)
		}
	}
	return nil
}

// portUse names the field of c that uses port, or returns "".
func portUse(c *corev1.Container, port int) string {
	for j, p := range c.Ports {
		if int(p.ContainerPort) == port && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			return fmt.Sprintf("ports[%d].containerPort", j)
		}
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}} {
		if pr.probe == nil {
			continue
		}
		h := pr.probe.ProbeHandler
		switch {
		case h.HTTPGet != nil && h.HTTPGet.Port.IntValue() == port && h.HTTPGet.Port.StrVal == "":
			return pr.name + ".httpGet.port"
		case h.TCPSocket != nil && h.TCPSocket.Port.IntValue() == port && h.TCPSocket.Port.StrVal == "":
			return pr.name + ".tcpSocket.port"
		case h.GRPC != nil && int(h.GRPC.Port) == port:
			return pr.name + ".grpc.port"
		}
	}
	return ""
}

// sidecarRef locates the sidecar container in the pod.
type sidecarRef struct {
	c     *corev1.Container
	list  string // "initContainers" or "containers"
	index int
}

// findSidecar finds the sidecar by name; c is nil when there is none.
func findSidecar(pod *corev1.Pod) sidecarRef {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == names.SidecarContainerName {
			return sidecarRef{c: &pod.Spec.InitContainers[i], list: "initContainers", index: i}
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == names.SidecarContainerName {
			return sidecarRef{c: &pod.Spec.Containers[i], list: "containers", index: i}
		}
	}
	return sidecarRef{}
}

// injectedValue is the value of names.InjectedAnnotation: what the sidecar
// serves, as sorted namespace/name pairs.
func injectedValue(c *sidecarconfig.Config) string {
	refs := make([]string, 0, len(c.Identities))
	for _, id := range c.Identities {
		refs = append(refs, id.Namespace+"/"+id.Name)
	}
	slices.Sort(refs)
	return strings.Join(refs, ",")
}

// setAnnotation sets key to value and says whether that changed anything.
func setAnnotation(pod *corev1.Pod, key, value string) bool {
	if v, ok := pod.Annotations[key]; ok && v == value {
		return false
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[key] = value
	return true
}

// warnings tells the user which containers cannot get tokens although they
// have the environment: every init container when the sidecar is a regular
// container, and init containers that run before a native sidecar starts.
func warnings(ref string, pod *corev1.Pod, sc sidecarRef) []string {
	var ws []string
	if sc.list == "containers" {
		w := fmt.Sprintf("pod %s: the token sidecar runs as a regular container because API servers below 1.29 have no native sidecars, "+
			"so init containers cannot get tokens", ref)
		if inits := containerNames(pod.Spec.InitContainers, nil); len(inits) > 0 {
			w += fmt.Sprintf("; init containers %s will not get tokens: move that work into an app container or upgrade the cluster to 1.29 or later", strings.Join(inits, ", "))
		}
		ws = append(ws, w)
	} else if before := containerNames(pod.Spec.InitContainers[:sc.index], isRegularInit); len(before) > 0 {
		ws = append(ws, fmt.Sprintf("pod %s: init containers %s run before the token sidecar %s starts and will not get tokens; "+
			"have the webhook that added them run before this one, or move their work after the sidecar",
			ref, strings.Join(before, ", "), names.SidecarContainerName))
	}
	if missing := missingSkipped(pod); len(missing) > 0 {
		ws = append(ws, fmt.Sprintf("pod %s: metadata.annotations[%q] names %s, which the pod does not have; check the spelling",
			ref, names.SkipContainersAnnotation, strings.Join(missing, ", ")))
	}
	return ws
}

// isRegularInit is true for an init container that must finish before the
// next one starts, as opposed to a native sidecar.
func isRegularInit(c *corev1.Container) bool {
	return c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways
}

// containerNames quotes the names of the containers that keep accepts (all
// when keep is nil).
func containerNames(cs []corev1.Container, keep func(*corev1.Container) bool) []string {
	var out []string
	for i := range cs {
		if keep == nil || keep(&cs[i]) {
			out = append(out, strconv.Quote(cs[i].Name))
		}
	}
	return out
}

// missingSkipped lists the names in the skip-containers annotation that
// match no container, which is most likely a typo.
func missingSkipped(pod *corev1.Pod) []string {
	var missing []string
	for name := range skipSet(pod) {
		if !hasContainer(pod, name) {
			missing = append(missing, strconv.Quote(name))
		}
	}
	slices.Sort(missing)
	return missing
}

// hasContainer is true when an init or app container is named name.
func hasContainer(pod *corev1.Pod, name string) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == name {
				return true
			}
		}
	}
	return false
}

// PodRef names the pod in messages, as namespace/name. Pods made by a
// controller have only a generateName at admission, which stands in for the
// name.
func PodRef(p *corev1.Pod) string {
	name := p.Name
	if name == "" {
		name = p.GenerateName
	}
	if name == "" {
		name = "<unnamed>"
	}
	if p.Namespace == "" {
		return name
	}
	return p.Namespace + "/" + name
}
