package main

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/podidentity/injector/e2e/framework/nodeenv"
	"github.com/podidentity/injector/internal/names"
)

func TestParseConfigNodeMode(t *testing.T) {
	root, _ := fakeRepo(t)
	t.Run("the binaries are not needed: nodeenv builds its images", func(t *testing.T) {
		absent := filepath.Join(root, "absent")
		cfg, err := parseConfig([]string{"-repo", root, "-node", "-webhook", absent}, io.Discard)
		require.NoError(t, err)
		assert.True(t, cfg.Node)
	})
	t.Run("not with the scale mode", func(t *testing.T) {
		_, err := parseConfig([]string{"-repo", root, "-node", "-scale", "1,10"}, io.Discard)
		assert.ErrorContains(t, err, "-node and -scale")
	})
	t.Run("extra webhook flags, repeated", func(t *testing.T) {
		cfg, err := parseConfig([]string{"-repo", root, "-node", "-webhook-arg", "--warn-shared-service-account=false", "-webhook-arg", "--log-level=warn"}, io.Discard)
		require.NoError(t, err)
		assert.Equal(t, []string{"--warn-shared-service-account=false", "--log-level=warn"}, cfg.WebhookArgs)
	})
	for name, arg := range map[string]string{"not a flag": "warn-shared-service-account", "two flags in one": "--a=1 --b=2"} {
		t.Run("refused: "+name, func(t *testing.T) {
			_, err := parseConfig([]string{"-repo", root, "-node", "-webhook-arg", arg}, io.Discard)
			assert.ErrorContains(t, err, "-webhook-arg")
		})
	}
	t.Run("the repository is still checked", func(t *testing.T) {
		_, err := parseConfig([]string{"-repo", t.TempDir(), "-node"}, io.Discard)
		assert.Error(t, err)
	})
}

func TestPodIn(t *testing.T) {
	local := (&bench{}).podIn(plainNamespace)("p-1")
	assert.Equal(t, plainNamespace, local.Namespace)
	assert.Equal(t, benchSelector, local.Labels[names.BindingLabel], "the same labelled pod in every namespace")
	assert.Empty(t, local.Spec.SchedulingGates, "the local cluster has no node to keep pods off")

	onNode := (&bench{cluster: &nodeenv.Env{}}).podIn(benchNamespace)("p-2")
	assert.Equal(t, benchNamespace, onNode.Namespace)
	assert.Equal(t, []corev1.PodSchedulingGate{{Name: schedulingGate}}, onNode.Spec.SchedulingGates, "on the real node nothing may be scheduled")
}

func TestKindNamespace(t *testing.T) {
	for k := range numKinds {
		want := benchNamespace
		if k == NotOptedIn {
			want = plainNamespace
		}
		assert.Equal(t, want, k.namespace(), k.String())
	}
	assert.True(t, NotOptedIn.webhook(), "the webhook stays registered; the namespace opts out")
}

func TestContainerID(t *testing.T) {
	assert.Equal(t, "abc123", containerID("containerd://abc123"))
	assert.Equal(t, "", containerID(""), "a container that has not started has no id")
	assert.Equal(t, "", containerID("abc123"))
}

func TestCgroupNames(t *testing.T) {
	const id = "4f2c9e0d1b7a"
	v1 := "12:memory:/kubepods/burstable/pod1234/" + id + "\n11:cpu,cpuacct:/kubepods/burstable/pod1234/" + id + "\n"
	tests := map[string]struct {
		text string
		ids  []string
		want bool
	}{
		"cgroup v1, the container":     {text: v1, ids: []string{"other", id}, want: true},
		"cgroup v2, the container":     {text: "0::/kubepods/pod1234/" + id + "\n", ids: []string{id}, want: true},
		"another container of the pod": {text: v1, ids: []string{"9999"}},
		"a prefix is not the id":       {text: v1, ids: []string{id[:6]}},
		"no ids":                       {text: v1},
		"an empty id matches nothing":  {text: "0::/\n", ids: []string{""}},
		"a host process":               {text: "0::/user.slice/session-1.scope\n", ids: []string{id}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, cgroupNames(tc.text, tc.ids))
		})
	}
}

// notOptedIn is a node-mode phase: 10 labelled pods in the namespace that
// is not opted in, each of which the apiserver sent to the webhook.
func notOptedIn(injected int) Phase {
	lat := Histogram{Bounds: webhookBounds, Counts: []float64{10, 10, 10, 10, 10, 10, 10, 10, 10}}
	return Phase{Round: 1, Kind: NotOptedIn, Created: 10, Injected: injected, Elapsed: 110 * time.Millisecond,
		Apiserver: Delta{Latency: lat, Requests: map[string]float64{"200": 10}}}
}

func TestSummarizeNotOptedIn(t *testing.T) {
	r := phases(t, 10, 0, map[string]float64{"200": 10})
	r.Config.Node = true
	r.Phases = append(r.Phases, notOptedIn(0))
	s := r.Summarize()
	require.NoError(t, s.Failure())
	assert.Equal(t, []Kind{Without, NotOptedIn, With}, s.columns())
	assert.Zero(t, s.CallsWithout, "the webhook is registered in this phase: its calls are expected")
	assert.Equal(t, 10.0, s.WebhookLatency[NotOptedIn].Count())
	assert.InDelta(t, 100-10000.0/110, s.shareOf(Without, NotOptedIn), 1e-9)

	var text, md bytes.Buffer
	s.WriteText(&text)
	s.WriteMarkdown(&md)
	for _, out := range []string{text.String(), md.String()} {
		assert.Contains(t, out, "spec.schedulingGates")
		assert.Contains(t, out, "webhook as manifests/")
		assert.Contains(t, out, "a call that changes nothing (without -> namespace not opted in)")
		assert.NotContains(t, out, handlerHTTPLatency, "node mode does not read the webhook's own metrics")
		assert.NotContains(t, out, "admission logic p50")
	}
}

func TestFailureNotOptedIn(t *testing.T) {
	t.Run("a pod injected in a namespace that is not opted in", func(t *testing.T) {
		r := phases(t, 10, 0, map[string]float64{"200": 10})
		r.Phases = append(r.Phases, notOptedIn(1))
		assert.ErrorContains(t, r.Summarize().Failure(), "not opted in")
	})
	t.Run("a failed create counts as an admission error", func(t *testing.T) {
		r := phases(t, 10, 0, map[string]float64{"200": 10})
		p := notOptedIn(0)
		p.Created, p.Failed = 9, 1
		r.Phases = append(r.Phases, p)
		s := r.Summarize()
		assert.Error(t, s.Failure())
		assert.Equal(t, 1, s.AdmissionErrors())
	})
}
