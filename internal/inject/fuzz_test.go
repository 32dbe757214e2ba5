package inject_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/inject/injecttest"
	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// sentinels are every error Inject may wrap; a failure that wraps none of
// them is unclassified and fails the fuzz target.
var sentinels = []error{
	inject.ErrNoIdentities, inject.ErrHostNetwork, inject.ErrHostPID, inject.ErrSharedProcessNamespace, inject.ErrWindowsPod, inject.ErrBadPortAnnotation, inject.ErrPortCollision,
	inject.ErrInvalidIdentity, inject.ErrInvalidConfig, inject.ErrNameConflict, inject.ErrUserIdentityHeader,
	inject.ErrPodResources, inject.ErrBadOverride, inject.ErrContainerIdentities,
}

// overrideKeys are the annotations FuzzInject's overrides argument sets:
// "0=value\n3=value" sets overrideKeys[0] and overrideKeys[3].
var overrideKeys = []string{
	names.ContainerIdentitiesAnnotation, names.InjectContainersAnnotation, names.TokenAudienceAnnotation,
	names.TokenExpirationAnnotation, names.SidecarCPURequestAnnotation, names.SidecarCPULimitAnnotation,
	names.SidecarMemoryRequestAnnotation, names.SidecarMemoryLimitAnnotation,
}

// fuzzOverrides sets the annotations that spec names (see overrideKeys).
func fuzzOverrides(pod *corev1.Pod, spec string) {
	for line := range strings.SplitSeq(spec, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if i, err := strconv.Atoi(k); ok && err == nil && i >= 0 && i < len(overrideKeys) {
			pod.Annotations[overrideKeys[i]] = v
		}
	}
}

// fuzzContainers turns "name:port:ENV1/ENV2=value,name2" into containers.
// The port and env parts are optional, and so is an env value.
func fuzzContainers(spec string) []corev1.Container {
	if spec == "" {
		return nil
	}
	var cs []corev1.Container
	for i, part := range strings.Split(spec, ",") {
		if i == 8 {
			break
		}
		fields := strings.SplitN(part, ":", 3)
		c := corev1.Container{Name: fields[0], Image: "img"}
		if len(fields) > 1 {
			if p, err := strconv.ParseInt(fields[1], 10, 32); err == nil {
				c.Ports = []corev1.ContainerPort{{ContainerPort: int32(p)}}
			}
		}
		if len(fields) > 2 {
			for _, e := range strings.Split(fields[2], "/") {
				name, value, ok := strings.Cut(e, "=")
				if !ok {
					value = "user"
				}
				c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
			}
		}
		cs = append(cs, c)
	}
	return cs
}

// fuzzIdentities makes up to seven identities; each byte of kinds picks a
// source (low two bits) and a weight (the rest).
func fuzzIdentities(prefix string, kinds []byte) []inject.Identity {
	sources := []string{names.TokenSourceFederated, names.TokenSourceIMDS, names.TokenSourceClientSecret, names.TokenSourceClientCertificate}
	var ids []inject.Identity
	for i, k := range kinds {
		if i == 7 {
			break
		}
		ids = append(ids, inject.Identity{Identity: sidecarconfig.Identity{
			Name:       prefix + strconv.Itoa(i),
			Namespace:  "ns",
			Source:     sources[k&3],
			ClientID:   "client-" + strconv.Itoa(i),
			TenantID:   "tenant",
			SecretName: "secret-" + strconv.Itoa(i),
		}, Weight: int(k >> 2)})
	}
	return ids
}

func FuzzInject(f *testing.F) {
	f.Add("data-init", "my-app", "", "", "blob-reader", []byte{0}, uint16(8181), false, true, false, "", "")
	f.Add("data-init", "my-app", "", "", "id", []byte{0, 4}, uint16(8181), false, true, true, "late", "0=data-init=id0;my-app=id1\n2=api://x\n3=7200")
	f.Add("a,b,c", "d", "b", "", "id", []byte{0, 2, 3}, uint16(8181), false, true, false, "", "0=d=id2\n1=a;d\n4=5m\n5=10m\n6=16Mi\n7=8Mi")
	f.Add("a:8181", "b", "", "", "id", []byte{0, 5}, uint16(8181), false, true, false, "", "")
	f.Add("", "web:8080:AZURE_CLIENT_ID/IDENTITY_HEADER", "web", "9090", "sp.long.name", []byte{2, 7, 12}, uint16(8181), false, false, false, "", "")
	f.Add("init", "app", "", "", "x", []byte{1}, uint16(8181), false, true, true, "late:0:IDENTITY_ENDPOINT,late-init", "")
	f.Add("", names.SidecarContainerName, "", "", "x", []byte{1}, uint16(8181), false, true, false, "", "")
	f.Add("", "app", "", "abc", "x", []byte{}, uint16(0), true, false, false, "", "")
	f.Add("", "app:0:URL=$(IDENTITY_ENDPOINT)?resource=x/AZURE_CLIENT_ID=c/A=$(AZCOPY_MSI_CLIENT_ID)$$(IDENTITY_HEADER)", "", "", "x", []byte{0}, uint16(8181), false, true, false, "", "0=app=x0")
	f.Fuzz(func(t *testing.T, inits, apps, skip, portAnn, idPrefix string, kinds []byte, port uint16, hostNetwork, native, reinvoke bool, late, overrides string) {
		pod := &corev1.Pod{}
		pod.Namespace, pod.GenerateName = "ns", "fuzz-"
		pod.Spec.InitContainers = fuzzContainers(inits)
		pod.Spec.Containers = fuzzContainers(apps)
		pod.Spec.HostNetwork = hostNetwork
		pod.Annotations = map[string]string{}
		if skip != "" {
			pod.Annotations[names.SkipContainersAnnotation] = skip
		}
		if portAnn != "" {
			pod.Annotations[names.TokenPortAnnotation] = portAnn
		}
		fuzzOverrides(pod, overrides)
		ids := fuzzIdentities(idPrefix, kinds)
		cfg := inject.Config{SidecarImage: "sidecar", Port: int(port), NativeSidecar: native}

		if reinvoke {
			// Inject once, then let "another webhook" append containers,
			// which exercises the path that reads the sidecar back.
			first, _, err := inject.Inject(pod, ids, cfg, "first-secret")
			if err != nil {
				return
			}
			pod = first
			for _, c := range fuzzContainers(late) {
				if strings.HasSuffix(c.Name, "-init") {
					pod.Spec.InitContainers = append(pod.Spec.InitContainers, c)
				} else {
					pod.Spec.Containers = append(pod.Spec.Containers, c)
				}
			}
		}

		before := pod.DeepCopy()
		out, res, err := inject.Inject(pod, ids, cfg, "fuzz-secret")
		if !equality.Semantic.DeepEqual(before, pod) {
			t.Fatalf("Inject modified its input: %s", cmp.Diff(before, pod))
		}
		if err != nil {
			if out != nil {
				t.Fatalf("error %v with a non-nil pod", err)
			}
			if !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		checkOutput(t, before, out, res)
		if injecttest.CheckStructure(before) == nil {
			if err := injecttest.CheckStructure(out); err != nil {
				t.Fatalf("a well-formed pod became malformed: %v", err)
			}
		}

		again, res2, err := inject.Inject(out, ids, cfg, "another-secret")
		if err != nil {
			t.Fatalf("Inject failed on its own output: %v", err)
		}
		if res2.Changed || !equality.Semantic.DeepEqual(out, again) {
			t.Fatalf("not idempotent (changed=%v): %s", res2.Changed, cmp.Diff(out, again))
		}
	})
}

// checkOutput asserts what every successful Inject must give.
func checkOutput(t *testing.T, in, out *corev1.Pod, res inject.Result) {
	t.Helper()
	if res.Changed == equality.Semantic.DeepEqual(in, out) {
		t.Fatalf("Result.Changed=%v, but the pod changed=%v", res.Changed, !equality.Semantic.DeepEqual(in, out))
	}
	count := func(p *corev1.Pod) map[string]int {
		m := map[string]int{}
		for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
			for _, c := range cs {
				m[c.Name]++
			}
		}
		return m
	}
	if n := count(out)[names.SidecarContainerName]; n != 1 {
		t.Fatalf("want one sidecar, have %d", n)
	}
	var sc *corev1.Container
	switch {
	case len(out.Spec.InitContainers) > 0 && out.Spec.InitContainers[0].Name == names.SidecarContainerName:
		sc = &out.Spec.InitContainers[0]
	case len(out.Spec.Containers) > 0 && out.Spec.Containers[0].Name == names.SidecarContainerName:
		sc = &out.Spec.Containers[0]
	default:
		if count(in)[names.SidecarContainerName] == 0 {
			t.Fatalf("the new sidecar is not first")
		}
		return
	}
	cfgEnv := envValue(sc, names.EnvSidecarConfig)
	if cfgEnv == nil {
		t.Fatalf("sidecar has no %s", names.EnvSidecarConfig)
	}
	parsed, err := sidecarconfig.Parse([]byte(cfgEnv.Value))
	if err != nil {
		t.Fatalf("sidecar config does not parse: %v", err)
	}
	checkPerContainer(t, out, sc, parsed)
	for _, v := range out.Spec.Volumes {
		if errs := validation.IsDNS1123Label(v.Name); len(errs) > 0 {
			t.Fatalf("volume name %q: %v", v.Name, errs)
		}
	}
	// Apart from the sidecar, the lists keep their containers in order, and
	// each container only gains identity variables it did not have.
	for _, l := range [][2][]corev1.Container{
		{in.Spec.InitContainers, out.Spec.InitContainers},
		{in.Spec.Containers, out.Spec.Containers},
	} {
		before, after := withoutSidecar(l[0]), withoutSidecar(l[1])
		if len(before) != len(after) {
			t.Fatalf("containers added or lost: %d before, %d after", len(before), len(after))
		}
		for i, c := range after {
			orig := before[i]
			if c.Name != orig.Name {
				t.Fatalf("container %d is %q, was %q", i, c.Name, orig.Name)
			}
			for _, m := range c.VolumeMounts {
				if m.Name == names.TokenVolumeName || strings.HasPrefix(m.Name, names.SecretVolumePrefix) {
					t.Fatalf("container %q mounts credential volume %q", c.Name, m.Name)
				}
			}
			for _, n := range identityEnv {
				if had, have := countEnv(orig.Env, n), countEnv(c.Env, n); have > max(had, 1) || have < had {
					t.Fatalf("container %q has %s %d times, had %d", c.Name, n, have, had)
				}
			}
			for _, n := range []string{"MSI_ENDPOINT", "AZURE_FEDERATED_TOKEN_FILE"} {
				if countEnv(c.Env, n) != countEnv(orig.Env, n) {
					t.Fatalf("container %q got %s", c.Name, n)
				}
			}
			// The user's entries keep their values and order; identity
			// variables are only inserted among them.
			if user := withoutAdded(c.Env, orig.Env); !equality.Semantic.DeepEqual(orig.Env, user) {
				t.Fatalf("container %q: the user's env changed: %s", c.Name, cmp.Diff(orig.Env, user))
			}
			checkExpansion(t, c, orig.Env)
		}
	}
}

// withoutAdded drops from env the identity variables that orig lacks.
func withoutAdded(env, orig []corev1.EnvVar) []corev1.EnvVar {
	return slices.DeleteFunc(slices.Clone(env), func(e corev1.EnvVar) bool {
		return slices.Contains(identityEnv, e.Name) && countEnv(orig, e.Name) == 0
	})
}

// checkExpansion asserts that every $(VAR) reference to an identity
// variable that Inject added comes after that variable, so that the
// kubelet expands it.
func checkExpansion(t *testing.T, c corev1.Container, orig []corev1.EnvVar) {
	t.Helper()
	for i, e := range c.Env {
		for _, n := range identityEnv {
			// "$$" escapes a "$"; values with it are left to the unit tests.
			if countEnv(orig, n) > 0 || !strings.Contains(e.Value, "$("+n+")") || strings.Contains(e.Value, "$$") {
				continue
			}
			if j := slices.IndexFunc(c.Env, func(d corev1.EnvVar) bool { return d.Name == n }); j > i {
				t.Fatalf("container %q: env[%d] %q references $(%s), defined only later at env[%d]", c.Name, i, e.Name, n, j)
			}
		}
	}
}

// withoutSidecar drops the sidecar from a list of containers.
func withoutSidecar(cs []corev1.Container) []corev1.Container {
	return slices.DeleteFunc(slices.Clone(cs), func(c corev1.Container) bool { return c.Name == names.SidecarContainerName })
}

// checkPerContainer: with per-container identities the sidecar has no
// pod-wide header, and every container with an entry in its table has a
// header of its own whose sum is that entry's.
func checkPerContainer(t *testing.T, out *corev1.Pod, sc *corev1.Container, cfg *sidecarconfig.Config) {
	t.Helper()
	if len(cfg.Containers) == 0 {
		return
	}
	if envValue(sc, names.EnvIdentityHeader) != nil {
		t.Fatalf("per-container identities, and the sidecar has a pod-wide %s", names.EnvIdentityHeader)
	}
	seen := map[string]string{}
	for _, cs := range [][]corev1.Container{out.Spec.InitContainers, out.Spec.Containers} {
		for i := range cs {
			c := &cs[i]
			j := slices.IndexFunc(cfg.Containers, func(a sidecarconfig.Container) bool { return a.Name == c.Name })
			h := envValue(c, names.EnvIdentityHeader)
			if j < 0 || h == nil {
				continue
			}
			if h.Value != "" && sidecarconfig.HeaderSum(h.Value) != cfg.Containers[j].HeaderSHA256 && countEnv(c.Env, names.EnvIdentityHeader) == 1 {
				// A user's own IDENTITY_HEADER wins over the webhook's
				// (decided elsewhere); otherwise the sums must agree.
				continue
			}
			if other, dup := seen[h.Value]; dup && h.Value != "" {
				t.Fatalf("containers %q and %q share a header", other, c.Name)
			}
			seen[h.Value] = c.Name
		}
	}
}
