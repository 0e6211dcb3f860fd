package module

// Variable-size components in the SDK: values read in place from the
// view's frame as []byte or string, and set through commands.

import (
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// GetBytes returns variable-size component id (world.RegisterBytes) of
// entity e in place: read-only shared memory, valid until the tick ends
// (copy it, bytes.Clone, to keep it). It returns false if e is not alive in
// the frame or has no such value; a component the view may not read
// (Readable) or a fixed-size one also fails the tick (ErrNotRead).
func GetBytes(v *View, e world.Entity, id world.ComponentID) ([]byte, bool) {
	if !v.readable(world.MaskOf(id)) || !v.typeFits(fsync.CheckBytes(v.f, id)) {
		return nil, false
	}
	return fsync.GetBytes(v.f, e, id)
}

// GetString is GetBytes as a string without a copy: valid until the tick
// ends (strings.Clone it to keep it; a string component's values are valid
// UTF-8, a bytes component's may be anything).
func GetString(v *View, e world.Entity, id world.ComponentID) (string, bool) {
	if !v.readable(world.MaskOf(id)) || !v.typeFits(fsync.CheckBytes(v.f, id)) {
		return "", false
	}
	return fsync.GetString(v.f, e, id)
}

// BytesColumn returns variable-size component id of the query's current
// chunk: col.Bytes(i) and col.String(i) are row i's value in place (only
// rows that match hold one). A component the view may not read, or a
// fixed-size one, gives the zero column and fails the tick (ErrNotRead).
func BytesColumn(v *View, q *fsync.FrameQuery, id world.ComponentID) fsync.BytesColumn {
	if !v.readable(world.MaskOf(id)) || !v.typeFits(fsync.CheckBytes(v.f, id)) {
		return fsync.BytesColumn{}
	}
	return fsync.ColumnBytes(v.f, q.Chunk(), id)
}

// SetBytes queues setting variable-size component id of e to a copy of b
// (adding it if absent). The engine validates it at playback: a value
// longer than the component's max length is rejected as too_large, a string
// component's value that is not UTF-8 as bad_utf8, one that does not fit in
// its chunk's arena as arena_full; rejections are counted by reason in the
// module's statistics (View.Stats).
func (c *Commands) SetBytes(e world.Entity, id world.ComponentID, b []byte) {
	if p := c.reserve(world.CmdSet, world.CmdCompHdr+len(b)); p != nil {
		world.EncodeComp(p, e, id)
		copy(p[world.CmdCompHdr:], b)
	}
}

// SetString is SetBytes of a string's bytes.
func (c *Commands) SetString(e world.Entity, id world.ComponentID, s string) {
	if p := c.reserve(world.CmdSet, world.CmdCompHdr+len(s)); p != nil {
		world.EncodeComp(p, e, id)
		copy(p[world.CmdCompHdr:], s)
	}
}
