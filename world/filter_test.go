package world_test

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// TestQueryTermsDifferential runs random queries (With, Without, Optional,
// Changed and ChangedSince terms, contradictory ones, ones naming a
// component beyond the schema) on random worlds of 5, 70 and 200
// components (record masks of 1, 2 and 4 words) after random writes, and
// compares every entity matched, every chunk visited, the Optional columns
// and Has, and Count, Any and First with a plain model of the world
// (testutil.WorldModel), which knows nothing of chunks' counts or versions.
func TestQueryTermsDifferential(t *testing.T) {
	for _, n := range []int{5, 70, 200} {
		for seed := int64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("components=%d/seed=%d", n, seed), func(t *testing.T) {
				runTermsDifferential(t, n, seed)
			})
		}
	}
}

func runTermsDifferential(t *testing.T, n int, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	const capc, maxChunks = 16, 24
	w, err := world.New(testutil.WideRegistry(n), world.Config{ChunkCapacity: capc, MaxChunks: maxChunks})
	require.NoError(t, err)
	m := testutil.NewWorldModel(capc)
	// Component 0 ([1]uint64) for the typed column checks, the last one
	// (in the last mask word), and four more.
	comps := []world.ComponentID{0, world.ComponentID(n - 1)} // the first and the last mask word
	for _, k := range rng.Perm(n - 2)[:min(4, n-2)] {
		comps = append(comps, world.ComponentID(k+1))
	}
	ops := &testutil.WorldOps{T: t, Rng: rng, W: w, M: m, Comps: comps}
	var versions []uint64
	queries, matched, kept, excluded := 0, 0, 0, 0
	for round := 0; round < 60; round++ {
		m.Now = w.Version()
		versions = append(versions, w.Version())
		writes := rng.Intn(30)
		if rng.Intn(8) == 0 {
			writes = 300
		}
		ops.Run(writes)
		if rng.Intn(2) == 0 {
			w.Advance()
		}
		for range 20 {
			qt := testutil.RandomQuery(rng, comps, versions, n)
			q := w.Query(qt.First, qt.Terms...)
			// Component 0 is a [1]uint64: its typed column is nil
			// exactly where it is absent.
			column := func(id world.ComponentID) (bool, bool) { return world.Column[[1]uint64](&q, 0) == nil, id == 0 }
			got, visited := testutil.CheckQuery(t, &q, m, qt, column)
			queries++
			matched += got
			kept += visited
			for c := range w.NumChunks() {
				if !m.Changed(c, qt.Changed, qt.Since) {
					excluded++
				}
			}
		}
	}
	// The test proves something only if queries matched and Changed kept
	// some chunks and not others.
	require.NotZero(t, matched)
	require.NotZero(t, kept)
	require.NotZero(t, excluded)
	t.Logf("%d queries, %d entities matched, %d chunks visited, %d left out by Changed", queries, matched, kept, excluded)
}

// TestQueryTermsAllocs: a query with every kind of term, iterated with typed
// columns, Match, Has and Absent, and its Count, Any and First, allocates
// nothing.
func TestQueryTermsAllocs(t *testing.T) {
	reg := testutil.WideRegistry(4)
	w, err := world.New(reg, world.Config{ChunkCapacity: 64, MaxChunks: 8})
	require.NoError(t, err)
	for i := range 300 {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, 0, [1]uint64{uint64(i)}))
		if i%3 == 0 {
			require.NoError(t, world.Set(w, e, 1, [1]uint32{1}))
		}
		if i%5 == 0 {
			require.NoError(t, world.Set(w, e, 2, [1]byte{1}))
		}
	}
	since := w.Version()
	var sum uint64
	allocs := testing.AllocsPerRun(100, func() {
		q := w.Query(world.MaskOf(0), world.Without(2), world.Optional(1), world.ChangedSince(since, 0, 1))
		for q.Next() {
			col := world.Column[[1]uint64](&q, 0)
			opt := world.Column[[1]uint32](&q, 1)
			for i, rows := 0, q.Rows(); i < rows; i++ {
				if q.Match(i) {
					sum += col[i][0]
					if opt != nil && q.Has(i, 1) {
						sum += uint64(opt[i][0])
					}
				}
			}
		}
		if q.Any() {
			e, _ := q.First()
			sum += uint64(q.Count()) + uint64(e)
		}
	})
	require.Zero(t, allocs)
	require.NotZero(t, sum)
}
