package host

import (
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// TestFrameDurationHistogram: the world header's frame histogram counts each
// engine frame once, in the bucket of the duration the engine recorded in
// its own histogram (Engine.Hist, whose eighth-of-a-power-of-two parts each
// lie inside one segment bucket: folded, the two agree exactly), and the
// publish histogram counts each publish.
func TestFrameDurationHistogram(t *testing.T) {
	r := newSchedRig(t)
	for i := 0; i < 50; i++ {
		r.step()
	}
	b := r.e.segs.World.Data
	var model layout.DurHist
	for bk := range r.e.Hist.parts {
		for s, c := range r.e.Hist.parts[bk] {
			lo := uint64(0)
			if bk > 0 {
				lo = 1 << (bk - 1)
			}
			if bk >= 4 {
				lo += uint64(s) << (bk - 4)
			}
			model[layout.DurHistBucket(lo)] += c
		}
	}
	got := layout.ReadDurHist(b, layout.OffWFrameHist)
	require.Equal(t, model, got)
	require.Equal(t, uint64(50), got.Count())
	require.Equal(t, r.e.Frames, got.Count())
	last := layout.Load64(b, layout.OffWStatFrameNanos)
	require.Positive(t, got[layout.DurHistBucket(last)], "the last frame's bucket")
	pub := layout.ReadDurHist(b, layout.OffWPubHist)
	require.Equal(t, layout.Load64(b, layout.OffWStatPublishes), pub.Count())
	require.Equal(t, r.e.PubHist.Count(), pub.Count())
}
