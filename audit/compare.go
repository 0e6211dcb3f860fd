package audit

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

var le = binary.LittleEndian

// Difference is one place where a slot differs from the world it was
// published from.
type Difference struct {
	Field     string `json:"field"`     // header, rows, alive, records, record_mask, column, value, singleton
	Chunk     int    `json:"chunk"`     // -1: the slot header
	Row       int    `json:"row"`       // first differing row, -1: not about one row
	Component int    `json:"component"` // -1: not about one component
	Detail    string `json:"detail"`
}

func (d Difference) String() string {
	s := d.Field
	if d.Chunk >= 0 {
		s += fmt.Sprintf(" chunk %d", d.Chunk)
	}
	if d.Row >= 0 {
		s += fmt.Sprintf(" row %d", d.Row)
	}
	if d.Component >= 0 {
		s += fmt.Sprintf(" component %d", d.Component)
	}
	return s + ": " + d.Detail
}

// Compare compares slot s of the world segment b (decoded as lw) with w, the
// world it was just published from (nothing changed in w since): the
// header's chunks, entities and alive count, and for every chunk its rows,
// alive count, all its entity records (each equal to the world's with its
// mask & the slot mask: a filtered snapshot's records name only the
// components it holds), and every column of the slot's mask byte for byte
// where w's chunk has that column. It returns at most limit
// differences (all when limit <= 0), ErrRetry if the slot is being written or
// changed during the comparison, ErrEmpty if it was never published. It is
// meant for tests, where the publisher and the comparison do not run
// concurrently.
func Compare(b []byte, lw *layout.World, s int, w *world.World, limit int) ([]Difference, error) {
	if err := checkArgs(b, lw); err != nil {
		return nil, err
	}
	if w == nil || s < 0 || s >= lw.Slots {
		return nil, fmt.Errorf("%w: slot %d of %d, world %v", ErrArgs, s, lw.Slots, w != nil)
	}
	if w.ChunkCapacity() != lw.ChunkCapacity || w.Registry().Len() != len(lw.Components) {
		return nil, fmt.Errorf("%w: world of %d components in chunks of %d, segment of %d in chunks of %d",
			ErrArgs, w.Registry().Len(), w.ChunkCapacity(), len(lw.Components), lw.ChunkCapacity)
	}
	off := lw.SlotOff(s)
	q, err := slotSeq(b, off)
	if err != nil {
		return nil, err
	}
	var out []Difference
	full := func() bool { return limit > 0 && len(out) >= limit }
	add := func(field string, c, row, k int, format string, a ...any) {
		if !full() {
			out = append(out, Difference{Field: field, Chunk: c, Row: row, Component: k, Detail: fmt.Sprintf(format, a...)})
		}
	}
	info := lw.ReadSlotInfo(s)
	if int(info.Chunks) != w.NumChunks() || int(info.Entities) != w.HighWater() || int(info.Alive) != w.Count() {
		add("header", -1, -1, -1, "slot has %d chunks, %d entities, %d alive; the world %d, %d, %d",
			info.Chunks, info.Entities, info.Alive, w.NumChunks(), w.HighWater(), w.Count())
	}
	compareSingletons(b, lw, s, w, add)
	mask := world.Mask(info.Mask).And(schemaMask(lw.WorldGeometry))
	K := lw.ChunkCapacity
	for c := 0; c < min(w.NumChunks(), lw.MaxChunks) && !full(); c++ {
		co := lw.ChunkOff(s, c)
		if got, want := le.Uint32(b[co+layout.ChunkRows:]), uint32(w.ChunkRows(c)); got != want {
			add("rows", c, -1, -1, "slot %d, world %d", got, want)
		}
		if got, want := le.Uint32(b[co+layout.ChunkAlive:]), uint32(w.ChunkAlive(c)); got != want {
			add("alive", c, -1, -1, "slot %d, world %d", got, want)
		}
		var rm world.Mask
		for j := range rm {
			rm[j] = le.Uint64(b[co+layout.ChunkRecordMaskOff(j):])
		}
		if rm != mask {
			add("record_mask", c, -1, -1, "chunk record mask %v, slot mask %v", rm, mask)
		}
		eo, _ := lw.EntityRange(s, c)
		for r, wr := range w.ChunkRecords(c) {
			wr.Mask = world.Mask(wr.Mask).And(mask)
			got := layout.DecodeRecord(b[eo+r*lw.RecordSize:], lw.MaskWords)
			if got != wr {
				add("records", c, r, -1, "slot {gen %d flags %#x mask %v}, world {gen %d flags %#x mask %v} (entity index %d; the world's mask & the slot mask)",
					got.Gen, got.Flags, world.Mask(got.Mask), wr.Gen, wr.Flags, world.Mask(wr.Mask), c*K+r)
				break
			}
		}
		for k := range lw.Components {
			if !mask.Has(world.ComponentID(k)) {
				continue
			}
			col := w.ChunkColumn(c, world.ComponentID(k))
			if col == nil {
				continue // no entity of the chunk ever had it: unspecified bytes
			}
			o, e := lw.ColumnRange(s, c, k)
			if lw.Components[k].VarSize() {
				// The handles and the arena's used prefix, byte for byte,
				// and every value through its handle.
				e = o + len(col)
				compareValues(b, lw, s, c, k, w, add)
			}
			if got := b[o:e]; !bytes.Equal(got, col) {
				size := int(lw.Components[k].Size)
				i := 0
				for i < len(col) && got[i] == col[i] {
					i++
				}
				add("column", c, i/size, k, "component %q differs from byte %d of row %d (entity index %d)",
					lw.Components[k].Name, i%size, i/size, c*K+i/size)
			}
		}
	}
	if q2 := load64(b, off+layout.SlotSeq); q2 != q {
		return nil, ErrRetry
	}
	return out, nil
}

// compareSingletons compares the singletons of slot s with w's (Compare).
func compareSingletons(b []byte, lw *layout.World, s int, w *world.World, add func(field string, c, row, k int, format string, a ...any)) {
	if w.NumSingletons() != len(lw.Singletons) {
		add("singleton", -1, -1, -1, "segment has %d singletons, the world %d", len(lw.Singletons), w.NumSingletons())
		return
	}
	for i, sd := range lw.Singletons {
		id := world.SingletonID(i)
		got, want := load64(b, lw.SingletonVersionOff(s, i)), w.SingletonVersion(id)
		if got != want {
			add("singleton", -1, -1, i, "singleton %q at version %d, the world's at %d", sd.Name, got, want)
			continue
		}
		val, ok := w.SingletonRaw(id)
		if !ok {
			continue
		}
		if o, e := lw.SingletonRange(s, i); !bytes.Equal(b[o:e], val) {
			add("singleton", -1, -1, i, "singleton %q differs from the world's", sd.Name)
		}
	}
}

// compareValues compares, in chunk c of slot s, every alive entity's value
// of variable-size component k with w's (Compare).
func compareValues(b []byte, lw *layout.World, s, c, k int, w *world.World, add func(field string, c, row, k int, format string, a ...any)) {
	K := lw.ChunkCapacity
	ho, _ := lw.ColumnRange(s, c, k)
	ao, ae := lw.ArenaRange(s, c, k)
	for r := 0; r < K; r++ {
		rec := w.ChunkRecord(c, r)
		if rec.Flags&layout.FlagAlive == 0 {
			continue
		}
		e := world.MakeEntity(uint32(c*K+r), rec.Gen)
		want, ok := w.GetBytes(e, world.ComponentID(k))
		if !ok {
			continue
		}
		h := layout.DecodeHandle(b[ho+r*layout.BytesHandleSize:])
		if !h.Valid(ae-ao, lw.Components[k].MaxLen) {
			add("value", c, r, k, "handle {%d, %d} outside the arena of %d bytes (entity index %d)", h.Off, h.Len, ae-ao, c*K+r)
			continue
		}
		if got := b[ao+int(h.Off) : ao+int(h.Off+h.Len)]; !bytes.Equal(got, want) {
			add("value", c, r, k, "component %q: slot %q, world %q (entity index %d)", lw.Components[k].Name, got, want, c*K+r)
		}
	}
}
