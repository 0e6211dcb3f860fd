package audit

import (
	"slices"
	"unicode/utf8"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// checkArenas checks the variable-size components of the slot mask in chunk
// c of the private copy v (slot 0 of v): every alive record that names one
// has a handle inside the chunk's arena, at most the component's max length
// long, at an offset that is a multiple of 8; the values of the chunk do
// not overlap; a string component's values are valid UTF-8
// (layout/varsize.go).
func checkArenas(v *layout.World, c int, slotMask world.Mask, rep *Report) {
	b := v.B
	eo, _ := v.EntityRange(0, c)
	for k, cd := range v.Components {
		if !cd.VarSize() || !slotMask.Has(world.ComponentID(k)) {
			continue
		}
		ho, _ := v.ColumnRange(0, c, k)
		ao, ae := v.ArenaRange(0, c, k)
		type span struct{ lo, hi, row int }
		var spans []span
		for r := 0; r < v.ChunkCapacity; r++ {
			rec := layout.DecodeRecord(b[eo+r*v.RecordSize:], v.MaskWords)
			if rec.Flags&layout.FlagAlive == 0 || !world.Mask(rec.Mask).Has(world.ComponentID(k)) {
				continue
			}
			h := layout.DecodeHandle(b[ho+r*layout.BytesHandleSize:])
			// Invariant: a value lies inside its chunk's arena, within the
			// component's max length, 8-aligned.
			if !h.Valid(ae-ao, cd.MaxLen) || h.Off%layout.ArenaAlign != 0 {
				rep.add(KindBytesHandle, c, r, k, "handle {off %d, len %d} in an arena of %d bytes, max length %d", h.Off, h.Len, ae-ao, cd.MaxLen)
				continue
			}
			val := b[ao+int(h.Off) : ao+int(h.Off+h.Len)]
			// Invariant: a string component's values are valid UTF-8.
			if cd.IsString() && !utf8.Valid(val) {
				rep.add(KindBytesUTF8, c, r, k, "value of %d bytes is not UTF-8", h.Len)
			}
			if h.Len > 0 {
				spans = append(spans, span{int(h.Off), int(h.Off + h.Len), r})
			}
		}
		// Invariant: the values of a chunk do not overlap.
		slices.SortFunc(spans, func(a, b span) int { return a.lo - b.lo })
		for i := 1; i < len(spans); i++ {
			if spans[i].lo < spans[i-1].hi {
				rep.add(KindBytesOverlap, c, spans[i].row, k, "value [%d,%d) overlaps row %d's [%d,%d)",
					spans[i].lo, spans[i].hi, spans[i-1].row, spans[i-1].lo, spans[i-1].hi)
			}
		}
	}
}
