//go:build race

package ntcopy

import (
	"runtime"
	"unsafe"
)

// raceRange tells the race detector what copyNT32, which it cannot see
// (assembly is not instrumented), reads and writes. Ranges outside the Go
// heap and data (a mapped shared-memory segment) are ignored by the
// detector, as for any access.
func raceRange(dst, src unsafe.Pointer, n int) {
	runtime.RaceReadRange(src, n)
	runtime.RaceWriteRange(dst, n)
}
