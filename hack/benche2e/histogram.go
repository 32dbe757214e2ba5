package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a Prometheus text endpoint, by family name.
type Metrics map[string]*dto.MetricFamily

// ParseMetrics reads the Prometheus text exposition format.
func ParseMetrics(r io.Reader) (Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse Prometheus text: %w", err)
	}
	return Metrics(mf), nil
}

// matches reports whether m carries every label of want. A label that m
// lacks counts as "", as Prometheus treats it.
func matches(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		got := ""
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k {
				got = lp.GetValue()
				break
			}
		}
		if got != v {
			return false
		}
	}
	return true
}

// Counter sums the counters (or gauges, or untyped samples) of family name
// whose labels include want, grouped by the values of the label by (all
// under "" when by is empty). A family that is absent sums to nothing:
// the apiserver creates a series on its first observation.
func (ms Metrics) Counter(name string, want map[string]string, by string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range ms[name].GetMetric() {
		if !matches(m, want) {
			continue
		}
		key := ""
		if by != "" {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == by {
					key = lp.GetValue()
				}
			}
		}
		switch {
		case m.Counter != nil:
			out[key] += m.GetCounter().GetValue()
		case m.Gauge != nil:
			out[key] += m.GetGauge().GetValue()
		case m.Untyped != nil:
			out[key] += m.GetUntyped().GetValue()
		}
	}
	return out
}

// Histogram is a classic Prometheus histogram: cumulative counts at
// ascending upper bounds, the last of which is +Inf.
type Histogram struct {
	Bounds []float64
	Counts []float64
	Sum    float64
}

// Count is the number of observations.
func (h Histogram) Count() float64 {
	if len(h.Counts) == 0 {
		return 0
	}
	return h.Counts[len(h.Counts)-1]
}

// ErrBucketsDiffer is returned when two histograms to combine have
// different bucket bounds.
var ErrBucketsDiffer = errors.New("histograms have different bucket bounds")

// Histogram sums the histograms of family name whose labels include want
// (for example over the "rejected" label). An absent family, or no
// matching series, is the empty histogram.
func (ms Metrics) Histogram(name string, want map[string]string) (Histogram, error) {
	var sum Histogram
	for _, m := range ms[name].GetMetric() {
		if m.Histogram == nil || !matches(m, want) {
			continue
		}
		h := fromDTO(m.GetHistogram())
		var err error
		if sum, err = sum.Add(h); err != nil {
			return Histogram{}, fmt.Errorf("%s%v: %w", name, want, err)
		}
	}
	return sum, nil
}

func fromDTO(d *dto.Histogram) Histogram {
	buckets := slices.Clone(d.GetBucket())
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].GetUpperBound() < buckets[j].GetUpperBound() })
	var h Histogram
	for _, b := range buckets {
		c := float64(b.GetCumulativeCount())
		if b.CumulativeCountFloat != nil {
			c = b.GetCumulativeCountFloat()
		}
		h.Bounds = append(h.Bounds, b.GetUpperBound())
		h.Counts = append(h.Counts, c)
	}
	total := float64(d.GetSampleCount())
	if d.SampleCountFloat != nil {
		total = d.GetSampleCountFloat()
	}
	// The text format always has the +Inf bucket; a histogram built by
	// hand may not, and _count is its cumulative count.
	if len(h.Bounds) == 0 || !math.IsInf(h.Bounds[len(h.Bounds)-1], 1) {
		h.Bounds = append(h.Bounds, math.Inf(1))
		h.Counts = append(h.Counts, total)
	}
	h.Sum = d.GetSampleSum()
	return h
}

// combine applies op bucket by bucket. The empty histogram is the
// identity, so that a series that did not exist yet subtracts as zero.
func (h Histogram) combine(o Histogram, sign float64) (Histogram, error) {
	if len(o.Bounds) == 0 {
		return h, nil
	}
	if len(h.Bounds) == 0 {
		h = Histogram{Bounds: o.Bounds, Counts: make([]float64, len(o.Counts))}
	}
	if !slices.Equal(h.Bounds, o.Bounds) {
		return Histogram{}, fmt.Errorf("%v and %v: %w", h.Bounds, o.Bounds, ErrBucketsDiffer)
	}
	out := Histogram{Bounds: slices.Clone(h.Bounds), Counts: make([]float64, len(h.Counts)), Sum: h.Sum + sign*o.Sum}
	for i := range h.Counts {
		out.Counts[i] = h.Counts[i] + sign*o.Counts[i]
	}
	return out, nil
}

// Add is h plus o, bucket by bucket.
func (h Histogram) Add(o Histogram) (Histogram, error) { return h.combine(o, 1) }

// Sub is h minus before: the observations made between two scrapes of a
// counter-like histogram.
func (h Histogram) Sub(before Histogram) (Histogram, error) { return h.combine(before, -1) }

// Quantile is an estimate from a histogram, and the bucket it came from.
type Quantile struct {
	Q float64
	// Value is interpolated linearly within the bucket, as PromQL's
	// histogram_quantile does.
	Value float64
	// Lower and Upper bound the bucket that holds the q-th observation:
	// the true quantile is in (Lower, Upper]. Upper is +Inf when it is
	// past the last finite bound, and Value is then that bound.
	Lower, Upper float64
	// Count is the number of observations.
	Count float64
}

// ErrNoObservations is returned for the quantile of an empty histogram.
var ErrNoObservations = errors.New("the histogram has no observations")

// HistogramQuantile estimates the q-quantile (0 <= q <= 1) with the rules
// of PromQL's histogram_quantile: find the first bucket whose cumulative
// count reaches q*count, and interpolate linearly between its lower bound
// (0 for the first bucket) and its upper bound; in the +Inf bucket, answer
// the highest finite bound.
func HistogramQuantile(q float64, h Histogram) (Quantile, error) {
	if q < 0 || q > 1 || math.IsNaN(q) {
		return Quantile{}, fmt.Errorf("quantile %v is not in [0, 1]", q)
	}
	total := h.Count()
	if total <= 0 {
		return Quantile{}, ErrNoObservations
	}
	rank := q * total
	b := sort.Search(len(h.Counts)-1, func(i int) bool { return h.Counts[i] >= rank })
	res := Quantile{Q: q, Upper: h.Bounds[b], Count: total}
	if b > 0 {
		res.Lower = h.Bounds[b-1]
	}
	if b == len(h.Bounds)-1 {
		// Past the last finite bound: nothing is known but the bound.
		res.Value = res.Lower
		return res, nil
	}
	below := 0.0
	if b > 0 {
		below = h.Counts[b-1]
	}
	inBucket := h.Counts[b] - below
	if inBucket <= 0 {
		res.Value = res.Upper
		return res, nil
	}
	res.Value = res.Lower + (res.Upper-res.Lower)*(rank-below)/inBucket
	return res, nil
}

// Verdict says whether a quantile is below limit, as far as the bucket
// bounds tell: the q-th observation is in (Lower, Upper].
type Verdict string

// Verdicts of Below.
const (
	Met       Verdict = "met"
	NotMet    Verdict = "not met"
	Undecided Verdict = "undecided by these buckets"
)

// Below decides "the quantile is under limit" from the bucket alone, never
// from the interpolated value, which is a guess within the bucket.
func (q Quantile) Below(limit float64) Verdict {
	switch {
	case q.Upper <= limit:
		return Met
	case q.Lower >= limit:
		return NotMet
	}
	return Undecided
}
