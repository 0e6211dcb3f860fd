package sync

import (
	"fmt"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// TestPinsAndHoldersAtTheCap: every module slot up to layout.MaxModules
// (256) can have its pin watched and hold a lease; the 257th id is refused
// (WatchPin) or ignored (ReleaseHolder, UnwatchPin). A pin watched under the
// last id holds its slot like one under id 0, and a convoy of 256 holders
// keeps its slot until the last of them is released.
func TestPinsAndHoldersAtTheCap(t *testing.T) {
	fx := newFixture(t, 64, 4, 100)
	all := world.MaskAll()
	_, err := fx.pub.Publish(1, all)
	require.NoError(t, err)

	words := make([]byte, 8*layout.MaxModules) // one pin word per module, 8-aligned heap memory
	for id := 0; id < layout.MaxModules; id++ {
		require.NoError(t, fx.pub.WatchPin(id, words, 8*id), "id %d", id)
	}
	require.Equal(t, layout.MaxModules, fx.pub.WatchedPins().Count())
	require.Error(t, fx.pub.WatchPin(layout.MaxModules, words, 0), "the 257th id")
	require.Error(t, fx.pub.WatchPin(-1, words, 0))
	fx.pub.UnwatchPin(layout.MaxModules) // a no-op, no panic
	require.Equal(t, layout.MaxModules, fx.pub.WatchedPins().Count())

	// The last id's pin holds the slot it names: no publish takes it.
	pinned := fx.pub.Latest()
	layout.Store64(words, 8*(layout.MaxModules-1), layout.PackPin(pinned, 2))
	for fr := uint64(2); fr < 20; fr++ {
		st, err := fx.pub.Publish(fr, all)
		require.NoError(t, err)
		require.NotEqual(t, pinned, st.Slot, "frame %d took the slot pinned under id %d", fr, layout.MaxModules-1)
	}
	fx.pub.UnwatchPin(layout.MaxModules - 1)
	require.False(t, fx.pub.WatchedPins().Has(layout.MaxModules-1))
	for id := 0; id < layout.MaxModules; id++ {
		fx.pub.UnwatchPin(id)
	}
	require.True(t, fx.pub.WatchedPins().Empty())

	// A convoy of every module slot.
	every := holdersUpTo(layout.MaxModules)
	slot, st, err := fx.pub.Snapshot(30, all, every)
	require.NoError(t, err)
	require.Equal(t, every, st.Holders)
	ll := fx.pub.LeasesLayout()
	require.Equal(t, every, layout.GetModuleSet(fx.segs.Leases.Data, ll.LeaseOff(slot)+layout.LeaseHolders), "mirrored for inspection")
	require.Error(t, fx.pub.ReleaseHolder(slot, layout.MaxModules), "the 257th id holds nothing")
	require.Zero(t, fx.pub.ReleaseHolderAll(layout.MaxModules))
	for id := 0; id < layout.MaxModules-1; id++ {
		require.NoError(t, fx.pub.ReleaseHolder(slot, id))
	}
	require.Equal(t, layout.ModuleSetOf(layout.MaxModules-1), fx.pub.Holders(slot))
	require.Equal(t, 1, fx.pub.LeasedSlots(), "the last holder keeps the slot")
	require.Equal(t, 1, fx.pub.RetainHolders(func(int) layout.ModuleSet { return layout.ModuleSet{} }))
	require.Zero(t, fx.pub.LeasedSlots())
	require.True(t, layout.GetModuleSet(fx.segs.Leases.Data, ll.LeaseOff(slot)+layout.LeaseHolders).Empty())
}

// TestReaderTableSizedAndFull: the external reader table has the size the
// segments were created with; every entry can be claimed, and the claim
// beyond them fails at once with ErrNoReaderSlot, whose text names the
// table's size; an entry of a dead process is reclaimed by the next claim.
func TestReaderTableSizedAndFull(t *testing.T) {
	reg, _ := testRegistry(t)
	w, err := world.New(reg, world.Config{ChunkCapacity: 64, MaxChunks: 4})
	require.NoError(t, err)
	inst := instanceName(t)
	const readers = 5
	segs, err := CreateWorldSegments(inst, w, 0, readers)
	require.NoError(t, err)
	t.Cleanup(func() { segs.Unlink(); segs.Close() })
	ll, err := layout.DecodeLeases(segs.Leases.Data)
	require.NoError(t, err)
	require.Equal(t, readers, ll.Readers)

	var rs []*Reader
	for i := 0; i < readers; i++ {
		r, err := Attach(inst, AttachOptions{Name: fmt.Sprintf("r%d", i)})
		require.NoError(t, err, "reader %d of %d", i, readers)
		rs = append(rs, r)
	}
	_, err = Attach(inst, AttachOptions{Name: "one-too-many"})
	require.ErrorIs(t, err, ErrNoReaderSlot)
	require.Contains(t, err.Error(), fmt.Sprintf("all %d entries", readers))
	// An entry whose process is gone is free for the next claim.
	o := ll.ReaderOff(2)
	layout.Store64(segs.Leases.Data, o+layout.ReaderStart, shm.SelfStartTime()+1) // another process of this pid
	r, err := Attach(inst, AttachOptions{Name: "after-death"})
	require.NoError(t, err)
	require.Equal(t, 2, r.Entry())
	rs = append(rs, r)
	for _, r := range rs {
		r.Close()
	}
	_, err = CreateWorldSegments(instanceName(t), w, 0, layout.MaxReaders+1)
	require.ErrorIs(t, err, layout.ErrInvalidParam)
}
