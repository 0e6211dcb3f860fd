package ntcopy

import "unsafe"

func aligned(b []byte, a uintptr) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))%a == 0
}
