package world

import (
	"math/bits"

	"github.com/fdp-engine/fdp/layout"
)

// Query iterates the chunks that may hold entities having every component
// of a mask. It is a value type: w.Query allocates nothing. Use it as
//
//	q := w.Query(mask)
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
	w      *World
	mask   Mask
	chunk  int
	rows   int
	c      *chunk
	recs   []uint64 // c.recs: the current chunk's records (records.go)
	stride int      // words of a record: 1 + W
}

// Query returns an iterator over the chunks containing entities with every
// component of with (the empty mask matches every alive entity). A mask
// naming an unregistered component matches nothing.
func (w *World) Query(with Mask) Query {
	return Query{w: w, mask: with, chunk: -1, stride: w.stride}
}

// Next advances to the next chunk that has alive entities and at least one
// entity with each component of the mask. It returns false at the end.
func (q *Query) Next() bool {
	w := q.w
	if !q.mask.AndNot(maskUpTo(len(w.comps))).Empty() {
		q.c, q.recs, q.rows = nil, nil, 0
		return false
	}
	nch := w.NumChunks()
next:
	for q.chunk+1 < nch {
		q.chunk++
		ch := w.chunks[q.chunk]
		if ch.alive == 0 {
			continue
		}
		for j, m := range q.mask {
			for ; m != 0; m &= m - 1 {
				if ch.counts[64*j+bits.TrailingZeros64(m)] == 0 {
					continue next
				}
			}
		}
		q.c, q.recs = ch, ch.recs
		q.rows = w.ChunkRows(q.chunk)
		return true
	}
	q.c, q.recs, q.rows = nil, nil, 0
	return false
}

// Chunk returns the index of the current chunk.
func (q *Query) Chunk() int { return q.chunk }

// Rows returns the number of rows of the current chunk to scan (rows below
// the entity high-water mark); columns returned by Column have this length.
func (q *Query) Rows() int { return q.rows }

// Match reports whether row i of the current chunk is an alive entity with
// every component of the mask.
func (q *Query) Match(i int) bool {
	// Small enough to be inlined into the caller's row loop, with neither
	// a loop nor a call: the record is the 1 + W words from i*(1+W)
	// (records.go); word 0 of its mask is compared always, words 1..3 when
	// W > 1. The query mask's words at and above W are zero (Next matches
	// nothing for a mask beyond the schema), so for a record of fewer words
	// the extra terms test words of the next record, or of the chunk's
	// padding, against zero: always true. The 5 words from o are in bounds
	// for every W (R2), which costs one bounds check.
	o := i * q.stride
	r := q.recs[o : o+5]
	m := &q.mask
	return r[0]&aliveBit != 0 && m[0]&^r[1] == 0 &&
		(q.stride == 2 || m[1]&^r[2]|m[2]&^r[3]|m[3]&^r[4] == 0)
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

// Column returns component id's column of the current chunk as a []T of
// length Rows(), for reading: no version is stamped. It returns nil if no
// entity of the chunk ever had the component (never the case for a
// component of the query's mask), if there is no current chunk, or if T
// does not match the component. Only rows where the entity has the
// component hold meaningful values.
func Column[T any](q *Query, id ComponentID) []T {
	if q.c == nil || !typeOK[T](q.w, id) {
		return nil
	}
	col := q.c.cols[id]
	if col == nil {
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
