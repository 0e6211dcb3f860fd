package layout

import "fmt"

// Single-producer single-consumer record ring (module -> engine commands).
//
// A ring region is a 640-byte ring header followed by the data area of
// Capacity bytes (a power of two). Each header field group lives on its own
// 128-byte line so that the producer and the consumer never write the same
// cache line (nor an adjacent-line-prefetch pair):
//
//	line 0 [0,128)    capacity u64, magic u32, flags u32 (static after init)
//	line 1 [128,256)  tail u64: committed write index, written only by the producer
//	line 2 [256,384)  head u64: read index, written only by the consumer
//	line 3 [384,512)  producer counters (statistics, published by the
//	                  producer at least every 64 commits and on a full ring)
//	line 4 [512,640)  consumer counters (records: at least every 64 polls;
//	                  bad and resets: immediately)
//	[640, 640+cap)    data area
//
// Head and tail are free-running byte counters (never wrapped); the position
// in the data area is index & (capacity-1). Both are always multiples of 8 and
// 0 <= tail-head <= capacity. The producer publishes a batch with ONE atomic
// store of the tail (release); the consumer releases space with one atomic
// store of the head.
//
// Records are 8-byte aligned and never wrap around the end of the data area:
//
//	+0 u32 length  total record length including this 8-byte header;
//	               multiple of 8, >= 8
//	+4 u16 type    0 = PAD (filler up to the end of the data area), else user type
//	+6 u16 flags   bits 0..2: number of alignment bytes at the end of the
//	               payload (payload length = length-8-(flags&7)); other bits
//	               reserved, must be zero
//	+8 payload
//
// A non-PAD record is at most Capacity/2 bytes long, which guarantees that
// any record fits into an empty ring whatever the current position is.

// Ring header offsets (from the start of the ring region).
const (
	RingOffCapacity = 0   // u64 data area size in bytes, power of two
	RingOffMagic    = 8   // u32 RingMagic
	RingOffFlags    = 12  // u32 reserved, zero
	RingOffTail     = 128 // u64 committed write index (producer)
	RingOffHead     = 256 // u64 read index (consumer)

	RingOffProdRecords = 384 // u64 records committed, total (producer)
	RingOffProdBatches = 392 // u64 commits that published at least one record (producer)
	RingOffProdFull    = 400 // u64 reservations refused with ErrRingFull (producer)

	RingOffConsRecords = 512 // u64 records delivered to the consumer callback (consumer)
	RingOffConsBad     = 520 // u64 corrupt-ring detections (consumer)
	RingOffConsResets  = 528 // u64 resets (head moved to tail, data discarded) (consumer)

	// RingHeaderSize is the size of the ring header; the data area follows.
	RingHeaderSize = 640
	// RingMagic spells "RING" in little endian.
	RingMagic uint32 = 0x474e4952

	// MinRingCapacity and MaxRingCapacity bound the data area size.
	MinRingCapacity = 4096
	MaxRingCapacity = 1 << 30

	// RecordHeaderSize is the size of a record header.
	RecordHeaderSize = 8
	// RecordAlign is the alignment of every record (and of head and tail).
	RecordAlign = 8
	// RecordTypePad is the type of filler records.
	RecordTypePad uint16 = 0
	// RecordFlagPadMask selects the count of trailing alignment bytes.
	RecordFlagPadMask uint16 = 7
)

// ValidRingCapacity reports whether c is a valid data area size.
func ValidRingCapacity(c uint64) bool {
	return c >= MinRingCapacity && c <= MaxRingCapacity && c&(c-1) == 0
}

// RingRegionSize returns the size of a ring region (header + data area) with
// a data area of capacity bytes, or -1 if capacity is invalid.
func RingRegionSize(capacity int) int {
	if capacity < 0 || !ValidRingCapacity(uint64(capacity)) {
		return -1
	}
	return RingHeaderSize + capacity
}

// MaxRecordLen returns the largest total length of a non-PAD record in a
// ring with the given capacity.
func MaxRecordLen(capacity uint64) uint64 { return capacity / 2 }

// RecordLen returns the total (aligned) record length for a payload of n
// bytes and the number of trailing alignment bytes.
func RecordLen(n int) (length int, pad int) {
	length = align(RecordHeaderSize+n, RecordAlign)
	return length, length - RecordHeaderSize - n
}

// PackRecordHeader packs a record header into the 8-byte little-endian word
// stored at the start of the record.
func PackRecordHeader(length uint32, typ, flags uint16) uint64 {
	return uint64(length) | uint64(typ)<<32 | uint64(flags)<<48
}

// EncodeRing initialises a zeroed ring region: region must be exactly
// RingRegionSize(capacity) bytes.
func EncodeRing(region []byte, capacity int) error {
	n := RingRegionSize(capacity)
	if n < 0 {
		return fmt.Errorf("%w: ring capacity %d must be a power of two in [%d,%d]", ErrInvalidParam, capacity, MinRingCapacity, MaxRingCapacity)
	}
	if len(region) != n {
		return fmt.Errorf("%w: ring region of %d bytes, capacity %d needs %d", ErrInvalidParam, len(region), capacity, n)
	}
	put64(region, RingOffCapacity, uint64(capacity))
	put32(region, RingOffMagic, RingMagic)
	put32(region, RingOffFlags, 0)
	return nil
}

// DecodeRingHeader validates the static part of a ring header (magic, flags,
// capacity against len(region)) and returns the capacity. It does not check
// head and tail, which change concurrently; use CheckRingIndices on a pair of
// loaded values. It never panics.
func DecodeRingHeader(region []byte) (capacity uint64, err error) {
	if len(region) < RingHeaderSize {
		return 0, fmt.Errorf("%w: ring region of %d bytes, header needs %d", ErrTooSmall, len(region), RingHeaderSize)
	}
	if m := get32(region, RingOffMagic); m != RingMagic {
		return 0, corrupt("ring magic %#x, want %#x", m, RingMagic)
	}
	if f := get32(region, RingOffFlags); f != 0 {
		return 0, corrupt("ring flags %#x: unknown bits", f)
	}
	c := get64(region, RingOffCapacity)
	if !ValidRingCapacity(c) {
		return 0, corrupt("ring capacity %d is not a power of two in [%d,%d]", c, MinRingCapacity, MaxRingCapacity)
	}
	if uint64(len(region)-RingHeaderSize) != c {
		return 0, corrupt("ring capacity %d but region holds %d data bytes", c, len(region)-RingHeaderSize)
	}
	return c, nil
}

// CheckRingIndices validates a (head, tail) pair: both 8-byte aligned and
// 0 <= tail-head <= capacity.
func CheckRingIndices(head, tail, capacity uint64) error {
	if head%RecordAlign != 0 || tail%RecordAlign != 0 {
		return corrupt("ring indices head %d / tail %d not %d-byte aligned", head, tail, RecordAlign)
	}
	if tail-head > capacity { // also catches tail < head (wraps to a huge value)
		return corrupt("ring tail %d and head %d are %d bytes apart, capacity %d", tail, head, int64(tail-head), capacity)
	}
	return nil
}

// DecodeRecordHeader validates the record header at offset off of the data
// area data (of capacity bytes) and returns its fields. It checks that off is
// aligned and inside the data area, that the length is a multiple of 8,
// >= 8, does not run past the end of the data area, that a PAD record
// extends exactly to the end of the data area, that other records are at
// most MaxRecordLen(capacity) bytes, that reserved flag bits are zero and
// that the alignment byte count fits in the payload. It never panics.
func DecodeRecordHeader(data []byte, off int, capacity uint64) (length uint32, typ uint16, flags uint16, err error) {
	if capacity > uint64(len(data)) {
		return 0, 0, 0, corrupt("ring capacity %d exceeds data area of %d bytes", capacity, len(data))
	}
	if off < 0 || off%RecordAlign != 0 || uint64(off)+RecordHeaderSize > capacity {
		return 0, 0, 0, corrupt("record offset %d misaligned or outside data area of %d bytes", off, capacity)
	}
	w := get64(data, off)
	length, typ, flags = uint32(w), uint16(w>>32), uint16(w>>48)
	room := capacity - uint64(off)
	switch {
	case length < RecordHeaderSize || length%RecordAlign != 0:
		err = corrupt("record at %d: length %d not a multiple of %d >= %d", off, length, RecordAlign, RecordHeaderSize)
	case uint64(length) > room:
		err = corrupt("record at %d: length %d runs past the end of the data area (%d bytes left)", off, length, room)
	case typ == RecordTypePad && uint64(length) != room:
		err = corrupt("pad record at %d: length %d does not reach the end of the data area (%d bytes left)", off, length, room)
	case typ == RecordTypePad && flags != 0:
		err = corrupt("pad record at %d: flags %#x", off, flags)
	case typ != RecordTypePad && uint64(length) > MaxRecordLen(capacity):
		err = corrupt("record at %d: length %d exceeds the maximum %d", off, length, MaxRecordLen(capacity))
	case flags&^RecordFlagPadMask != 0:
		err = corrupt("record at %d: reserved flag bits %#x", off, flags&^RecordFlagPadMask)
	case uint32(flags&RecordFlagPadMask) > length-RecordHeaderSize:
		err = corrupt("record at %d: %d alignment bytes in a %d-byte payload", off, flags&RecordFlagPadMask, length-RecordHeaderSize)
	}
	if err != nil {
		return 0, 0, 0, err
	}
	return length, typ, flags, nil
}

// RecordPayloadLen returns the payload length of a validated record.
func RecordPayloadLen(length uint32, flags uint16) int {
	return int(length) - RecordHeaderSize - int(flags&RecordFlagPadMask)
}
