package world

import "testing"

// z1Check fails t unless Z1 (deadrows.go) holds in every variable-size
// column of w: the arena bytes that no live value's [Off, Off+Len) covers
// are zero (padding included). TestBytesModel calls it after every step.
func (w *World) z1Check(t *testing.T, tag string) {
	for c, ch := range w.chunks {
		for id := range w.comps {
			if w.comps[id].maxLen == 0 || ch.cols[id] == nil {
				continue
			}
			col := ch.cols[id]
			arena := col[w.capacity*8:]
			used := make([]bool, len(arena))
			for row := 0; row < w.capacity; row++ {
				r := w.rec(ch, row)
				if recAlive(r) && recHas(r, ComponentID(id)) {
					h := handleAt(col, row)
					for i := h.Off; i < h.Off+h.Len; i++ {
						used[i] = true
					}
				}
			}
			for i, u := range used {
				if !u && arena[i] != 0 {
					t.Fatalf("%s: chunk %d comp %d arena byte %d = %q (used %d peak %d)", tag, c, id, i, arena[i], ch.arenas[id].used, ch.arenas[id].peak)
				}
			}
		}
	}
}
