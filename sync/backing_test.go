package sync

import (
	"errors"
	"testing"

	"github.com/fdp-engine/fdp/audit"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// requireAccount checks that the kernel's allocated blocks of the world
// segment equal the publisher's account (P1) and that the stat word says so.
func requireAccount(t *testing.T, fx *fixture) {
	t.Helper()
	got, err := fx.segs.World.Allocated()
	require.NoError(t, err)
	require.Equal(t, fx.pub.Backed(), got, "allocated blocks against the publisher's account")
	require.Equal(t, uint64(got), layout.Load64(fx.segs.World.Data, layout.OffWStatBacked), "the bytes-held stat")
}

// TestShmLimitRefusesSnapshots: with a limit that leaves room for the
// publish's two copies and one small snapshot, the first snapshot is given
// memory, the next (larger) one is refused for memory (counted in the
// publisher and in the world segment's stats), publishing goes on every
// frame, and the memory held never passes the limit.
func TestShmLimitRefusesSnapshots(t *testing.T) {
	fx := newFixture(t, 256, 40, 256*30)
	p, lw := fx.pub, fx.pub.Layout()
	small := world.MaskOf(fx.ids.hp)
	smallBytes := int64(lw.SlotSpanBytes(0, small, fx.w.NumChunks()))
	limit := p.MinShmLimit() + smallBytes
	p.SetShmLimit(limit)
	all := world.MaskAll()
	frame := uint64(0)
	publish := func() {
		frame++
		fx.touch(frame, []int{0, 3})
		_, err := p.Publish(frame, all)
		require.NoError(t, err, "frame %d", frame)
		require.LessOrEqual(t, p.Backed(), limit, "frame %d", frame)
		requireAccount(t, fx)
	}
	publish()
	publish()
	s, _, err := p.Snapshot(frame, small, layout.ModuleSetOf(0))
	require.NoError(t, err, "a snapshot within the limit")
	require.Equal(t, int(smallBytes), p.SlotBacked(s), "a filtered snapshot holds its component only")
	publish()
	_, _, err = p.Snapshot(frame, world.MaskOf(fx.ids.pos, fx.ids.vel), layout.ModuleSetOf(1))
	require.ErrorIs(t, err, ErrNoSlotMemory)
	require.Equal(t, uint64(1), p.SnapNoSpace)
	require.Equal(t, uint64(1), layout.Load64(fx.segs.World.Data, layout.OffWStatSnapNoSpace))
	require.Equal(t, uint64(limit), layout.Load64(fx.segs.World.Data, layout.OffWStatShmLimit))
	for range 10 {
		publish()
	}
	require.Zero(t, p.Skipped, "no publish was skipped")
	require.NoError(t, p.ReleaseHolder(s, 0))
}

// TestTrimGivesMemoryBack: slots unused for the trim delay give their
// memory back, except the latest and the spare; a trimmed slot reads as
// never written and is filled again when needed, equal to the world.
func TestTrimGivesMemoryBack(t *testing.T) {
	fx := newFixture(t, 256, 40, 256*30)
	p := fx.pub
	p.SetTrimAfter(3)
	all := world.MaskAll()
	frame := uint64(0)
	publish := func() {
		frame++
		fx.touch(frame, []int{1})
		_, err := p.Publish(frame, all)
		require.NoError(t, err)
	}
	publish()
	publish()
	var held []int
	for k, m := range []world.Mask{world.MaskOf(fx.ids.pos), world.MaskOf(fx.ids.vel, fx.ids.hp)} {
		s, _, err := p.Snapshot(frame, m, layout.ModuleSetOf(k))
		require.NoError(t, err)
		held = append(held, s)
	}
	withSnapshots := p.Backed()
	for k, s := range held {
		require.NoError(t, p.ReleaseHolder(s, k))
	}
	for range 8 {
		publish()
		p.Trim()
		p.WaitTrims()
	}
	require.Equal(t, uint64(2), p.Trimmed, "both snapshot slots were trimmed")
	full := int64(p.SlotBacked(p.Latest()))
	require.Equal(t, int64(p.Layout().FixedBytes())+2*full, p.Backed(), "the latest and the spare remain")
	require.Less(t, p.Backed(), withSnapshots)
	requireAccount(t, fx)
	for _, s := range held {
		require.Zero(t, layout.Load64(fx.segs.World.Data, p.Layout().SlotOff(s)+layout.SlotVersion), "trimmed slot %d reads as never written", s)
		// The auditor (engine verify) takes it for empty, not for a broken
		// frame (found from outside: verify failed a healthy instance).
		_, err := audit.Slot(fx.segs.World.Data, p.Layout(), s)
		require.ErrorIs(t, err, audit.ErrEmpty, "trimmed slot %d", s)
	}
	// Filled again, a trimmed slot equals the world (P4: nothing it held
	// is taken for up to date).
	s, _, err := p.Snapshot(frame, world.MaskOf(fx.ids.pos, fx.ids.stamp), layout.ModuleSetOf(0))
	require.NoError(t, err)
	diffs, err := audit.Compare(fx.segs.World.Data, p.Layout(), s, fx.w, 5)
	require.NoError(t, err)
	require.Empty(t, diffs, "the refilled slot against the world")
	requireAccount(t, fx)
}

// TestBackingNoSpace: on a file system too small for a snapshot's memory,
// the snapshot is refused with an error wrapping shm.ErrNoSpace (no SIGBUS),
// what the refused allocation had taken is given back (the account still
// equals the allocated blocks), and publishing goes on.
func TestBackingNoSpace(t *testing.T) {
	reg, x := testRegistry(t)
	w, err := world.New(reg, world.Config{ChunkCapacity: 1024, MaxChunks: 40})
	require.NoError(t, err)
	for i := 0; i < 1024*36; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, x.pos, Pos{X: float32(i)}))
	}
	g, err := layout.ComputeWorldGeometry(layout.WorldParams{Slots: 8, ChunkCapacity: 1024, MaxChunks: 40, Components: reg.Components(), Singletons: reg.Singletons()})
	require.NoError(t, err)
	full := g.SlotSpanBytes(0, layout.SchemaMask(4), w.NumChunks())
	// Room for the fixed part, two whole copies and half of a third.
	testutil.UseShmDir(t, testutil.MountTmpfs(t, g.FixedBytes()+2*full+full/2+64<<10))
	segs, err := CreateWorldSegments("nospace", w, 8, 0)
	require.NoError(t, err)
	defer func() { segs.Unlink(); segs.Close() }()
	p, err := NewPublisher(w, segs)
	require.NoError(t, err)
	fx := &fixture{w: w, ids: x, segs: segs, pub: p, inst: "nospace"}
	all := world.MaskAll()
	for f := uint64(1); f <= 3; f++ {
		_, err := p.Publish(f, all)
		require.NoError(t, err)
	}
	_, _, err = p.Snapshot(3, all, layout.ModuleSetOf(0))
	require.ErrorIs(t, err, ErrNoSlotMemory)
	require.True(t, errors.Is(err, shm.ErrNoSpace), "%v", err)
	requireAccount(t, fx)
	for f := uint64(4); f <= 10; f++ {
		_, err := p.Publish(f, all)
		require.NoError(t, err, "publishing goes on")
	}
	requireAccount(t, fx)
}

// TestPublishSkippedForMemory: a publish whose slot cannot be given memory
// is skipped with ErrNoSlotMemory, counted once (PubNoSpace, the world
// stats' skipped and skipped-for-memory words), and leaves the latest frame
// as it was; with room again, publishing resumes. (The engine's limit never
// allows this, MinShmLimit; a full file system can.)
func TestPublishSkippedForMemory(t *testing.T) {
	fx := newFixture(t, 256, 40, 256*30)
	p, b := fx.pub, fx.segs.World.Data
	all := world.MaskAll()
	p.SetShmLimit(int64(p.Layout().FixedBytes()) + int64(p.CopyBytes())) // one copy at most
	_, err := p.Publish(1, all)
	require.NoError(t, err)
	_, err = p.Publish(2, all)
	require.ErrorIs(t, err, ErrNoSlotMemory)
	require.Equal(t, uint64(1), p.PubNoSpace)
	require.Equal(t, uint64(1), layout.Load64(b, layout.OffWStatSkipped))
	require.Equal(t, uint64(1), layout.Load64(b, layout.OffWStatPubNoSpace))
	frame, _, ok := layout.UnpackLatest(layout.Load64(b, layout.OffWLatest))
	require.True(t, ok)
	require.Equal(t, uint64(1), frame, "the latest frame stays")
	requireAccount(t, fx)
	p.SetShmLimit(0)
	_, err = p.Publish(3, all)
	require.NoError(t, err)
	requireAccount(t, fx)
}
