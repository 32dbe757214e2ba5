package main

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCostOf(t *testing.T) {
	tests := map[string]struct {
		without, with      float64
		ratio, costPercent float64
	}{
		"free webhook":       {without: 200, with: 200, ratio: 1, costPercent: 0},
		"fifteen percent":    {without: 200, with: 170, ratio: 0.85, costPercent: 15},
		"half the rate":      {without: 300, with: 150, ratio: 0.5, costPercent: 50},
		"faster with, noise": {without: 100, with: 105, ratio: 1.05, costPercent: -5},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ratio, cost := costOf(tc.without, tc.with)
			assert.InDelta(t, tc.ratio, ratio, 1e-12)
			assert.InDelta(t, tc.costPercent, cost, 1e-9)
		})
	}
	t.Run("no baseline", func(t *testing.T) {
		ratio, cost := costOf(0, 10)
		assert.True(t, math.IsNaN(ratio))
		assert.True(t, math.IsNaN(cost))
	})
}

func TestExact(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, ms(i))
	}
	tests := map[string]struct {
		sorted []time.Duration
		q      float64
		want   string
	}{
		"median of 1..100 ms": {sorted: hundred, q: 0.5, want: "50 ms"},
		"p99 of 1..100 ms":    {sorted: hundred, q: 0.99, want: "99 ms"},
		"max":                 {sorted: hundred, q: 1, want: "100 ms"},
		"one sample":          {sorted: []time.Duration{ms(7)}, q: 0.99, want: "7 ms"},
		"no samples":          {q: 0.5, want: "n/a"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, exact(tc.sorted, tc.q))
		})
	}
}

func TestQuantileText(t *testing.T) {
	h := Histogram{Bounds: webhookBounds, Counts: []float64{90, 100, 100, 100, 100, 100, 100, 100, 100}}
	assert.Equal(t, "2.78 ms (in bucket (0, 5 ms])", quantileText(0.5, h))
	assert.Equal(t, "23 ms (in bucket (5, 25 ms])", quantileText(0.99, h))
	assert.Contains(t, quantileText(0.5, Histogram{}), "n/a")
}

// phases builds one round: 10 pods without and 10 with the webhook, with
// the apiserver having called the webhook calls times in the second.
func phases(t *testing.T, injected int, failed int, codes map[string]float64) *Report {
	t.Helper()
	lat := Histogram{Bounds: webhookBounds, Counts: []float64{9, 10, 10, 10, 10, 10, 10, 10, 10}}
	return &Report{Config: DefaultConfig(), Phases: []Phase{
		{Round: 1, Created: 10, Elapsed: 100 * time.Millisecond},
		{
			Round: 1, Kind: With, Created: 10 - failed, Failed: failed, Elapsed: 125 * time.Millisecond,
			Injected:  injected,
			Apiserver: Delta{Latency: lat, Requests: codes},
		},
	}}
}

func TestSummarize(t *testing.T) {
	s := phases(t, 10, 0, map[string]float64{"200": 10}).Summarize()
	require.NoError(t, s.Err)
	assert.InDelta(t, 100, s.Rate[0], 1e-9)
	assert.InDelta(t, 80, s.Rate[1], 1e-9)
	assert.InDelta(t, 0.8, s.Ratio, 1e-12)
	assert.InDelta(t, 20, s.CostPercent, 1e-9)
	assert.Equal(t, NotMet, s.costVerdict())
	assert.Equal(t, 10.0, s.WebhookLatency[With].Count())
	assert.Equal(t, Undecided, s.p99Verdict(With), "p99 is in (5 ms, 25 ms]")
	assert.Equal(t, 0, s.AdmissionErrors())
	assert.NoError(t, s.Failure())
}

func TestSummarizeSplitsTheCost(t *testing.T) {
	r := phases(t, 10, 0, map[string]float64{"200": 10})
	// 100 pods/s without, 90 pre-injected, 80 with the webhook.
	r.Phases = append(r.Phases, Phase{Round: 1, Kind: Preinjected, Created: 9, Injected: 9, Elapsed: 100 * time.Millisecond})
	s := r.Summarize()
	assert.Equal(t, []Kind{Without, With, Preinjected}, s.Kinds)
	assert.Equal(t, []Kind{Without, Preinjected, With}, s.columns())
	assert.InDelta(t, 10, s.shareOf(Without, Preinjected), 1e-9)
	assert.InDelta(t, 10, s.shareOf(Preinjected, With), 1e-9)
	assert.InDelta(t, s.CostPercent, s.shareOf(Without, Preinjected)+s.shareOf(Preinjected, With), 1e-9)
	assert.NoError(t, s.Failure())
}

func TestFailure(t *testing.T) {
	tests := map[string]struct {
		report     *Report
		wantErrors int
	}{
		"a pod without the sidecar": {report: phases(t, 9, 0, map[string]float64{"200": 10})},
		"a failed create":           {report: phases(t, 9, 1, map[string]float64{"200": 9}), wantErrors: 1},
		"the apiserver got a 500":   {report: phases(t, 10, 0, map[string]float64{"200": 9, "500": 1}), wantErrors: 1},
		"the webhook reached with its configuration deleted": {report: func() *Report {
			r := phases(t, 10, 0, map[string]float64{"200": 10})
			r.Phases[0].Apiserver.Latency = r.Phases[1].Apiserver.Latency
			return r
		}()},
		"a paced pod without the sidecar": {report: func() *Report {
			r := phases(t, 10, 0, map[string]float64{"200": 10})
			r.Phases = append(r.Phases, Phase{Kind: Paced, Created: 10, Injected: 9, Elapsed: time.Second})
			return r
		}()},
		"a pre-injected pod without the sidecar": {report: func() *Report {
			r := phases(t, 10, 0, map[string]float64{"200": 10})
			r.Phases = append(r.Phases, Phase{Kind: Preinjected, Created: 10, Injected: 0, Elapsed: time.Second})
			return r
		}()},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := tc.report.Summarize()
			assert.Error(t, s.Failure())
			assert.Equal(t, tc.wantErrors, s.AdmissionErrors())
		})
	}
}

func TestWriteOutputs(t *testing.T) {
	s := phases(t, 10, 0, map[string]float64{"200": 10}).Summarize()
	var text, md bytes.Buffer
	s.WriteText(&text)
	s.WriteMarkdown(&md)
	for _, want := range []string{"100.0", "80.0", "20.0 %", "bucket-interpolated", "(in bucket (5, 25 ms])"} {
		assert.Contains(t, text.String(), want)
	}
	assert.Contains(t, md.String(), "| webhook cost in pod-create throughput | 20.0 % (ratio 0.800) | at most 15 % | not met |")
	assert.Contains(t, md.String(), "| admission errors | 0 (webhook calls by code: 200=10; rejections 0; fail-open 0) | 0 | met |")
}
