package world

// Variable-size components (layout/varsize.go): byte strings of 0..MaxLen
// bytes per entity. A chunk's column of such a component is ChunkCapacity
// handles {u32 offset, u32 length} followed by the chunk's arena of
// ChunkCapacity × PerEntity bytes, in one allocation laid out as in a frame
// slot, so that a publish copies the handles and the arena's used prefix
// with one copy (ChunkColumn).
//
// Invariants, per chunk and variable-size component k (checked by
// checkArena in tests, and by audit on every published slot):
//   - A1: every alive row that has k has a handle with Len <= MaxLen, Off a
//     multiple of layout.ArenaAlign and Off + align8(Len) <= used <= the
//     arena's size; the values of two such rows do not overlap.
//   - A2: live is the sum of align8(Len) of those rows' handles, so a value
//     of n bytes fits after a compaction exactly when live - (the row's own
//     align8(Len)) + align8(n) <= the arena's size.
//   - A3: a write that does not fit changes nothing (ErrArenaFull); a
//     compaction moves values and rewrites handles only as part of a write
//     that then succeeds, stamping the column's version like any write.
// A string component's values are valid UTF-8 (ErrBadUTF8 otherwise).

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/fdp-engine/fdp/layout"
)

// Errors of variable-size components.
var (
	// ErrNotBytes: a variable-size operation on a fixed-size component, or
	// a fixed-size one (SetRaw, Set, Get, Ptr, Column) on a variable-size
	// component.
	ErrNotBytes = errors.New("fdp/world: not a variable-size component (or a variable-size one used as fixed-size)")
	// ErrTooLarge: a value longer than the component's MaxLen.
	ErrTooLarge = errors.New("fdp/world: value longer than the component's max length")
	// ErrBadUTF8: a string component's value is not valid UTF-8.
	ErrBadUTF8 = errors.New("fdp/world: string value is not valid UTF-8")
	// ErrArenaFull: the chunk's arena for the component has no room for
	// the value, even compacted (the values of the chunk's other entities
	// take it).
	ErrArenaFull = errors.New("fdp/world: the chunk's arena for the component is full")
)

// ComponentKind says how a component's values are stored.
type ComponentKind uint8

// Component kinds.
const (
	// KindFixed: a fixed-size Go type (Register).
	KindFixed ComponentKind = iota
	// KindBytes: byte strings of 0..MaxLen bytes (RegisterBytes).
	KindBytes
	// KindString: UTF-8 strings of 0..MaxLen bytes (RegisterBytes with
	// BytesSpec.UTF8).
	KindString
)

func (k ComponentKind) String() string {
	switch k {
	case KindFixed:
		return "fixed"
	case KindBytes:
		return "bytes"
	case KindString:
		return "string"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// BytesSpec bounds a variable-size component.
type BytesSpec struct {
	// MaxLen is the longest value, in bytes: 1..layout.MaxValueLen.
	MaxLen int
	// PerEntity is the arena bytes each chunk holds per entity: a chunk's
	// values share ChunkCapacity × PerEntity bytes (in the world and in
	// every frame slot that holds the component). 0: MaxLen (every entity
	// can hold a value of MaxLen bytes); less when values are shorter on
	// average, at the price of ErrArenaFull when a chunk's values do not
	// fit. Rounded up to a multiple of 8; at most MaxLen rounded up.
	PerEntity int
	// UTF8 makes a string component: every value must be valid UTF-8.
	UTF8 bool
}

// RegisterBytes adds a variable-size component under name: its values are
// byte strings (or UTF-8 strings, spec.UTF8) of at most spec.MaxLen bytes,
// set with SetBytes and SetString, read with GetBytes and GetString.
func RegisterBytes(r *Registry, name string, spec BytesSpec) (ComponentID, error) {
	fail := func(format string, a ...any) (ComponentID, error) {
		return 0, &registrationError{fmt.Sprintf("fdp/world: component %q: ", name) + fmt.Sprintf(format, a...)}
	}
	if spec.MaxLen < 1 || spec.MaxLen > layout.MaxValueLen {
		return fail("max length %d not in [1,%d]", spec.MaxLen, layout.MaxValueLen)
	}
	maxArena := layout.Align(spec.MaxLen, layout.ArenaAlign)
	per := layout.Align(spec.PerEntity, layout.ArenaAlign)
	if spec.PerEntity == 0 {
		per = maxArena
	}
	if spec.PerEntity < 0 || per > maxArena {
		return fail("arena bytes per entity %d not in [1,%d] (max length %d rounded up to %d)", spec.PerEntity, maxArena, spec.MaxLen, layout.ArenaAlign)
	}
	if err := r.check(name); err != nil {
		return 0, err
	}
	kind, fp := KindBytes, layout.FingerprintBytes
	if spec.UTF8 {
		kind, fp = KindString, layout.FingerprintString
	}
	return r.add(ComponentInfo{Name: name, Size: layout.BytesHandleSize, Align: layout.BytesHandleAlign, Fingerprint: fp,
		Kind: kind, MaxLen: spec.MaxLen, PerEntity: per, Fields: layout.VarSizeFields(spec.UTF8)}), nil
}

// Kind returns component id's kind (KindFixed for an unknown id).
func (w *World) Kind(id ComponentID) ComponentKind {
	if int(id) >= len(w.comps) {
		return KindFixed
	}
	return w.comps[id].kind
}

// arenaState is the bookkeeping of one chunk's arena for one variable-size
// component: used, its high-water mark; live, the sum of align8(Len) of the
// values of the chunk's rows that have the component (A2).
//
// peak is the largest used has ever been: a compaction lowers used and
// zeroes the bytes its values left (Z1, deadrows.go), and ChunkColumn hands
// the copy the arena up to peak, so that a slot that held the arena at its
// longer length gets those zeros too instead of keeping the old values.
type arenaState struct{ used, live, peak int }

func align8(n int) int { return (n + layout.ArenaAlign - 1) &^ (layout.ArenaAlign - 1) }

// handleAt returns row's handle in ch's column of var component id.
func handleAt(col []byte, row int) layout.BytesHandle {
	return layout.DecodeHandle(col[row*layout.BytesHandleSize:])
}

// varTarget validates (e, id) for a variable-size operation.
func (w *World) varTarget(e Entity, id ComponentID) (*chunk, []uint64, int, error) {
	ch, r, row, err := w.target(e, id)
	if err != nil {
		return nil, nil, 0, err
	}
	if w.comps[id].maxLen == 0 {
		return nil, nil, 0, ErrNotBytes
	}
	return ch, r, row, nil
}

// SetBytes sets variable-size component id of e to a copy of v, adding the
// component if absent. It fails, changing nothing, with ErrNotBytes,
// ErrTooLarge, ErrBadUTF8 (a string component) or ErrArenaFull.
func (w *World) SetBytes(e Entity, id ComponentID, v []byte) error {
	ch, r, row, err := w.varTarget(e, id)
	if err != nil {
		return err
	}
	return w.setVar(ch, r, row, id, v, "")
}

// SetString is SetBytes of a string's bytes (without converting it).
func (w *World) SetString(e Entity, id ComponentID, v string) error {
	ch, r, row, err := w.varTarget(e, id)
	if err != nil {
		return err
	}
	return w.setVar(ch, r, row, id, nil, v)
}

// setVar writes b (or s, when b is nil) as row's value of id (A1-A3).
func (w *World) setVar(ch *chunk, r []uint64, row int, id ComponentID, b []byte, s string) error {
	c := &w.comps[id]
	n := len(b)
	if b == nil {
		n = len(s)
	}
	if n > c.maxLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, n, c.maxLen)
	}
	if c.kind == KindString && (b != nil && !utf8.Valid(b) || b == nil && !utf8.ValidString(s)) {
		return ErrBadUTF8
	}
	col := w.column(ch, id)
	st := &ch.arenas[id]
	has := recHas(r, id)
	var old layout.BytesHandle
	if has {
		old = handleAt(col, row)
	}
	need, had := align8(n), align8(int(old.Len))
	off := int(old.Off)
	compacted := -1 // the arena's used bytes before a compaction
	switch {
	case has && need <= had: // in place (the tail it frees is reclaimed by a compaction)
	case st.used+need <= c.arena:
		off = st.used
	case st.live-had+need <= c.arena:
		compacted = st.used
		w.compact(ch, id, row)
		off = st.used
	default:
		return fmt.Errorf("%w: %d bytes of %d hold the chunk's other values, no room for %d", ErrArenaFull, st.live-had, c.arena, need)
	}
	if n == 0 {
		off = 0
	}
	arena := col[w.capacity*layout.BytesHandleSize:]
	if b != nil {
		copy(arena[off:off+n], b)
	} else {
		copy(arena[off:off+n], s)
	}
	// Z1 (deadrows.go): what the old value (or, after a compaction, the
	// values that moved) took and the new one does not is zeroed.
	switch {
	case compacted >= 0:
		w.zeroArena(ch, id, st.used+n, compacted) // st.used: the compacted values' end, where a non-empty value went
	case has:
		if off == int(old.Off) {
			w.zeroArena(ch, id, off+n, off+had)
		} else {
			w.zeroArena(ch, id, int(old.Off), int(old.Off)+had)
		}
	}
	st.used = max(st.used, off+need)
	st.peak = max(st.peak, st.used)
	st.live += need - had
	// row adds the component if absent (with its lifecycle event), lists
	// the chunk as touched (dirty.go, D1) and stamps the version.
	layout.EncodeHandle(w.row(ch, r, row, id), layout.BytesHandle{Off: uint32(off), Len: uint32(n)})
	return nil
}

// compact moves the values of ch's rows that have id, except row skip, to
// the start of the arena in offset order and rewrites their handles (A3:
// called only by a write that then succeeds).
func (w *World) compact(ch *chunk, id ComponentID, skip int) {
	col := ch.cols[id]
	arena := col[w.capacity*layout.BytesHandleSize:]
	type val struct{ row, off, n int }
	vals := make([]val, 0, ch.counts[id])
	for row := 0; row < w.capacity; row++ {
		if row != skip && recHas(w.rec(ch, row), id) {
			h := handleAt(col, row)
			vals = append(vals, val{row, int(h.Off), int(h.Len)})
		}
	}
	slices.SortFunc(vals, func(a, b val) int { return a.off - b.off })
	at := 0
	for _, v := range vals {
		off := 0 // an empty value takes no room
		if v.n > 0 {
			off = at
			copy(arena[at:at+v.n], arena[v.off:v.off+v.n]) // at <= v.off (offset order): copy handles the overlap
			// Z1 (deadrows.go): the padding after the moved value held
			// whatever was there; the next value's source starts at or
			// after v.off+align8(v.n) >= at+align8(v.n), so this clears
			// nothing still to move.
			clear(arena[at+v.n : at+align8(v.n)])
		}
		layout.EncodeHandle(col[v.row*layout.BytesHandleSize:], layout.BytesHandle{Off: uint32(off), Len: uint32(v.n)})
		at += align8(v.n)
	}
	ch.arenas[id].used = at
	ch.arenas[id].live = at
	if row := skip; recHas(w.rec(ch, row), id) {
		// The skipped row's value is being replaced: its room is no longer
		// live (the caller adds the new value's).
		ch.arenas[id].live += align8(int(handleAt(col, row).Len))
	}
}

// GetBytes returns variable-size component id of e in place: read-only,
// valid until the chunk's values of id are next written (any SetBytes in
// the chunk may move them). ok is false if e is not alive, lacks id, or id
// is not variable-size.
func (w *World) GetBytes(e Entity, id ComponentID) ([]byte, bool) {
	ch, r, row, err := w.varTarget(e, id)
	if err != nil || !recHas(r, id) {
		return nil, false
	}
	col := ch.cols[id]
	h := handleAt(col, row)
	o := w.capacity*layout.BytesHandleSize + int(h.Off)
	return col[o : o+int(h.Len) : o+int(h.Len)], true
}

// GetString returns a copy of variable-size component id of e as a string.
func (w *World) GetString(e Entity, id ComponentID) (string, bool) {
	b, ok := w.GetBytes(e, id)
	if !ok {
		return "", false
	}
	return strings.Clone(string(b)), true
}

// varRemoved accounts for row's value of id leaving the arena (Remove,
// Destroy); the caller then zeroes the row and the value (zeroRow).
func (w *World) varRemoved(ch *chunk, row int, id ComponentID) {
	if w.comps[id].maxLen != 0 {
		ch.arenas[id].live -= align8(int(handleAt(ch.cols[id], row).Len))
	}
}

// ArenaUsed returns the used bytes (high-water mark) of chunk c's arena for
// variable-size component id; ArenaLive the bytes its values take (each
// rounded up to 8).
func (w *World) ArenaUsed(c int, id ComponentID) int {
	if ch := w.chunkAt(c); ch != nil && int(id) < len(w.comps) && w.comps[id].maxLen != 0 {
		return ch.arenas[id].used
	}
	return 0
}

// ArenaLive returns the bytes the values of chunk c's arena for id take.
func (w *World) ArenaLive(c int, id ComponentID) int {
	if ch := w.chunkAt(c); ch != nil && int(id) < len(w.comps) && w.comps[id].maxLen != 0 {
		return ch.arenas[id].live
	}
	return 0
}

// restoreArena validates the handles of a restored column of variable-size
// component id in chunk c against the chunk's records (A1, UTF-8) and
// returns the arena's state; col is the handles and the arena.
func (w *World) restoreArena(ch *chunk, id ComponentID, col []byte) (arenaState, error) {
	c := &w.comps[id]
	arena := col[w.capacity*layout.BytesHandleSize:]
	type span struct{ off, end, row int }
	var spans []span
	var st arenaState
	for row := 0; row < w.capacity; row++ {
		r := w.rec(ch, row)
		if !recAlive(r) || !recHas(r, id) {
			continue
		}
		h := handleAt(col, row)
		if !h.Valid(c.arena, uint32(c.maxLen)) || h.Off%layout.ArenaAlign != 0 {
			return st, fmt.Errorf("row %d: handle {%d, %d} outside an arena of %d bytes or beyond the max length %d", row, h.Off, h.Len, c.arena, c.maxLen)
		}
		if c.kind == KindString && !utf8.Valid(arena[h.Off:h.Off+h.Len]) {
			return st, fmt.Errorf("row %d: %w", row, ErrBadUTF8)
		}
		n := align8(int(h.Len))
		st.live += n
		if n > 0 {
			spans = append(spans, span{int(h.Off), int(h.Off) + n, row})
			st.used = max(st.used, int(h.Off)+n)
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return a.off - b.off })
	for i := 1; i < len(spans); i++ {
		if spans[i].off < spans[i-1].end {
			return st, fmt.Errorf("rows %d and %d: values overlap", spans[i-1].row, spans[i].row)
		}
	}
	st.peak = st.used
	return st, nil
}
