package inject_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/podidentity/injector/internal/inject"
	"github.com/podidentity/injector/internal/names"
)

// betaOSLabel is the deprecated OS node label that kubelets still set.
const betaOSLabel = "beta.kubernetes.io/os"

// osTerm is a node selector term that requires key op values.
func osTerm(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

// requiredAffinity is a required node affinity of terms, which the
// scheduler ORs.
func requiredAffinity(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
	}}
}

const termsField = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"

// TestWindowsPods: every shape that keeps a pod off Linux nodes is denied
// as a Windows pod, naming the field; a pod that can still land on a Linux
// node is injected.
func TestWindowsPods(t *testing.T) {
	seed := loadCase(t, "seed")
	zone := corev1.NodeSelectorRequirement{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"west-1"}}
	tests := []struct {
		name         string
		nodeSelector map[string]string
		affinity     *corev1.Affinity
		// wantField is the field the deny names; "" means injected.
		wantField string
	}{
		{name: "beta nodeSelector", nodeSelector: map[string]string{betaOSLabel: "windows"}, wantField: `spec.nodeSelector["beta.kubernetes.io/os"]`},
		{name: "beta nodeSelector, other case", nodeSelector: map[string]string{betaOSLabel: "Windows"}, wantField: `spec.nodeSelector["beta.kubernetes.io/os"]`},
		{name: "beta nodeSelector linux", nodeSelector: map[string]string{betaOSLabel: "linux"}},
		{
			name:      "one term In windows",
			affinity:  requiredAffinity(osTerm(corev1.LabelOSStable, corev1.NodeSelectorOpIn, "windows")),
			wantField: termsField + "[0].matchExpressions[0]",
		},
		{
			name:      "one term In windows, beta key",
			affinity:  requiredAffinity(osTerm(betaOSLabel, corev1.NodeSelectorOpIn, "windows")),
			wantField: termsField + "[0].matchExpressions[0]",
		},
		{
			name: "the OS requirement after another one in its term",
			affinity: requiredAffinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
				zone, {Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"windows"}},
			}}),
			wantField: termsField + "[0].matchExpressions[1]",
		},
		{
			name:      "one term NotIn linux",
			affinity:  requiredAffinity(osTerm(corev1.LabelOSStable, corev1.NodeSelectorOpNotIn, "linux")),
			wantField: termsField + "[0].matchExpressions[0]",
		},
		{
			name: "every term requires windows, by either key",
			affinity: requiredAffinity(
				osTerm(corev1.LabelOSStable, corev1.NodeSelectorOpIn, "windows"),
				osTerm(betaOSLabel, corev1.NodeSelectorOpIn, "windows"),
			),
			wantField: "every term of " + termsField,
		},
		{
			name: "one term windows, another linux",
			affinity: requiredAffinity(
				osTerm(corev1.LabelOSStable, corev1.NodeSelectorOpIn, "windows"),
				osTerm(corev1.LabelOSStable, corev1.NodeSelectorOpIn, "linux"),
			),
		},
		{
			name: "one term windows, another without an OS requirement",
			affinity: requiredAffinity(
				osTerm(corev1.LabelOSStable, corev1.NodeSelectorOpIn, "windows"),
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{zone}},
			),
		},
		{name: "In windows or linux", affinity: requiredAffinity(osTerm(corev1.LabelOSStable, corev1.NodeSelectorOpIn, "windows", "linux"))},
		{name: "NotIn windows", affinity: requiredAffinity(osTerm(corev1.LabelOSStable, corev1.NodeSelectorOpNotIn, "windows"))},
		{name: "Exists", affinity: requiredAffinity(osTerm(corev1.LabelOSStable, corev1.NodeSelectorOpExists))},
		{name: "no terms", affinity: requiredAffinity()},
		{name: "an empty term", affinity: requiredAffinity(corev1.NodeSelectorTerm{})},
		{
			name:     "windows only preferred",
			affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 1, Preference: osTerm(corev1.LabelOSStable, corev1.NodeSelectorOpIn, "windows")}}}},
		},
		{name: "pod affinity only", affinity: &corev1.Affinity{PodAffinity: &corev1.PodAffinity{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := seed.Pod.DeepCopy()
			p.Spec.NodeSelector = tt.nodeSelector
			p.Spec.Affinity = tt.affinity
			out, _, err := inject.Inject(p, seed.Identities, seed.Config, seed.Secret)
			if tt.wantField == "" {
				require.NoError(t, err)
				assert.NotNil(t, out)
				return
			}
			require.ErrorIs(t, err, inject.ErrWindowsPod)
			for _, want := range []string{"pod default/my-app-7c9d8b6f5-", tt.wantField + " is windows", "Linux image", "run the workload on Linux nodes", "remove its " + names.BindingLabel + " label"} {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
}
