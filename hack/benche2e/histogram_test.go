package main

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The apiserver's buckets for apiserver_admission_webhook_admission_duration_seconds.
var webhookBounds = []float64{0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 25, math.Inf(1)}

func TestHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name                string
		h                   Histogram
		q                   float64
		value, lower, upper float64
	}{
		{
			name:  "all in the first bucket interpolates from zero",
			h:     Histogram{Bounds: webhookBounds, Counts: []float64{100, 100, 100, 100, 100, 100, 100, 100, 100}},
			q:     0.5,
			value: 0.0025, lower: 0, upper: 0.005,
		},
		{
			name:  "p99 of all in the first bucket",
			h:     Histogram{Bounds: webhookBounds, Counts: []float64{100, 100, 100, 100, 100, 100, 100, 100, 100}},
			q:     0.99,
			value: 0.00495, lower: 0, upper: 0.005,
		},
		{
			name: "rank in the second bucket interpolates between its bounds",
			// 90 at or under 5ms, 10 in (5ms, 25ms]: rank 99 is the 9th of 10.
			h:     Histogram{Bounds: webhookBounds, Counts: []float64{90, 100, 100, 100, 100, 100, 100, 100, 100}},
			q:     0.99,
			value: 0.005 + 0.020*9/10, lower: 0.005, upper: 0.025,
		},
		{
			name:  "rank exactly at a bucket's count stays in that bucket",
			h:     Histogram{Bounds: []float64{1, 2, inf}, Counts: []float64{50, 100, 100}},
			q:     0.5,
			value: 1, lower: 0, upper: 1,
		},
		{
			name:  "the +Inf bucket answers the highest finite bound",
			h:     Histogram{Bounds: []float64{1, 2, inf}, Counts: []float64{10, 20, 100}},
			q:     0.99,
			value: 2, lower: 2, upper: inf,
		},
		{
			name:  "empty buckets before the rank are skipped",
			h:     Histogram{Bounds: []float64{1, 2, 4, inf}, Counts: []float64{0, 0, 8, 8}},
			q:     0.25,
			value: 2.5, lower: 2, upper: 4,
		},
		{
			name:  "q 1 is the upper bound of the last non-empty bucket",
			h:     Histogram{Bounds: []float64{1, 2, 4, inf}, Counts: []float64{4, 8, 8, 8}},
			q:     1,
			value: 2, lower: 1, upper: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := HistogramQuantile(tc.q, tc.h)
			require.NoError(t, err)
			assert.InDelta(t, tc.value, got.Value, 1e-12, "value")
			assert.Equal(t, tc.lower, got.Lower, "lower bound")
			assert.Equal(t, tc.upper, got.Upper, "upper bound")
			assert.Equal(t, tc.h.Count(), got.Count)
		})
	}
}

func TestHistogramQuantileErrors(t *testing.T) {
	h := Histogram{Bounds: []float64{1, math.Inf(1)}, Counts: []float64{1, 1}}
	tests := map[string]struct {
		q       float64
		h       Histogram
		wantErr error
	}{
		"empty histogram":   {q: 0.5, h: Histogram{}, wantErr: ErrNoObservations},
		"zero observations": {q: 0.5, h: Histogram{Bounds: h.Bounds, Counts: []float64{0, 0}}, wantErr: ErrNoObservations},
		"q above one":       {q: 1.5, h: h},
		"q below zero":      {q: -0.1, h: h},
		"q not a number":    {q: math.NaN(), h: h},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := HistogramQuantile(tc.q, tc.h)
			require.Error(t, err)
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
			}
		})
	}
}

func TestBelow(t *testing.T) {
	tests := map[string]struct {
		q    Quantile
		want Verdict
	}{
		"bucket entirely under the limit": {q: Quantile{Lower: 0, Upper: 0.005, Value: 0.004}, want: Met},
		"bucket ending at the limit":      {q: Quantile{Lower: 0.005, Upper: 0.010, Value: 0.009}, want: Met},
		"bucket entirely over the limit":  {q: Quantile{Lower: 0.025, Upper: 0.1, Value: 0.03}, want: NotMet},
		"bucket straddling the limit":     {q: Quantile{Lower: 0.005, Upper: 0.025, Value: 0.006}, want: Undecided},
		"interpolated value is not proof": {q: Quantile{Lower: 0.005, Upper: 0.025, Value: 0.024}, want: Undecided},
		"past the last finite bound":      {q: Quantile{Lower: 25, Upper: math.Inf(1), Value: 25}, want: NotMet},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.q.Below(0.010))
		})
	}
}

// scrape is a fragment of a kube-apiserver /metrics page.
const scrape = `# HELP apiserver_admission_webhook_admission_duration_seconds [STABLE] Admission webhook latency
# TYPE apiserver_admission_webhook_admission_duration_seconds histogram
apiserver_admission_webhook_admission_duration_seconds_bucket{name="w.example",operation="CREATE",rejected="false",type="admit",le="0.005"} 7
apiserver_admission_webhook_admission_duration_seconds_bucket{name="w.example",operation="CREATE",rejected="false",type="admit",le="0.025"} 9
apiserver_admission_webhook_admission_duration_seconds_bucket{name="w.example",operation="CREATE",rejected="false",type="admit",le="+Inf"} 10
apiserver_admission_webhook_admission_duration_seconds_sum{name="w.example",operation="CREATE",rejected="false",type="admit"} 0.1
apiserver_admission_webhook_admission_duration_seconds_count{name="w.example",operation="CREATE",rejected="false",type="admit"} 10
apiserver_admission_webhook_admission_duration_seconds_bucket{name="w.example",operation="CREATE",rejected="true",type="admit",le="0.005"} 1
apiserver_admission_webhook_admission_duration_seconds_bucket{name="w.example",operation="CREATE",rejected="true",type="admit",le="0.025"} 2
apiserver_admission_webhook_admission_duration_seconds_bucket{name="w.example",operation="CREATE",rejected="true",type="admit",le="+Inf"} 2
apiserver_admission_webhook_admission_duration_seconds_sum{name="w.example",operation="CREATE",rejected="true",type="admit"} 0.02
apiserver_admission_webhook_admission_duration_seconds_count{name="w.example",operation="CREATE",rejected="true",type="admit"} 2
apiserver_admission_webhook_admission_duration_seconds_bucket{name="other",operation="CREATE",rejected="false",type="admit",le="0.005"} 100
apiserver_admission_webhook_admission_duration_seconds_bucket{name="other",operation="CREATE",rejected="false",type="admit",le="0.025"} 100
apiserver_admission_webhook_admission_duration_seconds_bucket{name="other",operation="CREATE",rejected="false",type="admit",le="+Inf"} 100
apiserver_admission_webhook_admission_duration_seconds_sum{name="other",operation="CREATE",rejected="false",type="admit"} 0.3
apiserver_admission_webhook_admission_duration_seconds_count{name="other",operation="CREATE",rejected="false",type="admit"} 100
# HELP apiserver_admission_webhook_request_total [ALPHA] Admission webhook request total
# TYPE apiserver_admission_webhook_request_total counter
apiserver_admission_webhook_request_total{code="200",name="w.example",operation="CREATE",rejected="false",type="admit"} 10
apiserver_admission_webhook_request_total{code="500",name="w.example",operation="CREATE",rejected="true",type="admit"} 2
apiserver_admission_webhook_request_total{code="200",name="other",operation="CREATE",rejected="false",type="admit"} 100
`

func TestParseMetrics(t *testing.T) {
	ms, err := ParseMetrics(strings.NewReader(scrape))
	require.NoError(t, err)
	ours := map[string]string{"name": "w.example", "type": "admit", "operation": "CREATE"}

	t.Run("histogram sums the series that match", func(t *testing.T) {
		h, err := ms.Histogram("apiserver_admission_webhook_admission_duration_seconds", ours)
		require.NoError(t, err)
		assert.Equal(t, []float64{0.005, 0.025, math.Inf(1)}, h.Bounds)
		assert.Equal(t, []float64{8, 11, 12}, h.Counts)
		assert.InDelta(t, 0.12, h.Sum, 1e-12)
	})
	t.Run("a label filter narrows the sum", func(t *testing.T) {
		h, err := ms.Histogram("apiserver_admission_webhook_admission_duration_seconds",
			map[string]string{"name": "w.example", "rejected": "true"})
		require.NoError(t, err)
		assert.Equal(t, 2.0, h.Count())
	})
	t.Run("an absent family is the empty histogram", func(t *testing.T) {
		h, err := ms.Histogram("no_such_metric", nil)
		require.NoError(t, err)
		assert.Equal(t, 0.0, h.Count())
	})
	t.Run("counters grouped by a label", func(t *testing.T) {
		got := ms.Counter("apiserver_admission_webhook_request_total", ours, "code")
		assert.Equal(t, map[string]float64{"200": 10, "500": 2}, got)
	})
	t.Run("a missing label matches the empty value", func(t *testing.T) {
		got := ms.Counter("apiserver_admission_webhook_request_total", map[string]string{"name": "other", "dry_run": ""}, "")
		assert.Equal(t, map[string]float64{"": 100}, got)
	})
	t.Run("an absent counter family sums to nothing", func(t *testing.T) {
		assert.Empty(t, ms.Counter("apiserver_admission_webhook_rejection_count", ours, ""))
	})
}

func TestParseMetricsRejectsGarbage(t *testing.T) {
	_, err := ParseMetrics(strings.NewReader("metric{unclosed 1\n"))
	require.Error(t, err)
}

func TestHistogramSub(t *testing.T) {
	inf := math.Inf(1)
	before := Histogram{Bounds: []float64{1, inf}, Counts: []float64{3, 4}, Sum: 5}
	after := Histogram{Bounds: []float64{1, inf}, Counts: []float64{10, 14}, Sum: 20}

	t.Run("delta of two scrapes", func(t *testing.T) {
		d, err := after.Sub(before)
		require.NoError(t, err)
		assert.Equal(t, Histogram{Bounds: []float64{1, inf}, Counts: []float64{7, 10}, Sum: 15}, d)
	})
	t.Run("a series that did not exist before subtracts as zero", func(t *testing.T) {
		d, err := after.Sub(Histogram{})
		require.NoError(t, err)
		assert.Equal(t, after, d)
	})
	t.Run("different buckets are refused", func(t *testing.T) {
		_, err := after.Sub(Histogram{Bounds: []float64{2, inf}, Counts: []float64{1, 1}})
		assert.ErrorIs(t, err, ErrBucketsDiffer)
	})
	t.Run("add is the inverse", func(t *testing.T) {
		d, err := after.Sub(before)
		require.NoError(t, err)
		back, err := d.Add(before)
		require.NoError(t, err)
		assert.Equal(t, after, back)
	})
}
