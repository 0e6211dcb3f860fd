package layout

import "fmt"

// Leases segment (kind KindLeases, file "fdp.<instance>.leases").
//
// Since control protocol 3 no module maps it. Its reader table is the
// external reader table: readers of the engine's own uid that read frames
// without being modules (tools, tests) claim an entry by name and pin
// there; the engine scans those pins. Its slot lease table is a copy, for
// inspection, of the lease holders the engine keeps in its own memory
// (a ModuleSet: member n = module slot n); the engine never reads it back.
//
// The number of reader entries is the engine's choice (host.Config.Readers),
// recorded in the kind header and validated by DecodeLeases against
// [MinReaders, MaxReaders]. The engine scans every entry's pin at each slot
// claim, so the bound keeps that scan short (docs/PERFORMANCE.md).
const (
	// DefaultReaders is the size of the external reader table when the
	// configuration names none.
	DefaultReaders = 64
	// MinReaders and MaxReaders bound the number of external reader entries.
	MinReaders = 1
	MaxReaders = 1024
	// ReaderEntrySize is the size of one reader entry (two cache lines, so
	// that two readers never share a line).
	ReaderEntrySize = 128
	// SlotLeaseSize is the size of one per-slot lease entry.
	SlotLeaseSize = 128
	// ReaderNameLen is the NUL-padded name field of a reader entry.
	ReaderNameLen = 32
)

// Leases kind header.
const (
	OffLReaders = OffKindHeader + 0 // u32 number of reader entries
	OffLSlots   = OffKindHeader + 4 // u32 number of slot lease entries (= world slots)
)

// Reader entry fields (offsets from the start of the entry).
const (
	ReaderPID       = 0  // u32, 0 = free; claimed with CAS 0 -> pid
	ReaderFlags     = 4  // u32
	ReaderStart     = 8  // u64 start time of the process (clock ticks since boot)
	ReaderPin       = 16 // u64 pin word: seq<<8 | (slot+1); 0 = nothing pinned
	ReaderHeartbeat = 24 // u64 Unix nanos of the last pin or heartbeat
	ReaderName      = 32 // [32]byte
	ReaderPins      = 64 // u64 successful pins, total
	ReaderRetries   = 72 // u64 pin attempts that found the slot being rewritten
)

// Slot lease entry fields.
const (
	LeaseReserved0 = 0  // u64 reserved, 0 (the holders of slots 0..63 when there were at most 64 modules)
	LeaseFrame     = 8  // u64 frame the slot held when leased
	LeaseMask      = 16 // u64 components synced into the leased slot: word 0 (LeaseMaskOff)
	LeaseEngine    = 24 // u32 reserved, 0 (engine references before control protocol 3; ignored)
	LeaseMaskHi    = 32 // 3 x u64: words 1..3 of the lease mask (components 64..255)
	// LeaseHolders is the holder set, ModuleSetBytes bytes (PutModuleSet):
	// member n = the module in slot n holds a lease on the slot (the
	// engine's copy). In the entry's second cache line.
	LeaseHolders = 64
)

// LeasesGeometry places the sections of a leases segment.
type LeasesGeometry struct {
	Readers    int
	Slots      int
	ReadersOff int
	LeasesOff  int
	TotalSize  int
}

// ComputeLeasesGeometry derives the geometry of a leases segment of slots
// slot lease entries and readers external reader entries.
func ComputeLeasesGeometry(slots, readers int) (*LeasesGeometry, error) {
	if slots < 2 || slots > MaxSlots {
		return nil, fmt.Errorf("%w: slots %d not in [2,%d]", ErrInvalidParam, slots, MaxSlots)
	}
	if readers < MinReaders || readers > MaxReaders {
		return nil, fmt.Errorf("%w: %d external reader entries, not in [%d,%d]", ErrInvalidParam, readers, MinReaders, MaxReaders)
	}
	g := &LeasesGeometry{Readers: readers, Slots: slots, ReadersOff: HeaderSize}
	g.LeasesOff = g.ReadersOff + readers*ReaderEntrySize
	g.TotalSize = align(g.LeasesOff+slots*SlotLeaseSize, PageSize)
	return g, nil
}

// EncodeLeases initialises a zeroed leases segment (ready word left zero).
func EncodeLeases(b []byte, g *LeasesGeometry, h Header) error {
	if len(b) != g.TotalSize {
		return fmt.Errorf("%w: buffer of %d bytes, geometry needs %d", ErrInvalidParam, len(b), g.TotalSize)
	}
	h.Kind = KindLeases
	h.TotalSize = uint64(g.TotalSize)
	h.Sections = []Section{
		{ID: SecReaders, Count: uint32(g.Readers), Offset: uint64(g.ReadersOff), Size: uint64(g.Readers * ReaderEntrySize)},
		{ID: SecSlotLeases, Count: uint32(g.Slots), Offset: uint64(g.LeasesOff), Size: uint64(g.Slots * SlotLeaseSize)},
	}
	put32(b, OffLReaders, uint32(g.Readers))
	put32(b, OffLSlots, uint32(g.Slots))
	return EncodeHeader(b, &h)
}

// Leases is a validated view of a leases segment.
type Leases struct {
	B      []byte
	Header *Header
	*LeasesGeometry
}

// DecodeLeases validates a leases segment. It never panics.
func DecodeLeases(b []byte) (*Leases, error) {
	h, err := DecodeHeader(b)
	if err != nil {
		return nil, err
	}
	if h.Kind != KindLeases {
		return nil, fmt.Errorf("%w: %s, want leases", ErrBadKind, KindName(h.Kind))
	}
	g, err := ComputeLeasesGeometry(int(get32(b, OffLSlots)), int(get32(b, OffLReaders)))
	if err != nil {
		return nil, corrupt("leases parameters: %v", err)
	}
	rs, ok1 := h.Section(SecReaders)
	ls, ok2 := h.Section(SecSlotLeases)
	if !ok1 || !ok2 || rs.Offset != uint64(g.ReadersOff) || ls.Offset != uint64(g.LeasesOff) ||
		rs.Size != uint64(g.Readers*ReaderEntrySize) || ls.Size != uint64(g.Slots*SlotLeaseSize) || h.TotalSize != uint64(g.TotalSize) {
		return nil, corrupt("leases sections do not match their parameters")
	}
	return &Leases{B: b, Header: h, LeasesGeometry: g}, nil
}

// ReaderOff returns the offset of reader entry r.
func (g *LeasesGeometry) ReaderOff(r int) int { return g.ReadersOff + r*ReaderEntrySize }

// LeaseOff returns the offset of the lease entry of slot s.
func (g *LeasesGeometry) LeaseOff(s int) int { return g.LeasesOff + s*SlotLeaseSize }

// PackPin packs a slot index and the even seq the reader saw into a pin word.
func PackPin(slot int, seq uint64) uint64 { return seq<<8 | uint64(slot+1) }

// UnpackPin splits a pin word; ok is false for an empty pin.
func UnpackPin(w uint64) (slot int, seq uint64, ok bool) {
	if w&0xff == 0 {
		return 0, 0, false
	}
	return int(w&0xff) - 1, w >> 8, true
}

// The holder set fits its slot lease entry (a negative constant does not
// convert to uint: the build fails if MaxModules outgrows the entry).
const _ = uint(SlotLeaseSize - LeaseHolders - ModuleSetBytes)
