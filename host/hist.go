package host

import (
	"time"

	"github.com/fdp-engine/fdp/layout"
)

// Histogram records durations in power-of-two nanosecond buckets without
// allocating; percentiles are bucket upper bounds (within 2x). The buckets
// are those of the module statistics block (layout.TickBucket,
// layout.TickPercentile), so a reader of a module's block computes the same
// percentiles as the engine.
type Histogram struct {
	buckets [layout.TickBuckets]uint64
	n       uint64
	max     time.Duration
	sum     time.Duration
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{} }

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	h.buckets[layout.TickBucket(uint64(max(d, 0)))]++
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

// Buckets returns a copy of the bucket counts (bucket i: durations d with
// bits.Len64(d ns) = i).
func (h *Histogram) Buckets() [layout.TickBuckets]uint64 { return h.buckets }

// Percentile returns an upper bound of the p-th percentile (0 < p <= 100).
func (h *Histogram) Percentile(p float64) time.Duration {
	return time.Duration(layout.TickPercentile(&h.buckets, uint64(h.max), p))
}
