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

// arenaReports fills the arena use of every variable-size component the
// latest frame holds: the alive records that name it, the bytes of their
// values (handles inside the arena only) and the arenas' capacity. The slot
// is read under the seqlock rule (latest word, seq, read, seq, latest word;
// a few tries), and only where a reader may read (the records of the chunks
// in use, the columns of the slot mask: layout/backing.go, B2).
func arenaReports(w *layout.World, lr LatestReport, comps []ComponentReport) {
	if !lr.Published || lr.Slot >= w.Slots {
		return
	}
	b, s := w.B, lr.Slot
	so := w.SlotOff(s)
	for try := 0; try < 4; try++ {
		l1 := ld64(b, layout.OffWLatest)
		q := ld64(b, so+layout.SlotSeq)
		if q&1 != 0 || l1 != layout.PackLatest(lr.Frame, lr.Slot) {
			continue
		}
		si := w.ReadSlotInfo(s)
		if w.ValidateSlotInfo(si) != nil {
			return
		}
		out := make([]*ArenaReport, len(comps))
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
		if ld64(b, so+layout.SlotSeq) == q && ld64(b, layout.OffWLatest) == l1 {
			for k := range comps {
				comps[k].Arena = out[k]
			}
			return
		}
	}
}
