package sync

import (
	"math/rand"
	"testing"

	"github.com/fdp-engine/fdp/audit"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// Components of the wide registry read with their Go types below
// (testutil.WideType: component i is an array of i/3+1 uint64, uint32 or
// byte for i%3 = 0, 1, 2). One per mask word of a 200-component world.
const (
	wideC3   = 3   // [2]uint64, word 0
	wideC65  = 65  // [22]byte, word 1
	wideC130 = 130 // [44]uint32, word 2
	wideC199 = 199 // [67]uint32, word 3
)

// TestWideMaskDifferential is the publish differential with masks of four
// words: a world of 200 components (W = 4, 40-byte records), random
// creates, destroys, writes, adds and removes across the whole id range,
// full publishes and snapshots and syncs of random masks spanning several
// words (held 1 to 150 frames, so slots are reused at every age and with
// other masks, and fills of changed chunks only and scans both run). After
// every fill the slot is checked byte for byte against the world
// (audit.Compare: records with the world's masks & the slot mask, the
// columns of the slot mask) and against the frame invariants (audit.Slot);
// the latest frame is also read through a Reader, with queries and Gets of
// components in every word.
func TestWideMaskDifferential(t *testing.T) {
	seeds := 3
	if testing.Short() {
		seeds = 1
	}
	var changed, scanned uint64
	for seed := int64(1); seed <= int64(seeds); seed++ {
		c, s := runWideDifferential(t, seed)
		changed += c
		scanned += s
	}
	require.NotZero(t, changed, "fills of changed chunks only")
	require.NotZero(t, scanned, "fills that scanned every chunk")
}

func runWideDifferential(t *testing.T, seed int64) (uint64, uint64) {
	const ncomp, capc, maxChunks = 200, 16, 24
	rng := rand.New(rand.NewSource(seed))
	reg := testutil.WideRegistry(ncomp)
	w, err := world.New(reg, world.Config{ChunkCapacity: capc, MaxChunks: maxChunks})
	require.NoError(t, err)
	require.Equal(t, 4, w.MaskWords())
	inst := instanceName(t)
	segs, err := CreateWorldSegments(inst, w, 8, 0)
	require.NoError(t, err)
	defer func() { segs.Unlink(); segs.Close() }()
	pub, err := NewPublisher(w, segs)
	require.NoError(t, err)
	lw := pub.Layout()
	require.Equal(t, 4, lw.MaskWords)
	require.Equal(t, 40, lw.RecordSize)
	r, err := Attach(inst, AttachOptions{Name: "wide", Registry: reg})
	require.NoError(t, err)
	defer r.Close()
	all := reg.Mask()

	ops := &worldOps{t: t, rng: rng, w: w, perCreate: 12,
		comp: func() world.ComponentID {
			if rng.Intn(4) == 0 { // the four read back by type, often
				return []world.ComponentID{wideC3, wideC65, wideC130, wideC199}[rng.Intn(4)]
			}
			return world.ComponentID(rng.Intn(ncomp))
		},
		val: func(k world.ComponentID) []byte {
			b := make([]byte, testutil.WideType(int(k)).Size())
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
			case op < 12:
				ops.set()
			default:
				ops.toggle()
			}
		}
	}
	check := func(s int, what string, frame uint64) {
		t.Helper()
		diffs, err := audit.Compare(segs.World.Data, lw, s, w, 5)
		require.NoError(t, err)
		require.Empty(t, diffs, "seed %d frame %d: %s into slot %d", seed, frame, what, s)
		rep, err := audit.Slot(segs.World.Data, lw, s)
		require.NoError(t, err)
		require.True(t, rep.OK(), "seed %d frame %d: %s into slot %d: %v", seed, frame, what, s, rep.Problems)
	}
	// randMask: a few components of several words, or a random subset of
	// each word, or the full mask.
	randMask := func() world.Mask {
		switch rng.Intn(4) {
		case 0:
			return all
		case 1:
			var m world.Mask
			for j := rng.Intn(6) + 1; j > 0; j-- {
				m = m.With(ops.comp())
			}
			return m
		}
		return world.Mask{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()}.And(all)
	}
	// readLatest reads the latest frame through a Reader: queries of masks
	// spanning words count what the world's count, and typed Gets of a
	// component of every word return the world's values.
	readLatest := func(frame uint64) {
		t.Helper()
		f, err := r.Pin()
		require.NoError(t, err)
		require.Equal(t, frame, f.Number())
		require.Equal(t, all, f.Mask())
		for _, m := range []world.Mask{
			world.MaskOf(wideC65), world.MaskOf(wideC3, wideC199), world.MaskOf(wideC65, wideC130), {},
		} {
			want := 0
			q := w.Query(m)
			for q.Next() {
				for i := 0; i < q.Rows(); i++ {
					if q.Match(i) {
						want++
					}
				}
			}
			require.Equal(t, want, f.Count(m), "seed %d frame %d: count of %v", seed, frame, m)
		}
		for _, e := range ops.ents {
			requireWideGet[[2]uint64](t, w, f, e, wideC3)
			requireWideGet[[22]byte](t, w, f, e, wideC65)
			requireWideGet[[44]uint32](t, w, f, e, wideC130)
			requireWideGet[[67]uint32](t, w, f, e, wideC199)
		}
		require.NoError(t, f.Release())
	}

	release := map[int]uint64{}
	ages := []uint64{1, 2, 5, 30, 70, 150}
	frames := uint64(400)
	if testing.Short() {
		frames = 150
	}
	for frame := uint64(1); frame <= frames; frame++ {
		write(frameWrites(rng, 8, 300))
		w.Advance()
		st, err := pub.Publish(frame, all)
		require.NoError(t, err)
		check(st.Slot, "publish", frame)
		if frame%7 == 0 {
			readLatest(frame)
		}
		write(rng.Intn(4)) // command playback after the publish

		for s, at := range release {
			if frame >= at {
				h := pub.Holders(s)
				for id := h.Next(0); id >= 0; id = h.Next(id + 1) {
					require.NoError(t, pub.ReleaseHolder(s, id))
				}
				delete(release, s)
			}
		}
		switch rng.Intn(5) {
		case 0, 1:
			mask := randMask()
			s, _, err := pub.Snapshot(frame, mask, layout.ModuleSetOf(0))
			if err == nil {
				require.Equal(t, mask, world.Mask(lw.ReadSlotInfo(s).Mask))
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
	return pub.fillsChanged, pub.fillsScanned
}

// requireWideGet checks that the frame's value of component k of e, read as
// T, is the world's (or absent in both).
func requireWideGet[T comparable](t *testing.T, w *world.World, f *Frame, e world.Entity, k world.ComponentID) {
	t.Helper()
	want, wok := world.Get[T](w, e, k)
	got, ok := Get[T](f, e, k)
	require.Equal(t, wok, ok, "%v has component %d", e, k)
	require.Equal(t, want, got, "%v component %d", e, k)
}

// TestFrameQueryEveryWidth: a frame's queries count exactly the world's
// matches in worlds of 1 to 4 mask words, including the last row of every
// chunk (FrameQuery.Match reads the words after the chunk's last record
// when W is 2 or 3: Frame.matchWords).
func TestFrameQueryEveryWidth(t *testing.T) {
	for _, n := range []int{10, 70, 140, 256} {
		reg := testutil.WideRegistry(n)
		w, err := world.New(reg, world.Config{ChunkCapacity: 16, MaxChunks: 3})
		require.NoError(t, err)
		last := world.ComponentID(n - 1)
		for i := 0; i < 48; i++ {
			e, err := w.Create()
			require.NoError(t, err)
			require.NoError(t, w.Add(e, world.ComponentID(i%n)))
			if i%2 == 1 && !w.Has(e, last) {
				require.NoError(t, w.Add(e, last))
			}
		}
		inst := instanceName(t)
		segs, err := CreateWorldSegments(inst, w, 2, 0)
		require.NoError(t, err)
		pub, err := NewPublisher(w, segs)
		require.NoError(t, err)
		_, err = pub.Publish(1, reg.Mask())
		require.NoError(t, err)
		r, err := Attach(inst, AttachOptions{Name: "width", Registry: reg})
		require.NoError(t, err)
		f, err := r.Pin()
		require.NoError(t, err)
		for _, m := range []world.Mask{{}, world.MaskOf(last), world.MaskOf(15, last), world.MaskOf(1), world.MaskOf(world.ComponentID(47 % n))} {
			want := 0
			q := w.Query(m)
			for q.Next() {
				for i := 0; i < q.Rows(); i++ {
					if q.Match(i) {
						want++
					}
				}
			}
			require.Equal(t, want, f.Count(m), "%d components, mask %v", n, m)
		}
		require.NoError(t, f.Release())
		r.Close()
		segs.Unlink()
		segs.Close()
	}
}
