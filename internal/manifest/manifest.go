// Package manifest reads Kubernetes objects from YAML or JSON files, the way
// kubectl does, for the offline callers of the webhook's decision: the
// kubectl plugin and tests. Every error names the file, the document and,
// where it can, the field.
package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/resource"
	"sigs.k8s.io/yaml"

	aadv1 "github.com/podidentity/injector/internal/apis/aadpodidentity/v1"
)

// ErrInput marks input that cannot be read as the objects this package
// knows: broken YAML, an unknown kind, a missing field. Test with errors.Is.
var ErrInput = errors.New("bad input")

// Source says where an object came from, for messages.
type Source struct {
	// File is the file name, or "-" for standard input.
	File string
	// Document is the 1-based index of the object in File: documents
	// that hold no object (empty, or only comments) are not counted, as
	// kubectl does not count them.
	Document int
	// Item is the 1-based index in a List document, or 0.
	Item int
}

func (s Source) String() string {
	if s.Item > 0 {
		return fmt.Sprintf("%s: document %d, item %d", s.File, s.Document, s.Item)
	}
	return fmt.Sprintf("%s: document %d", s.File, s.Document)
}

// Workload is a pod, or a workload's pod template as its controller will
// create pods from it.
type Workload struct {
	// Kind is Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or
	// CronJob.
	Kind string
	// Namespace and Name of the object; Namespace may be empty in a file.
	Namespace, Name string
	// Pod is the pod itself, or a pod built from the template: its
	// metadata (labels, annotations, namespace) and spec.
	Pod *corev1.Pod
	// Object is the whole object as read, for writing it back mutated.
	Object map[string]any
	Source
}

// workloadAPIVersion is the apiVersion of each workload kind.
var workloadAPIVersion = map[string]string{
	"Pod": "v1", "Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1",
	"ReplicaSet": "apps/v1", "Job": "batch/v1", "CronJob": "batch/v1",
}

// templatePath is where a kind keeps its pod template; nil for a Pod.
var templatePath = map[string][]string{
	"Deployment":  {"spec", "template"},
	"StatefulSet": {"spec", "template"},
	"DaemonSet":   {"spec", "template"},
	"ReplicaSet":  {"spec", "template"},
	"Job":         {"spec", "template"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template"},
}

// WithPod returns a copy of the object with pod's annotations and spec in
// place of its own (a Pod's, or its template's): the object as the webhook
// would have its pods. Labels and names are the object's own.
func (w Workload) WithPod(pod *corev1.Pod) (map[string]any, error) {
	out := runtime.DeepCopyJSON(w.Object)
	spec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&pod.Spec)
	if err != nil {
		return nil, fmt.Errorf("%s: convert the pod spec: %w", w.Ref(), err)
	}
	target := out
	for _, k := range templatePath[w.Kind] {
		next, ok := target[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			target[k] = next
		}
		target = next
	}
	meta, _ := target["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		target["metadata"] = meta
	}
	if len(pod.Annotations) > 0 {
		annotations := map[string]any{}
		for k, v := range pod.Annotations {
			annotations[k] = v
		}
		meta["annotations"] = annotations
	}
	target["spec"] = spec
	return out, nil
}

// Ref is "Deployment default/my-app".
func (w Workload) Ref() string {
	if w.Namespace == "" {
		return w.Kind + " " + w.Name
	}
	return fmt.Sprintf("%s %s/%s", w.Kind, w.Namespace, w.Name)
}

// Set is everything read from a set of manifests.
type Set struct {
	Workloads  []Workload
	Identities []aadv1.AzureIdentity
	Bindings   []aadv1.AzureIdentityBinding
	Exceptions []aadv1.AzurePodIdentityException
	// Namespaces hold only metadata: labels and annotations are what the
	// webhook reads of them.
	Namespaces []metav1.PartialObjectMetadata
	// Sources of the identities, bindings, exceptions and namespaces, in
	// the order of their slices, for messages.
	IdentitySources, BindingSources, ExceptionSources, NamespaceSources []Source
	// Others are the objects of every other kind (Services, ConfigMaps,
	// ServiceAccounts, other projects' custom resources), which a Helm or
	// kustomize stream is full of: they are counted, not read.
	Others []Other
}

// Other is an object of a kind this package does not read.
type Other struct {
	APIVersion, Kind, Namespace, Name string
	// Object is the whole object as read, for callers that know its kind.
	Object map[string]any
	Source
}

// OtherKinds counts Others by kind: "1 ConfigMap, 2 Service", sorted by
// kind, or "" when there is none.
func (s *Set) OtherKinds() string {
	counts := map[string]int{}
	for _, o := range s.Others {
		counts[o.Kind]++
	}
	kinds := slices.Sorted(maps.Keys(counts))
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
	}
	return strings.Join(parts, ", ")
}

// Read adds the objects of one stream (YAML or JSON, several documents,
// and kind List) to s, parsed as Load parses files. Objects without a
// namespace get defaultNamespace.
func (s *Set) Read(file string, r io.Reader, defaultNamespace string) error {
	stream := func(b *resource.Builder) *resource.Builder { return b.Stream(r, file) }
	return s.visit(stream, defaultNamespace, "")
}

// add decodes one JSON document into s.
func (s *Set) add(js []byte, src Source, defaultNamespace string) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(js, &tm); err != nil {
		return fmt.Errorf("%w: %s: read apiVersion and kind: %w", ErrInput, src, err)
	}
	if tm.Kind == "" {
		return fmt.Errorf("%w: %s: field kind is missing; every object needs apiVersion and kind", ErrInput, src)
	}
	if strings.HasSuffix(tm.Kind, "List") {
		var list struct {
			Items []jsonRaw `json:"items"`
		}
		if err := yaml.Unmarshal(js, &list); err != nil {
			return fmt.Errorf("%w: %s: field items: %w", ErrInput, src, err)
		}
		for i, item := range list.Items {
			if err := s.add(item, Source{File: src.File, Document: src.Document, Item: i + 1}, defaultNamespace); err != nil {
				return err
			}
		}
		return nil
	}
	decode := func(into any) error {
		if err := strictUnmarshal(js, into); err != nil {
			return fmt.Errorf("%w: %s: %s: %w", ErrInput, src, tm.Kind, err)
		}
		return nil
	}
	// decodeWorkload leaves the wrapping to the caller, which adds the
	// source to errors of its own too.
	decodeWorkload := func(into any) error {
		if err := strictUnmarshal(js, into); err != nil {
			return fmt.Errorf("%s: %w", tm.Kind, err)
		}
		return nil
	}
	group := tm.GroupVersionKind().Group
	switch {
	case group == aadv1.SchemeGroupVersion.Group && tm.Kind == aadv1.KindAzureIdentity:
		var o aadv1.AzureIdentity
		if err := decode(&o); err != nil {
			return err
		}
		o.Namespace = orDefault(o.Namespace, defaultNamespace)
		s.Identities, s.IdentitySources = append(s.Identities, o), append(s.IdentitySources, src)
	case group == aadv1.SchemeGroupVersion.Group && tm.Kind == aadv1.KindAzureIdentityBinding:
		var o aadv1.AzureIdentityBinding
		if err := decode(&o); err != nil {
			return err
		}
		o.Namespace = orDefault(o.Namespace, defaultNamespace)
		s.Bindings, s.BindingSources = append(s.Bindings, o), append(s.BindingSources, src)
	case group == aadv1.SchemeGroupVersion.Group && tm.Kind == aadv1.KindAzurePodIdentityException:
		var o aadv1.AzurePodIdentityException
		if err := decode(&o); err != nil {
			return err
		}
		o.Namespace = orDefault(o.Namespace, defaultNamespace)
		s.Exceptions, s.ExceptionSources = append(s.Exceptions, o), append(s.ExceptionSources, src)
	case group == "" && tm.Kind == "Namespace":
		var o corev1.Namespace
		if err := decode(&o); err != nil {
			return err
		}
		s.Namespaces = append(s.Namespaces, metav1.PartialObjectMetadata{TypeMeta: o.TypeMeta, ObjectMeta: o.ObjectMeta})
		s.NamespaceSources = append(s.NamespaceSources, src)
	case !isWorkloadKind(tm.Kind):
		o := Other{APIVersion: tm.APIVersion, Kind: tm.Kind, Source: src}
		if err := json.Unmarshal(js, &o.Object); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInput, src, err)
		}
		u := unstructured.Unstructured{Object: o.Object}
		o.Namespace, o.Name = u.GetNamespace(), u.GetName()
		s.Others = append(s.Others, o)
	default:
		w, err := workload(tm, decodeWorkload)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInput, src, err)
		}
		w.Source = src
		if err := json.Unmarshal(js, &w.Object); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInput, src, err)
		}
		w.Namespace = orDefault(w.Namespace, defaultNamespace)
		w.Pod.Namespace = w.Namespace
		s.Workloads = append(s.Workloads, w)
	}
	return nil
}

// jsonRaw is one item of a List, kept as JSON.
type jsonRaw []byte

// UnmarshalJSON keeps the item's bytes.
func (r *jsonRaw) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

// isWorkloadKind is true for the kinds of workload, whatever their
// apiVersion: a Deployment of an apiVersion that Kubernetes no longer
// serves is an error to fix, not an object to pass over.
func isWorkloadKind(kind string) bool {
	return kind == "Pod" || templatePath[kind] != nil
}

// workload reads the pod or the pod template of the kinds the webhook's
// pods come from.
func workload(tm metav1.TypeMeta, decode func(any) error) (Workload, error) {
	gv := tm.GroupVersionKind()
	fromTemplate := func(meta metav1.ObjectMeta, t corev1.PodTemplateSpec) Workload {
		pod := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: *t.ObjectMeta.DeepCopy(),
			Spec:       t.Spec,
		}
		pod.GenerateName = meta.Name + "-"
		return Workload{Kind: tm.Kind, Namespace: meta.Namespace, Name: meta.Name, Pod: pod}
	}
	switch {
	case gv.Group == "" && tm.Kind == "Pod":
		var o corev1.Pod
		if err := decode(&o); err != nil {
			return Workload{}, err
		}
		return Workload{Kind: "Pod", Namespace: o.Namespace, Name: o.Name, Pod: &o}, nil
	case gv.Group == "apps" && tm.Kind == "Deployment":
		var o appsv1.Deployment
		if err := decode(&o); err != nil {
			return Workload{}, err
		}
		return fromTemplate(o.ObjectMeta, o.Spec.Template), nil
	case gv.Group == "apps" && tm.Kind == "StatefulSet":
		var o appsv1.StatefulSet
		if err := decode(&o); err != nil {
			return Workload{}, err
		}
		return fromTemplate(o.ObjectMeta, o.Spec.Template), nil
	case gv.Group == "apps" && tm.Kind == "DaemonSet":
		var o appsv1.DaemonSet
		if err := decode(&o); err != nil {
			return Workload{}, err
		}
		return fromTemplate(o.ObjectMeta, o.Spec.Template), nil
	case gv.Group == "apps" && tm.Kind == "ReplicaSet":
		var o appsv1.ReplicaSet
		if err := decode(&o); err != nil {
			return Workload{}, err
		}
		return fromTemplate(o.ObjectMeta, o.Spec.Template), nil
	case gv.Group == "batch" && tm.Kind == "Job":
		var o batchv1.Job
		if err := decode(&o); err != nil {
			return Workload{}, err
		}
		return fromTemplate(o.ObjectMeta, o.Spec.Template), nil
	case gv.Group == "batch" && tm.Kind == "CronJob":
		var o batchv1.CronJob
		if err := decode(&o); err != nil {
			return Workload{}, err
		}
		return fromTemplate(o.ObjectMeta, o.Spec.JobTemplate.Spec.Template), nil
	}
	return Workload{}, fmt.Errorf("%s: field apiVersion %q is not one Kubernetes serves %s in; use %s",
		tm.Kind, tm.APIVersion, tm.Kind, workloadAPIVersion[tm.Kind])
}

// strictUnmarshal decodes like the API server: an unknown field of a core
// type is an error that names it. The aad-pod-identity kinds decode their
// spec tolerantly, as the webhook does, so their unknown keys are kept as
// notes rather than refused.
func strictUnmarshal(js []byte, into any) error {
	switch into.(type) {
	case *aadv1.AzureIdentity, *aadv1.AzureIdentityBinding, *aadv1.AzurePodIdentityException:
		return yaml.Unmarshal(js, into)
	}
	return yaml.UnmarshalStrict(js, into)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
