// Package ntcopy copies bytes with non-temporal (streaming) stores.
//
// A copy much larger than the last-level cache gains from stores that go
// around the cache: the destination lines are not read first (no
// read-for-ownership) and the copy does not evict what else is cached. A
// copy that the reader will read at once, or that fits in cache, loses: its
// destination ends up in memory, not in cache. The caller decides (the
// publisher does so by the bytes of its previous fill); this package only
// copies.
//
// Go's own copy() uses non-temporal stores on amd64 for a single copy of
// 1 MiB or more, never for the 16 KiB chunk columns a publish copies one by
// one: hence this routine.
package ntcopy

import "unsafe"

// Available reports whether Copy uses non-temporal stores (amd64 with AVX2);
// otherwise it is copy().
func Available() bool { return haveNT }

// Copy copies min(len(dst), len(src)) bytes from src to dst and returns that
// count, like copy(), with non-temporal stores where Available says so.
// Overlapping slices are copied with copy() (correct, not streamed).
//
// Every byte Copy wrote is visible to other processors before any store the
// caller makes after Copy returns: the streaming part ends with SFENCE (see
// copyNT32).
//
// Invariants of the unsafe use here: the addresses d and s are only
// compared (overlap) and aligned (head), never turned back into pointers;
// copyNT32 gets pointers into the slices, which keep them alive.
func Copy(dst, src []byte) int {
	n := min(len(dst), len(src))
	if !haveNT || n < 32 {
		return copy(dst, src)
	}
	d := uintptr(unsafe.Pointer(unsafe.SliceData(dst)))
	s := uintptr(unsafe.Pointer(unsafe.SliceData(src)))
	if d < s+uintptr(n) && s < d+uintptr(n) {
		return copy(dst[:n], src[:n]) // overlap: copy() handles it, the loop below would not
	}
	// Head: up to 31 bytes with ordinary stores, so that the streamed part
	// starts 32-byte aligned in dst (VMOVNTDQ requires it); tail: the bytes
	// after the last whole 32-byte block, likewise.
	head := int(-d & 31)
	body := (n - head) &^ 31
	copy(dst[:head], src[:head])
	if body > 0 {
		dp, sp := &dst[head], &src[head]
		raceRange(unsafe.Pointer(dp), unsafe.Pointer(sp), body)
		copyNT32(dp, sp, uintptr(body))
	}
	copy(dst[head+body:n], src[head+body:n])
	return n
}
