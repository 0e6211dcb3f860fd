package inspect

import (
	"encoding/hex"

	"github.com/fdp-engine/fdp/layout"
)

// singletonsReport lists the singleton table with each singleton's value in
// the latest frame, copied under the seqlock rule (latest word, seq, copy,
// seq, latest word: a slot rewritten meanwhile is read again, a few times,
// else the values are left out). The singleton area is in the slot's head,
// which always holds memory.
func singletonsReport(w *layout.World, lr LatestReport) []SingletonReport {
	out := make([]SingletonReport, len(w.Singletons))
	for i, s := range w.Singletons {
		out[i] = SingletonReport{ID: i, Name: s.Name, Size: s.Size, Align: s.Align, Fingerprint: hex64(s.Fingerprint),
			ValueOffset: w.SingletonOff[i], EngineOwned: s.EngineOwned()}
	}
	if !lr.Published || lr.Slot >= w.Slots || len(out) == 0 {
		return out
	}
	b := w.B
	so := w.SlotOff(lr.Slot)
	for try := 0; try < 4; try++ {
		l1 := ld64(b, layout.OffWLatest)
		q := ld64(b, so+layout.SlotSeq)
		if q&1 != 0 || l1 != layout.PackLatest(lr.Frame, lr.Slot) {
			continue
		}
		vals := make([]SingletonReport, len(out))
		copy(vals, out)
		for i := range vals {
			vals[i].Version = ld64(b, w.SingletonVersionOff(lr.Slot, i))
			if vals[i].Version != 0 {
				o, e := w.SingletonRange(lr.Slot, i)
				vals[i].Value = hex.EncodeToString(b[o:e])
			}
		}
		if ld64(b, so+layout.SlotSeq) == q && ld64(b, layout.OffWLatest) == l1 {
			return vals
		}
	}
	return out
}
