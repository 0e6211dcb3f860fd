package inspect

import (
	"encoding/hex"

	"github.com/fdp-engine/fdp/layout"
)

// singletonTable lists the singleton table (values: latestValues).
func singletonTable(w *layout.World) []SingletonReport {
	out := make([]SingletonReport, len(w.Singletons))
	for i, s := range w.Singletons {
		out[i] = SingletonReport{ID: i, Name: s.Name, Size: s.Size, Align: s.Align, Fingerprint: hex64(s.Fingerprint),
			ValueOffset: w.SingletonOff[i], EngineOwned: s.EngineOwned(), Fields: fieldReports(s.Fields)}
	}
	return out
}

// latestValues reads, from the latest frame, every singleton's version and
// value and every variable-size component's arena use (arenaUse), under
// the seqlock rule: the latest word, the slot's seq, the reads, the seq and
// the latest word again; a frame replaced meanwhile is read again, the new
// latest one (a few tries: a live engine publishes every frame period). It
// returns the frame read, false if none could be (nothing published, or
// every try raced the engine: the values are then left out). The singleton
// area is in the slot's head, which always holds memory; arenaUse reads
// only within the backing (layout/backing.go, B2).
func latestValues(w *layout.World, singles []SingletonReport, comps []ComponentReport) (LatestReport, bool) {
	b := w.B
	for try := 0; try < 8; try++ {
		l1 := ld64(b, layout.OffWLatest)
		frame, s, ok := layout.UnpackLatest(l1)
		if !ok || s >= w.Slots {
			return LatestReport{}, false
		}
		so := w.SlotOff(s)
		q := ld64(b, so+layout.SlotSeq)
		if q&1 != 0 {
			continue
		}
		vals := make([]SingletonReport, len(singles))
		copy(vals, singles)
		for i := range vals {
			vals[i].Version, vals[i].Value = ld64(b, w.SingletonVersionOff(s, i)), ""
			if vals[i].Version != 0 {
				o, e := w.SingletonRange(s, i)
				vals[i].Value = hex.EncodeToString(b[o:e])
			}
		}
		arenas := arenaUse(w, s)
		if ld64(b, so+layout.SlotSeq) == q && ld64(b, layout.OffWLatest) == l1 {
			copy(singles, vals)
			for k := range comps {
				comps[k].Arena = arenas[k]
			}
			return LatestReport{Published: true, Frame: frame, Slot: s}, true
		}
	}
	return LatestReport{}, false
}

// fieldReports lists an owner's field table entries.
func fieldReports(fields []layout.FieldDesc) []FieldReport {
	out := make([]FieldReport, len(fields))
	for i, f := range fields {
		out[i] = FieldReport{Name: f.Name, Type: f.Type.String(), Offset: f.Offset, Count: f.Count}
	}
	return out
}
