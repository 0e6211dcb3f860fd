package inspect

import (
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// componentKind names a component's kind as world.ComponentKind does.
func componentKind(c layout.ComponentDesc) string {
	switch {
	case c.IsString():
		return world.KindString.String()
	case c.VarSize():
		return world.KindBytes.String()
	}
	return world.KindFixed.String()
}

// arenaUse returns, for slot s, the arena use of every variable-size
// component its mask holds (nil for the others): the alive records that
// name it, the bytes of their values (handles inside the arena only) and
// the arenas' capacity. It reads only where a reader may (the records of
// the chunks in use, the columns of the slot mask: layout/backing.go, B2);
// the caller brackets it with the seqlock.
func arenaUse(w *layout.World, s int) []*ArenaReport {
	b := w.B
	out := make([]*ArenaReport, len(w.Components))
	si := w.ReadSlotInfo(s)
	if w.ValidateSlotInfo(si) != nil {
		return out
	}
	for k, c := range w.Components {
		if !c.VarSize() || !world.Mask(si.Mask).Has(world.ComponentID(k)) {
			continue
		}
		ar := &ArenaReport{Capacity: int(si.Chunks) * w.ArenaSize(k)}
		for ch := 0; ch < int(si.Chunks); ch++ {
			eo, _ := w.EntityRange(s, ch)
			ho, _ := w.ColumnRange(s, ch, k)
			for r := 0; r < w.ChunkCapacity; r++ {
				rec := layout.DecodeRecord(b[eo+r*w.RecordSize:], w.MaskWords)
				if rec.Flags&layout.FlagAlive == 0 || !world.Mask(rec.Mask).Has(world.ComponentID(k)) {
					continue
				}
				if h := layout.DecodeHandle(b[ho+r*layout.BytesHandleSize:]); h.Valid(w.ArenaSize(k), c.MaxLen) {
					ar.Values++
					ar.Bytes += int(h.Len)
				}
			}
		}
		out[k] = ar
	}
	return out
}
