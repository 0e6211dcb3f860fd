package host

import (
	"math/rand"
	"sort"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// TestHistogramPercentiles: against the exact percentiles of random samples
// (log-uniform from 1 ns to 10 s, and clustered), Percentile is never below
// the true value and at most 12.5% above it (or the largest sample); the
// folded buckets equal the statistics block's power-of-two counts.
func TestHistogramPercentiles(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 50; round++ {
		h := NewHistogram()
		var pow [layout.TickBuckets]uint64
		n := 1 + rng.Intn(5000)
		ds := make([]time.Duration, n)
		for i := range ds {
			var d time.Duration
			if round%2 == 0 {
				d = time.Duration(float64(time.Nanosecond) * pow10(rng.Float64()*10))
			} else {
				d = 500*time.Microsecond + time.Duration(rng.Intn(100_000)) // a cluster, as frame times are
			}
			ds[i] = d
			h.Record(d)
			pow[layout.TickBucket(uint64(d))]++
		}
		require.Equal(t, pow, h.Buckets(), "round %d: folded buckets", round)
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		for _, p := range []float64{1, 50, 90, 99, 99.9, 100} {
			want := max(uint64(float64(n)*p/100+0.5), 1)
			exact := ds[want-1]
			got := h.Percentile(p)
			require.GreaterOrEqual(t, got, exact, "round %d p%v", round, p)
			require.LessOrEqual(t, float64(got), float64(exact)*1.125+8, "round %d p%v: %v for %v", round, p, got, exact) // below 8 ns a bucket has no parts
			require.LessOrEqual(t, got, ds[n-1], "round %d p%v: above the largest", round, p)
		}
	}
	require.Zero(t, NewHistogram().Percentile(50))
}

func pow10(x float64) float64 {
	r := 1.0
	for ; x >= 1; x-- {
		r *= 10
	}
	return r * (1 + x*9) // roughly 10^x for the fraction: spread enough for a test
}

// TestHistogramCumulative: at every bound of PartBounds (every part, every
// other, every fourth, the powers of two), Cumulative equals a count of the
// recorded durations below the bound, made from the samples themselves;
// the bounds are the parts' ends (each equals partUpper of some part, in
// increasing order), including durations exactly at a bound (counted in the
// next one) and beyond the last bound (in no bucket).
func TestHistogramCumulative(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for round := 0; round < 40; round++ {
		parts := []int{8, 4, 2, 1}[round%4]
		lo, hi := 3+rng.Intn(10), 20+rng.Intn(layout.TickBuckets-2-20+1)
		bounds := PartBounds(lo, hi, parts)
		require.Len(t, bounds, (hi-lo)*parts)
		require.Equal(t, time.Duration(1)<<hi, bounds[len(bounds)-1])
		for i := 1; i < len(bounds); i++ {
			require.Less(t, bounds[i-1], bounds[i])
		}
		h := NewHistogram()
		ds := make([]time.Duration, 1+rng.Intn(3000))
		for i := range ds {
			switch rng.Intn(4) {
			case 0:
				ds[i] = bounds[rng.Intn(len(bounds))] // exactly at a bound
			case 1:
				ds[i] = bounds[rng.Intn(len(bounds))] - 1
			default:
				ds[i] = time.Duration(rng.Int63n(int64(2) << hi)) // beyond the last bound too
			}
			h.Record(ds[i])
		}
		below := make([]uint64, len(bounds))
		h.Cumulative(bounds, below)
		for i, b := range bounds {
			var want uint64
			for _, d := range ds {
				if d < b {
					want++
				}
			}
			require.Equal(t, want, below[i], "round %d: bound %v (%d of %d)", round, b, i, len(bounds))
		}
	}
	require.Panics(t, func() { PartBounds(2, 10, 8) })
	require.Panics(t, func() { PartBounds(3, layout.TickBuckets-1, 8) })
	require.Panics(t, func() { PartBounds(3, 10, 3) })
}
