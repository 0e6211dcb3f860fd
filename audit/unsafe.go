package audit

import (
	"encoding/binary"
	"unsafe"

	"github.com/fdp-engine/fdp/layout"
)

// load64 reads the 64-bit word at b[off:]: an atomic load when the word is
// naturally aligned (always so in a mapped segment, where the engine stores
// the seq and latest words atomically), a plain little-endian read otherwise
// (arbitrary byte slices from fuzzers or files).
//
// Invariants: the caller checked 0 <= off and off+8 <= len(b); the pointer is
// only used to test alignment, never dereferenced here (layout.Load64 does
// the load with its own checks).
func load64(b []byte, off int) uint64 {
	if uintptr(unsafe.Pointer(&b[off]))&7 == 0 {
		return layout.Load64(b, off)
	}
	return binary.LittleEndian.Uint64(b[off:])
}
