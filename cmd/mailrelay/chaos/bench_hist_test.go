package chaos

import (
	"math"
	"testing"
)

// TestHistogramQuantile checks the benchmark's reading of a scraped
// histogram against histogram_quantile's rule.
func TestHistogramQuantile(t *testing.T) {
	before := histogram{le: []float64{0.001, 0.005, 0.01, math.Inf(1)}, counts: []float64{10, 10, 10, 10}}
	after := histogram{le: before.le, counts: []float64{60, 100, 110, 120}}
	h := after.minus(before) // 50 under 1 ms, 40 in 1-5 ms, 10 in 5-10 ms, 10 above
	for _, tt := range []struct {
		q, want float64
	}{
		{0.25, 0.00055},   // rank 27.5 of 110: 27.5 of 50 into [0, 1 ms]
		{0.5, 0.0015},     // rank 55: 5 of 40 into [1, 5 ms]
		{0.875, 0.008125}, // rank 96.25: 6.25 of 10 into [5, 10 ms]
		{0.99, 0.01},      // in +Inf: the largest finite bound
	} {
		if got := h.quantile(tt.q); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := (histogram{le: []float64{1, math.Inf(1)}, counts: []float64{0, 0}}).quantile(0.5); got != 0 {
		t.Errorf("empty histogram: quantile %v, want 0", got)
	}
}
