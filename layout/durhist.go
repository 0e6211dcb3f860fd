package layout

import (
	"math"
	"math/bits"
)

// Duration histograms of the world segment's statistics: the engine counts
// every publish's duration and every frame's duration in one bucket of a
// histogram in the world header (cumulative counts since the segment was
// created), so that a reader computes percentiles over any interval from two
// reads of the counts (their difference) without the engine's help: `engine
// top` shows the publish and frame time p50 and p99 of its refresh interval.
// The statistics words OffWStatLastNanos and OffWStatFrameNanos hold only the
// last durations.
//
// Buckets are log-linear: each power of two of nanoseconds from 2^10 (1.024
// µs) to 2^34 (17.2 s) is split in DurHistParts equal parts, so the upper end
// of a bucket is at most 1/DurHistParts (25%) above any duration it counts.
// Bucket 0 counts the durations below 2^10 ns and the last bucket those of
// 2^34 ns and more. A histogram is DurHistBuckets u64 words; the two fill the
// end of the world header, [OffWPubHist, HeaderSize).

const (
	// DurHistParts is the number of equal parts of each power of two.
	DurHistParts = 4
	// DurHistLowBits: durations below 2^DurHistLowBits ns share bucket 0.
	DurHistLowBits = 10
	// DurHistHighBits: durations of 2^DurHistHighBits ns and more share
	// the last bucket.
	DurHistHighBits = 34
	// DurHistBuckets is the number of counters of one histogram: bucket 0,
	// DurHistParts per power of two, the last bucket.
	DurHistBuckets = 2 + (DurHistHighBits-DurHistLowBits)*DurHistParts

	// OffWPubHist is the publish duration histogram of the world header:
	// one count per successful publish (the OffWStatPublishes increments),
	// by its duration (OffWStatLastNanos).
	OffWPubHist = HeaderSize - 2*8*DurHistBuckets // 2528
	// OffWFrameHist is the engine frame duration histogram: one count per
	// engine frame (published or skipped), by its duration
	// (OffWStatFrameNanos).
	OffWFrameHist = OffWPubHist + 8*DurHistBuckets // 3312
)

// DurHist is the counts of one duration histogram.
type DurHist [DurHistBuckets]uint64

// DurHistBucket returns the bucket of a duration of ns nanoseconds: 0 below
// 2^10; for 2^(e-1) <= ns < 2^e with 11 <= e <= 34, 1 + 4(e-11) + the two
// bits below the top bit of ns; DurHistBuckets-1 from 2^34 on.
func DurHistBucket(ns uint64) int {
	e := bits.Len64(ns)
	switch {
	case e <= DurHistLowBits:
		return 0
	case e > DurHistHighBits:
		return DurHistBuckets - 1
	}
	part := int(ns>>(e-3)) & (DurHistParts - 1)
	return 1 + (e-DurHistLowBits-1)*DurHistParts + part
}

// DurHistBounds returns the durations bucket i counts: lower <= ns < upper
// (upper is math.MaxUint64 for the last bucket, which has no end).
func DurHistBounds(i int) (lower, upper uint64) {
	switch {
	case i <= 0:
		return 0, 1 << DurHistLowBits
	case i >= DurHistBuckets-1:
		return 1 << DurHistHighBits, math.MaxUint64
	}
	e := DurHistLowBits + 1 + (i-1)/DurHistParts
	s := uint64((i - 1) % DurHistParts)
	lower = 1<<(e-1) + s<<(e-3)
	return lower, lower + 1<<(e-3)
}

// AddDurHist counts one duration of ns nanoseconds in the histogram at off
// of b. Only the engine writes the world header's histograms.
func AddDurHist(b []byte, off int, ns uint64) {
	// ORDER(durhist): an atomic add per count; readers load each counter
	// on its own, so a read may miss the count being added (no snapshot
	// of the whole histogram is promised).
	Add64(b, off+8*DurHistBucket(ns), 1)
}

// ReadDurHist loads the histogram at off of b, word by word.
func ReadDurHist(b []byte, off int) (h DurHist) {
	for i := range h {
		h[i] = Load64(b, off+8*i)
	}
	return h
}

// Count returns the number of durations counted.
func (h *DurHist) Count() uint64 {
	var n uint64
	for _, c := range h {
		n += c
	}
	return n
}

// Sub returns the counts of h less those of an earlier read prev of the same
// histogram: the durations counted between the two reads. A counter lower
// than before (another segment's histogram) gives 0.
func (h *DurHist) Sub(prev *DurHist) (d DurHist) {
	for i := range h {
		if h[i] > prev[i] {
			d[i] = h[i] - prev[i]
		}
	}
	return d
}

// Percentile returns the upper end (exclusive) of the bucket at which the
// running count reaches p% (0 < p <= 100) of the total, rounded to nearest
// and at least 1: at most 25% above the true percentile for durations from
// 2^10 ns to 2^34 ns, and 2^10 ns for shorter ones. When the percentile falls
// in the last bucket it returns that bucket's lower end, 2^34 ns (the
// percentile is at least that). 0 for an empty histogram.
func (h *DurHist) Percentile(p float64) uint64 {
	n := h.Count()
	if n == 0 {
		return 0
	}
	want := max(uint64(float64(n)*p/100+0.5), 1)
	var acc uint64
	for i, c := range h {
		if acc += c; acc >= want {
			lo, up := DurHistBounds(i)
			if i == DurHistBuckets-1 {
				return lo
			}
			return up
		}
	}
	return 1 << DurHistHighBits // unreachable: acc reaches n >= want
}
