package sync

// Queries over a frame: the query language of package world (a With mask and
// terms: world/filter.go) run on the records and chunk versions of a
// published frame, in place.

import (
	"math/bits"

	"github.com/fdp-engine/fdp/world"
)

// FrameQuery iterates the chunks of a frame that hold entities matching a
// query. It is a value type: building one and iterating allocate nothing. A
// query naming a component the frame does not hold (Frame.Covers: With,
// Without, Optional or Changed) matches nothing, and so does the zero
// FrameQuery: a filtered snapshot's records name only the components it
// holds, and its chunk versions of the others are stale, so neither Without
// nor Changed of such a component could be answered.
type FrameQuery struct {
	f   *Frame
	flt world.Filter
	// Match's per-row test, word k of a record's mask r: r & ck == wk
	// (world.Filter.Care and Want), as scalars: Match stays small enough to
	// be inlined into the caller's row loop.
	c0, c1, c2, c3, w0, w1, w2, w3 uint64

	chunk  int
	recs   []uint64 // the current chunk's records, 1+W words each, and what follows (Frame.matchWords)
	n      int      // records in recs: the chunk capacity
	stride int      // 1+W
	rows   int
	// absent: the Optional components that no alive entity of the current
	// chunk has (their Column is nil there), once scanned (Absent).
	absent  world.Mask
	scanned bool
}

// Query starts a query over the frame: the entities having every component
// of with and matching terms (world.Without, world.Optional,
// world.ChangedSince...). If the frame does not hold every component the
// query names (Frame.Covers), the query matches nothing. A Changed term
// without a version keeps every chunk: the frame knows no previous run of
// its caller (the module SDK's View.Query gives it the module's previous
// tick).
func (f *Frame) Query(with world.Mask, terms ...world.Term) FrameQuery {
	return f.QueryFilter(world.NewFilter(with, terms...))
}

// QueryFilter is Query of a compiled filter.
func (f *Frame) QueryFilter(flt world.Filter) FrameQuery {
	if !f.Covers(flt.Names()) || flt.Contradictory() {
		return FrameQuery{chunk: -1}
	}
	c, m := flt.Care(), flt.Want()
	return FrameQuery{f: f, flt: flt, chunk: -1, stride: 1 + f.r.lw.MaskWords,
		c0: c[0], c1: c[1], c2: c[2], c3: c[3], w0: m[0], w1: m[1], w2: m[2], w3: m[3]}
}

// Filter returns the query's filter.
func (q *FrameQuery) Filter() world.Filter { return q.flt }

// Next advances to the next chunk that has a matching entity and, with
// Changed terms, a change version of a Changed component at or after the
// filter's version (Frame.ChunkVersion). It returns false at the end.
func (q *FrameQuery) Next() bool {
	if q.f == nil {
		return false // a query of a component the frame does not hold
	}
	capc := q.f.r.lw.ChunkCapacity
	for q.chunk+1 < int(q.f.info.Chunks) {
		q.chunk++
		if !q.changed(q.chunk) {
			continue
		}
		q.recs, q.n = q.f.matchWords(q.chunk), capc
		q.rows = min(int(q.f.info.Entities)-q.chunk*capc, capc)
		q.scanned = false
		for i := 0; i < q.rows; i++ {
			if q.Match(i) {
				return true
			}
		}
	}
	q.recs, q.n, q.rows, q.scanned = nil, 0, 0, false
	return false
}

// changed reports whether chunk c is kept by the Changed terms (always,
// without them).
func (q *FrameQuery) changed(c int) bool {
	ch := q.flt.Changed()
	if ch.Empty() {
		return true
	}
	since := q.flt.Since()
	for j, m := range ch {
		for ; m != 0; m &= m - 1 {
			if q.f.ChunkVersion(c, world.ComponentID(64*j+bits.TrailingZeros64(m))) >= since {
				return true
			}
		}
	}
	return false
}

// scanOptional sets absent to the Optional components that no alive entity
// of the current chunk has. It reads the records until it has seen every
// Optional component (a component present in the chunk is usually found in
// its first rows), to the end of the chunk for an absent one.
func (q *FrameQuery) scanOptional() {
	opt := q.flt.Optional()
	var has world.Mask
	w := q.stride - 1
	for i := 0; i < q.rows && !has.Contains(opt); i++ {
		r := q.recs[i*q.stride : (i+1)*q.stride]
		if r[0]&recordAlive == 0 {
			continue
		}
		for j := 0; j < w; j++ {
			has[j] |= r[1+j]
		}
	}
	q.absent, q.scanned = opt.AndNot(has), true
}

// Chunk returns the current chunk index.
func (q *FrameQuery) Chunk() int { return q.chunk }

// Rows returns the number of rows to scan in the current chunk.
func (q *FrameQuery) Rows() int { return q.rows }

// Match reports whether row i is alive, has every component of With and
// none of Without.
func (q *FrameQuery) Match(i int) bool {
	// Small enough to be inlined into the caller's row loop, with neither
	// a loop nor a call: word 0 of the record's mask always, words 1..3
	// only when W > 1. The care and want words at and above W are zero (the
	// frame covers the query), so for a record of fewer than 4 mask words
	// the extra terms test words of the next record, or those matchWords
	// adds after the last one, against zero: always true.
	if uint(i) >= uint(q.n) {
		return false
	}
	r := q.recs[i*q.stride:]
	return r[0]&recordAlive != 0 && r[1]&q.c0 == q.w0 &&
		(q.stride == 2 || (r[2]&q.c1^q.w1)|(r[3]&q.c2^q.w2)|(r[4]&q.c3^q.w3) == 0)
}

// Has reports whether row i of the current chunk has component id: for an
// Optional component, whether its column's row i is meaningful. It does not
// check that the row is alive: use it after Match.
func (q *FrameQuery) Has(i int, id world.ComponentID) bool {
	j := 1 + int(id>>6)
	if uint(i) >= uint(q.n) || j >= q.stride {
		return false
	}
	return q.recs[i*q.stride+j]&(1<<(id&63)) != 0
}

// Absent reports whether id is an Optional component of the query that no
// alive entity of the current chunk has: its column is of no use there (the
// module SDK's Column returns nil for it). The first call in a chunk reads
// its records (scanOptional); a query without Optional terms never does.
func (q *FrameQuery) Absent(id world.ComponentID) bool {
	if q.recs == nil || !q.flt.Optional().Has(id) {
		return false
	}
	if !q.scanned {
		q.scanOptional()
	}
	return q.absent.Has(id)
}

// Entity returns the handle of row i.
func (q *FrameQuery) Entity(i int) world.Entity {
	return world.MakeEntity(uint32(q.chunk*q.f.r.lw.ChunkCapacity+i), uint32(q.recs[i*q.stride]))
}

// Count returns the number of entities the query matches, from its start:
// it does not move q.
func (q *FrameQuery) Count() int {
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
func (q *FrameQuery) Any() bool {
	it := q.restart()
	return it.Next() // Next stops only at a chunk with a match
}

// First returns the matching entity of the lowest index. It does not move q.
func (q *FrameQuery) First() (world.Entity, bool) {
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
func (q *FrameQuery) restart() FrameQuery {
	it := *q
	it.chunk, it.recs, it.n, it.rows, it.scanned = -1, nil, 0, 0, false
	return it
}

// Count counts the entities of the frame having every component of with and
// matching terms (FrameQuery.Count).
func (f *Frame) Count(with world.Mask, terms ...world.Term) int {
	q := f.Query(with, terms...)
	return q.Count()
}
