package sync

import (
	"math/rand"
	"testing"

	"github.com/fdp-engine/fdp/audit"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// TestChangedChunksDifferential drives random writes, creates, destroys,
// component adds and removes, in-place writes (Ptr, ColumnMut) and writes
// after a publish (as command playback makes) across many frames, with
// snapshots held for 1 to 150 frames (older than the world's dirty log of 64
// seals, world/dirty.go) so that slots are reused at every age and with
// other masks, and checks every slot byte for byte against the world
// (audit.Compare) after every publish, snapshot and sync. Fills that visit
// only the changed chunks must give the same slot as the scan of every chunk.
// It runs with ordinary and with non-temporal copies (copyModes).
func TestChangedChunksDifferential(t *testing.T) {
	seeds := 6
	if testing.Short() {
		seeds = 2
	}
	copyModes(t, func(t *testing.T) {
		var changed, scanned uint64
		for seed := int64(1); seed <= int64(seeds); seed++ {
			c, s := runChangedDifferential(t, seed)
			changed += c
			scanned += s
		}
		// Both paths ran: the test would prove nothing if every fill scanned.
		require.NotZero(t, changed, "fills of changed chunks only")
		require.NotZero(t, scanned, "fills that scanned every chunk")
		t.Logf("fills: %d of changed chunks only, %d scans", changed, scanned)
	})
}

func runChangedDifferential(t *testing.T, seed int64) (uint64, uint64) {
	rng := rand.New(rand.NewSource(seed))
	reg, x := testRegistry(t)
	comps := []world.ComponentID{x.pos, x.vel, x.hp, x.stamp}
	const capc, maxChunks = 16, 48
	w, err := world.New(reg, world.Config{ChunkCapacity: capc, MaxChunks: maxChunks})
	require.NoError(t, err)
	segs, err := CreateWorldSegments(instanceName(t), w, 8, 0)
	require.NoError(t, err)
	defer func() { segs.Unlink(); segs.Close() }()
	pub, err := NewPublisher(w, segs)
	require.NoError(t, err)
	lw := pub.Layout()
	all := reg.Mask()

	ops := &worldOps{t: t, rng: rng, w: w, perCreate: len(comps) + 1,
		comp: func() world.ComponentID { return comps[rng.Intn(len(comps))] },
		val: func(world.ComponentID) []byte {
			b := make([]byte, 16)
			rng.Read(b)
			return b
		}}
	write := func(n int) {
		for i := 0; i < n; i++ {
			switch op := rng.Intn(20); {
			case op < 3:
				ops.create()
			case op < 5:
				ops.destroy()
			case op < 11:
				ops.set()
			case op < 13:
				ops.toggle()
			case op < 14 && rng.Intn(2) == 0:
				ops.single()
			case op < 14:
				ops.value(x.label, labelMax)
			case op < 15:
				if e, ok := ops.pick(); ok && w.Has(e, x.pos) {
					world.Ptr[Pos](w, e, x.pos).Y++
				}
			default: // in place through a query, one random chunk
				target := rng.Intn(max(1, w.NumChunks()))
				q := w.Query(world.MaskOf(x.vel))
				for q.Next() {
					if q.Chunk() == target {
						world.ColumnMut[Vel](&q, x.vel)[rng.Intn(q.Rows())].Z++
					}
				}
			}
		}
	}
	check := func(s int, what string, frame uint64) {
		t.Helper()
		diffs, err := audit.Compare(segs.World.Data, lw, s, w, 5)
		require.NoError(t, err)
		require.Empty(t, diffs, "seed %d frame %d: %s into slot %d", seed, frame, what, s)
	}
	randMask := func() world.Mask {
		if rng.Intn(3) == 0 {
			return all
		}
		return world.Mask{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()}.And(all)
	}

	release := map[int]uint64{} // slot -> frame its snapshot is released
	ages := []uint64{1, 2, 5, 30, 70, 150}
	for frame := uint64(1); frame <= 700; frame++ {
		write(frameWrites(rng, 6, 400)) // the frame's simulation
		w.Advance()
		st, err := pub.Publish(frame, all)
		require.NoError(t, err)
		check(st.Slot, "publish", frame)
		// Command playback after the publish: stamped after its seal.
		write(rng.Intn(4))

		for s, at := range release {
			if frame >= at {
				h := pub.Holders(s)
				for id := h.Next(0); id >= 0; id = h.Next(id + 1) {
					require.NoError(t, pub.ReleaseHolder(s, id))
				}
				delete(release, s)
			}
		}
		switch rng.Intn(6) {
		case 0, 1:
			mask := all
			if rng.Intn(3) == 0 {
				mask = randMask()
			}
			s, _, err := pub.Snapshot(frame, mask, layout.ModuleSetOf(0))
			if err == nil {
				check(s, "snapshot", frame)
				release[s] = frame + ages[rng.Intn(len(ages))]
			}
		case 2:
			s := rng.Intn(lw.Slots)
			if s != pub.Latest() && pub.Holders(s).Empty() {
				if _, err := pub.SyncInto(s, frame, randMask()); err == nil {
					check(s, "sync", frame)
				}
			}
		}
	}
	// A publisher adopting the segment knows nothing of its slots: its
	// fills scan, and stay exact.
	pub2, err := NewPublisher(w, segs)
	require.NoError(t, err)
	for frame := uint64(701); frame <= 720; frame++ {
		write(10)
		st, err := pub2.Publish(frame, all)
		require.NoError(t, err)
		check(st.Slot, "publish after adoption", frame)
	}
	require.NotZero(t, pub2.fillsScanned)
	checkCopyMode(t, pub)
	checkCopyMode(t, pub2)
	return pub.fillsChanged + pub2.fillsChanged, pub.fillsScanned + pub2.fillsScanned
}
