package module

import (
	"errors"
	"testing"

	"github.com/fdp-engine/fdp/internal/testutil"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

type vPos struct{ X, Y float32 }
type vHP struct{ V int32 }
type vTag struct{ V uint64 }

// viewRig is a world of 4 chunks of 16 entities with Pos, HP on the first
// two chunks' even rows, Tag on nobody, published through segments of a
// private directory and read through a Reader, as a module reads it.
type viewRig struct {
	t            *testing.T
	w            *world.World
	pub          *fsync.Publisher
	r            *fsync.Reader
	pos, hp, tag world.ComponentID
	frame        uint64
}

func newViewRig(t *testing.T) *viewRig {
	testutil.UseShmDir(t, t.TempDir())
	reg := world.NewRegistry()
	x := &viewRig{t: t}
	x.pos, _ = world.Register[vPos](reg, "Pos")
	x.hp, _ = world.Register[vHP](reg, "HP")
	x.tag, _ = world.Register[vTag](reg, "Tag")
	w, err := world.New(reg, world.Config{ChunkCapacity: 16, MaxChunks: 4})
	require.NoError(t, err)
	for i := range 64 {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, x.pos, vPos{X: float32(i)}))
		if i < 32 && i%2 == 0 {
			require.NoError(t, world.Set(w, e, x.hp, vHP{V: int32(i)}))
		}
	}
	segs, err := fsync.CreateWorldSegments("view", w, 4, 0)
	require.NoError(t, err)
	t.Cleanup(func() { segs.Unlink(); segs.Close() })
	x.w = w
	x.pub, err = fsync.NewPublisher(w, segs)
	require.NoError(t, err)
	x.r, err = fsync.Attach("view", fsync.AttachOptions{Name: "view", Registry: reg})
	require.NoError(t, err)
	t.Cleanup(func() { x.r.Close() })
	return x
}

// publish publishes the next frame and returns a view of it for a module
// reading reads, with the Changed mark since (0: none).
func (x *viewRig) publish(reads world.Mask, since uint64) *View {
	x.frame++
	_, err := x.pub.Publish(x.frame, world.MaskAll())
	require.NoError(x.t, err)
	f, err := x.r.Pin()
	require.NoError(x.t, err)
	x.t.Cleanup(func() { _ = f.Release() })
	return &View{f: f, reads: reads, since: since}
}

// chunks returns the chunks a query visits.
func chunks(q *Query) []int {
	var out []int
	for q.Next() {
		out = append(out, q.Chunk())
	}
	return out
}

// TestViewChanged: the View gives world.Changed the module's mark (the
// version of its previous tick's frame + 1; every chunk without one), an
// explicit ChangedSince keeps its own, and a Changed of a component outside
// the module's Reads is refused like any read of it.
func TestViewChanged(t *testing.T) {
	x := newViewRig(t)
	all := world.MaskOf(x.pos, x.hp, x.tag)
	v := x.publish(all, 0)
	q := v.Query(world.MaskOf(x.pos), world.Changed(x.pos))
	require.Equal(t, []int{0, 1, 2, 3}, chunks(&q), "the first tick: every chunk")
	mark := v.f.Info().Version + 1 // what runTick keeps after a successful tick

	// Writes into chunk 2 only, two frames later (a frame skipped).
	require.NoError(t, world.Set(x.w, world.MakeEntity(40, 1), x.pos, vPos{X: -1}))
	x.publish(all, mark)
	require.NoError(t, x.w.Remove(world.MakeEntity(3, 1), x.pos)) // a structural change of Pos in chunk 0
	v = x.publish(all, mark)
	q = v.Query(world.MaskOf(x.pos), world.Changed(x.pos))
	require.Equal(t, []int{0, 2}, chunks(&q), "chunks written since the mark")
	q = v.Query(world.MaskOf(x.pos), world.Changed(x.hp))
	require.Empty(t, chunks(&q), "HP was not written")
	q = v.Query(world.MaskOf(x.pos), world.ChangedSince(1, x.hp))
	require.Equal(t, []int{0, 1}, chunks(&q), "an explicit version wins: the chunks with HP")
	require.Equal(t, 15+16, v.Count(world.MaskOf(x.pos), world.Changed(x.pos)))
	q = v.Query(world.MaskOf(x.pos), world.Changed(x.pos), world.ChangedSince(1<<60, x.hp))
	require.Equal(t, []int{0, 2}, chunks(&q), "of two versions the oldest counts: the mark's")
	require.NoError(t, v.Err())

	// A module reading Pos only: Changed, Without or Optional of HP is
	// refused, the tick fails with the error naming HP.
	for _, term := range []world.Term{world.Changed(x.hp), world.Without(x.hp), world.Optional(x.hp)} {
		v = x.publish(world.MaskOf(x.pos), mark)
		q = v.Query(world.MaskOf(x.pos), term)
		require.Empty(t, chunks(&q), "%v", term.Kind())
		require.True(t, errors.Is(v.Err(), ErrNotRead), "%v: %v", term.Kind(), v.Err())
		require.Contains(t, v.Err().Error(), `component "HP" is not in the module's Reads [Pos]`)
	}
}

// TestViewOptionalColumn: Column of an Optional component is nil in the
// chunks where no alive entity has it, and Has tells the rows that do.
func TestViewOptionalColumn(t *testing.T) {
	x := newViewRig(t)
	v := x.publish(world.Mask{}, 0)
	q := v.Query(world.MaskOf(x.pos), world.Optional(x.hp), world.Without(x.tag))
	withHP, rows := 0, 0
	for q.Next() {
		hp := Column[vHP](v, &q, x.hp)
		require.Equal(t, q.Chunk() >= 2, hp == nil, "chunk %d", q.Chunk())
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) {
				rows++
				if q.Has(i, x.hp) {
					require.Equal(t, int32(q.Entity(i).Index()), hp[i].V)
					withHP++
				}
			}
		}
	}
	require.Equal(t, 64, rows)
	require.Equal(t, 16, withHP)
	require.NoError(t, v.Err())
}

// TestViewQueryAllocs: a View query with every kind of term, its typed
// columns and Count allocate nothing.
func TestViewQueryAllocs(t *testing.T) {
	x := newViewRig(t)
	v := x.publish(world.Mask{}, 0)
	var sum float32
	allocs := testing.AllocsPerRun(100, func() {
		q := v.Query(world.MaskOf(x.pos), world.Without(x.tag), world.Optional(x.hp), world.Changed(x.pos))
		for q.Next() {
			pos := Column[vPos](v, &q, x.pos)
			hp := Column[vHP](v, &q, x.hp)
			for i, rows := 0, q.Rows(); i < rows; i++ {
				if q.Match(i) {
					sum += pos[i].X
					if hp != nil && q.Has(i, x.hp) {
						sum += float32(hp[i].V)
					}
				}
			}
		}
		sum += float32(v.Count(world.MaskOf(x.pos), world.Without(x.hp)))
	})
	require.Zero(t, allocs)
	require.NotZero(t, sum)
	require.NoError(t, v.Err())
}
