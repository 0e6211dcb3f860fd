package world

import (
	"encoding/binary"
	"testing"

	"github.com/fdp-engine/fdp/layout"
)

// FuzzRestore feeds arbitrary record bytes to SetChunkData: invalid data
// must be rejected without changing the world, valid data must restore into
// a consistent world (counts, queries, creates work, nothing panics).
func FuzzRestore(f *testing.F) {
	rec := func(gen, flags uint32, mask uint64) []byte {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint32(b, gen)
		binary.LittleEndian.PutUint32(b[4:], flags)
		binary.LittleEndian.PutUint64(b[8:], mask)
		return b
	}
	f.Add(append(rec(1, 1, 1), rec(2, 0, 0)...), uint8(0))
	f.Add(append(rec(0, 0, 0), rec(5, 1, 7)...), uint8(1))
	f.Add(rec(3, 1, 1<<5), uint8(2))
	f.Add([]byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fx := newFixture(t, 16, 2)
		w := fx.w
		recs := make([]layout.EntityRecord, 16)
		for i := 0; i < 16 && (i+1)*16 <= len(data); i++ {
			b := data[i*16:]
			recs[i] = layout.EntityRecord{
				Gen:   binary.LittleEndian.Uint32(b),
				Flags: binary.LittleEndian.Uint32(b[4:]),
				Mask:  [4]uint64{binary.LittleEndian.Uint64(b[8:])},
			}
		}
		c := int(chunk % 3)
		err := w.SetChunkData(c, recs, 3)
		if err != nil {
			if w.ChunkRecords(c) != nil && c < 2 {
				t.Fatalf("rejected data allocated chunk %d", c)
			}
		}
		col := make([]byte, 16*12)
		if len(data) > 0 {
			col[0] = data[0]
		}
		_ = w.RestoreColumn(c, fx.pos, col, 2)
		w.RestoreFinish(1)
		alive := 0
		for ch := 0; ch < w.NumChunks(); ch++ {
			alive += w.ChunkAlive(ch)
		}
		if alive != w.Count() || countMatching(w, Mask{}) != w.Count() {
			t.Fatalf("count %d, chunks say %d, query says %d", w.Count(), alive, countMatching(w, Mask{}))
		}
		q := w.Query(MaskOf(fx.pos, fx.vel, fx.hp))
		for q.Next() {
			_ = Column[Position](&q, fx.pos)
			for i := 0; i < q.Rows(); i++ {
				if q.Match(i) {
					if _, ok := Get[Health](w, q.Entity(i), fx.hp); !ok {
						t.Fatalf("matched entity %v lacks Health", q.Entity(i))
					}
				}
			}
		}
		for {
			e, err := w.Create()
			if err != nil {
				break
			}
			if !w.IsAlive(e) || !w.Mask(e).Empty() {
				t.Fatalf("created %v: alive %v mask %v", e, w.IsAlive(e), w.Mask(e))
			}
		}
		if w.Count() != w.MaxEntities() {
			t.Fatalf("world full at %d of %d", w.Count(), w.MaxEntities())
		}
	})
}
