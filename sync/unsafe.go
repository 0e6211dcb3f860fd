package sync

import (
	"encoding/binary"
	"unsafe"
)

func putU32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
func putU64(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }

// recordBytes views entity records in their wire form (world.ChunkRecordWords:
// 1+W words per record) as bytes for copying into a slot.
//
// Invariants: the words are the records' byte layout of docs/LAYOUT.md on a
// little-endian platform (world/records.go packs u32 generation and u32
// flags into word 0, then the W mask words); the returned slice aliases
// recs and is only read (copied from) while recs is alive.
func recordBytes(recs []uint64) []byte {
	if len(recs) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&recs[0])), len(recs)*8)
}

// viewRecords views the entity records of a mapped slot as words (1+W per
// record: word 0 the generation and flags, then the mask words).
//
// Invariants: b lies inside a mapped world segment, starts 64-byte aligned
// (chunk blocks and the entity area are 64-byte aligned from a page-aligned
// mapping), its length is a multiple of the record size (8 + 8W), and the
// mapping outlives every use of the result (a Reader unmaps only at Close).
// The records may be read-only memory: callers never write through them.
func viewRecords(b []byte) []uint64 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), len(b)/8)
}

// slotRecords views the entity records of a slot the publisher has claimed
// as words it may write.
//
// Invariants: as viewRecords, and besides: b lies in the engine's read-write
// mapping of its own world segment, inside a slot whose seq the publisher
// made odd (claimed), so no reader takes what is written before the even
// seq is stored; the result is used only during that fill.
func slotRecords(b []byte) []uint64 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), len(b)/8)
}

// viewColumn views a mapped column as a []T.
//
// Invariants: the caller checked that unsafe.Sizeof(T) equals the size the
// segment's component table gives for the column (so len(b) is a multiple of
// it), T is pointer-free (its schema fingerprint matched a registry that only
// accepts pointer-free types, so the GC never scans shared memory for
// pointers), b starts 64-byte aligned (>= any Go alignment), and the mapping
// outlives every use. The result aliases read-only memory: a write through it
// faults, which the module SDK turns into a module error.
func viewColumn[T any](b []byte) []T {
	var zero T
	sz := int(unsafe.Sizeof(zero))
	if len(b) == 0 || sz == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), len(b)/sz)
}

func sizeOf[T any]() uintptr {
	var zero T
	return unsafe.Sizeof(zero)
}

// viewString views a value of a variable-size component in a mapped slot as
// a string, without copying.
//
// Invariants: b lies inside the reader's mapping of a world segment, within
// a slot the reader holds (pinned or leased) and within the arena the
// handle's check bounded (Frame's BytesColumn); the mapping is read-only, so
// nothing in this process writes the bytes; the engine rewrites them only
// after the slot is released (the pin and lease protocols), which is why
// the string, like every read of a frame, is valid only until the frame is
// released (the end of a module's tick) and must be copied (strings.Clone)
// to be kept. Go strings are assumed immutable: one kept past the frame may
// change under its holder.
func viewString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
