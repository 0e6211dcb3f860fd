package sync

import (
	"fmt"
	"math/rand"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/internal/ntcopy"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// dirtyChunks stamps every column of the chunks c with c%10 < tenths, i.e. a
// fixed fraction of the chunks, the same ones every frame.
func dirtyChunks(fx *fixture, tenths int) {
	dirtyWhere(fx, func(c int) bool { return c%10 < tenths })
}

// dirtyEvery stamps every column of the chunks c with c%every == 0.
func dirtyEvery(fx *fixture, every int) {
	dirtyWhere(fx, func(c int) bool { return c%every == 0 })
}

// dirtyWhere advances the world and stamps every column of the chunks c
// for which dirty(c) holds.
func dirtyWhere(fx *fixture, dirty func(c int) bool) {
	fx.w.Advance()
	mask := world.MaskOf(fx.ids.pos, fx.ids.vel, fx.ids.hp, fx.ids.stamp)
	q := fx.w.Query(mask)
	for q.Next() {
		if !dirty(q.Chunk()) {
			continue
		}
		world.ColumnMut[Pos](&q, fx.ids.pos)[0].X++
		world.ColumnMut[Vel](&q, fx.ids.vel)[0].X++
		world.ColumnMut[Health](&q, fx.ids.hp)[0].HP++
		world.ColumnMut[Stamp](&q, fx.ids.stamp)[0].Frame++
	}
}

// benchPublish publishes 100K entities with 4 components (64 bytes per
// entity) with a fixed fraction of dirty chunks, and reports the publish time
// against a memcpy of the same number of bytes measured in the same run.
func benchPublish(b *testing.B, tenths int) {
	fx := newFixture(b, 1024, 128, 100_000)
	all := world.MaskAll()
	// Warm up every slot so each publish copies exactly the dirty chunks.
	for f := uint64(1); f <= 2*DefaultSlots; f++ {
		dirtyChunks(fx, 10)
		_, err := fx.pub.Publish(f, all)
		require.NoError(b, err)
	}
	publishVsMemcpy(b, fx, func() { dirtyChunks(fx, tenths) })
}

// publishVsMemcpy reports the time of fx's publishes, each after dirty()
// changed the world, against a memcpy of the same number of bytes measured
// in the same run (publish-ns, memcpy-ns, x-memcpy, bytes/publish).
func publishVsMemcpy(b *testing.B, fx *fixture, dirty func()) {
	// The fixture's fixed-size components are 16 bytes: a publish copies
	// them in pieces of a chunk column.
	publishVsPieces(b, fx, world.MaskAll(), fx.w.ChunkCapacity()*16, dirty)
}

// publishVsPieces is publishVsMemcpy of publishes of mask, against a copy
// of the same bytes in pieces of piece bytes.
func publishVsPieces(b *testing.B, fx *fixture, all world.Mask, piece int, dirty func()) {
	dirty()
	_, err := fx.pub.Publish(1000, all)
	require.NoError(b, err)
	var pubDur, cpyDur time.Duration
	var bytes int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dirty()
		b.StartTimer()
		t0 := time.Now()
		st, err := fx.pub.Publish(uint64(2000+i), all)
		pubDur += time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		bytes += st.BytesCopied
	}
	b.StopTimer()
	// Baseline: the bytes a publish copied on average, from one warm buffer
	// into another (the most favourable case for memcpy: after the first
	// pass both stay in cache as far as they fit, while publishing reads the
	// live world and alternates between slots), in pieces of one chunk
	// column as the publish copies them. (Sized from the loop, not from the
	// publish before it, which may copy more: its slot can have missed a
	// warm-up frame. The destination is offset from page alignment to keep
	// it clear of 4K-aliasing stalls.)
	n := bytes / b.N
	src := make([]byte, n)
	dst := make([]byte, n+4096)[1024:][:n]
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src)
	// The pieces are copied as the publish copies them: with streaming
	// stores from NTCopyMin bytes up (ntcopy.Copy), else with copy. A
	// baseline with ordinary stores there would be slower than the publish
	// it measures.
	cp := func(d, s []byte) { copy(d, s) }
	if n >= NTCopyMin {
		cp = func(d, s []byte) { ntcopy.Copy(d, s) }
	}
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		for off := 0; off < len(src); off += piece {
			end := min(off+piece, len(src))
			cp(dst[off:end], src[off:end])
		}
	}
	cpyDur = time.Since(t0)
	b.ReportMetric(float64(pubDur.Nanoseconds())/float64(b.N), "publish-ns")
	b.ReportMetric(float64(cpyDur.Nanoseconds())/float64(b.N), "memcpy-ns")
	b.ReportMetric(float64(pubDur)/float64(cpyDur), "x-memcpy")
	b.ReportMetric(float64(bytes)/float64(b.N), "bytes/publish")
}

func BenchmarkPublish100K30pct(b *testing.B)  { benchPublish(b, 3) }
func BenchmarkPublish100K100pct(b *testing.B) { benchPublish(b, 10) }

func TestPublishAllocatesNothing(t *testing.T) {
	fx := newFixture(t, 256, 16, 2000)
	all := world.MaskAll()
	f := uint64(1)
	allocs := testing.AllocsPerRun(50, func() {
		dirtyChunks(fx, 3)
		f++
		if _, err := fx.pub.Publish(f, all); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
}

// convoyMasks are the masks of the five slow modules of BenchmarkConvoyVsSoD:
// overlapping component sets, as the AI modules of the demo read.
func convoyMasks(x ids) []world.Mask {
	return []world.Mask{
		world.MaskOf(x.pos, x.vel), world.MaskOf(x.pos, x.hp), world.MaskOf(x.pos, x.vel, x.hp),
		world.MaskOf(x.pos), world.MaskOf(x.pos, x.stamp),
	}
}

// slotsFor returns a publisher of w over a new world segment of n slots
// (removed when the test ends).
func slotsFor(tb testing.TB, w *world.World, n int) (*Publisher, *WorldSegments) {
	segs, err := CreateWorldSegments(instanceName(tb), w, n, 0)
	require.NoError(tb, err)
	tb.Cleanup(func() { segs.Unlink(); segs.Close() })
	pub, err := NewPublisher(w, segs)
	require.NoError(tb, err)
	return pub, segs
}

// allocated is the world segment's allocated bytes (tmpfs blocks: what
// /dev/shm holds for it).
func allocated(tb testing.TB, segs *WorldSegments) int64 {
	var st syscall.Stat_t
	require.NoError(tb, syscall.Stat(segs.World.Path, &st))
	return st.Blocks * 512
}

// serves reports whether a world segment of n slots serves one dispatch of
// snapshots (holders: one snapshot per mask, all held at once) and the
// publish after it, without refusing any, and the segment's allocated bytes
// then.
func serves(tb testing.TB, w *world.World, n int, masks []world.Mask) (bool, int64) {
	pub, segs := slotsFor(tb, w, n)
	all := world.MaskAll()
	if _, err := pub.Publish(1, all); err != nil {
		return false, 0
	}
	for k, m := range masks {
		if _, _, err := pub.Snapshot(1, m, layout.ModuleSetOf(k)); err != nil {
			return false, 0
		}
	}
	_, err := pub.Publish(2, all)
	return err == nil, allocated(tb, segs)
}

// contentBytes is what a snapshot of mask carries that a module can read:
// the entity records and the columns of mask, over the world's chunks.
func contentBytes(w *world.World, lw *layout.World, mask world.Mask) int {
	n := w.NumChunks() * lw.ChunkCapacity * lw.RecordSize
	for k, c := range lw.Components {
		if mask.Has(world.ComponentID(k)) {
			n += w.NumChunks() * lw.ChunkCapacity * int(c.Size)
		}
	}
	return n
}

// BenchmarkConvoyVsSoD compares, in the same run, five slow modules each
// getting its own SoD snapshot (five slots synced with their own masks)
// against one convoy snapshot synced with the union of the five masks
// (100K entities, 4 components of 16 bytes, 30% of the chunks dirty per
// frame). Time: the snapshots' sync. Memory, in bytes of shared memory:
//
//   - held: the shared memory the snapshots' slots hold while the modules
//     run (Publisher.SlotBacked of the leased slots: a slot holds memory for
//     its mask's columns only, backing.go).
//   - shm: the allocated blocks of the smallest world segment that serves
//     the dispatch (every snapshot and the next publish), found by trying
//     slot counts: the latest frame, the spare copy and the snapshots.
//   - content: the bytes the snapshots carry that the modules can read
//     (entity records and the columns of the snapshot's mask): what
//     snapshots sized to their masks (the seeds' per-module SoD copies)
//     would hold.
//   - copied: the bytes written into the slots per dispatch.
//
// Two cases: "same-mask", the seeds' scenario (five AI modules at 10 Hz that
// read the same components: one snapshot instead of five), and
// "mixed-masks" (convoyMasks: five different masks, the convoy's union
// holds 4 columns against 10 for the separate snapshots, so it copies at
// least 0.4 of their bytes whatever the implementation).
func BenchmarkConvoyVsSoD(b *testing.B) {
	b.Run("same-mask", func(b *testing.B) {
		fx := newFixture(b, 1024, 128, 100_000)
		m := world.MaskOf(fx.ids.pos, fx.ids.vel, fx.ids.hp)
		benchConvoyVsSoD(b, fx, []world.Mask{m, m, m, m, m})
	})
	b.Run("mixed-masks", func(b *testing.B) {
		fx := newFixture(b, 1024, 128, 100_000)
		benchConvoyVsSoD(b, fx, convoyMasks(fx.ids))
	})
}

func benchConvoyVsSoD(b *testing.B, fx *fixture, masks []world.Mask) {
	var union world.Mask
	for _, m := range masks {
		union = union.Or(m)
	}
	all := world.MaskAll()

	// The smallest segments that serve each case, and their bytes.
	minSlots := func(ms []world.Mask) (int, int64) {
		for n := 2; n <= layout.MaxSlots; n++ {
			if ok, bytes := serves(b, fx.w, n, ms); ok {
				return n, bytes
			}
		}
		b.Fatal("no slot count serves the dispatch")
		return 0, 0
	}
	sepSlots, sepShm := minSlots(masks)
	convSlots, convShm := minSlots([]world.Mask{union})

	// Timing and bytes held, on a segment of the engine's default slot
	// count (10; at least what the separate case needs): with the fewest
	// slots that serve, the union snapshot finds no slot last filled with
	// its mask and refilters every record of it (and so does the separate
	// snapshot that takes its slot next), a cost the engine's default pool
	// does not pay.
	pub, _ := slotsFor(b, fx.w, max(sepSlots, 10))
	lw := pub.Layout()
	held := func() int64 {
		n := int64(0)
		for s := range lw.Slots {
			if !pub.Holders(s).Empty() {
				n += int64(pub.SlotBacked(s))
			}
		}
		return n
	}
	var sepDur, convDur time.Duration
	var sepHeld, convHeld int64   // bytes of the slots held, summed over dispatches
	var sepCopied, convCopied int // bytes written into them
	frame := uint64(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dirtyChunks(fx, 3)
		frame++
		if _, err := pub.Publish(frame, all); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		var slots [5]int
		for k, m := range masks {
			s, st, err := pub.Snapshot(frame, m, layout.ModuleSetOf(k))
			if err != nil {
				b.Fatal(err)
			}
			slots[k] = s
			sepCopied += st.BytesCopied
		}
		t1 := time.Now()
		sepHeld += held()
		for k, s := range slots {
			if err := pub.ReleaseHolder(s, k); err != nil {
				b.Fatal(err)
			}
		}
		// The convoy syncs the next frame (the same chunks change again):
		// on this frame it would find the separate snapshots' slots up to
		// date and copy nothing.
		b.StopTimer()
		dirtyChunks(fx, 3)
		frame++
		if _, err := pub.Publish(frame, all); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t2 := time.Now()
		s, st, err := pub.Snapshot(frame, union, holdersUpTo(len(masks)))
		if err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		convCopied += st.BytesCopied
		convHeld += held()
		for k := range masks {
			if err := pub.ReleaseHolder(s, k); err != nil {
				b.Fatal(err)
			}
		}
		if pub.LeasedSlots() != 0 {
			b.Fatal("a slot stayed leased")
		}
		sepDur += t1.Sub(t0)
		convDur += t3.Sub(t2)
	}
	b.StopTimer()
	sepContent := 0
	for _, m := range masks {
		sepContent += contentBytes(fx.w, lw, m)
	}
	convContent := contentBytes(fx.w, lw, union)
	mb := func(n int64) float64 { return float64(n) / 1e6 }
	b.ReportMetric(float64(convDur)/float64(sepDur), "convoy-time-fraction")
	b.ReportMetric(float64(sepDur.Microseconds())/float64(b.N), "separate-us")
	b.ReportMetric(float64(convDur.Microseconds())/float64(b.N), "convoy-us")
	b.ReportMetric(float64(convHeld)/float64(sepHeld), "held-bytes-fraction")
	b.ReportMetric(mb(sepHeld/int64(b.N)), "separate-held-MB")
	b.ReportMetric(mb(convHeld/int64(b.N)), "convoy-held-MB")
	b.ReportMetric(float64(convShm)/float64(sepShm), "shm-bytes-fraction")
	b.ReportMetric(mb(sepShm), "separate-shm-MB")
	b.ReportMetric(mb(convShm), "convoy-shm-MB")
	b.ReportMetric(float64(sepSlots), "separate-min-slots")
	b.ReportMetric(float64(convSlots), "convoy-min-slots")
	b.ReportMetric(float64(convContent)/float64(sepContent), "content-bytes-fraction")
	b.ReportMetric(mb(int64(sepContent)), "separate-content-MB")
	b.ReportMetric(mb(int64(convContent)), "convoy-content-MB")
	b.ReportMetric(float64(convCopied)/float64(sepCopied), "copied-bytes-fraction")
	b.ReportMetric(float64(sepCopied)/1e6/float64(b.N), "separate-copied-MB")
	b.ReportMetric(float64(convCopied)/1e6/float64(b.N), "convoy-copied-MB")
}

// TestConvoyServesWithFewerSlots: the slot counts BenchmarkConvoyVsSoD
// reports, on a small world: five separate snapshots and the next publish
// need the latest slot, five held ones and the PublishSlots (2) a snapshot
// leaves free (8); one convoy snapshot needs four. One slot fewer refuses.
func TestConvoyServesWithFewerSlots(t *testing.T) {
	fx := newFixture(t, 64, 8, 300)
	masks := convoyMasks(fx.ids)
	var union world.Mask
	for _, m := range masks {
		union = union.Or(m)
	}
	for _, c := range []struct {
		masks []world.Mask
		slots int
	}{{masks, 6 + PublishSlots}, {[]world.Mask{union}, 2 + PublishSlots}} {
		ok, _ := serves(t, fx.w, c.slots, c.masks)
		require.True(t, ok, "%d snapshots with %d slots", len(c.masks), c.slots)
		ok, _ = serves(t, fx.w, c.slots-1, c.masks)
		require.False(t, ok, "%d snapshots with %d slots", len(c.masks), c.slots-1)
	}
}

// BenchmarkPublishChunkCapacity publishes a 100K-entity world (4 components
// of 16 bytes) at three chunk capacities after changing the Position of n
// random entities (n = 100, 1000) or of every entity, and reports the
// publish time and the bytes copied: the cost of the chunk capacity knob
// (world.Config.ChunkCapacity). A publish copies every chunk column with a
// change, whole.
func BenchmarkPublishChunkCapacity(b *testing.B) {
	const entities = 100_000
	for _, capacity := range []int{256, 1024, 4096} {
		for _, n := range []int{100, 1000, entities} {
			b.Run(fmt.Sprintf("cap=%d/changed=%d", capacity, n), func(b *testing.B) {
				fx := newFixture(b, capacity, entities/capacity+2, entities)
				all := world.MaskAll()
				rng := rand.New(rand.NewSource(1))
				change := func() {
					fx.w.Advance()
					for i := 0; i < n; i++ {
						idx := i
						if n < entities {
							idx = rng.Intn(entities)
						}
						e := world.MakeEntity(uint32(idx), 1)
						p, _ := world.Get[Pos](fx.w, e, fx.ids.pos)
						p.X++
						if err := world.Set(fx.w, e, fx.ids.pos, p); err != nil {
							b.Fatal(err)
						}
					}
				}
				for f := uint64(1); f <= 2*DefaultSlots; f++ { // every slot written once
					change()
					if _, err := fx.pub.Publish(f, all); err != nil {
						b.Fatal(err)
					}
				}
				var dur time.Duration
				bytes := 0
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					change()
					b.StartTimer()
					t0 := time.Now()
					st, err := fx.pub.Publish(uint64(100+i), all)
					dur += time.Since(t0)
					if err != nil {
						b.Fatal(err)
					}
					bytes += st.BytesCopied
				}
				b.ReportMetric(float64(dur.Microseconds())/float64(b.N), "publish-us")
				b.ReportMetric(float64(bytes)/1e6/float64(b.N), "copied-MB")
			})
		}
	}
}
