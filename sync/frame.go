package sync

// A pinned frame read in place: its header, records and columns, the mask
// it holds (a filtered snapshot holds only some components), and queries.

import (
	"fmt"
	"runtime"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// Frame is a pinned frame slot read in place.
type Frame struct {
	r      *Reader
	slot   int
	seq    uint64
	info   layout.SlotInfo
	pinned bool
	lease  bool // an engine lease (OpenLeased), not a pin
}

// Number returns the frame number of the pinned slot.
func (f *Frame) Number() uint64 { return f.info.Frame }

// Slot returns the slot index.
func (f *Frame) Slot() int { return f.slot }

// Info returns the slot header as read at pin time.
func (f *Frame) Info() layout.SlotInfo { return f.info }

// Chunks returns the number of chunks in use.
func (f *Frame) Chunks() int { return int(f.info.Chunks) }

// Mask returns the frame's mask: the components its slot holds (SlotMask).
// The latest frame holds every component; a filtered snapshot only those it
// was synced with. Its entity records name no other component (a record's
// mask is its entity's mask & Mask), and the frame refuses to read any
// other: Column returns nil, Get false, and a query of a mask that Mask
// does not cover matches nothing. Columns outside it hold bytes of older
// frames or of other entities, never data of this frame.
func (f *Frame) Mask() world.Mask { return world.Mask(f.info.Mask) }

// Covers reports whether the frame holds every component of mask.
func (f *Frame) Covers(mask world.Mask) bool { return mask.AndNot(f.info.Mask).Empty() }

// Schema returns the mask of every component of the segment's schema.
func (f *Frame) Schema() world.Mask { return layout.SchemaMask(len(f.r.lw.Components)) }

// ComponentName returns the name of component id in the segment's component
// table ("" if id is not a component of the segment). A Reader built with a
// registry checked that the names are the registry's.
func (f *Frame) ComponentName(id world.ComponentID) string {
	if int(id) >= len(f.r.lw.Components) {
		return ""
	}
	return f.r.lw.Components[id].Name
}

// holds reports whether component id is in the frame's mask.
func (f *Frame) holds(id world.ComponentID) bool {
	return world.Mask(f.info.Mask).Has(id)
}

// Valid reports whether the slot is still the one pinned (its seq has not
// changed). Data read before a true Valid() is consistent.
//
// A writer that claims a slot makes its seq odd (q+1) before it checks the
// pins, and restores q when it finds one; a pinned reader can therefore see
// q+1 for the few nanoseconds of such an aborted claim. Valid waits that out:
// q+1 that turns back into q is valid, q+1 that becomes anything else (or
// lasts) means the slot really was rewritten.
func (f *Frame) Valid() bool {
	if !f.pinned {
		return false
	}
	b, off := f.r.world.Data, f.r.lw.SlotOff(f.slot)+layout.SlotSeq
	// ORDER(valid): seq-cst load after the reads of the frame; pairs with
	// the writer's claim and publish stores.
	seq := layout.Load64(b, off)
	for i := 0; seq == f.seq+1 && i < maxClaimSpin; i++ {
		if i > 64 {
			runtime.Gosched()
		}
		seq = layout.Load64(b, off)
	}
	return seq == f.seq
}

// maxClaimSpin bounds how long Valid waits for a transient claim to resolve
// (an aborted claim takes one scan of the reader table).
const maxClaimSpin = 100_000

// Release unpins the frame. It returns ErrTorn if the slot was rewritten
// while pinned: everything read from it must then be discarded.
func (f *Frame) Release() error {
	if !f.pinned {
		return ErrNotPinned
	}
	valid := f.Valid()
	f.pinned = false
	if f.lease {
		// A lease is the engine's: it ends when the engine sees the tick
		// done. Nothing to write.
		f.lease = false
	} else {
		// ORDER(unpin): seq-cst store after every read of the frame.
		layout.Store64(f.r.pb, f.r.pinOff, 0)
	}
	if !valid {
		return ErrTorn
	}
	return nil
}

// recordWords returns the entity records of chunk c in place, as words
// (1+W per record: word 0 the generation and flags, then W mask words).
func (f *Frame) recordWords(c int) []uint64 {
	if c < 0 || c >= int(f.info.Chunks) {
		return nil
	}
	o, e := f.r.lw.EntityRange(f.slot, c)
	return viewRecords(f.r.world.Data[o:e])
}

// recordAlive is layout.FlagAlive in word 0 of a record (the flags are its
// high 32 bits).
const recordAlive = uint64(layout.FlagAlive) << 32

// matchWords is recordWords followed by the layout.MaxMaskWords-1 words
// after the last record, for FrameQuery.Match, which reads 4 mask words
// after any record's word 0 when W > 1 (those at and above W against zero
// mask words). They are inside the chunk block: a world of W > 1 has more
// than 64 components, so column 0 (at least 16 bytes: K >= 16) follows the
// records, and a record of W = 2 or 3 needs 16 or 8 bytes more.
func (f *Frame) matchWords(c int) []uint64 {
	if c < 0 || c >= int(f.info.Chunks) {
		return nil
	}
	o, e := f.r.lw.EntityRange(f.slot, c)
	if f.r.lw.MaskWords > 1 {
		e = min(e+8*(layout.MaxMaskWords-1), len(f.r.world.Data))
	}
	return viewRecords(f.r.world.Data[o:e])
}

// Record returns the decoded entity record of row i of chunk c (the zero
// record if c or i is out of range).
func (f *Frame) Record(c, i int) layout.EntityRecord {
	recs := f.recordWords(c)
	st := 1 + f.r.lw.MaskWords
	if recs == nil || i < 0 || (i+1)*st > len(recs) {
		return layout.EntityRecord{}
	}
	return decodeRecord(recs[i*st : (i+1)*st])
}

// Records returns a decoded copy of the entity records of chunk c (nil if c
// is out of range). It allocates: queries and Get read the records in place.
func (f *Frame) Records(c int) []layout.EntityRecord {
	if c < 0 || c >= int(f.info.Chunks) {
		return nil
	}
	out := make([]layout.EntityRecord, f.r.lw.ChunkCapacity)
	for i := range out {
		out[i] = f.Record(c, i)
	}
	return out
}

// decodeRecord decodes a record's words (world/records.go's packing).
func decodeRecord(r []uint64) layout.EntityRecord {
	rec := layout.EntityRecord{Gen: uint32(r[0]), Flags: uint32(r[0] >> 32)}
	copy(rec.Mask[:], r[1:])
	return rec
}

// ChunkVersion returns the change version of component id in chunk c.
func (f *Frame) ChunkVersion(c int, id world.ComponentID) uint64 {
	if c < 0 || c >= int(f.info.Chunks) || int(id) >= len(f.r.lw.Components) {
		return 0
	}
	return layout.Load64(f.r.world.Data, f.r.lw.ChunkVersionOff(f.slot, c, int(id)))
}

// CheckType returns an error unless T has the size of component id.
func CheckType[T any](f *Frame, id world.ComponentID) error {
	return checkType[T](f.r.lw, id)
}

func checkType[T any](lw *layout.World, id world.ComponentID) error {
	if int(id) >= len(lw.Components) {
		return fmt.Errorf("%w: component id %d (segment has %d)", world.ErrUnknownComponent, id, len(lw.Components))
	}
	if c := lw.Components[id]; c.VarSize() {
		return fmt.Errorf("%w: component %q is variable-size: its values are read with ColumnBytes, GetBytes, GetString", ErrTypeMismatch, c.Name)
	} else if uintptr(c.Size) != sizeOf[T]() {
		return fmt.Errorf("%w: component %q is %d bytes, Go type is %d", ErrTypeMismatch, c.Name, c.Size, sizeOf[T]())
	}
	return nil
}

// Column returns component id's column of chunk c as a []T read in place
// from the read-only mapping (length = chunk capacity). It returns nil if T
// does not match the component's size, c is out of range, or id is not in
// the frame's mask (Frame.Mask: the slot did not sync that column). Only
// rows whose record is alive and has the component bit hold meaningful data.
func Column[T any](f *Frame, c int, id world.ComponentID) []T {
	if c < 0 || c >= int(f.info.Chunks) || !f.holds(id) || checkType[T](f.r.lw, id) != nil {
		return nil
	}
	o, e := f.r.lw.ColumnRange(f.slot, c, int(id))
	return viewColumn[T](f.r.world.Data[o:e])
}

func (f *Frame) record(e world.Entity) (layout.EntityRecord, bool) {
	idx := int(e.Index())
	capc := f.r.lw.ChunkCapacity
	if e == 0 || idx >= int(f.info.Entities) {
		return layout.EntityRecord{}, false
	}
	rec := f.Record(idx/capc, idx%capc)
	return rec, rec.Flags&layout.FlagAlive != 0 && rec.Gen == e.Gen()
}

// IsAlive reports whether e is alive (and of the same generation) in the frame.
func (f *Frame) IsAlive(e world.Entity) bool {
	_, ok := f.record(e)
	return ok
}

// Get copies component id of entity e out of the frame. It returns false if
// e is not alive in the frame, has no such component, or id is not in the
// frame's mask (Frame.Mask).
func Get[T any](f *Frame, e world.Entity, id world.ComponentID) (T, bool) {
	var zero T
	rec, ok := f.record(e)
	// The record's mask is already filtered with the slot mask; the slot
	// mask is checked too, so that a record is never the only guard.
	if !ok || !f.holds(id) || !world.Mask(rec.Mask).Has(id) {
		return zero, false
	}
	capc := f.r.lw.ChunkCapacity
	col := Column[T](f, int(e.Index())/capc, id)
	if col == nil {
		return zero, false
	}
	return col[int(e.Index())%capc], true
}

// EntityAt builds the entity handle of a record.
func EntityAt(index int, rec layout.EntityRecord) world.Entity {
	return world.Entity(uint64(rec.Gen)<<32 | uint64(uint32(index)))
}
