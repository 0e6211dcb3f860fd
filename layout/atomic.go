package layout

// Word access on shared memory.
//
// Every multi-byte field in an FDP segment is little-endian. Fields that are
// shared between processes while they change (seqlock words, the latest word,
// pins, lease masks, ring indices, doorbells) are accessed only through the
// atomic helpers below; everything else is accessed with encoding/binary.
//
// Invariants for the unsafe code in this file:
//   - b is a slice over memory that stays mapped for as long as the caller
//     uses the result (segments are unmapped only after every user is gone);
//   - off is bounds-checked against len(b) here, and must be naturally aligned
//     (8 for 64-bit words, 4 for 32-bit words); a misaligned offset panics
//     with a clear message because it is a programming error in layout code,
//     never a consequence of segment contents (decoders validate offsets first);
//   - no Go pointer is ever written into the memory: only integers.
//   - the platform is little-endian (amd64, arm64), so the atomic word and
//     the little-endian encoding agree; init checks this.

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

func init() {
	var x uint16 = 0x0102
	if *(*byte)(unsafe.Pointer(&x)) != 0x02 {
		panic("fdp/layout: big-endian platforms are not supported")
	}
}

// The bounds checks compare lengths instead of indexing b, so that the race
// detector does not see a plain read of a word other goroutines update
// atomically.
func word64(b []byte, off int) *uint64 {
	if off < 0 || off+8 > len(b) {
		panic("fdp/layout: shared word out of range")
	}
	p := unsafe.Pointer(&b[off])
	if uintptr(p)&7 != 0 {
		panic("fdp/layout: misaligned 64-bit shared word")
	}
	return (*uint64)(p)
}

func word32(b []byte, off int) *uint32 {
	if off < 0 || off+4 > len(b) {
		panic("fdp/layout: shared word out of range")
	}
	p := unsafe.Pointer(&b[off])
	if uintptr(p)&3 != 0 {
		panic("fdp/layout: misaligned 32-bit shared word")
	}
	return (*uint32)(p)
}

// Load64 atomically loads the little-endian uint64 at b[off:].
func Load64(b []byte, off int) uint64 { return atomic.LoadUint64(word64(b, off)) }

// Store64 atomically stores v at b[off:].
func Store64(b []byte, off int, v uint64) { atomic.StoreUint64(word64(b, off), v) }

// Add64 atomically adds d to the uint64 at b[off:] and returns the new value.
func Add64(b []byte, off int, d uint64) uint64 { return atomic.AddUint64(word64(b, off), d) }

// CAS64 is an atomic compare-and-swap on the uint64 at b[off:].
func CAS64(b []byte, off int, old, new uint64) bool {
	return atomic.CompareAndSwapUint64(word64(b, off), old, new)
}

// Load32 atomically loads the uint32 at b[off:].
func Load32(b []byte, off int) uint32 { return atomic.LoadUint32(word32(b, off)) }

// Store32 atomically stores v at b[off:].
func Store32(b []byte, off int, v uint32) { atomic.StoreUint32(word32(b, off), v) }

// Add32 atomically adds d to the uint32 at b[off:] and returns the new value.
func Add32(b []byte, off int, d uint32) uint32 { return atomic.AddUint32(word32(b, off), d) }

// CAS32 is an atomic compare-and-swap on the uint32 at b[off:].
func CAS32(b []byte, off int, old, new uint32) bool {
	return atomic.CompareAndSwapUint32(word32(b, off), old, new)
}

// Swap32 atomically stores v at b[off:] and returns the previous value.
func Swap32(b []byte, off int, v uint32) uint32 { return atomic.SwapUint32(word32(b, off), v) }

// Word32Ptr returns the address of the 32-bit word at b[off:] for futex calls.
// The pointer refers to shared (mmap'd) memory, never to the Go heap.
func Word32Ptr(b []byte, off int) *uint32 { return word32(b, off) }

var le = binary.LittleEndian

func get16(b []byte, off int) uint16    { return le.Uint16(b[off:]) }
func get32(b []byte, off int) uint32    { return le.Uint32(b[off:]) }
func get64(b []byte, off int) uint64    { return le.Uint64(b[off:]) }
func put16(b []byte, off int, v uint16) { le.PutUint16(b[off:], v) }
func put32(b []byte, off int, v uint32) { le.PutUint32(b[off:], v) }
func put64(b []byte, off int, v uint64) { le.PutUint64(b[off:], v) }
func align(n, a int) int                { return (n + a - 1) &^ (a - 1) }
func Align(n, a int) int                { return align(n, a) }

// loadMaybeUnaligned32 loads a 32-bit word atomically when it is aligned (as
// in every mapped segment) and with a plain read otherwise (as for arbitrary
// byte slices handed to the decoders by fuzzers or file readers).
func loadMaybeUnaligned32(b []byte, off int) uint32 {
	if uintptr(unsafe.Pointer(&b[off]))&3 == 0 {
		return Load32(b, off)
	}
	return get32(b, off)
}

// loadMaybeUnaligned64 is the 64-bit variant of loadMaybeUnaligned32.
func loadMaybeUnaligned64(b []byte, off int) uint64 {
	if uintptr(unsafe.Pointer(&b[off]))&7 == 0 {
		return Load64(b, off)
	}
	return get64(b, off)
}
