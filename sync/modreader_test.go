package sync

import (
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// moduleReader returns a module reader of fx whose pin word lives in a
// private stand-in for the module segment's reader line.
func moduleReader(t *testing.T, fx *fixture) (*Reader, []byte) {
	ws, err := shm.Open(shm.SegmentName(fx.inst, WorldSegment), false)
	require.NoError(t, err)
	mod := make([]byte, layout.HeaderSize) // 8-aligned heap memory
	r, err := NewModuleReader(ws, &layout.Module{B: mod}, AttachOptions{Name: "m"})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	require.Equal(t, -1, r.Entry(), "a module reader has no entry in the leases segment")
	return r, mod
}

// TestWatchedModulePinBlocksRewrite: a module's pin word (in its own
// segment) holds its slot while the engine watches it, and holds nothing
// once the engine stops watching it (the tick is over, or the module died):
// the slot is then rewritten and the module's Release reports the torn read.
func TestWatchedModulePinBlocksRewrite(t *testing.T) {
	fx := newFixture(t, 64, 4, 100)
	all := world.MaskAll()
	_, err := fx.pub.Publish(1, all)
	require.NoError(t, err)
	r, mod := moduleReader(t, fx)
	require.NoError(t, fx.pub.WatchPin(7, mod, layout.OffMPin))
	f, err := r.Pin()
	require.NoError(t, err)
	pinned := f.Slot()
	require.Equal(t, layout.PackPin(pinned, f.seq), layout.Load64(mod, layout.OffMPin))
	require.Equal(t, uint64(1), layout.Load64(mod, layout.OffMPinCount))
	for fr := uint64(2); fr < 40; fr++ {
		fx.w.Advance()
		fx.touch(fr, []int{0})
		st, err := fx.pub.Publish(fr, all)
		require.NoError(t, err)
		require.NotEqual(t, pinned, st.Slot, "frame %d rewrote the pinned slot", fr)
	}
	require.True(t, f.Valid())

	// Only the pinned slot is free: the publish finds no slot while the
	// pin is watched, and takes it once it is not.
	for s := 0; s < fx.pub.Layout().Slots; s++ {
		if s != pinned && s != fx.pub.Latest() {
			fx.pub.holders[s] = layout.ModuleSetOf(0)
		}
	}
	_, err = fx.pub.Publish(40, all)
	require.ErrorIs(t, err, ErrNoFreeSlot)
	fx.pub.UnwatchPin(7)
	st, err := fx.pub.Publish(41, all)
	require.NoError(t, err)
	require.Equal(t, pinned, st.Slot, "an unwatched pin holds nothing")
	require.ErrorIs(t, f.Release(), ErrTorn)
	require.Zero(t, layout.Load64(mod, layout.OffMPin), "Release unpins")
}

// TestLeaseReleaseWritesNothing: a leased frame's Release only checks the
// seqlock; the lease ends when the engine releases the holder.
func TestLeaseReleaseWritesNothing(t *testing.T) {
	fx := newFixture(t, 64, 4, 100)
	all := world.MaskAll()
	_, err := fx.pub.Publish(1, all)
	require.NoError(t, err)
	slot, _, err := fx.pub.Snapshot(2, all, layout.ModuleSetOf(3))
	require.NoError(t, err)
	r, mod := moduleReader(t, fx)
	before := append([]byte(nil), mod...)
	f, err := r.OpenLeased(slot)
	require.NoError(t, err)
	require.Equal(t, uint64(2), f.Number())
	require.NoError(t, f.Release())
	require.Equal(t, before, mod, "nothing written")
	require.Equal(t, layout.ModuleSetOf(3), fx.pub.Holders(slot), "still leased until the engine releases it")
	require.NoError(t, fx.pub.ReleaseHolder(slot, 3))
	require.ErrorIs(t, fx.pub.ReleaseHolder(slot, 3), ErrNotHolder)

	// Reclaim: holder bits no live reader stands for are dropped.
	s2, _, err := fx.pub.Snapshot(3, all, layout.ModuleSetOf(4, 5))
	require.NoError(t, err)
	require.Equal(t, 1, fx.pub.RetainHolders(func(int) layout.ModuleSet { return layout.ModuleSetOf(4) }))
	require.Equal(t, layout.ModuleSetOf(4), fx.pub.Holders(s2))
}
