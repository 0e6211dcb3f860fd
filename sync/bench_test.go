package sync

import (
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// dirtyChunks stamps every column of the chunks c with c%10 < tenths, i.e. a
// fixed fraction of the chunks, the same ones every frame.
func dirtyChunks(fx *fixture, tenths int) {
	fx.w.Advance()
	mask := world.MaskOf(fx.ids.pos, fx.ids.vel, fx.ids.hp, fx.ids.stamp)
	q := fx.w.Query(mask)
	for q.Next() {
		if q.Chunk()%10 >= tenths {
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
	all := world.Mask(^uint64(0))
	// Warm up every slot so each publish copies exactly the dirty chunks.
	for f := uint64(1); f <= 2*DefaultSlots; f++ {
		dirtyChunks(fx, 10)
		_, err := fx.pub.Publish(f, all)
		require.NoError(b, err)
	}
	dirtyChunks(fx, tenths)
	st, err := fx.pub.Publish(1000, all)
	require.NoError(b, err)
	// The baseline copies the same number of bytes from one warm buffer into
	// another (the most favourable case for memcpy: after the first pass both
	// stay in cache as far as they fit, while publishing reads the live world
	// and alternates between slots). The destination is offset from page
	// alignment to keep it clear of 4K-aliasing stalls.
	src := make([]byte, st.BytesCopied)
	dst := make([]byte, st.BytesCopied+4096)[1024:][:st.BytesCopied]
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src)
	var pubDur, cpyDur time.Duration
	var bytes int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dirtyChunks(fx, tenths)
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
	// Baseline: the same bytes per iteration, copied in a warm tight loop
	// (the best case for memcpy, so the ratio is conservative).
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		copy(dst, src)
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
	all := world.Mask(^uint64(0))
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

// BenchmarkConvoyVsSoD compares, in the same run, five slow modules each
// getting its own SoD snapshot (five slots synced with their own masks)
// against one convoy snapshot synced with the union of the five masks. It
// reports the convoy's memory (slots held) and sync time as fractions of the
// separate snapshots'. Modules read overlapping component sets, as the AI
// modules of the demo do.
func BenchmarkConvoyVsSoD(b *testing.B) {
	fx := newFixture(b, 1024, 128, 100_000)
	x := fx.ids
	masks := []world.Mask{
		world.MaskOf(x.pos, x.vel), world.MaskOf(x.pos, x.hp), world.MaskOf(x.pos, x.vel, x.hp),
		world.MaskOf(x.pos), world.MaskOf(x.pos, x.stamp),
	}
	var union world.Mask
	for _, m := range masks {
		union |= m
	}
	release := func(slot int) {
		ll := fx.pub.LeasesLayout()
		layout.Store64(fx.segs.Leases.Data, ll.LeaseOff(slot)+layout.LeaseHolders, 0)
	}
	var sepDur, convDur time.Duration
	var sepHeld, convHeld int // slots leased at once (memory held), summed
	frame := uint64(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dirtyChunks(fx, 3)
		frame++
		if _, err := fx.pub.Publish(frame, world.Mask(^uint64(0))); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		var slots [5]int
		for k, m := range masks {
			s, _, err := fx.pub.Snapshot(frame, m, 1<<uint(k))
			if err != nil {
				b.Fatal(err)
			}
			slots[k] = s
		}
		t1 := time.Now()
		sepHeld += fx.pub.LeasedSlots()
		for _, s := range slots {
			release(s)
		}
		t2 := time.Now()
		s, _, err := fx.pub.Snapshot(frame, union, 0x1f)
		if err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		convHeld += fx.pub.LeasedSlots()
		release(s)
		sepDur += t1.Sub(t0)
		convDur += t3.Sub(t2)
	}
	b.StopTimer()
	b.ReportMetric(float64(convHeld)/float64(sepHeld), "convoy-mem-fraction")
	b.ReportMetric(float64(convDur)/float64(sepDur), "convoy-time-fraction")
	b.ReportMetric(float64(sepDur.Microseconds())/float64(b.N), "separate-us")
	b.ReportMetric(float64(convDur.Microseconds())/float64(b.N), "convoy-us")
}
