package sync

import (
	"testing"
	"time"

	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// BenchmarkFrameQuery is a module's loop over the latest frame of 100K
// entities (Position and Velocity, read in place, one Match per row):
// ns/entity. It tracks the cost of FrameQuery.Match, which module row loops
// inline.
func BenchmarkFrameQuery(b *testing.B) {
	const n = 100_000
	fx := newFixture(b, 1024, n/1024+1, n)
	_, err := fx.pub.Publish(1, world.MaskAll())
	require.NoError(b, err)
	r, err := Attach(fx.inst, AttachOptions{Name: "bench"})
	require.NoError(b, err)
	b.Cleanup(func() { r.Close() })
	f, err := r.Pin()
	require.NoError(b, err)
	mask := world.MaskOf(fx.ids.pos, fx.ids.vel)
	var sum float32
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q := f.Query(mask)
		for q.Next() {
			pos := Column[Pos](f, q.Chunk(), fx.ids.pos)
			vel := Column[Vel](f, q.Chunk(), fx.ids.vel)
			for j, rows := 0, q.Rows(); j < rows; j++ {
				if q.Match(j) {
					sum += pos[j].X + vel[j].X
				}
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/entity")
	require.NoError(b, f.Release())
	_ = sum
}

// BenchmarkFrameQueryTerms is BenchmarkFrameQuery with terms: 100K entities
// of a published frame with Pos and Vel, every 8th with Health, none with
// Stamp, chunks of 1024, read in place with a plain With query and with
// terms, each variant once per iteration in the same run (in turn first).
// The x-with metrics are the fastest pass of each variant over the plain
// query's fastest (the fastest of many passes is what the loop costs
// without the other processes of a shared machine):
//   - without-none: Without(Stamp), which no entity has (same rows matched:
//     the cost of the term itself);
//   - without-hp: Without(Health), 1/8 of the entities left out;
//   - changed-all: ChangedSince of Pos, every chunk written since;
//   - changed-few: ChangedSince the previous frame, Pos written in 1 chunk
//     in 16 since: the query visits only those;
//   - optional: Optional(Health), its column read where Has (a larger row
//     body; the query's own cost is Absent's scan of the first records of
//     each chunk).
func BenchmarkFrameQueryTerms(b *testing.B) {
	const n = 100_000
	reg, x := testRegistry(b)
	w, err := world.New(reg, world.Config{ChunkCapacity: 1024, MaxChunks: n/1024 + 1})
	require.NoError(b, err)
	es := make([]world.Entity, n)
	for i := range es {
		es[i], err = w.Create()
		require.NoError(b, err)
		require.NoError(b, world.Set(w, es[i], x.pos, Pos{X: float32(i)}))
		require.NoError(b, world.Set(w, es[i], x.vel, Vel{X: 1}))
		if i%8 == 0 {
			require.NoError(b, world.Set(w, es[i], x.hp, Health{HP: 1}))
		}
	}
	inst := instanceName(b)
	segs, err := CreateWorldSegments(inst, w, 0, 0)
	require.NoError(b, err)
	b.Cleanup(func() { segs.Unlink(); segs.Close() })
	pub, err := NewPublisher(w, segs)
	require.NoError(b, err)
	r, err := Attach(inst, AttachOptions{Name: "bench"})
	require.NoError(b, err)
	b.Cleanup(func() { r.Close() })
	_, err = pub.Publish(1, world.MaskAll())
	require.NoError(b, err)
	f, err := r.Pin()
	require.NoError(b, err)
	since := f.Info().Version + 1 // a module's mark after a tick on frame 1
	require.NoError(b, f.Release())
	for c := 0; c < w.NumChunks(); c += 16 {
		world.Ptr[Pos](w, es[c*w.ChunkCapacity()], x.pos).Y++
	}
	_, err = pub.Publish(2, world.MaskAll())
	require.NoError(b, err)
	f, err = r.Pin()
	require.NoError(b, err)

	with := world.MaskOf(x.pos, x.vel)
	variants := []struct {
		name  string
		terms []world.Term
	}{
		{"with", nil},
		{"without-none", []world.Term{world.Without(x.stamp)}},
		{"without-hp", []world.Term{world.Without(x.hp)}},
		{"changed-all", []world.Term{world.ChangedSince(1, x.pos)}},
		{"changed-few", []world.Term{world.ChangedSince(since, x.pos)}},
		{"optional", []world.Term{world.Optional(x.hp)}},
	}
	durs := make([]time.Duration, len(variants))
	fastest := make([]time.Duration, len(variants)) // of each variant's passes: robust to a shared machine's noise
	var sum float32
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Each iteration starts with another variant: none always
		// runs after the same one (caches, frequency).
		for r := range variants {
			k := (i + r) % len(variants)
			v := variants[k]
			start := time.Now()
			q := f.Query(with, v.terms...)
			for q.Next() {
				pos := Column[Pos](f, q.Chunk(), x.pos)
				vel := Column[Vel](f, q.Chunk(), x.vel)
				if v.name != "optional" {
					for j, rows := 0, q.Rows(); j < rows; j++ {
						if q.Match(j) {
							sum += pos[j].X + vel[j].X
						}
					}
					continue
				}
				var hp []Health
				if !q.Absent(x.hp) {
					hp = Column[Health](f, q.Chunk(), x.hp)
				}
				for j, rows := 0, q.Rows(); j < rows; j++ {
					if q.Match(j) {
						sum += pos[j].X + vel[j].X
						if hp != nil && q.Has(j, x.hp) {
							sum += float32(hp[j].HP)
						}
					}
				}
			}
			d := time.Since(start)
			durs[k] += d
			if fastest[k] == 0 || d < fastest[k] {
				fastest[k] = d
			}
		}
	}
	b.StopTimer()
	for k, v := range variants {
		b.ReportMetric(float64(durs[k].Nanoseconds())/float64(b.N)/n, v.name+"-ns/entity")
		b.ReportMetric(float64(fastest[k].Nanoseconds())/n, v.name+"-fastest-ns/entity")
		if k > 0 {
			b.ReportMetric(float64(fastest[k])/float64(fastest[0]), v.name+"-x-with")
		}
	}
	require.NoError(b, f.Release())
	_ = sum
}
