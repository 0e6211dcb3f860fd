// Package testutil holds test helpers shared by several packages' tests. It
// is imported by _test files only.
package testutil

import (
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
)

// CorruptLatestPayload makes the latest frame of world segment name (in
// shm.Dir) unrecoverable while its latest word stays readable: the first
// entity record of the latest slot gets an unknown flag bit.
func CorruptLatestPayload(t testing.TB, name string) {
	t.Helper()
	seg, err := shm.Open(name, true)
	if err != nil {
		t.Fatalf("corrupt %s: %v", name, err)
	}
	defer seg.Close()
	lw, err := layout.DecodeWorld(seg.Data)
	if err != nil {
		t.Fatalf("corrupt %s: %v", name, err)
	}
	_, slot, ok := layout.UnpackLatest(layout.Load64(seg.Data, layout.OffWLatest))
	if !ok {
		t.Fatalf("corrupt %s: nothing published", name)
	}
	eo, _ := lw.EntityRange(slot, 0)
	seg.Data[eo+4] |= 0x80 // flags word of the record: bit 7 is not a known flag
}
