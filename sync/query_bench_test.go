package sync

import (
	"testing"

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
