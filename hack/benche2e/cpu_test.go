package main

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	tests := map[string]struct {
		line    string
		want    procStat
		wantErr bool
	}{
		"kube-apiserver": {
			line: "4242 (kube-apiserver) S 100 4242 100 0 -1 4194560 51234 0 12 0 1500 250 0 0 20 0 14 0 9876 1647876096 83322 18446744073709551615",
			want: procStat{Comm: "kube-apiserver", PPID: 100, CPU: 1750 * 10 * time.Millisecond},
		},
		"comm with spaces and parentheses": {
			line: "7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 0 0",
			want: procStat{Comm: "a) b (c", PPID: 1, CPU: 7 * 10 * time.Millisecond},
		},
		"no comm":         {line: "7 a R 1", wantErr: true},
		"truncated":       {line: "7 (a) R 1 7 7", wantErr: true},
		"non-numeric cpu": {line: "7 (a) R 1 7 7 0 -1 0 0 0 0 0 x 4 0", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseStat(tc.line)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestCPUTimesReadsThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	got, err := cpuTimes(nil)
	require.NoError(t, err)
	assert.Contains(t, got, clientComponent)
}

func TestCPUPerPod(t *testing.T) {
	ms := time.Millisecond
	s := Summary{
		Kinds:   []Kind{Without, With, Preinjected},
		Created: [numKinds]int{100, 100, 100},
		CPU: [numKinds]CPUTimes{
			Without:     {"kube-apiserver": 300 * ms, "etcd": 100 * ms, clientComponent: 200 * ms},
			With:        {"kube-apiserver": 400 * ms, "etcd": 100 * ms, "webhook": 300 * ms, clientComponent: 200 * ms},
			Preinjected: {"kube-apiserver": 400 * ms, "etcd": 100 * ms, clientComponent: 200 * ms},
		},
	}
	assert.Equal(t, 3*ms, s.CPUPerPod(Without, "kube-apiserver"))
	assert.Equal(t, 4*ms, s.CPUPerPod(Without, ""), "the server side leaves the client out")
	assert.Equal(t, 8*ms, s.CPUPerPod(With, ""))
	assert.Equal(t, time.Duration(0), s.CPUPerPod(Without, "webhook"))
	assert.InDelta(t, 50, s.CPUCostPercent(Without, With), 1e-9)
	// 4 ms -> 5 ms -> 8 ms per pod: throughput 1 -> 0.8 -> 0.5 of the base.
	assert.InDelta(t, 20, s.CPUCostPercent(Without, Preinjected), 1e-9)
	assert.InDelta(t, 30, s.CPUCostPercent(Preinjected, With), 1e-9)
	assert.Equal(t, []string{"kube-apiserver", "etcd", "webhook", clientComponent}, s.cpuComponents())
}
