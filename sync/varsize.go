package sync

// Variable-size components in frames (layout/varsize.go): a column of
// handles followed by the chunk's arena, both read in place. A value is
// readable in a frame exactly when a fixed-size component's would be (the
// record is alive, names the component, and the frame's mask holds it), and
// its handle is checked against the arena's bounds and the component's max
// length before any byte is returned: a value is never read outside its
// chunk's arena.

import (
	"fmt"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// ErrNotBytes is returned by CheckBytes for a fixed-size component.
var ErrNotBytes = fmt.Errorf("%w: not a variable-size component", ErrTypeMismatch)

// BytesColumn is a variable-size component's column of one chunk of a
// frame, read in place: its values are read-only shared memory, valid while
// the frame is pinned or leased (a module's tick). The zero BytesColumn
// holds nothing.
type BytesColumn struct {
	handles []byte // ChunkCapacity handles of 8 bytes
	arena   []byte
	maxLen  uint32
}

// Len returns the rows of the column (the chunk capacity; 0 for the zero
// column).
func (c BytesColumn) Len() int { return len(c.handles) / layout.BytesHandleSize }

// Bytes returns row's value in place (nil if row is out of range or its
// handle is not inside the arena; an empty value is an empty, non-nil
// slice). Only rows whose record is alive and
// names the component hold a value (FrameQuery.Match).
func (c BytesColumn) Bytes(row int) []byte {
	if row < 0 || row >= c.Len() {
		return nil
	}
	h := layout.DecodeHandle(c.handles[row*layout.BytesHandleSize:])
	if !h.Valid(len(c.arena), c.maxLen) {
		return nil
	}
	return c.arena[h.Off : h.Off+h.Len : h.Off+h.Len]
}

// String returns row's value as a string aliasing the frame (no copy; see
// viewString: valid while the frame is held, strings.Clone it to keep it).
func (c BytesColumn) String(row int) string { return viewString(c.Bytes(row)) }

// CheckBytes returns an error unless component id is variable-size.
func CheckBytes(f *Frame, id world.ComponentID) error {
	if int(id) >= len(f.r.lw.Components) {
		return fmt.Errorf("%w: component id %d (segment has %d)", world.ErrUnknownComponent, id, len(f.r.lw.Components))
	}
	if c := f.r.lw.Components[id]; !c.VarSize() {
		return fmt.Errorf("%w: component %q is a fixed-size one of %d bytes", ErrNotBytes, c.Name, c.Size)
	}
	return nil
}

// ColumnBytes returns variable-size component id's column of chunk c: the
// zero BytesColumn if id is not variable-size, c is out of range, or id is
// not in the frame's mask (Frame.Mask).
func ColumnBytes(f *Frame, c int, id world.ComponentID) BytesColumn {
	if c < 0 || c >= int(f.info.Chunks) || !f.holds(id) || CheckBytes(f, id) != nil {
		return BytesColumn{}
	}
	lw, b := f.r.lw, f.r.world.Data
	o, e := lw.ColumnRange(f.slot, c, int(id))
	ao, ae := lw.ArenaRange(f.slot, c, int(id))
	return BytesColumn{handles: b[o:e:e], arena: b[ao:ae:ae], maxLen: lw.Components[id].MaxLen}
}

// GetBytes returns variable-size component id of entity e in place
// (read-only, valid while the frame is held). It returns false if e is not
// alive in the frame, has no such component, id is not variable-size or not
// in the frame's mask.
func GetBytes(f *Frame, e world.Entity, id world.ComponentID) ([]byte, bool) {
	rec, ok := f.record(e)
	if !ok || !f.holds(id) || !world.Mask(rec.Mask).Has(id) {
		return nil, false
	}
	capc := f.r.lw.ChunkCapacity
	col := ColumnBytes(f, int(e.Index())/capc, id)
	v := col.Bytes(int(e.Index()) % capc) // an empty value is empty, not nil
	return v, v != nil
}

// GetString is GetBytes as a string aliasing the frame (no copy; valid
// while the frame is held).
func GetString(f *Frame, e world.Entity, id world.ComponentID) (string, bool) {
	b, ok := GetBytes(f, e, id)
	return viewString(b), ok
}
