package sync

import (
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// TestPublishDurationHistogram: the world header's publish histogram holds
// exactly one count per successful publish, in the bucket of the duration
// the publish returned (a model histogram built from the returned stats),
// and nothing for a skipped publish; its sum is the publishes word.
func TestPublishDurationHistogram(t *testing.T) {
	fx := newFixture(t, 256, 40, 256*30)
	p, b := fx.pub, fx.segs.World.Data
	all := world.MaskAll()
	var model layout.DurHist
	for f := uint64(1); f <= 40; f++ {
		if f == 2 {
			// One copy's memory at most: this publish is skipped.
			p.SetShmLimit(int64(p.Layout().FixedBytes()) + int64(p.CopyBytes()))
			_, err := p.Publish(f, all)
			require.ErrorIs(t, err, ErrNoSlotMemory)
			p.SetShmLimit(0)
			continue
		}
		fx.touch(f, []int{int(f) % 30})
		st, err := p.Publish(f, all)
		require.NoError(t, err)
		model[layout.DurHistBucket(uint64(st.Duration))]++
		require.Equal(t, uint64(st.Duration), layout.Load64(b, layout.OffWStatLastNanos))
	}
	got := layout.ReadDurHist(b, layout.OffWPubHist)
	require.Equal(t, model, got)
	require.Equal(t, uint64(39), got.Count())
	require.Equal(t, layout.Load64(b, layout.OffWStatPublishes), got.Count())
	require.Equal(t, uint64(1), layout.Load64(b, layout.OffWStatSkipped))
	frames := layout.ReadDurHist(b, layout.OffWFrameHist)
	require.Zero(t, frames.Count(), "the frame histogram is the engine's, not the publisher's")
}
