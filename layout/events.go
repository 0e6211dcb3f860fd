package layout

// Event log segment (kind KindEvents, file "fdp.<instance>.events").
//
// The engine appends variable-length event records to a circular record area
// and publishes them once per frame; modules map the segment read-only and
// follow it with their own cursors. Byte layout (offsets from the start of the
// segment; every field little-endian):
//
//	[0, 4096)        common header (header.go), one section SecEventLog
//	1024  u64        OffECapacity      record area size in bytes (multiple of PageSize)
//	1032  u32        OffERecHeader     record header size (EventRecordHeader = 24)
//	1036  u32        OffEMaxPayload    largest payload accepted (capacity/4)
//	1040  u64        OffEAreaOff       offset of the record area (= HeaderSize)
//	2048  u64        OffECommitGen     commit generation k: the single publication word, stored once per frame
//	2056  [2]pair    OffECommitPairs   pair[k&1] = {next seq, end position} of commit k (16 bytes each)
//	2176  u64        OffEOldestGen     oldest generation g, bumped (atomic add) before the writer overwrites
//	2184  [2]pair    OffEOldestPairs   pair[g&1] = {oldest available seq, its position}
//	2304  u64 x 6    stats             events, payload bytes, commits, rejected appends, last frame, last commit nanos
//	[4096, 4096+cap) record area
//
// Positions are logical byte offsets that only grow (never wrap); the
// physical offset in the area is position % capacity. A record is
//
//	0  u64 seq      global sequence number, from 1, contiguous; 0 marks padding
//	8  u64 frame    frame the event was emitted in
//	16 u16 type
//	18 u16 flags    reserved, 0
//	20 u32 length   payload length
//	24 payload, zero padded to a multiple of 8
//
// Records never wrap: when a record does not fit before the end of the area,
// the writer pads to the end (a padding record with seq 0 and length
// capacity-off-24 if at least 24 bytes remain, nothing otherwise: a reader at
// an offset with fewer than 24 bytes left skips to the next lap).
//
// Both {seq, position} pairs are double-buffered behind a generation word so
// that a reader gets a consistent pair: load gen, load pair[gen&1], load gen
// again and retry if it changed. Only the generation store publishes.

import (
	"fmt"
	"unsafe"
)

const (
	// EventRecordHeader is the size of an event record header.
	EventRecordHeader = 24
	// EventAlign is the alignment of every event record.
	EventAlign = 8
	// MinEventCapacity and MaxEventCapacity bound the record area size.
	MinEventCapacity = PageSize
	MaxEventCapacity = 1 << 36
	// EventPairSize is the size of one {seq, position} pair.
	EventPairSize = 16
)

// Events kind header and shared words.
const (
	OffECapacity    = OffKindHeader + 0  // u64
	OffERecHeader   = OffKindHeader + 8  // u32
	OffEMaxPayload  = OffKindHeader + 12 // u32
	OffEAreaOff     = OffKindHeader + 16 // u64
	OffECommitGen   = 2048               // u64 publication word, one store per committed frame
	OffECommitPairs = 2056               // [2]{seq u64, pos u64}
	OffEOldestGen   = 2176               // u64
	OffEOldestPairs = 2184               // [2]{seq u64, pos u64}
	OffEStatEvents  = 2304               // u64 events committed, total
	OffEStatBytes   = 2312               // u64 payload bytes committed, total
	OffEStatCommits = 2320               // u64 commits (frames published)
	OffEStatReject  = 2328               // u64 appends rejected (payload too large)
	OffEStatFrame   = 2336               // u64 frame of the last committed event
	OffEStatNanos   = 2344               // u64 Unix nanos of the last commit
)

// EventsGeometry places the record area of an events segment.
type EventsGeometry struct {
	Capacity   int // record area size in bytes
	MaxPayload int // largest payload accepted: Capacity/4
	AreaOff    int // offset of the record area
	TotalSize  int
}

// ComputeEventsGeometry validates the record area size (a multiple of
// PageSize in [MinEventCapacity, MaxEventCapacity]) and derives the geometry.
func ComputeEventsGeometry(capacityBytes int) (*EventsGeometry, error) {
	if capacityBytes < MinEventCapacity || capacityBytes > MaxEventCapacity || capacityBytes%PageSize != 0 {
		return nil, fmt.Errorf("%w: event log capacity %d must be a multiple of %d in [%d,%d]",
			ErrInvalidParam, capacityBytes, PageSize, MinEventCapacity, MaxEventCapacity)
	}
	return &EventsGeometry{
		Capacity:   capacityBytes,
		MaxPayload: capacityBytes / 4,
		AreaOff:    HeaderSize,
		TotalSize:  HeaderSize + capacityBytes,
	}, nil
}

// EncodeEvents initialises a zeroed events segment of g.TotalSize bytes: the
// commit and oldest pairs start at {seq 1, position 0} (empty log). The ready
// word is left at zero: the caller marks it ready with MarkReady.
func EncodeEvents(b []byte, g *EventsGeometry, h Header) error {
	if len(b) != g.TotalSize {
		return fmt.Errorf("%w: buffer of %d bytes, geometry needs %d", ErrInvalidParam, len(b), g.TotalSize)
	}
	h.Kind = KindEvents
	h.TotalSize = uint64(g.TotalSize)
	h.Sections = []Section{{ID: SecEventLog, Offset: uint64(g.AreaOff), Size: uint64(g.Capacity)}}
	put64(b, OffECapacity, uint64(g.Capacity))
	put32(b, OffERecHeader, EventRecordHeader)
	put32(b, OffEMaxPayload, uint32(g.MaxPayload))
	put64(b, OffEAreaOff, uint64(g.AreaOff))
	for _, o := range []int{OffECommitPairs, OffEOldestPairs} {
		put64(b, o, 1) // pair[0].seq = 1, pair[0].pos = 0
	}
	return EncodeHeader(b, &h)
}

// Events is a validated view of an events segment.
type Events struct {
	B      []byte
	Header *Header
	*EventsGeometry
}

// DecodeEvents validates an events segment: the common header, the kind
// header, and that the record area section matches the geometry recomputed
// from the stored capacity. It never panics.
func DecodeEvents(b []byte) (*Events, error) {
	h, err := DecodeHeader(b)
	if err != nil {
		return nil, err
	}
	if h.Kind != KindEvents {
		return nil, fmt.Errorf("%w: %s, want events", ErrBadKind, KindName(h.Kind))
	}
	c := get64(b, OffECapacity)
	if c > MaxEventCapacity {
		return nil, corrupt("event log capacity %d too large", c)
	}
	g, err := ComputeEventsGeometry(int(c))
	if err != nil {
		return nil, corrupt("event log parameters: %v", err)
	}
	if rh := get32(b, OffERecHeader); rh != EventRecordHeader {
		return nil, corrupt("event record header size %d, want %d", rh, EventRecordHeader)
	}
	if mp := get32(b, OffEMaxPayload); mp != uint32(g.MaxPayload) {
		return nil, corrupt("event max payload %d, want %d", mp, g.MaxPayload)
	}
	if ao := get64(b, OffEAreaOff); ao != uint64(g.AreaOff) {
		return nil, corrupt("event area offset %d, want %d", ao, g.AreaOff)
	}
	s, ok := h.Section(SecEventLog)
	if !ok || s.Offset != uint64(g.AreaOff) || s.Size != uint64(g.Capacity) || h.TotalSize != uint64(g.TotalSize) {
		return nil, corrupt("event log section does not match its parameters")
	}
	return &Events{B: b, Header: h, EventsGeometry: g}, nil
}

// Area returns the record area.
func (e *Events) Area() []byte { return e.B[e.AreaOff : e.AreaOff+e.Capacity] }

// WordsAligned reports whether the segment starts on an 8-byte boundary, as
// every mapping does; the atomic helpers need it. Decoders accept unaligned
// buffers (fuzzers), users of the shared words must check this first.
func (e *Events) WordsAligned() bool {
	// Invariant: only the address is inspected, nothing is dereferenced.
	return len(e.B) > 0 && uintptr(unsafe.Pointer(&e.B[0]))&7 == 0
}

// EventRecord is a decoded event record header.
type EventRecord struct {
	Seq   uint64 // 0 = padding to the end of the area
	Frame uint64
	Type  uint16
	Flags uint16
	Len   uint32 // payload length
}

// IsPad reports whether the record is padding to the end of the area.
func (r EventRecord) IsPad() bool { return r.Seq == 0 }

// EventRecordSize returns the bytes a record with an n-byte payload occupies.
func EventRecordSize(n int) int { return EventRecordHeader + align(n, EventAlign) }

// PutEventRecord writes a record header at area[off:]. The caller (the
// single writer) guarantees that off is aligned and the record fits.
func PutEventRecord(area []byte, off int, r EventRecord) {
	put64(area, off, r.Seq)
	put64(area, off+8, r.Frame)
	put16(area, off+16, r.Type)
	put16(area, off+18, r.Flags)
	put32(area, off+20, r.Len)
}

// DecodeEventRecord decodes and validates the record header at area[off:]:
// off must be aligned, the header and its padded payload must lie inside the
// area, a padding record must reach exactly the end of the area, and a
// payload must not exceed maxPayload. It never panics.
func DecodeEventRecord(area []byte, off int, maxPayload int) (EventRecord, error) {
	if off < 0 || off%EventAlign != 0 || off > len(area)-EventRecordHeader {
		return EventRecord{}, corrupt("event record offset %d outside area of %d bytes", off, len(area))
	}
	r := EventRecord{
		Seq:   get64(area, off),
		Frame: get64(area, off+8),
		Type:  get16(area, off+16),
		Flags: get16(area, off+18),
		Len:   get32(area, off+20),
	}
	room := uint64(len(area) - off - EventRecordHeader)
	if r.IsPad() {
		if uint64(r.Len) != room {
			return r, corrupt("event padding record at %d has length %d, want %d", off, r.Len, room)
		}
		return r, nil
	}
	if maxPayload < 0 || uint64(r.Len) > uint64(maxPayload) {
		return r, corrupt("event record %d at %d: payload %d exceeds max %d", r.Seq, off, r.Len, maxPayload)
	}
	if uint64(align(int(r.Len), EventAlign)) > room {
		return r, corrupt("event record %d at %d: payload %d runs past the area end", r.Seq, off, r.Len)
	}
	return r, nil
}
