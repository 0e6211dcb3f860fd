package audit_test

import (
	"encoding/binary"
	"testing"

	"github.com/fdp-engine/fdp/audit"
	"github.com/fdp-engine/fdp/layout"
)

// FuzzAudit: whatever the bytes of a world segment become after it was
// decoded (the engine keeps writing; a file may be corrupt), the audit
// functions never panic. The input is a patch of a published segment:
// 5-byte records {u32 offset (modulo the segment size), u8 xor}.
func FuzzAudit(f *testing.F) {
	fx := newFx(f, f.TempDir())
	base, lw := fx.copySeg(f)
	slot0 := lw.SlotOff(0)
	add := func(off int, x byte) []byte {
		var p [5]byte
		binary.LittleEndian.PutUint32(p[:], uint32(off))
		p[4] = x
		return p[:]
	}
	f.Add([]byte{})
	f.Add(add(layout.OffWLatest, 0x05))
	f.Add(add(slot0+layout.SlotChunks, 0x10))
	f.Add(add(lw.ChunkOff(0, 1)+layout.ChunkAlive, 0x01))
	f.Add(append(add(slot0+layout.SlotEntities, 0x40), add(slot0+layout.SlotSeq, 0x01)...))
	f.Fuzz(func(t *testing.T, patch []byte) {
		b := append([]byte(nil), base...)
		for len(patch) >= 5 {
			off := int(binary.LittleEndian.Uint32(patch) % uint32(len(b)))
			b[off] ^= patch[4]
			patch = patch[5:]
		}
		_, _ = audit.Latest(b, lw)
		for s := -1; s <= lw.Slots; s++ {
			rep, err := audit.Slot(b, lw, s)
			if err == nil && len(rep.Problems) > audit.MaxProblems {
				t.Fatalf("slot %d: %d problems kept, max %d", s, len(rep.Problems), audit.MaxProblems)
			}
			_, _ = audit.Compare(b, lw, s, fx.w, 0)
		}
		// A segment that still decodes is audited with its own geometry.
		if lw2, err := layout.DecodeWorld(b); err == nil {
			_, _ = audit.Latest(b, lw2)
		}
	})
}
