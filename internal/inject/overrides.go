package inject

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// podOptions are a pod's overrides of the operator's Config, read from its
// annotations once, when the sidecar is injected. A later admission of the
// same pod (re-invocation) reads what was injected instead, so that an
// annotation changed in between cannot change a sidecar that already runs.
type podOptions struct {
	// audience and expiration of the projected service account token.
	audience   string
	expiration int64
	// resources of the sidecar: the operator's, with the pod's overrides.
	resources corev1.ResourceRequirements
	// grants maps container names to the identity the pod's
	// ContainerIdentitiesAnnotation gives them; nil without it.
	grants map[string]string
	// imdsHeader: the pod asked, with IMDSRequiresHeaderAnnotation, that
	// the sidecar's IMDS path require X-IDENTITY-HEADER too. Per-container
	// identities turn it on whatever the annotation says (buildState).
	imdsHeader bool
}

// splitList splits an annotation's value at ',' and ';', which
// azure-workload-identity users write, and drops empty entries.
func splitList(v string) []string {
	var out []string
	for part := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ',' || r == ';' }) {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// annotationError is the deny message for an override annotation: it names
// the pod, the annotation and its value, and says what is allowed.
func annotationError(ref, key, value string, sentinel error, format string, args ...any) error {
	return fmt.Errorf("pod %s: metadata.annotations[%q] is %q: %w: %s", ref, key, truncateValue(value), sentinel, fmt.Sprintf(format, args...))
}

// truncateValue keeps a user's value short enough for a kubectl message.
func truncateValue(v string) string {
	if len(v) > 128 {
		return v[:128] + "..."
	}
	return v
}

// readOptions validates the pod's override annotations. Every error wraps
// ErrBadOverride or ErrContainerIdentities and names the annotation and
// the allowed range.
func readOptions(ref string, pod *corev1.Pod, ids []Identity, cfg Config) (podOptions, error) {
	o := podOptions{audience: cfg.audience(), expiration: cfg.expiration(), resources: *cfg.Resources.DeepCopy()}
	if v, ok := pod.Annotations[names.TokenAudienceAnnotation]; ok {
		a := strings.TrimSpace(v)
		if a == "" || len(a) > names.MaxTokenAudienceLength || strings.ContainsAny(a, " \t\r\n,;") || !isPrintableASCII(a) {
			return o, annotationError(ref, names.TokenAudienceAnnotation, v, ErrBadOverride,
				"want an audience of 1-%d printable ASCII characters without spaces, ',' or ';', as the federated credential in Entra ID lists it (default %s); fix the value or remove the annotation",
				names.MaxTokenAudienceLength, cfg.audience())
		}
		o.audience = a
	}
	if v, ok := pod.Annotations[names.TokenExpirationAnnotation]; ok {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < names.MinTokenExpirationSeconds || n > names.MaxTokenExpirationSeconds {
			return o, annotationError(ref, names.TokenExpirationAnnotation, v, ErrBadOverride,
				"want a whole number of seconds from %d to %d (default %d); fix the value or remove the annotation",
				names.MinTokenExpirationSeconds, names.MaxTokenExpirationSeconds, cfg.expiration())
		}
		o.expiration = n
	}
	if v, ok := pod.Annotations[names.IMDSRequiresHeaderAnnotation]; ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return o, annotationError(ref, names.IMDSRequiresHeaderAnnotation, v, ErrBadOverride,
				"want \"true\" or \"false\" (default false; always true with %s); fix the value or remove the annotation", names.ContainerIdentitiesAnnotation)
		}
		o.imdsHeader = b
	}
	if err := readResources(ref, pod, &o.resources); err != nil {
		return o, err
	}
	grants, err := readGrants(ref, pod, ids)
	if err != nil {
		return o, err
	}
	o.grants = grants
	return o, nil
}

// resourceOverride is one of the sidecar's resource annotations.
type resourceOverride struct {
	key      string
	resource corev1.ResourceName
	limit    bool
	min, max string
	example  string
}

var resourceOverrides = []resourceOverride{
	{names.SidecarCPURequestAnnotation, corev1.ResourceCPU, false, names.MinSidecarCPU, names.MaxSidecarCPU, "50m"},
	{names.SidecarCPULimitAnnotation, corev1.ResourceCPU, true, names.MinSidecarCPU, names.MaxSidecarCPU, "200m"},
	{names.SidecarMemoryRequestAnnotation, corev1.ResourceMemory, false, names.MinSidecarMemory, names.MaxSidecarMemory, "32Mi"},
	{names.SidecarMemoryLimitAnnotation, corev1.ResourceMemory, true, names.MinSidecarMemory, names.MaxSidecarMemory, "128Mi"},
}

// readResources applies the sidecar resource annotations to r, which holds
// the operator's values, and refuses a request above its limit.
func readResources(ref string, pod *corev1.Pod, r *corev1.ResourceRequirements) error {
	set := map[string]bool{}
	for _, ov := range resourceOverrides {
		v, ok := pod.Annotations[ov.key]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(strings.TrimSpace(v))
		lo, hi := resource.MustParse(ov.min), resource.MustParse(ov.max)
		if err != nil || q.Cmp(lo) < 0 || q.Cmp(hi) > 0 {
			return annotationError(ref, ov.key, v, ErrBadOverride,
				"want a %s quantity from %s to %s (for example %s); fix the value or remove the annotation", ov.resource, ov.min, ov.max, ov.example)
		}
		list := &r.Requests
		if ov.limit {
			list = &r.Limits
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[ov.resource] = q
		set[ov.key] = true
	}
	for _, pair := range [][2]resourceOverride{{resourceOverrides[0], resourceOverrides[1]}, {resourceOverrides[2], resourceOverrides[3]}} {
		req, lim := pair[0], pair[1]
		rq, okReq := r.Requests[req.resource]
		lq, okLim := r.Limits[lim.resource]
		if !okReq || !okLim || rq.Cmp(lq) <= 0 || (!set[req.key] && !set[lim.key]) {
			continue
		}
		from := func(key string) string {
			if set[key] {
				return "metadata.annotations[" + strconv.Quote(key) + "]"
			}
			return "the webhook's default"
		}
		return fmt.Errorf("pod %s: the sidecar's %s request %s (%s) is above its limit %s (%s): %w: a request must not exceed its limit; "+
			"lower %s or raise %s", ref, req.resource, rq.String(), from(req.key), lq.String(), from(lim.key), ErrBadOverride, req.key, lim.key)
	}
	return nil
}

// isPrintableASCII reports whether s holds only visible ASCII.
func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

// readGrants parses ContainerIdentitiesAnnotation and checks it against
// the pod's containers and identities.
func readGrants(ref string, pod *corev1.Pod, ids []Identity) (map[string]string, error) {
	key := names.ContainerIdentitiesAnnotation
	v, ok := pod.Annotations[key]
	if !ok {
		return nil, nil
	}
	bad := func(format string, args ...any) error {
		return annotationError(ref, key, v, ErrContainerIdentities, format, args...)
	}
	entries := splitList(v)
	if len(entries) == 0 {
		return nil, bad("want container=identity entries separated by ',' or ';', for example data-init=blob-reader,my-app=queue-writer; fix the value or remove the annotation")
	}
	bound := make([]string, 0, len(ids))
	for _, id := range ids {
		bound = append(bound, id.Name)
	}
	slices.Sort(bound)
	selected := injectedSet(pod)
	grants := map[string]string{}
	for _, e := range entries {
		c, id, found := strings.Cut(e, "=")
		c, id = strings.TrimSpace(c), strings.TrimSpace(id)
		if !found || c == "" || id == "" {
			return nil, bad("entry %q is not container=identity; write entries such as data-init=blob-reader, separated by ',' or ';'", truncateValue(e))
		}
		if _, dup := grants[c]; dup {
			return nil, bad("container %q is named twice; give each container one identity", c)
		}
		if c == names.SidecarContainerName || !hasContainer(pod, c) {
			return nil, bad("the pod has no container %q; name one of its init or app containers %s", c, strings.Join(containerNames(append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...), func(c *corev1.Container) bool { return c.Name != names.SidecarContainerName }), ", "))
		}
		if !selected(c) {
			return nil, bad("container %q gets no identity environment because of %s or %s; remove it from this annotation or from that list", c, names.SkipContainersAnnotation, names.InjectContainersAnnotation)
		}
		if !slices.Contains(bound, id) {
			return nil, bad("container %q is given AzureIdentity %q, which is not among the identities that the pod's %s label %q resolves to in namespace %s (%s); "+
				"bind it with an AzureIdentityBinding of that selector, or name one of those", c, id, names.BindingLabel, pod.Labels[names.BindingLabel], pod.Namespace, strings.Join(bound, ", "))
		}
		grants[c] = id
	}
	if err := checkSharedForContainers(ref, pod); err != nil {
		return nil, err
	}
	return grants, nil
}

// checkSharedForContainers refuses per-container identities in a pod that
// shares its process namespace. It runs before the general check of
// shareProcessNamespace, whose opt-out annotation does not apply here, so
// that the user reads why.
func checkSharedForContainers(ref string, pod *corev1.Pod) error {
	key := names.ContainerIdentitiesAnnotation
	if _, ok := pod.Annotations[key]; !ok || pod.Spec.ShareProcessNamespace == nil || !*pod.Spec.ShareProcessNamespace {
		return nil
	}
	return fmt.Errorf("pod %s: metadata.annotations[%q] is set and spec.shareProcessNamespace is true: %w: "+
		"per-container identities rest on each container's IDENTITY_HEADER being its own, and with a shared process namespace "+
		"every container can read the others' environment through /proc/<pid>/environ; remove the annotation, or set spec.shareProcessNamespace to false "+
		"(%s does not lift this)", ref, key, ErrContainerIdentities, names.AllowSharedProcessNamespaceAnnotation)
}

// containerSecret is the IDENTITY_HEADER of one container, derived from the
// pod's random secret by HMAC-SHA256 keyed with it. Without the pod secret,
// which is written nowhere when every container has its own, one
// container's header tells nothing about another's; and Inject stays a pure
// function of its arguments.
func containerSecret(podSecret, container string) string {
	m := hmac.New(sha256.New, []byte(podSecret))
	m.Write([]byte("container/" + container))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// containerAccess is the sidecar config's Containers and each container's
// header: every container that gets the environment, with its granted
// identity or else the default one, sorted by name.
func containerAccess(pod *corev1.Pod, grants map[string]string, def, podSecret string) ([]sidecarconfig.Container, map[string]string) {
	if grants == nil {
		return nil, nil
	}
	selected := injectedSet(pod)
	var access []sidecarconfig.Container
	headers := map[string]string{}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			name := cs[i].Name
			if name == names.SidecarContainerName || !selected(name) {
				continue
			}
			id, ok := grants[name]
			if !ok {
				id = def
			}
			secret := containerSecret(podSecret, name)
			headers[name] = secret
			access = append(access, sidecarconfig.Container{Name: name, HeaderSHA256: sidecarconfig.HeaderSum(secret), Identities: []string{id}})
		}
	}
	slices.SortFunc(access, func(a, b sidecarconfig.Container) int { return strings.Compare(a.Name, b.Name) })
	return access, headers
}

// injectedSet says which containers get the identity environment: those
// in InjectContainersAnnotation when it is set, else all, minus those in
// SkipContainersAnnotation.
func injectedSet(pod *corev1.Pod) func(string) bool {
	skip := skipSet(pod)
	var only map[string]bool
	if v, ok := pod.Annotations[names.InjectContainersAnnotation]; ok {
		only = map[string]bool{}
		for _, n := range splitList(v) {
			only[n] = true
		}
	}
	return func(name string) bool {
		return !skip[name] && (only == nil || only[name])
	}
}

// checkInjectContainers refuses an inject-containers annotation that names
// no container or a container the pod does not have: an opt-in list with a
// typo would leave the container it meant without an identity.
func checkInjectContainers(ref string, pod *corev1.Pod) error {
	key := names.InjectContainersAnnotation
	v, ok := pod.Annotations[key]
	if !ok {
		return nil
	}
	list := splitList(v)
	if len(list) == 0 {
		return annotationError(ref, key, v, ErrBadOverride, "want container names separated by ',' or ';'; name at least one, or remove the annotation to inject every container")
	}
	for _, n := range list {
		if n == names.SidecarContainerName || !hasContainer(pod, n) {
			return annotationError(ref, key, v, ErrBadOverride, "the pod has no container %q; name only its init or app containers, separated by ',' or ';'", truncateValue(n))
		}
	}
	return nil
}

// injectedOptions reads back the token options a pod was injected with,
// from its token volume (audience, lifetime), so that re-invocation
// compares the volume with what was injected rather than with annotations
// that may have changed since. Each value must still be one that the
// annotations could have asked for; what is out of range is named in the
// returned error. The sidecar's resources are not the webhook's to check
// after injection (see checkOwnSidecar).
func injectedOptions(pod *corev1.Pod, cfg Config) (podOptions, error) {
	o := podOptions{audience: cfg.audience(), expiration: cfg.expiration()}
	for _, v := range pod.Spec.Volumes {
		if v.Name != names.TokenVolumeName || v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if t := src.ServiceAccountToken; t != nil {
				o.audience = t.Audience
				if t.ExpirationSeconds != nil {
					o.expiration = *t.ExpirationSeconds
				}
			}
		}
	}
	if a := o.audience; a == "" || len(a) > names.MaxTokenAudienceLength || strings.ContainsAny(a, " \t\r\n,;") || !isPrintableASCII(a) {
		return o, fmt.Errorf("the projected token's audience %q is not one %s allows", truncateValue(a), names.TokenAudienceAnnotation)
	}
	if o.expiration < names.MinTokenExpirationSeconds || o.expiration > names.MaxTokenExpirationSeconds {
		return o, fmt.Errorf("the projected token's expirationSeconds %d is not in %d-%d", o.expiration, names.MinTokenExpirationSeconds, names.MaxTokenExpirationSeconds)
	}
	return o, nil
}
