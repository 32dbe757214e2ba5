package inject

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"github.com/podidentity/injector/internal/names"
	"github.com/podidentity/injector/internal/sidecarconfig"
)

// sidecarConfig is the document the sidecar reads at start. Identities are
// sorted by name so that the same bindings always give the same bytes. The
// allow-list of authority hosts goes with them, so that the sidecar checks
// each identity's authority again at start.
func sidecarConfig(ids []Identity, port int, allowedAuthorityHosts []string) (*sidecarconfig.Config, error) {
	sorted := slices.Clone(ids)
	slices.SortFunc(sorted, func(a, b Identity) int { return strings.Compare(a.Name, b.Name) })
	c := &sidecarconfig.Config{
		APIVersion:      sidecarconfig.APIVersion,
		Port:            port,
		DefaultIdentity: DefaultIdentity(ids).Name,
		Identities:      make([]sidecarconfig.Identity, 0, len(sorted)),

		AllowedAuthorityHosts: slices.Clone(allowedAuthorityHosts),
	}
	for _, id := range sorted {
		// The name becomes a directory under SecretMountRoot, so it must be
		// an object name and nothing that could climb out of it.
		if errs := validation.IsDNS1123Subdomain(id.Name); len(errs) > 0 {
			return nil, fmt.Errorf("identities: AzureIdentity %s/%s: %w: the name is not a valid object name (%s)",
				id.Namespace, id.Name, ErrInvalidIdentity, strings.Join(errs, "; "))
		}
		// The webhook's identity is the config's; only inject decides
		// where the credentials are mounted.
		sid := id.Identity
		sid.AdditionallyAllowedTenants = slices.Clone(id.AdditionallyAllowedTenants)
		sid.TokenFile, sid.SecretDir, sid.SecretName = "", "", ""
		spec, ok := sidecarconfig.LookupSource(id.Source)
		if !ok {
			return nil, fmt.Errorf("identities: AzureIdentity %s/%s: %w: unknown token source %q; want %s",
				id.Namespace, id.Name, ErrInvalidIdentity, id.Source, sidecarconfig.SourceNames(-1))
		}
		if spec.TokenFile {
			sid.TokenFile = names.TokenMountPath + "/" + names.TokenFileName
		}
		if spec.Secret {
			if id.SecretName == "" {
				return nil, fmt.Errorf("identities: AzureIdentity %s/%s: %w: a %s identity needs spec.clientPassword.name; set it to the Secret that holds the credential",
					id.Namespace, id.Name, ErrInvalidIdentity, id.Source)
			}
			sid.SecretDir = names.SecretMountRoot + "/" + id.Name
			sid.SecretName = id.SecretName
		}
		c.Identities = append(c.Identities, sid)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("identities: %w: %w", ErrInvalidIdentity, err)
	}
	return c, nil
}

// addSidecar puts the sidecar first among the init containers (native) or
// the containers (before 1.29), and appends its volumes.
func addSidecar(ref string, pod *corev1.Pod, st *state, cfg Config) error {
	vols, mounts := credentialVolumes(st.config, st.opts)
	for k, v := range vols {
		for i := range pod.Spec.Volumes {
			if pod.Spec.Volumes[i].Name == v.Name {
				return fmt.Errorf("pod %s: spec.volumes[%d] is named %q, which the token sidecar needs: %w; rename that volume",
					ref, i, v.Name, ErrNameConflict)
			}
		}
		// Two identity names can only meet here through a hash collision
		// that someone crafted; refuse rather than mount the wrong Secret.
		for _, w := range vols[:k] {
			if w.Name == v.Name {
				return fmt.Errorf("pod %s: two identities need the volume name %q: %w; rename one of the AzureIdentity objects",
					ref, v.Name, ErrNameConflict)
			}
		}
	}
	c := sidecarContainer(cfg, st, mounts)
	if cfg.NativeSidecar {
		pod.Spec.InitContainers = slices.Insert(pod.Spec.InitContainers, 0, c)
	} else {
		pod.Spec.Containers = slices.Insert(pod.Spec.Containers, 0, c)
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, vols...)
	return nil
}

// sidecarContainer is the one fixed token-server container.
func sidecarContainer(cfg Config, st *state, mounts []corev1.VolumeMount) corev1.Container {
	probe := func(period, timeout, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{
				Exec: &corev1.ExecAction{Command: []string{names.SidecarBinary, names.SidecarProbeCommand}},
			},
			PeriodSeconds:    period,
			TimeoutSeconds:   timeout,
			FailureThreshold: failures,
		}
	}
	c := corev1.Container{
		Name:            names.SidecarContainerName,
		Image:           cfg.SidecarImage,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Command:         []string{names.SidecarBinary},
		Args:            []string{names.SidecarServeCommand},
		Env:             []corev1.EnvVar{{Name: names.EnvSidecarConfig, Value: st.configJSON}},
		Resources:       *st.opts.resources.DeepCopy(),
		VolumeMounts:    mounts,
		// The kubelet polls every second so that the init containers behind
		// a native sidecar wait for about as long as the server needs to
		// start, and gives up after 30 s.
		StartupProbe: probe(1, 1, 30),
		// Liveness is relaxed: restarting the server drops its token cache,
		// which costs more than a slow answer on a busy node.
		LivenessProbe:            probe(20, 5, 3),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: ptr.To(true),
			// A uid of its own, not distroless's nonroot that app images
			// share: see names.SidecarUID.
			RunAsUser:                ptr.To[int64](names.SidecarUID),
			RunAsGroup:               ptr.To[int64](names.SidecarGID),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if st.header.Name != "" {
		c.Env = append(c.Env, st.header)
	}
	if cfg.NativeSidecar {
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	}
	return c
}

// credentialVolumes are the volumes only the sidecar mounts: the projected
// service account token when an identity is federated, and the Secret of
// every type 1 or 2 identity. o gives the projected token's audience and
// lifetime.
func credentialVolumes(c *sidecarconfig.Config, o podOptions) ([]corev1.Volume, []corev1.VolumeMount) {
	// Not a credential: the empty mount that keeps the Kubernetes API token
	// out of the sidecar (see names.NoAPITokenVolumeName).
	vols := []corev1.Volume{{
		Name:         names.NoAPITokenVolumeName,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(resource.MustParse("1Ki"))}},
	}}
	mounts := []corev1.VolumeMount{{Name: names.NoAPITokenVolumeName, MountPath: names.APITokenMountPath, ReadOnly: true}}
	for _, id := range c.Identities {
		if id.TokenFile != "" {
			vols = append(vols, corev1.Volume{
				Name: names.TokenVolumeName,
				VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
						Audience:          o.audience,
						ExpirationSeconds: ptr.To(o.expiration),
						Path:              names.TokenFileName,
					}}},
				}},
			})
			mounts = append(mounts, corev1.VolumeMount{Name: names.TokenVolumeName, MountPath: names.TokenMountPath, ReadOnly: true})
			break
		}
	}
	for _, id := range c.Identities {
		if id.SecretDir == "" {
			continue
		}
		name := secretVolumeName(id.Name)
		vols = append(vols, corev1.Volume{
			Name:         name,
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: id.SecretName}},
		})
		mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: id.SecretDir, ReadOnly: true})
	}
	return vols, mounts
}

// secretVolumeName is SecretVolumePrefix + the identity name when that is a
// DNS-1123 label. An object name may be longer (253) and hold dots, so
// otherwise the readable part is cut to fit and a hash of the whole name keeps
// distinct identities apart.
func secretVolumeName(identity string) string {
	n := names.SecretVolumePrefix + identity
	if len(validation.IsDNS1123Label(n)) == 0 {
		return n
	}
	sum := sha256.Sum256([]byte(identity))
	suffix := "-" + hex.EncodeToString(sum[:4])
	keep := []byte(strings.ToLower(n))
	for i, b := range keep {
		if (b < 'a' || b > 'z') && (b < '0' || b > '9') {
			keep[i] = '-'
		}
	}
	if limit := validation.DNS1123LabelMaxLength - len(suffix); len(keep) > limit {
		keep = keep[:limit]
	}
	return strings.TrimRight(string(keep), "-") + suffix
}
