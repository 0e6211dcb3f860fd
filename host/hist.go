package host

import (
	"math/bits"
	"time"
)

// Histogram records durations in power-of-two microsecond buckets without
// allocating; percentiles are bucket upper bounds (within 2x).
type Histogram struct {
	buckets [40]uint64
	n       uint64
	max     time.Duration
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{} }

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	ns := uint64(d)
	if ns == 0 {
		ns = 1
	}
	b := bits.Len64(ns)
	if b >= len(h.buckets) {
		b = len(h.buckets) - 1
	}
	h.buckets[b]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

// Count returns the number of recorded durations.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest recorded duration.
func (h *Histogram) Max() time.Duration { return h.max }

// Percentile returns an upper bound of the p-th percentile (0 < p <= 100).
func (h *Histogram) Percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	want := uint64(float64(h.n)*p/100 + 0.5)
	if want == 0 {
		want = 1
	}
	var acc uint64
	for b, c := range h.buckets {
		acc += c
		if acc >= want {
			d := time.Duration(uint64(1) << uint(b))
			if d > h.max {
				d = h.max
			}
			return d
		}
	}
	return h.max
}
