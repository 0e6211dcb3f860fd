package sync

import (
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// TestRecorderLease: the slot the recorder leases right after a publish
// keeps its seq and its bytes across any number of later publishes (it is
// never picked), is counted as leased, refuses a second lease and an extra
// release, and is back in the rotation after its release. A module's
// holder ids cannot take the recorder's id.
func TestRecorderLease(t *testing.T) {
	fx := newFixture(t, 16, 4, 40)
	all := world.MaskAll()
	_, _, err := fx.pub.LeaseLatest(RecorderHolder)
	require.Error(t, err, "nothing published yet")
	fx.w.Advance()
	_, err = fx.pub.Publish(1, all)
	require.NoError(t, err)
	s, frame, err := fx.pub.LeaseLatest(RecorderHolder)
	require.NoError(t, err)
	require.Equal(t, uint64(1), frame)
	require.Equal(t, fx.pub.Latest(), s)
	_, _, err = fx.pub.LeaseLatest(RecorderHolder)
	require.Error(t, err, "a second lease of the same slot")
	_, _, err = fx.pub.LeaseLatest(3)
	require.Error(t, err, "a module's holder id")
	require.Equal(t, 1, fx.pub.LeasedSlots())
	lw := fx.pub.Layout()
	slotBytes := func() []byte {
		o := lw.SlotOff(s)
		return append([]byte(nil), fx.segs.World.Data[o:o+lw.SlotStride]...)
	}
	before := slotBytes()
	slots := lw.Slots
	for f := uint64(2); f < uint64(2+3*slots); f++ {
		fx.touch(f, []int{0, 1, 2})
		fx.w.Advance()
		st, err := fx.pub.Publish(f, all)
		require.NoError(t, err)
		require.NotEqual(t, s, st.Slot, "frame %d took the recorder's slot", f)
	}
	require.Equal(t, before, slotBytes(), "the leased slot changed")
	require.Equal(t, uint64(1), layout.Load64(fx.segs.World.Data, lw.SlotOff(s)+layout.SlotFrame))
	free := fx.pub.freeSlots()
	require.NoError(t, fx.pub.ReleaseHolder(s, RecorderHolder))
	require.ErrorIs(t, fx.pub.ReleaseHolder(s, RecorderHolder), ErrNotHolder)
	require.Equal(t, 0, fx.pub.LeasedSlots())
	require.Equal(t, free+1, fx.pub.freeSlots(), "the released slot is free again")
}
