package world_test

import (
	"fmt"
	"math/rand"
	"slices"
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
	// Component 0 ([1]uint64) for the typed column checks, and five more
	// spread over the mask words.
	comps := []world.ComponentID{0}
	for _, k := range rng.Perm(n - 1)[:min(5, n-1)] {
		comps = append(comps, world.ComponentID(k+1))
	}
	ops := &testutil.WorldOps{T: t, Rng: rng, W: w, M: m, Comps: comps}
	var versions []uint64
	queries, matched, kept := 0, 0, 0
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
			qt := randomQuery(rng, comps, versions, n)
			got, visited := checkWorldQuery(t, w, m, qt)
			queries++
			matched += got
			kept += visited
		}
	}
	// The test proves something only if queries matched and Changed kept
	// some chunks and not others.
	require.NotZero(t, matched)
	require.NotZero(t, kept)
	t.Logf("%d queries, %d entities matched, %d chunks visited", queries, matched, kept)
}

// queryTerms is a random query and what the model needs to answer it.
type queryTerms struct {
	with, without, optional, changed world.Mask
	since                            uint64
	first                            world.Mask // Query's first argument: With, or part of it
	terms                            []world.Term
	nothing                          bool // contradictory, or a component beyond the schema
}

func (q queryTerms) String() string {
	return fmt.Sprintf("with %v (first %v) without %v optional %v changed %v since %d", q.with, q.first, q.without, q.optional, q.changed, q.since)
}

func ids(m world.Mask) []world.ComponentID { return slices.Collect(m.IDs()) }

// randomQuery draws a query over comps; versions are the past versions a
// ChangedSince may name; n is the number of components of the schema.
func randomQuery(rng *rand.Rand, comps []world.ComponentID, versions []uint64, n int) queryTerms {
	var q queryTerms
	q.with = testutil.RandomMask(rng, comps, 3)
	q.without = testutil.RandomMask(rng, comps, 4)
	if rng.Intn(10) != 0 {
		q.without = q.without.AndNot(q.with) // else maybe contradictory
	}
	q.optional = testutil.RandomMask(rng, comps, 3)
	q.terms = []world.Term{{}} // the zero Term is ignored
	// With given as the first argument, or partly as With terms.
	q.first = q.with
	if rng.Intn(3) == 0 {
		q.first = world.Mask{}
		for _, id := range ids(q.with) {
			if rng.Intn(2) == 0 {
				q.first = q.first.With(id)
			} else {
				q.terms = append(q.terms, world.With(id))
			}
		}
	}
	if !q.without.Empty() {
		q.terms = append(q.terms, world.Without(ids(q.without)...))
	}
	if !q.optional.Empty() {
		q.terms = append(q.terms, world.Optional(ids(q.optional)...))
	}
	switch rng.Intn(3) {
	case 0: // no Changed term
	case 1: // Changed: the world knows no previous run, every chunk
		q.changed = testutil.RandomMask(rng, comps, 2)
		q.terms = append(q.terms, world.Changed(ids(q.changed)...))
	default:
		q.changed = testutil.RandomMask(rng, comps, 2)
		q.since = versions[rng.Intn(len(versions))]
		q.terms = append(q.terms, world.ChangedSince(q.since, ids(q.changed)...))
		if rng.Intn(4) == 0 {
			// A second, later version: the oldest counts.
			q.terms = append(q.terms, world.ChangedSince(q.since+uint64(rng.Intn(3)), ids(q.changed)...))
		}
	}
	if n < 256 && rng.Intn(25) == 0 {
		beyond := world.ComponentID(n)
		q.terms = append(q.terms, []world.Term{world.Without(beyond), world.Optional(beyond), world.Changed(beyond)}[rng.Intn(3)])
		q.nothing = true
	}
	q.nothing = q.nothing || !q.with.And(q.without).Empty()
	rng.Shuffle(len(q.terms), func(i, j int) { q.terms[i], q.terms[j] = q.terms[j], q.terms[i] })
	return q
}

// checkWorldQuery runs qt on w and compares it with the model. It returns
// the entities matched and the chunks visited.
func checkWorldQuery(t *testing.T, w *world.World, m *testutil.WorldModel, qt queryTerms) (int, int) {
	t.Helper()
	var want []world.Entity
	var wantChunks []int
	if !qt.nothing {
		want, wantChunks = m.Expect(qt.with, qt.without, qt.changed, qt.since)
	}
	q := w.Query(qt.first, qt.terms...)
	var got []world.Entity
	var chunks []int
	last, visited := -1, 0
	for q.Next() {
		c := q.Chunk()
		visited++
		if c <= last {
			t.Fatalf("%v: chunk %d after %d", qt, c, last)
		}
		last = c
		if !m.Changed(c, qt.changed, qt.since) {
			t.Fatalf("%v: chunk %d visited, no Changed component written since %d", qt, c, qt.since)
		}
		for _, id := range ids(qt.optional) {
			if q.Absent(id) == m.ChunkHas(c, id) {
				t.Fatalf("%v: chunk %d: Absent(%d) %v, the model has it: %v", qt, c, id, q.Absent(id), m.ChunkHas(c, id))
			}
			if id == 0 && (world.Column[[1]uint64](&q, 0) == nil) != q.Absent(0) {
				t.Fatalf("%v: chunk %d: column of the optional component 0 nil: %v, absent: %v", qt, c, world.Column[[1]uint64](&q, 0) == nil, q.Absent(0))
			}
		}
		n := len(got)
		for i, rows := 0, q.Rows(); i < rows; i++ {
			if !q.Match(i) {
				continue
			}
			e := q.Entity(i)
			got = append(got, e)
			for _, id := range ids(qt.optional) {
				if q.Has(i, id) != m.Has(e, id) {
					t.Fatalf("%v: %v Has(%d) %v, model %v", qt, e, id, q.Has(i, id), m.Has(e, id))
				}
			}
		}
		if len(got) > n {
			chunks = append(chunks, c)
		}
		if visited == 1 {
			// Count, Any and First do not move the query.
			require.Equal(t, len(want), q.Count(), "%v: Count in the middle", qt)
			require.Equal(t, c, q.Chunk())
		}
	}
	require.Equal(t, want, got, "%v: entities", qt)
	require.Equal(t, wantChunks, chunks, "%v: chunks with a match", qt)
	require.Equal(t, len(want), q.Count(), "%v: Count", qt)
	require.Equal(t, len(want) > 0, q.Any(), "%v: Any", qt)
	first, ok := q.First()
	require.Equal(t, len(want) > 0, ok, "%v: First", qt)
	if ok {
		require.Equal(t, want[0], first, "%v: First", qt)
	}
	return len(got), visited
}
