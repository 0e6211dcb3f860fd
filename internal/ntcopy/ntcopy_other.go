//go:build !amd64

package ntcopy

// haveNT: no streaming routine for this architecture; Copy is copy().
const haveNT = false

// copyNT32 is never called when haveNT is false.
func copyNT32(dst, src *byte, n uintptr) { panic("ntcopy: no non-temporal copy on this architecture") }
