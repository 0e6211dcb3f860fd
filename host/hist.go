package host

import (
	"math/bits"
	"time"

	"github.com/fdp-engine/fdp/layout"
)

// Histogram records durations without allocating, in log-linear buckets:
// the power-of-two buckets of the module statistics block
// (layout.TickBucket: bucket b holds d with bits.Len64(d ns) = b), each
// split in histSub equal parts. A percentile is the upper end of its part,
// so it is at most 1/histSub (12.5%) above the true value, where the
// power-of-two buckets alone were within 2× (the status line showed
// "publish p50 524.288µs": a bucket bound, not a measurement). Buckets folds
// the parts back into the statistics block's buckets, so a reader of a
// module's block still computes what the block describes.
type Histogram struct {
	parts [layout.TickBuckets][histSub]uint64
	n     uint64
	max   time.Duration
	sum   time.Duration
}

// histSub is the number of equal parts of each power-of-two bucket.
const histSub = 8

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{} }

// histPart returns the bucket and the part of it that ns falls in.
func histPart(ns uint64) (b, s int) {
	b = layout.TickBucket(ns)
	e := bits.Len64(max(ns, 1)) // b, unless ns is beyond the last bucket
	if e < 4 || e != b {
		return b, 0 // below 8 ns the parts would be empty; above, one part
	}
	// ns is in [2^(e-1), 2^e): the part is the next 3 bits below the top.
	return b, int(ns>>(e-4)) & (histSub - 1)
}

// partUpper returns the upper end (exclusive) of part s of bucket b, in ns.
func partUpper(b, s int) uint64 {
	if b < 4 {
		return 1 << b
	}
	return 1<<(b-1) + uint64(s+1)<<(b-4)
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	b, s := histPart(uint64(max(d, 0)))
	h.parts[b][s]++
	h.n++
	h.sum += d
	if d > h.max {
		h.max = d
	}
}

// Count returns the number of recorded durations.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest recorded duration.
func (h *Histogram) Max() time.Duration { return h.max }

// Sum returns the sum of the recorded durations.
func (h *Histogram) Sum() time.Duration { return h.sum }

// Buckets returns the counts of the statistics block's power-of-two buckets
// (bucket i: durations d with bits.Len64(d ns) = i, layout.TickBucket).
func (h *Histogram) Buckets() (out [layout.TickBuckets]uint64) {
	for b := range h.parts {
		for _, c := range h.parts[b] {
			out[b] += c
		}
	}
	return out
}

// Percentile returns the p-th percentile (0 < p <= 100) within 12.5% above
// (and within 8 ns below 8 ns, where a bucket is not split):
// the upper end of the part at which the running count reaches p% of the
// total (rounded to nearest, at least 1), capped at the largest duration
// recorded. 0 for an empty histogram.
func (h *Histogram) Percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	want := max(uint64(float64(h.n)*p/100+0.5), 1)
	var acc uint64
	for b := range h.parts {
		for s, c := range h.parts[b] {
			if acc += c; acc >= want {
				return min(time.Duration(partUpper(b, s)), h.max)
			}
		}
	}
	return h.max
}
