package sync

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// TestFrameQueryTermsDifferential runs random queries of every term (With,
// Without, Optional, Changed, ChangedSince) on published frames, read in
// place through a Reader, of random worlds of 5, 70 and 200 components
// (record masks of 1, 2 and 4 words) after random writes, and compares
// them with a plain model of the world (testutil.WorldModel, CheckQuery):
// latest frames, which hold every component, and snapshots of random masks,
// where a query naming a component the snapshot does not hold, in any term,
// matches nothing (its records do not name it and its chunk versions of it
// are stale).
//
// Along the frames a module's ticks are played as the SDK does them: at
// random frames (others skipped), a query with ChangedSince(the version of
// the frame of the previous successful tick + 1), every chunk on the first
// tick; a quarter of the ticks fail and do not move the mark. The chunks it
// visits must be exactly those holding a match in which the model saw a
// Changed component written since the previous successful tick.
func TestFrameQueryTermsDifferential(t *testing.T) {
	for _, n := range []int{5, 70, 200} {
		for seed := int64(1); seed <= 2; seed++ {
			t.Run(fmt.Sprintf("components=%d/seed=%d", n, seed), func(t *testing.T) {
				runFrameTermsDifferential(t, n, seed)
			})
		}
	}
}

func runFrameTermsDifferential(t *testing.T, n int, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	const capc, maxChunks = 16, 24
	reg := testutil.WideRegistry(n)
	w, err := world.New(reg, world.Config{ChunkCapacity: capc, MaxChunks: maxChunks})
	require.NoError(t, err)
	inst := instanceName(t)
	segs, err := CreateWorldSegments(inst, w, 8, 0)
	require.NoError(t, err)
	defer func() { segs.Unlink(); segs.Close() }()
	pub, err := NewPublisher(w, segs)
	require.NoError(t, err)
	r, err := Attach(inst, AttachOptions{Name: "terms", Registry: reg})
	require.NoError(t, err)
	defer r.Close()

	m := testutil.NewWorldModel(capc)
	comps := []world.ComponentID{0, world.ComponentID(n - 1)} // the first and the last mask word
	for _, k := range rng.Perm(n - 2)[:min(4, n-2)] {
		comps = append(comps, world.ComponentID(k+1))
	}
	ops := &testutil.WorldOps{T: t, Rng: rng, W: w, M: m, Comps: comps}
	var versions []uint64 // the versions frames were sealed at
	var mark uint64       // the version of the frame of the last successful tick
	var ticks, failed, matched, refused, excluded int
	for frame := uint64(1); frame <= 150; frame++ {
		m.Now = w.Version() // the version the writes stamp
		ops.Run(frameWrites(rng, 30, 300))
		// The latest frame, or a snapshot of a random mask.
		var f *Frame
		slot := -1
		if rng.Intn(3) == 0 {
			mask := testutil.RandomMask(rng, comps, 1)
			s, _, err := pub.Snapshot(frame, mask, layout.ModuleSetOf(0))
			require.NoError(t, err)
			slot = s
			f, err = r.OpenLeased(s)
			require.NoError(t, err)
		} else {
			_, err := pub.Publish(frame, world.MaskAll())
			require.NoError(t, err)
			f, err = r.Pin()
			require.NoError(t, err)
		}
		require.Equal(t, frame, f.Number())
		versions = append(versions, f.Info().Version)
		for range 10 {
			qt := testutil.RandomQuery(rng, comps, versions, n)
			q := f.Query(qt.First, qt.Terms...)
			if !f.Covers(world.NewFilter(qt.First, qt.Terms...).Names()) {
				// Outside the snapshot: nothing, however the model
				// would answer.
				require.False(t, q.Next(), "%v: frame mask %v", qt, f.Mask())
				require.Zero(t, q.Count())
				refused++
				continue
			}
			got, _ := testutil.CheckQuery(t, &q, m, qt, nil)
			matched += got
		}
		if rng.Intn(2) == 0 && f.Covers(world.MaskOf(comps[0])) {
			// A module's tick: Changed since its last successful tick.
			var qt testutil.QueryTerms
			qt.First, qt.With = world.MaskOf(comps[0]), world.MaskOf(comps[0])
			qt.Changed = world.MaskOf(comps[0])
			if mark != 0 {
				qt.Since = mark + 1
			}
			qt.Terms = []world.Term{world.ChangedSince(qt.Since, comps[0])}
			if c := comps[1:]; len(c) > 0 && f.Covers(world.MaskOf(c[0])) && rng.Intn(2) == 0 {
				qt.Changed = qt.Changed.With(c[0])
				qt.Terms = append(qt.Terms, world.ChangedSince(qt.Since, c[0]))
			}
			q := f.Query(qt.First, qt.Terms...)
			testutil.CheckQuery(t, &q, m, qt, nil)
			for c := range f.Chunks() {
				if !m.Changed(c, qt.Changed, qt.Since) {
					excluded++
				}
			}
			ticks++
			if rng.Intn(4) == 0 {
				failed++ // the mark stays
			} else {
				mark = f.Info().Version
			}
		}
		require.NoError(t, f.Release())
		if slot >= 0 {
			require.NoError(t, pub.ReleaseHolder(slot, 0))
		}
	}
	require.NotZero(t, matched)
	require.NotZero(t, refused, "queries outside a snapshot's mask")
	require.NotZero(t, failed, "failed ticks")
	require.NotZero(t, excluded, "chunks a tick's Changed left out")
	t.Logf("%d entities matched, %d queries outside a snapshot, %d ticks (%d failed), %d chunks left out by Changed",
		matched, refused, ticks, failed, excluded)
}

// TestFrameQueryTermsAllocs: a frame query with every kind of term, iterated
// with typed columns read in place, Match, Has and Absent, and its Count,
// Any and First, allocates nothing.
func TestFrameQueryTermsAllocs(t *testing.T) {
	fx := newFixture(t, 64, 8, 300)
	for i := 0; i < 300; i++ {
		if i%3 == 0 {
			require.NoError(t, fx.w.Remove(world.MakeEntity(uint32(i), 1), fx.ids.hp))
		}
		if i%2 == 0 {
			require.NoError(t, fx.w.Remove(world.MakeEntity(uint32(i), 1), fx.ids.stamp))
		}
	}
	_, err := fx.pub.Publish(1, world.MaskAll())
	require.NoError(t, err)
	r, err := Attach(fx.inst, AttachOptions{Name: "allocs"})
	require.NoError(t, err)
	defer r.Close()
	f, err := r.Pin()
	require.NoError(t, err)
	defer f.Release()
	var sum float32
	allocs := testing.AllocsPerRun(100, func() {
		q := f.Query(world.MaskOf(fx.ids.pos), world.Without(fx.ids.stamp), world.Optional(fx.ids.hp), world.ChangedSince(1, fx.ids.pos))
		for q.Next() {
			pos := Column[Pos](f, q.Chunk(), fx.ids.pos)
			var hp []Health
			if !q.Absent(fx.ids.hp) {
				hp = Column[Health](f, q.Chunk(), fx.ids.hp)
			}
			for i, rows := 0, q.Rows(); i < rows; i++ {
				if q.Match(i) {
					sum += pos[i].X
					if hp != nil && q.Has(i, fx.ids.hp) {
						sum += float32(hp[i].HP)
					}
				}
			}
		}
		if q.Any() {
			e, _ := q.First()
			sum += float32(q.Count()) + float32(e.Index())
		}
	})
	require.Zero(t, allocs)
	require.NotZero(t, sum)
}
