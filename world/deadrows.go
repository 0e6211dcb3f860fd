package world

import "slices"

// Dead rows are zero (invariant Z1): the column bytes of a row that does
// not hold a component (its entity is dead, or lacks the component) are
// zero, and so are the bytes of a variable-size component's arena that no
// live value takes. A destroyed entity's record keeps only its generation
// (the next Create of the index bumps it; its flags and mask words are 0).
//
// Why: the publisher copies whole chunk columns into shared memory and the
// flight recorder copies them into files, so a row left as it was would
// publish (and record) the values of a deleted entity or a removed
// component forever after: data a deletion was meant to remove, visible to
// every reader, and noise that compresses worse than zeros. Zeroing at the
// write that makes the row dead costs the row's bytes once; the copies
// downstream never need to filter anything.
//
// Z1 holds for every write through the world's API. ColumnMut hands a
// system a whole column: a system keeps Z1 by writing only the rows its
// query matches (Query.Match), as the demo's systems do; a row it writes
// without matching is its own data, published as written.
//
// The rows are zeroed as part of the write that stamps the chunk's version
// (Destroy, Remove, a variable-size value that moves or shrinks), so the
// next publish copies the zeros with the column. Columns restored by
// recovery are taken as the dead engine published them (zeroed by it when
// it ran this code).

// zeroRow clears row's bytes of component id in ch: its column row and,
// for a variable-size component, its value in the arena (the handle is
// read first: it is part of the row). The caller has already accounted for
// the value leaving the arena (varRemoved).
func (w *World) zeroRow(ch *chunk, row int, id ComponentID) {
	col := ch.cols[id]
	if col == nil {
		return
	}
	size := w.comps[id].size
	if w.comps[id].maxLen != 0 {
		h := handleAt(col, row)
		w.zeroArena(ch, id, int(h.Off), int(h.Off)+align8(int(h.Len)))
	}
	clear(col[row*size : (row+1)*size])
}

// zeroArena clears bytes [from, to) of ch's arena of variable-size
// component id (clamped to the arena: a handle is only trusted as far as
// the arena goes).
func (w *World) zeroArena(ch *chunk, id ComponentID, from, to int) {
	col := ch.cols[id]
	if col == nil {
		return
	}
	arena := col[w.capacity*w.comps[id].size:]
	to = min(to, len(arena))
	if from < to {
		clear(arena[from:to])
	}
}

// zeroDeadRows establishes Z1 for component id's column of ch as a whole:
// the rows that do not hold the component are zeroed and so are the arena
// bytes outside the live values. Recovery calls it on every restored
// column (the frame it restores from was written by another engine); a
// restored column is small next to the cost of a restore.
func (w *World) zeroDeadRows(ch *chunk, id ComponentID) {
	col := ch.cols[id]
	if col == nil {
		return
	}
	size := w.comps[id].size
	type span struct{ off, end int }
	var live []span
	for row := 0; row < w.capacity; row++ {
		r := w.rec(ch, row)
		if !recAlive(r) || !recHas(r, id) {
			clear(col[row*size : (row+1)*size])
			continue
		}
		if w.comps[id].maxLen != 0 {
			h := handleAt(col, row)
			live = append(live, span{int(h.Off), int(h.Off) + int(h.Len)})
		}
	}
	if w.comps[id].maxLen == 0 {
		return
	}
	slices.SortFunc(live, func(a, b span) int { return a.off - b.off })
	at := 0
	for _, v := range live {
		w.zeroArena(ch, id, at, v.off)
		at = max(at, v.end)
	}
	w.zeroArena(ch, id, at, w.comps[id].arena)
}
