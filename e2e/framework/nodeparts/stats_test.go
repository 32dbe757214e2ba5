package nodeparts

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// summary is a /stats/summary as the kubelet writes it, cut to what
// containerMemory reads, with two pods of the same name in two namespaces.
const summary = `{
  "node": {"nodeName": "pod-identity-node"},
  "pods": [
    {"podRef": {"name": "app", "namespace": "other", "uid": "1"},
     "containers": [{"name": "pod-identity-sidecar", "memory": {"time": "2026-11-28T09:00:01Z", "workingSetBytes": 1, "rssBytes": 1}}]},
    {"podRef": {"name": "app", "namespace": "footprint", "uid": "2"},
     "containers": [
       {"name": "app", "memory": {"time": "2026-11-28T09:00:02Z", "workingSetBytes": 2}},
       {"name": "pod-identity-sidecar", "memory": {"time": "2026-11-28T09:00:03Z", "workingSetBytes": 7340032, "rssBytes": 5242880, "usageBytes": 9000000}}]},
    {"podRef": {"name": "starting", "namespace": "footprint", "uid": "3"},
     "containers": [{"name": "pod-identity-sidecar"}]}
  ]
}`

func TestContainerMemory(t *testing.T) {
	got, err := containerMemory([]byte(summary), "footprint", "app", "pod-identity-sidecar")
	require.NoError(t, err)
	require.NotNil(t, got.WorkingSetBytes)
	require.NotNil(t, got.RSSBytes)
	assert.Equal(t, uint64(7<<20), *got.WorkingSetBytes)
	assert.Equal(t, uint64(5<<20), *got.RSSBytes)
	assert.Equal(t, time.Date(2026, 11, 28, 9, 0, 3, 0, time.UTC), got.Time)

	app, err := containerMemory([]byte(summary), "footprint", "app", "app")
	require.NoError(t, err)
	assert.Nil(t, app.RSSBytes, "a figure the kubelet leaves out stays unknown, not zero")

	for name, args := range map[string][3]string{
		"another namespace's pod of that name is not it": {"nowhere", "app", "pod-identity-sidecar"},
		"no such container":                {"footprint", "app", "absent"},
		"a container without a sample yet": {"footprint", "starting", "pod-identity-sidecar"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := containerMemory([]byte(summary), args[0], args[1], args[2])
			assert.ErrorIs(t, err, ErrNoStats)
		})
	}
	_, err = containerMemory([]byte("<html>"), "footprint", "app", "app")
	assert.Error(t, err)
	assert.NotErrorIs(t, err, ErrNoStats)
}
