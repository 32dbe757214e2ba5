package migrate

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podidentity/injector/internal/decision"
	"github.com/podidentity/injector/internal/manifest"
	"github.com/podidentity/injector/internal/names"
)

// The Secrets Store CSI driver's names. A SecretProviderClass of the
// Azure Key Vault provider with spec.parameters.usePodIdentity "true"
// asks NMI for its token when a pod mounts it; NMI goes away at the
// switch, and the pod then stays in ContainerCreating.
const (
	SecretProviderClassGroup   = "secrets-store.csi.x-k8s.io"
	SecretProviderClassVersion = "v1"
	SecretProviderClassKind    = "SecretProviderClass"
	// secretsStoreDriver is the CSI driver's name in a pod's volume.
	secretsStoreDriver = "secrets-store.csi.k8s.io"
	// secretProviderClassAttribute names the class in the volume's
	// volumeAttributes.
	secretProviderClassAttribute = "secretProviderClass"
	// csiTokenAudience is the audience of the token the CSI driver
	// passes the Azure provider in workload identity mode (its
	// CSIDriver's tokenRequests).
	csiTokenAudience = names.TokenAudience
)

// SecretProviderClass is what the plan reads of one: its parameters.
type SecretProviderClass struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Spec      struct {
		Provider   string            `json:"provider"`
		Parameters map[string]string `json:"parameters"`
	} `json:"spec"`
}

// UsesPodIdentity reports whether its provider gets tokens from NMI.
func (s *SecretProviderClass) UsesPodIdentity() bool {
	return strings.EqualFold(strings.TrimSpace(s.Spec.Parameters["usePodIdentity"]), "true")
}

// SecretProviderClassPlan is a SecretProviderClass that uses NMI, and its
// workload identity form.
type SecretProviderClassPlan struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// ClientID is the managed identity to put in spec.parameters.clientID:
	// its userAssignedIdentityID, else the default identity of the pods
	// that mount it; empty when neither tells.
	ClientID string `json:"clientID,omitempty"`
	// MountedBy are the workloads whose pods mount it.
	MountedBy []string `json:"mountedBy"`
	// Subjects need a federated credential on that identity.
	Subjects []string `json:"subjects"`
}

// ReadFile reads one manifest file into set through manifest.Set.Read,
// and returns the SecretProviderClasses it holds, which set keeps whole
// among its Others (SecretProviderClassesOf).
func ReadFile(set *manifest.Set, file string, r io.Reader, defaultNamespace string) ([]SecretProviderClass, error) {
	n := len(set.Others)
	if err := set.Read(file, r, defaultNamespace); err != nil {
		return nil, err
	}
	return SecretProviderClassesOf(set.Others[n:], defaultNamespace)
}

// SecretProviderClassesOf reads the SecretProviderClasses among others, the
// objects manifest.Set does not model; one without a namespace gets
// defaultNamespace. A parameter that is not a string is an error that
// names the object, the field and its source.
func SecretProviderClassesOf(others []manifest.Other, defaultNamespace string) ([]SecretProviderClass, error) {
	var spcs []SecretProviderClass
	for _, o := range others {
		if !isSecretProviderClass(metav1.TypeMeta{APIVersion: o.APIVersion, Kind: o.Kind}) {
			continue
		}
		spc, err := decodeSecretProviderClass(o.Object, cmp.Or(o.Namespace, defaultNamespace))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", manifest.ErrInput, o.Source, err)
		}
		spcs = append(spcs, spc)
	}
	return spcs, nil
}

func isSecretProviderClass(tm metav1.TypeMeta) bool {
	return tm.Kind == SecretProviderClassKind && tm.GroupVersionKind().Group == SecretProviderClassGroup
}

// decodeSecretProviderClass reads one from its object. Parameters are
// strings in the CRD; a value that is not one is named.
func decodeSecretProviderClass(obj map[string]any, namespace string) (SecretProviderClass, error) {
	u := unstructured.Unstructured{Object: obj}
	spc := SecretProviderClass{Namespace: namespace, Name: u.GetName()}
	spc.Spec.Provider, _, _ = unstructured.NestedString(obj, "spec", "provider")
	params, _, err := unstructured.NestedMap(obj, "spec", "parameters")
	if err != nil {
		return SecretProviderClass{}, fmt.Errorf("%s %s/%s: spec.parameters: %w", SecretProviderClassKind, spc.Namespace, spc.Name, err)
	}
	spc.Spec.Parameters = map[string]string{}
	for _, k := range sortedKeys(params) {
		s, ok := params[k].(string)
		if !ok {
			return SecretProviderClass{}, fmt.Errorf("%s %s/%s: spec.parameters.%s is %v, not a string; quote it, as the CRD requires",
				SecretProviderClassKind, spc.Namespace, spc.Name, k, params[k])
		}
		spc.Spec.Parameters[k] = s
	}
	return spc, nil
}

// secretProviderClasses blocks every SecretProviderClass that uses NMI,
// with its workload identity form, and adds the federated credentials
// its pods' service accounts need to the managed identity it names, when
// an AzureIdentity names that identity too.
func (p *plan) secretProviderClasses() {
	for i := range p.opts.SecretProviderClasses {
		spc := &p.opts.SecretProviderClasses[i]
		if !spc.UsesPodIdentity() {
			continue
		}
		ref := fmt.Sprintf("%s %s/%s", SecretProviderClassKind, spc.Namespace, spc.Name)
		sp := SecretProviderClassPlan{Namespace: spc.Namespace, Name: spc.Name, MountedBy: []string{}, Subjects: []string{}}
		clientIDs := map[string]bool{}
		var subjects []saRef
		for _, w := range p.set.Workloads {
			if w.Namespace != spc.Namespace || !mounts(w, spc.Name) {
				continue
			}
			sp.MountedBy = append(sp.MountedBy, w.Ref())
			sa := decision.ServiceAccountOf(w.Pod)
			if !slices.Contains(subjects, saRef{w.Namespace, sa}) {
				subjects = append(subjects, saRef{w.Namespace, sa})
				sp.Subjects = append(sp.Subjects, "system:serviceaccount:"+w.Namespace+":"+sa)
			}
			d := p.decided[w.Ref()]
			for _, id := range d.identities {
				if id.Name == d.defaultIdentity || len(d.identities) == 1 {
					clientIDs[strings.ToLower(id.ClientID)] = true
				}
			}
		}
		var how string
		switch uai := spc.Spec.Parameters["userAssignedIdentityID"]; {
		case uai != "" && isGUID(uai):
			sp.ClientID = uai
		case uai != "":
			how = fmt.Sprintf("its spec.parameters.userAssignedIdentityID %q is not a GUID; set spec.parameters.clientID to the managed identity's client ID", uai)
		case len(clientIDs) == 1:
			sp.ClientID = sortedKeys(clientIDs)[0]
		case len(clientIDs) > 1:
			how = fmt.Sprintf("the pods that mount it use several default identities (%s); set spec.parameters.clientID to the one that may read the vault", strings.Join(sortedKeys(clientIDs), ", "))
		default:
			how = "no injected pod tells which managed identity it used; set spec.parameters.clientID to the client ID of the managed identity that may read the vault"
		}
		if sp.ClientID != "" {
			how = fmt.Sprintf(`set spec.parameters.clientID: %q`, sp.ClientID)
		}
		mounted := "a pod that mounts it would stay in ContainerCreating (no pod or pod template in namespace " + spc.Namespace + " mounts it now, by a csi volume of driver " + secretsStoreDriver + " with volumeAttributes.secretProviderClass " + spc.Name + ": delete it if nothing does)"
		if len(sp.MountedBy) > 0 {
			mounted = "the pods of " + strings.Join(sp.MountedBy, ", ") + " mount it and would stay in ContainerCreating"
		}
		creds := ""
		if len(subjects) > 0 {
			where := p.addSecretProviderSubjects(ref, spc.Namespace, sp.ClientID, subjects)
			creds = fmt.Sprintf("; and give the managed identity a federated credential for issuer %s, subject %s, audience %s (%s)",
				p.opts.Issuer, strings.Join(sp.Subjects, " and "), csiTokenAudience, where)
		}
		p.report.SecretProviderClasses = append(p.report.SecretProviderClasses, sp)
		p.block(ReasonSecretProvider, ref, `%s has spec.parameters.usePodIdentity %q: the Secrets Store CSI driver gets its Key Vault token from NMI, which the switch removes, so %s. Move it to workload identity first: set spec.parameters.usePodIdentity: "false", %s%s`,
			ref, spc.Spec.Parameters["usePodIdentity"], mounted, how, creds)
	}
}

// addSecretProviderSubjects adds the subjects to an AzureIdentity of the
// managed identity with clientID, preferring one in namespace, and says
// where the plan lists their credentials.
func (p *plan) addSecretProviderSubjects(ref, namespace, clientID string, subjects []saRef) string {
	var target *copyState
	for i := range p.set.Identities {
		ai := &p.set.Identities[i]
		if clientID == "" || !strings.EqualFold(ai.Spec.ClientID, clientID) {
			continue
		}
		c := p.copies[key(ai.Namespace, ai.Name)]
		if target == nil || ai.Namespace == namespace && target.ai.Namespace != namespace {
			target = c
		}
	}
	if target == nil {
		return "no AzureIdentity names that managed identity, so the plan prints no command for it: create it with az identity federated-credential create"
	}
	for _, s := range subjects {
		target.addSubject(s.namespace, s.serviceAccount, csiTokenAudience, ref, true)
	}
	return fmt.Sprintf("the plan lists it under AzureIdentity %s/%s", target.ai.Namespace, target.ai.Name)
}

// saRef is a service account.
type saRef struct{ namespace, serviceAccount string }

// MountsSecretsStore reports whether pod mounts a volume of the Secrets
// Store CSI driver: a live read keeps such workloads, labelled or not,
// since their pods are a SecretProviderClass's subjects.
func MountsSecretsStore(pod *corev1.Pod) bool {
	return slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool {
		return v.CSI != nil && v.CSI.Driver == secretsStoreDriver
	})
}

// mounts reports whether w's pods mount the SecretProviderClass name.
func mounts(w manifest.Workload, name string) bool {
	for _, v := range w.Pod.Spec.Volumes {
		if v.CSI != nil && v.CSI.Driver == secretsStoreDriver && v.CSI.VolumeAttributes[secretProviderClassAttribute] == name {
			return true
		}
	}
	return false
}
