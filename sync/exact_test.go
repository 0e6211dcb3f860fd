package sync

import (
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// requireFrameEqualsWorld pins the latest frame and checks it against the
// live world it was just published from: every entity's liveness, every
// component value of the fixture, and the slot header's alive count against
// the sum of its chunks' alive counts.
func requireFrameEqualsWorld(t *testing.T, fx *fixture, r *Reader, frame uint64) {
	t.Helper()
	f, err := r.Pin()
	require.NoError(t, err)
	defer func() { require.NoError(t, f.Release()) }()
	require.Equal(t, frame, f.Number())
	info := f.Info()
	require.Equal(t, uint32(fx.w.Count()), info.Alive, "frame %d: header alive", frame)
	sum := 0
	for c := 0; c < f.Chunks(); c++ {
		sum += int(layout.Load32(r.world.Data, r.lw.ChunkOff(f.Slot(), c)+layout.ChunkAlive))
	}
	require.Equal(t, int(info.Alive), sum, "frame %d: sum of chunk alive counts vs header", frame)
	for c := 0; c < fx.w.NumChunks(); c++ {
		for row, rec := range fx.w.ChunkRecords(c) {
			idx := c*fx.w.ChunkCapacity() + row
			if idx >= fx.w.HighWater() {
				break
			}
			e := EntityAt(idx, rec)
			require.Equal(t, fx.w.IsAlive(e), f.IsAlive(e), "frame %d: entity %d alive", frame, idx)
			if !fx.w.IsAlive(e) {
				continue
			}
			want, _ := world.Get[Pos](fx.w, e, fx.ids.pos)
			got, ok := Get[Pos](f, e, fx.ids.pos)
			require.True(t, ok, "frame %d: entity %d has Position", frame, idx)
			require.Equal(t, want, got, "frame %d: entity %d Position", frame, idx)
		}
	}
}

// TestPublishIncludesChangesAfterPublish is the outside chaos run's
// reproduction: command playback runs after the frame's publish without an
// Advance, so its changes carried the version just published, and a reused
// slot (which already held the chunk at that version) kept the chunk from
// before the playback: a destroyed entity came back, a Set reverted, and the
// chunk alive counts disagreed with the header.
func TestPublishIncludesChangesAfterPublish(t *testing.T) {
	fx := newFixture(t, 16, 4, 20)
	r, err := Attach(fx.inst, AttachOptions{Name: "t"})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	all := world.MaskAll()
	e := func(i int) world.Entity { return world.MakeEntity(uint32(i), 1) }

	// Frame 1: simulation (destroy in chunk 0), publish, then playback.
	fx.w.Advance()
	require.NoError(t, fx.w.Destroy(e(1)))
	_, err = fx.pub.Publish(1, all)
	require.NoError(t, err)
	requireFrameEqualsWorld(t, fx, r, 1)
	require.NoError(t, fx.w.Destroy(e(2)))
	require.NoError(t, world.Set(fx.w, e(5), fx.ids.pos, Pos{X: 999}))

	// Frames 2 and 3: the engine's Advance, publish. Frame 3 reuses frame
	// 1's slot.
	for frame := uint64(2); frame <= 3; frame++ {
		fx.w.Advance()
		_, err = fx.pub.Publish(frame, all)
		require.NoError(t, err)
		requireFrameEqualsWorld(t, fx, r, frame)
	}
}

// TestPublishExactInAnyOrder drives writes between publishes in every
// order the engine can produce (before or after Advance, none at all, a
// snapshot in between) and checks every published frame against the world,
// over enough frames that every slot is reused many times.
func TestPublishExactInAnyOrder(t *testing.T) {
	fx := newFixture(t, 16, 8, 100)
	r, err := Attach(fx.inst, AttachOptions{Name: "t"})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	all := world.MaskAll()
	rng := uint64(1)
	next := func(n int) int {
		rng = rng*6364136223846793005 + 1442695040888963407
		return int(rng>>33) % n
	}
	write := func() {
		for i := 0; i < 3; i++ {
			idx := next(fx.w.HighWater())
			rec := fx.w.ChunkRecord(idx/16, idx%16)
			e := EntityAt(idx, rec)
			switch {
			case !fx.w.IsAlive(e):
				ne, err := fx.w.Create()
				require.NoError(t, err)
				require.NoError(t, world.Set(fx.w, ne, fx.ids.pos, Pos{X: float32(next(1000))}))
			case next(4) == 0:
				require.NoError(t, fx.w.Destroy(e))
			default:
				require.NoError(t, world.Set(fx.w, e, fx.ids.pos, Pos{X: float32(next(1000))}))
			}
		}
	}
	for frame := uint64(1); frame <= 400; frame++ {
		if next(3) != 0 {
			write() // playback of the previous frame, before Advance
		}
		if next(2) == 0 {
			fx.w.Advance()
		}
		if next(2) == 0 {
			write() // simulation
		}
		if next(5) == 0 {
			_, _, err := fx.pub.Snapshot(frame, world.MaskOf(fx.ids.vel), layout.ModuleSetOf(0))
			require.NoError(t, err)
			write() // changes after a snapshot, before the publish
		}
		_, err := fx.pub.Publish(frame, all)
		require.NoError(t, err)
		requireFrameEqualsWorld(t, fx, r, frame)
		for s := 0; s < fx.pub.Layout().Slots; s++ {
			if !fx.pub.Holders(s).Empty() {
				require.NoError(t, fx.pub.ReleaseHolder(s, 0))
			}
		}
	}
}

// TestPinNeverReturnsASnapshotAsLatest: a reader loads latest (frame N,
// slot s); before it pins, the engine publishes N+1 elsewhere and writes a
// convoy snapshot (only its modules' components) into s. The pin of s then
// succeeds (its seq is even and stable), but s is not frame N any more: Pin
// must retry from latest instead of returning the snapshot as the latest
// frame. The latest word is set back to (N, s) to stand for the reader's
// stale load.
func TestPinNeverReturnsASnapshotAsLatest(t *testing.T) {
	fx := newFixture(t, 16, 4, 40)
	all := world.MaskAll()
	// Every slot holds a published frame (1, 2, ...), as a busy engine's do.
	frame := uint64(0)
	for fx.pub.WarmOne(frame+1, all) {
		frame++
	}
	_, err := fx.pub.Publish(frame+1, all)
	require.NoError(t, err)
	_, err = fx.pub.Publish(frame+2, all)
	require.NoError(t, err)
	frame += 2
	latest2 := layout.Load64(fx.segs.World.Data, layout.OffWLatest)
	held := map[int]uint64{}
	for s := range fx.pub.Layout().Slots {
		held[s] = fx.pub.Layout().ReadSlotInfo(s).Frame
	}
	// The next frame's snapshot reuses a slot that held an older frame.
	slot, _, err := fx.pub.Snapshot(frame+1, world.MaskOf(fx.ids.vel), layout.ModuleSetOf(0))
	require.NoError(t, err)
	old := held[slot]
	require.NotZero(t, old)
	require.Less(t, old, frame+1, "the snapshot reuses a slot of an older frame")

	r, err := Attach(fx.inst, AttachOptions{Name: "t"})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	layout.Store64(fx.segs.World.Data, layout.OffWLatest, layout.PackLatest(old, slot))
	_, err = r.Pin()
	require.ErrorIs(t, err, ErrBusy, "the snapshot slot is never returned as frame %d", old)

	layout.Store64(fx.segs.World.Data, layout.OffWLatest, latest2)
	f, err := r.Pin()
	require.NoError(t, err)
	require.Equal(t, frame, f.Number())
	require.NoError(t, f.Release())
}

// TestAdoptedSlotsRaiseTheWorld: a publisher adopting slots written by a
// previous engine raises the world above every version they hold, so that
// a fill never takes an old slot's chunk for up to date; on fresh segments
// it reads nothing and leaves the world alone.
func TestAdoptedSlotsRaiseTheWorld(t *testing.T) {
	fx := newFixture(t, 16, 4, 40)
	require.Equal(t, uint64(1), fx.w.Version(), "a fresh segment leaves the world's version alone")
	for i := 0; i < 50; i++ {
		fx.w.Advance()
	}
	fx.touch(50, []int{0, 1, 2})
	_, err := fx.pub.Publish(1, world.MaskAll())
	require.NoError(t, err)
	high := fx.pub.maxSlotVersion()
	require.Greater(t, high, uint64(50))

	reg, _ := testRegistry(t)
	w2, err := world.New(reg, world.Config{ChunkCapacity: 16, MaxChunks: 4})
	require.NoError(t, err)
	_, err = NewPublisher(w2, fx.segs)
	require.NoError(t, err)
	require.Greater(t, w2.Version(), high, "later writes stamp newer than any adopted slot")
}
