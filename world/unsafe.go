package world

import "unsafe"

// castSlice reinterprets the memory of s as a slice of To. It is the only
// unsafe code of the package. Invariants, upheld by every caller:
//   - From and To are pointer-free types: component types are checked at
//     registration (checkKind) and at every typed access (typeOK); the other
//     instantiations are uint64 -> byte. The garbage collector therefore never
//     needs to find pointers in the memory under either view.
//   - the memory of s is aligned for To: columns are allocated as []uint64
//     (8-byte aligned, the largest alignment of any accepted type), rows start
//     at multiples of the component size, which is a multiple of its alignment;
//   - len(s)*sizeof(From) is a multiple of sizeof(To) (a column holds exactly
//     ChunkCapacity*Size bytes, a row exactly Size bytes), and sizeof(To) > 0
//     (zero-size components are rejected at registration);
//   - the result shares s's backing array and keeps it alive.
func castSlice[From, To any](s []From) []To {
	if len(s) == 0 {
		return nil
	}
	var f From
	var t To
	n := uintptr(len(s)) * unsafe.Sizeof(f) / unsafe.Sizeof(t)
	return unsafe.Slice((*To)(unsafe.Pointer(unsafe.SliceData(s))), n)
}

// sizeOf returns the size of T without allocating.
func sizeOf[T any]() uintptr {
	var t T
	return unsafe.Sizeof(t)
}
