package world

import (
	"math/bits"

	"github.com/fdp-engine/fdp/layout"
)

// Query iterates the chunks that may hold entities matching a query (a With
// mask and terms: filter.go). It is a value type: w.Query allocates nothing.
// Use it as
//
//	q := w.Query(mask, world.Without(dead))
//	for q.Next() {
//		col := world.Column[T](&q, id)
//		for i, n := 0, q.Rows(); i < n; i++ {
//			if q.Match(i) { ... col[i] ... }
//		}
//	}
//
// The world must not change structurally (Create, Destroy, Add, Remove) in
// ways that allocate new chunks while a query is iterating; writes to
// component values are fine.
type Query struct {
	w *World
	f Filter
	// Match's per-row test, word k of a record's mask r: r & ck == wk
	// (Filter.Care and Want), as scalars: Match stays small enough to
	// be inlined.
	c0, c1, c2, c3, w0, w1, w2, w3 uint64

	chunk int
	rows  int
	c     *chunk
	recs  []uint64 // c.recs: the current chunk's records (records.go)
	// stride is the words of a record, 1 + W; 0 for a query that matches
	// nothing (a component beyond the schema, a Contradictory filter).
	stride int
}

// Query returns an iterator over the chunks containing entities with every
// component of with and matching terms (the empty mask and no terms match
// every alive entity). A query naming an unregistered component in any term
// matches nothing, and so does one with a component both in With and in
// Without. Changed terms without a version (Changed, not ChangedSince) keep
// every chunk: the world knows no previous run of its caller.
func (w *World) Query(with Mask, terms ...Term) Query {
	return w.QueryFilter(NewFilter(with, terms...))
}

// QueryFilter is Query of a compiled filter.
func (w *World) QueryFilter(f Filter) Query {
	c, m := f.Care(), f.Want()
	q := Query{w: w, f: f, chunk: -1, stride: w.stride,
		c0: c[0], c1: c[1], c2: c[2], c3: c[3], w0: m[0], w1: m[1], w2: m[2], w3: m[3]}
	if !f.Names().AndNot(maskUpTo(len(w.comps))).Empty() || f.Contradictory() {
		q.stride = 0
	}
	return q
}

// Filter returns the query's filter.
func (q *Query) Filter() Filter { return q.f }

// Next advances to the next chunk that has alive entities, at least one
// entity with each component of With, not only entities with a component of
// Without, and, with Changed terms, a change version of a Changed component
// at or after the filter's version. It returns false at the end.
func (q *Query) Next() bool {
	w := q.w
	if q.stride == 0 {
		q.c, q.recs, q.rows = nil, nil, 0
		return false
	}
	nch := w.NumChunks()
	for q.chunk+1 < nch {
		q.chunk++
		ch := w.chunks[q.chunk]
		if ch.alive == 0 || !q.mayMatch(ch) {
			continue
		}
		q.c, q.recs = ch, ch.recs
		q.rows = w.ChunkRows(q.chunk)
		return true
	}
	q.c, q.recs, q.rows = nil, nil, 0
	return false
}

// mayMatch is Next's test of a chunk from its counts and versions alone:
// false when no row of ch can match.
func (q *Query) mayMatch(ch *chunk) bool {
	f := &q.f
	for j, m := range f.with {
		for ; m != 0; m &= m - 1 {
			if ch.counts[64*j+bits.TrailingZeros64(m)] == 0 {
				return false
			}
		}
	}
	// Every alive entity has a Without component: nothing matches.
	for j, m := range f.without {
		for ; m != 0; m &= m - 1 {
			if int(ch.counts[64*j+bits.TrailingZeros64(m)]) == ch.alive {
				return false
			}
		}
	}
	if f.changed.Empty() {
		return true
	}
	since := f.Since()
	for j, m := range f.changed {
		for ; m != 0; m &= m - 1 {
			if ch.vers[64*j+bits.TrailingZeros64(m)] >= since {
				return true
			}
		}
	}
	return false
}

// Chunk returns the index of the current chunk.
func (q *Query) Chunk() int { return q.chunk }

// Rows returns the number of rows of the current chunk to scan (rows below
// the entity high-water mark); columns returned by Column have this length.
func (q *Query) Rows() int { return q.rows }

// Match reports whether row i of the current chunk is an alive entity with
// every component of With and none of Without.
func (q *Query) Match(i int) bool {
	// Small enough to be inlined into the caller's row loop, with neither
	// a loop nor a call: the record is the 1 + W words from i*(1+W)
	// (records.go); word 0 of its mask is compared always, words 1..3 when
	// W > 1. The care and want words at and above W are zero (a query
	// naming a component beyond the schema matches nothing), so for a
	// record of fewer words the extra terms test words of the next record,
	// or of the chunk's padding, against zero: always true. The 5 words
	// from o are in bounds for every W (R2), which costs one bounds check.
	o := i * q.stride
	r := q.recs[o : o+5]
	return r[0]&aliveBit != 0 && r[1]&q.c0 == q.w0 &&
		(q.stride == 2 || (r[2]&q.c1^q.w1)|(r[3]&q.c2^q.w2)|(r[4]&q.c3^q.w3) == 0)
}

// Has reports whether row i of the current chunk has component id (for an
// Optional component: whether its column's row i is meaningful). It does
// not check that the row is alive: use it after Match.
func (q *Query) Has(i int, id ComponentID) bool {
	j := 1 + int(id>>6) // the record's mask word of id (records.go)
	return j < q.stride && q.recs[i*q.stride+j]&(1<<(id&63)) != 0
}

// Absent reports whether id is an Optional component of the query that no
// alive entity of the current chunk has: Column returns nil for it there.
func (q *Query) Absent(id ComponentID) bool {
	return q.c != nil && q.f.optional.Has(id) && q.c.counts[id] == 0
}

// Entity returns the handle of row i of the current chunk (meaningful when
// Match(i) or the row is alive).
func (q *Query) Entity(i int) Entity {
	return MakeEntity(uint32(q.chunk*q.w.capacity+i), recGen(q.w.rec(q.c, i)))
}

// Record returns the decoded entity record of row i of the current chunk
// (the zero record if there is no current chunk or i is not below Rows()).
func (q *Query) Record(i int) layout.EntityRecord {
	if q.c == nil || i < 0 || i >= q.rows {
		return layout.EntityRecord{}
	}
	return decodeRec(q.w.rec(q.c, i))
}

// Count returns the number of entities the query matches, from its start:
// it does not move q.
func (q *Query) Count() int {
	n := 0
	for it := q.restart(); it.Next(); {
		for i := 0; i < it.rows; i++ {
			if it.Match(i) {
				n++
			}
		}
	}
	return n
}

// Any reports whether the query matches an entity. It does not move q.
func (q *Query) Any() bool {
	_, ok := q.First()
	return ok
}

// First returns the matching entity of the lowest index. It does not move q.
func (q *Query) First() (Entity, bool) {
	for it := q.restart(); it.Next(); {
		for i := 0; i < it.rows; i++ {
			if it.Match(i) {
				return it.Entity(i), true
			}
		}
	}
	return 0, false
}

// restart returns a copy of q positioned before its first chunk.
func (q *Query) restart() Query {
	it := *q
	it.chunk, it.c, it.recs, it.rows = -1, nil, nil, 0
	return it
}

// Column returns component id's column of the current chunk as a []T of
// length Rows(), for reading: no version is stamped. It returns nil if no
// entity of the chunk ever had the component (never the case for a
// component of the query's With mask), for an Optional component of the
// query that no alive entity of the chunk has, if there is no current
// chunk, or if T does not match the component. Only rows where the entity
// has the component hold meaningful values.
func Column[T any](q *Query, id ComponentID) []T {
	if q.c == nil || !typeOK[T](q.w, id) {
		return nil
	}
	col := q.c.cols[id]
	if col == nil || q.Absent(id) {
		return nil
	}
	return castSlice[byte, T](col)[:q.rows]
}

// ColumnMut is Column for writing: it stamps the chunk's change version of
// the component with the current Version.
func ColumnMut[T any](q *Query, id ComponentID) []T {
	s := Column[T](q, id)
	if s != nil {
		q.w.touch(q.c) // dirty.go, D1
		q.c.vers[id] = q.w.version
	}
	return s
}
