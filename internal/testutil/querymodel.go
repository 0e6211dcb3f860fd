package testutil

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"

	"github.com/fdp-engine/fdp/world"
)

// Random queries of the query language (world/filter.go) and their check
// against a WorldModel, for the differential tests of world.Query and
// sync.FrameQuery.

// QueryTerms is a random query and what the model needs to answer it.
type QueryTerms struct {
	With, Without, Optional, Changed world.Mask
	Since                            uint64
	First                            world.Mask // the query's first argument: With, or part of it
	Terms                            []world.Term
	Nothing                          bool // contradictory, or a component beyond the schema
}

func (q QueryTerms) String() string {
	return fmt.Sprintf("with %v (first %v) without %v optional %v changed %v since %d", q.With, q.First, q.Without, q.Optional, q.Changed, q.Since)
}

func ids(m world.Mask) []world.ComponentID { return slices.Collect(m.IDs()) }

// RandomQuery draws a query over comps; versions are the past versions a
// ChangedSince may name; n is the number of components of the schema.
func RandomQuery(rng *rand.Rand, comps []world.ComponentID, versions []uint64, n int) QueryTerms {
	var q QueryTerms
	q.With = RandomMask(rng, comps, 3)
	q.Without = RandomMask(rng, comps, 4)
	if rng.Intn(10) != 0 {
		q.Without = q.Without.AndNot(q.With) // else maybe contradictory
	}
	q.Optional = RandomMask(rng, comps, 3)
	q.Terms = []world.Term{{}} // the zero Term is ignored
	// With given as the first argument, or partly as With terms.
	q.First = q.With
	if rng.Intn(3) == 0 {
		q.First = world.Mask{}
		for _, id := range ids(q.With) {
			if rng.Intn(2) == 0 {
				q.First = q.First.With(id)
			} else {
				q.Terms = append(q.Terms, world.With(id))
			}
		}
	}
	if !q.Without.Empty() {
		q.Terms = append(q.Terms, world.Without(ids(q.Without)...))
	}
	if !q.Optional.Empty() {
		q.Terms = append(q.Terms, world.Optional(ids(q.Optional)...))
	}
	switch rng.Intn(3) {
	case 0: // no Changed term
	case 1: // Changed: the world knows no previous run, every chunk
		q.Changed = RandomMask(rng, comps, 2)
		q.Terms = append(q.Terms, world.Changed(ids(q.Changed)...))
	default:
		q.Changed = RandomMask(rng, comps, 2)
		q.Since = versions[rng.Intn(len(versions))]
		if rng.Intn(3) != 0 { // mostly recent: few chunks written since
			q.Since = versions[len(versions)-1-rng.Intn(min(len(versions), 3))]
		}
		q.Terms = append(q.Terms, world.ChangedSince(q.Since, ids(q.Changed)...))
		switch rng.Intn(6) {
		case 0:
			// A second, later version: the oldest counts.
			q.Terms = append(q.Terms, world.ChangedSince(q.Since+uint64(rng.Intn(3)), ids(q.Changed)...))
		case 1:
			// And a Changed term, whose version here (no previous run)
			// is 0: every chunk.
			more := RandomMask(rng, comps, 2)
			q.Changed = q.Changed.Or(more)
			q.Terms = append(q.Terms, world.Changed(ids(more)...))
			q.Since = 0
		}
	}
	if n < 256 && rng.Intn(25) == 0 {
		beyond := world.ComponentID(n)
		q.Terms = append(q.Terms, []world.Term{world.Without(beyond), world.Optional(beyond), world.Changed(beyond)}[rng.Intn(3)])
		q.Nothing = true
	}
	q.Nothing = q.Nothing || !q.With.And(q.Without).Empty()
	rng.Shuffle(len(q.Terms), func(i, j int) { q.Terms[i], q.Terms[j] = q.Terms[j], q.Terms[i] })
	return q
}

// Querier is what CheckQuery needs of a query: world.Query and
// sync.FrameQuery have it.
type Querier interface {
	Next() bool
	Chunk() int
	Rows() int
	Match(i int) bool
	Entity(i int) world.Entity
	Has(i int, id world.ComponentID) bool
	Absent(id world.ComponentID) bool
	Count() int
	Any() bool
	First() (world.Entity, bool)
}

// CheckQuery iterates q, the query qt on a world or frame of the model m,
// and fails t unless it matches exactly the model's entities (Expect), in
// order, visits only chunks the Changed terms keep, in increasing order,
// with Absent and Has of every Optional component as the model says, and
// its Count, Any and First (also in the middle of the iteration: they do
// not move the query) agree. column, if not nil, is called in every chunk
// visited and must agree with Absent where it can tell (typed columns). It
// returns the entities matched and the chunks visited.
func CheckQuery(t testing.TB, q Querier, m *WorldModel, qt QueryTerms, column func(id world.ComponentID) (isNil, known bool)) (int, int) {
	t.Helper()
	var want []world.Entity
	var wantChunks []int
	if !qt.Nothing {
		want, wantChunks = m.Expect(qt.With, qt.Without, qt.Changed, qt.Since)
	}
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
		if !m.Changed(c, qt.Changed, qt.Since) {
			t.Fatalf("%v: chunk %d visited, no Changed component written since %d", qt, c, qt.Since)
		}
		for _, id := range ids(qt.Optional) {
			if q.Absent(id) == m.ChunkHas(c, id) {
				t.Fatalf("%v: chunk %d: Absent(%d) %v, the model has it: %v", qt, c, id, q.Absent(id), m.ChunkHas(c, id))
			}
			if column == nil {
				continue
			}
			if isNil, known := column(id); known && isNil != q.Absent(id) {
				t.Fatalf("%v: chunk %d: column of the optional component %d nil: %v, absent: %v", qt, c, id, isNil, q.Absent(id))
			}
		}
		n := len(got)
		for i, rows := 0, q.Rows(); i < rows; i++ {
			if !q.Match(i) {
				continue
			}
			e := q.Entity(i)
			got = append(got, e)
			for _, id := range ids(qt.Optional) {
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
			if n := q.Count(); n != len(want) || q.Chunk() != c {
				t.Fatalf("%v: Count in the middle %d, want %d; chunk %d after it, want %d", qt, n, len(want), q.Chunk(), c)
			}
		}
	}
	if !slices.Equal(want, got) {
		t.Fatalf("%v: entities\n got  %v\n want %v", qt, got, want)
	}
	if !slices.Equal(wantChunks, chunks) {
		t.Fatalf("%v: chunks with a match\n got  %v\n want %v", qt, chunks, wantChunks)
	}
	first, ok := q.First()
	if q.Count() != len(want) || q.Any() != (len(want) > 0) || ok != (len(want) > 0) || ok && first != want[0] {
		t.Fatalf("%v: Count %d Any %v First %v %v; want %d matches %v", qt, q.Count(), q.Any(), first, ok, len(want), want)
	}
	return len(got), visited
}
