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

// PartBounds returns the upper ends of the histogram's parts from 2^lo ns
// (exclusive) up to 2^hi ns (inclusive), every parts-th part of each power
// of two: parts 8 gives every part, 2 the ends at 1.5×2^k and 2^(k+1), 1 the
// powers of two alone. Bounds a histogram is folded into (Cumulative) must
// be part ends: only there does a count of durations below the bound follow
// exactly from the parts. lo must be at least 3 (below 8 ns a bucket is one
// part) and hi at most layout.TickBuckets-2 (the last bucket holds every
// longer duration); parts is 1, 2, 4 or 8.
func PartBounds(lo, hi, parts int) []time.Duration {
	if lo < 3 || hi > layout.TickBuckets-2 || lo >= hi || parts <= 0 || histSub%parts != 0 {
		panic("host: PartBounds: bad range or parts")
	}
	step := histSub / parts
	out := make([]time.Duration, 0, (hi-lo)*parts)
	for b := lo + 1; b <= hi; b++ { // bucket b: [2^(b-1), 2^b)
		for s := step - 1; s < histSub; s += step {
			out = append(out, time.Duration(partUpper(b, s)))
		}
	}
	return out
}

// Cumulative writes into below[i] the number of recorded durations shorter
// than bounds[i], for bounds in increasing order, each the upper end of a
// part (PartBounds): the classic cumulative histogram of an exporter.
// Durations at or beyond the last bound are in Count alone. below must be
// as long as bounds.
func (h *Histogram) Cumulative(bounds []time.Duration, below []uint64) {
	var acc uint64
	i := 0
	for b := range h.parts {
		for s, c := range h.parts[b] {
			up := time.Duration(partUpper(b, s))
			for i < len(bounds) && bounds[i] < up {
				below[i] = acc
				i++
			}
			if i == len(bounds) {
				return
			}
			acc += c
		}
	}
	for ; i < len(bounds); i++ {
		below[i] = acc
	}
}
