package inject

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/podidentity/injector/internal/names"
)

// checkSharedProcessNamespace denies a pod with spec.shareProcessNamespace
// unless it carries names.AllowSharedProcessNamespaceAnnotation=true, in
// which case it returns a warning. In one process namespace every container
// sees the sidecar's process, and through /proc/<pid>/root its mounted
// client secret and service account token. The sidecar's own uid and its
// non-dumpable process stop that today, but only as long as no container of
// the pod runs as root or with CAP_SYS_PTRACE: the owner of the pod decides
// that, so the owner accepts the risk explicitly.
func checkSharedProcessNamespace(ref string, pod *corev1.Pod) (string, error) {
	if pod.Spec.ShareProcessNamespace == nil || !*pod.Spec.ShareProcessNamespace {
		return "", nil
	}
	if pod.Annotations[names.AllowSharedProcessNamespaceAnnotation] == "true" {
		return fmt.Sprintf("pod %s shares its process namespace (annotation %s=true): its containers can see the token sidecar's process; "+
			"a container running as root or with CAP_SYS_PTRACE can read the identity's credentials", ref, names.AllowSharedProcessNamespaceAnnotation), nil
	}
	return "", fmt.Errorf("pod %s: spec.shareProcessNamespace is true: %w: every container of the pod would see the token sidecar's process, "+
		"and a container running as root or with CAP_SYS_PTRACE could read the identity's client secret or service account token through /proc; "+
		"remove spec.shareProcessNamespace, or annotate the pod %s=true to accept that risk",
		ref, ErrSharedProcessNamespace, names.AllowSharedProcessNamespaceAnnotation)
}

// checkHostPID denies a pod with spec.hostPID. In the node's process
// namespace the pod's containers see the sidecar's process as
// shareProcessNamespace would let them, and so does every other hostPID
// pod on the node, whose owners are not the pod's. Since the risk reaches
// beyond the pod, its owner cannot accept it for others: unlike
// checkSharedProcessNamespace, no annotation lifts this deny.
func checkHostPID(ref string, pod *corev1.Pod) error {
	if !pod.Spec.HostPID {
		return nil
	}
	return fmt.Errorf("pod %s: spec.hostPID is true: %w: the pod's containers, and every other hostPID pod on the node, would see the token sidecar's process, "+
		"and one running as root or with CAP_SYS_PTRACE could read the identity's client secret or service account token through /proc; "+
		"no annotation lifts this: run the pod without hostPID, or remove its %s label",
		ref, ErrHostPID, names.BindingLabel)
}
