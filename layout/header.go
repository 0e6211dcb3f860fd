// Package layout is the ground floor of FDP: the byte layout of every
// shared-memory structure, with encoders and validating decoders.
//
// It performs no system calls. Every decoder validates each field it reads and
// returns an error (never panics) on garbage; see docs/LAYOUT.md for the
// normative byte-level description.
package layout

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
)

// Magic is the first 8 bytes of every FDP segment.
var Magic = [8]byte{'F', 'D', 'P', 'S', 'E', 'G', 'M', 'T'}

const (
	// Version is the layout version written into every segment header.
	// 2: world segments are sparse, and slot headers name what is allocated
	// (SlotBackMask, SlotBackChunks; backing.go); a version-1 segment's
	// slots carry no such words, so a version-2 engine cannot adopt it.
	// 3: world segments may have singletons (a singleton table and a
	// singleton area in every slot before chunk 0; singletons.go).
	// 4: world segments describe every component's and singleton's fields
	// (the field table, section SecFields; fields.go), and fingerprints
	// are computed from that description.
	Version = 4
	// HeaderSize is the size of the common header page at offset 0.
	HeaderSize = 4096
	// ReadyValue is stored (last, atomically) into the ready word once a
	// segment is completely initialised. It spells "REDY" in little endian.
	ReadyValue uint32 = 0x59444552
	// MaxSections is the number of entries in the section table.
	MaxSections = 16
	// InstanceNameLen is the size of the NUL-padded instance name field.
	InstanceNameLen = 32
)

// Segment kinds.
const (
	KindWorld  uint32 = 1 // frame slots written by the engine, read-only for modules
	KindLeases uint32 = 2 // external reader table (engine-uid tools) and the engine's copy of slot leases; never mapped by modules
	KindEvents uint32 = 3 // event log written by the engine
	KindModule uint32 = 4 // per-module command ring and doorbells
)

// KindName returns a human-readable name for a segment kind.
func KindName(k uint32) string {
	switch k {
	case KindWorld:
		return "world"
	case KindLeases:
		return "leases"
	case KindEvents:
		return "events"
	case KindModule:
		return "module"
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Offsets of the common header fields.
const (
	OffMagic       = 0
	OffVersion     = 8
	OffKind        = 12
	OffTotalSize   = 16
	OffSchemaHash  = 24
	OffCreatorPID  = 32
	OffHeaderSize  = 36
	OffCreatorTime = 40 // creator start time, clock ticks since boot (/proc/PID/stat field 22)
	OffCreatedNano = 48 // wall clock at creation, Unix nanoseconds
	OffSections    = 56 // number of used section entries
	OffReady       = 60 // ready word, written last
	OffInstance    = 64 // [32]byte instance name, NUL padded
	OffChecksum    = 96 // FNV-1a 64 over bytes [0,96) and the section table, with ready and checksum read as zero
	OffSectionTab  = 128
	SectionEntry   = 24 // id u32, count u32, offset u64, size u64
	OffKindHeader  = 1024
)

// Section identifiers.
const (
	SecComponents uint32 = 1 // world: component table
	SecSlots      uint32 = 2 // world: frame slots
	SecReaders    uint32 = 3 // leases: reader table
	SecSlotLeases uint32 = 4 // leases: per-slot lease words
	SecEventLog   uint32 = 5 // events: record area
	SecRing       uint32 = 6 // module: command ring
	// Section id 7 was "stats" in the first drafts: no segment kind ever
	// had it. It stays unused (a decoder treats it like any unknown id).
	SecSingletons uint32 = 8 // world: singleton table (singletons.go)
)

// Section is one entry of the section table.
type Section struct {
	ID     uint32
	Count  uint32
	Offset uint64
	Size   uint64
}

// Header is the decoded common header.
type Header struct {
	Version     uint32
	Kind        uint32
	TotalSize   uint64
	SchemaHash  uint64
	CreatorPID  uint32
	CreatorTime uint64
	CreatedNano int64
	Instance    string
	Sections    []Section
	Ready       bool
}

// Section returns the section with the given id.
func (h *Header) Section(id uint32) (Section, bool) {
	for _, s := range h.Sections {
		if s.ID == id {
			return s, true
		}
	}
	return Section{}, false
}

// Errors returned by the decoders. Wrapped errors carry the detail.
var (
	ErrTooSmall     = errors.New("fdp/layout: segment too small")
	ErrBadMagic     = errors.New("fdp/layout: not an FDP segment (bad magic)")
	ErrBadVersion   = errors.New("fdp/layout: unsupported layout version")
	ErrBadKind      = errors.New("fdp/layout: unexpected segment kind")
	ErrNotReady     = errors.New("fdp/layout: segment not ready (creator has not finished initialising it)")
	ErrCorrupt      = errors.New("fdp/layout: corrupt segment")
	ErrBadChecksum  = errors.New("fdp/layout: header checksum mismatch")
	ErrSchema       = errors.New("fdp/layout: schema mismatch")
	ErrInvalidParam = errors.New("fdp/layout: invalid parameters")
)

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

// ValidInstanceName reports whether s may be used as an instance name:
// 1..31 bytes of [A-Za-z0-9_-].
func ValidInstanceName(s string) bool {
	if len(s) == 0 || len(s) >= InstanceNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// EncodeHeader writes the common header into b (which must be at least
// HeaderSize bytes and zeroed) with the ready word left at zero. Call
// MarkReady after everything else in the segment is initialised.
func EncodeHeader(b []byte, h *Header) error {
	if len(b) < HeaderSize {
		return ErrTooSmall
	}
	if len(h.Sections) > MaxSections {
		return fmt.Errorf("%w: %d sections (max %d)", ErrInvalidParam, len(h.Sections), MaxSections)
	}
	if !ValidInstanceName(h.Instance) {
		return fmt.Errorf("%w: instance name %q", ErrInvalidParam, h.Instance)
	}
	copy(b[OffMagic:], Magic[:])
	put32(b, OffVersion, Version)
	put32(b, OffKind, h.Kind)
	put64(b, OffTotalSize, h.TotalSize)
	put64(b, OffSchemaHash, h.SchemaHash)
	put32(b, OffCreatorPID, h.CreatorPID)
	put32(b, OffHeaderSize, HeaderSize)
	put64(b, OffCreatorTime, h.CreatorTime)
	put64(b, OffCreatedNano, uint64(h.CreatedNano))
	put32(b, OffSections, uint32(len(h.Sections)))
	put32(b, OffReady, 0)
	var name [InstanceNameLen]byte
	copy(name[:], h.Instance)
	copy(b[OffInstance:], name[:])
	for i, s := range h.Sections {
		o := OffSectionTab + i*SectionEntry
		put32(b, o, s.ID)
		put32(b, o+4, s.Count)
		put64(b, o+8, s.Offset)
		put64(b, o+16, s.Size)
	}
	put64(b, OffChecksum, headerChecksum(b))
	return nil
}

// MarkReady publishes the segment: the ready word is stored last, atomically.
func MarkReady(b []byte) { Store32(b, OffReady, ReadyValue) }

func headerChecksum(b []byte) uint64 {
	h := fnv.New64a()
	var zero [8]byte
	h.Write(b[0:OffReady])
	h.Write(zero[:4]) // ready word read as zero
	h.Write(b[OffReady+4 : OffChecksum])
	h.Write(zero[:8]) // checksum read as zero
	h.Write(b[OffChecksum+8 : OffSectionTab+MaxSections*SectionEntry])
	return h.Sum64()
}

// DecodeHeader validates and decodes the common header of a segment. It
// checks magic, version, header size, total size against len(b), the
// checksum, the ready word and that every section lies inside the segment
// without overlapping the header or another section. It never panics.
func DecodeHeader(b []byte) (*Header, error) {
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrTooSmall, len(b), HeaderSize)
	}
	if !bytes.Equal(b[OffMagic:OffMagic+8], Magic[:]) {
		return nil, ErrBadMagic
	}
	if v := get32(b, OffVersion); v != Version {
		return nil, fmt.Errorf("%w: %d (this build reads %d)", ErrBadVersion, v, Version)
	}
	if hs := get32(b, OffHeaderSize); hs != HeaderSize {
		return nil, corrupt("header size %d, want %d", hs, HeaderSize)
	}
	if sum := get64(b, OffChecksum); sum != headerChecksum(b) {
		return nil, ErrBadChecksum
	}
	h := &Header{
		Version:     Version,
		Kind:        get32(b, OffKind),
		TotalSize:   get64(b, OffTotalSize),
		SchemaHash:  get64(b, OffSchemaHash),
		CreatorPID:  get32(b, OffCreatorPID),
		CreatorTime: get64(b, OffCreatorTime),
		CreatedNano: int64(get64(b, OffCreatedNano)),
	}
	if h.TotalSize != uint64(len(b)) {
		return nil, corrupt("total size %d but mapping is %d bytes", h.TotalSize, len(b))
	}
	name := b[OffInstance : OffInstance+InstanceNameLen]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	h.Instance = string(name)
	if !ValidInstanceName(h.Instance) {
		return nil, corrupt("invalid instance name %q", h.Instance)
	}
	n := get32(b, OffSections)
	if n > MaxSections {
		return nil, corrupt("%d sections (max %d)", n, MaxSections)
	}
	h.Sections = make([]Section, n)
	for i := range h.Sections {
		o := OffSectionTab + i*SectionEntry
		s := Section{ID: get32(b, o), Count: get32(b, o+4), Offset: get64(b, o+8), Size: get64(b, o+16)}
		if s.Offset < HeaderSize || s.Offset%64 != 0 || s.Size > h.TotalSize || s.Offset > h.TotalSize-s.Size {
			return nil, corrupt("section %d (id %d) at [%d,+%d) outside segment of %d bytes", i, s.ID, s.Offset, s.Size, h.TotalSize)
		}
		for j := 0; j < i; j++ {
			p := h.Sections[j]
			if p.ID == s.ID {
				return nil, corrupt("section id %d appears twice", s.ID)
			}
			if s.Offset < p.Offset+p.Size && p.Offset < s.Offset+s.Size {
				return nil, corrupt("sections %d and %d overlap", j, i)
			}
		}
		h.Sections[i] = s
	}
	h.Ready = loadMaybeUnaligned32(b, OffReady) == ReadyValue
	if !h.Ready {
		return h, ErrNotReady
	}
	return h, nil
}
