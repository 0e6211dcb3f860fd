package layout

import "fmt"

// Component masks on the wire: how many 64-bit words a world's masks have,
// where each mask lives, and the entity record that carries one.
//
// A world of C components has W = MaskWords(C) mask words (1..4). Word j
// holds components 64j..64j+63, bit k%64 of word k/64 is component k. Two
// placements are used (docs/LAYOUT.md, "Component masks"):
//   - W words where the mask is per entity or per chunk and therefore hot:
//     the entity record (8 + 8W bytes) and the chunk header's record mask.
//     A world of at most 64 components has W = 1 and exactly the 16-byte
//     records and the byte layout it had before masks grew.
//   - MaxMaskWords words, split as word 0 at the field's historical offset
//     and words 1..3 at a second place, where there is one mask per slot,
//     lease or module (not hot): the slot mask, the lease mask, the module
//     segment's read mask, the hello's mask and mask_ext.
//
// Invariant: a mask word j >= W is zero everywhere (no component has its
// bit), so a reader may always read MaxMaskWords words of a split mask.

const (
	// MaxMaskWords is the number of 64-bit words of the widest mask
	// (MaxComponents / 64).
	MaxMaskWords = MaxComponents / 64
	// RecordHeadSize is the generation and flags that open every entity
	// record; the record's W mask words follow.
	RecordHeadSize = 8
	// RecordGen, RecordFlags and RecordMask are the offsets of an entity
	// record's fields: u32 generation, u32 flags, W x u64 mask words.
	RecordGen   = 0
	RecordFlags = 4
	RecordMask  = 8
)

// MaskWords returns W, the mask words of a world of ncomp components:
// ceil(ncomp/64), at least 1 (a world without components still has 16-byte
// records).
func MaskWords(ncomp int) int { return max(1, (ncomp+63)/64) }

// RecordSize returns the size of an entity record of a world with words
// mask words: 8 + 8W (16 for a world of at most 64 components).
func RecordSize(words int) int { return RecordHeadSize + 8*words }

// EntityRecord is the decoded form of one entity record. The engine's live
// world and the slots hold records in their wire form (u32 generation, u32
// flags, W u64 mask words; see RecordSize), so that publishing them is a
// plain copy; EntityRecord is what tests, recovery and the auditor compare.
type EntityRecord struct {
	Gen   uint32               // generation of the entity index; starts at 1, bumped on destroy
	Flags uint32               // FlagAlive
	Mask  [MaxMaskWords]uint64 // bit k%64 of word k/64 set: component k present; words >= W are 0
}

// DecodeRecord decodes the entity record at b[0:RecordSize(words)].
func DecodeRecord(b []byte, words int) EntityRecord {
	r := EntityRecord{Gen: get32(b, RecordGen), Flags: get32(b, RecordFlags)}
	for j := 0; j < words && j < MaxMaskWords; j++ {
		r.Mask[j] = get64(b, RecordMask+8*j)
	}
	return r
}

// EncodeRecord writes r at b[0:RecordSize(words)]. Mask words >= words are
// not written (they must be zero: no component has them).
func EncodeRecord(b []byte, words int, r EntityRecord) {
	put32(b, RecordGen, r.Gen)
	put32(b, RecordFlags, r.Flags)
	for j := 0; j < words && j < MaxMaskWords; j++ {
		put64(b, RecordMask+8*j, r.Mask[j])
	}
}

// Offsets of word j of the split masks (MaxMaskWords words each): word 0
// where the 64-bit mask always was, words 1..3 in space that was reserved.
// Each function panics for j outside [0, MaxMaskWords).

// SlotMaskOff returns the offset, in a slot header, of word j of the slot
// mask: 24, then 72, 80, 88.
func SlotMaskOff(j int) int { return splitOff(j, SlotMask, SlotMaskHi) }

// LeaseMaskOff returns the offset, in a slot lease entry, of word j of the
// lease mask: 16, then 32, 40, 48.
func LeaseMaskOff(j int) int { return splitOff(j, LeaseMask, LeaseMaskHi) }

// ModuleMaskOff returns the offset, in a module segment, of word j of the
// mask the module reads: 1040, then 1088, 1096, 1104.
func ModuleMaskOff(j int) int { return splitOff(j, OffMMask, OffMMaskHi) }

// ChunkRecordMaskOff returns the offset, in a chunk block, of word j of the
// chunk's record mask: 16 + 8j (contiguous; words >= W stay zero).
func ChunkRecordMaskOff(j int) int { return wordOff(ChunkRecordMask, j) }

// wordOff is the offset of word j of a contiguous mask at base.
func wordOff(base, j int) int {
	if j < 0 || j >= MaxMaskWords {
		panic("layout: mask word out of range")
	}
	return base + 8*j
}

func splitOff(j, word0, hi int) int {
	switch {
	case j == 0:
		return word0
	case j > 0 && j < MaxMaskWords:
		return hi + 8*(j-1)
	}
	panic("layout: mask word out of range")
}

// getMask reads a split mask; putMask writes one.
func getMask(b []byte, off func(int) int) (m [MaxMaskWords]uint64) {
	for j := range m {
		m[j] = get64(b, off(j))
	}
	return m
}

func putMask(b []byte, off func(int) int, m [MaxMaskWords]uint64) {
	for j, v := range m {
		put64(b, off(j), v)
	}
}

// GetSplitMask reads the MaxMaskWords words of a split mask (SlotMaskOff,
// LeaseMaskOff, ModuleMaskOff) at base + off(j) with plain loads.
func GetSplitMask(b []byte, base int, off func(int) int) [MaxMaskWords]uint64 {
	return getMask(b[base:], off)
}

// PutSplitMask writes the MaxMaskWords words of a split mask at base + off(j).
func PutSplitMask(b []byte, base int, off func(int) int, m [MaxMaskWords]uint64) {
	putMask(b[base:], off, m)
}

// SchemaMask returns the mask of every component of a world of ncomp
// components (bits 0..ncomp-1).
func SchemaMask(ncomp int) (m [MaxMaskWords]uint64) {
	for j := range m {
		switch n := ncomp - 64*j; {
		case n >= 64:
			m[j] = ^uint64(0)
		case n > 0:
			m[j] = 1<<uint(n) - 1
		}
	}
	return m
}

// MaskBeyond returns the bits of m that name no component of a world of
// ncomp components (m &^ SchemaMask(ncomp)), zero when there are none.
func MaskBeyond(m [MaxMaskWords]uint64, ncomp int) (out [MaxMaskWords]uint64) {
	s := SchemaMask(ncomp)
	for j := range m {
		out[j] = m[j] &^ s[j]
	}
	return out
}

// FormatMask formats a mask as one hexadecimal number (bit k = component
// k): "0x3" for components 0 and 1, as a 64-bit mask always printed;
// components beyond 63 add digits.
func FormatMask(m [MaxMaskWords]uint64) string {
	hi := MaxMaskWords - 1
	for hi > 0 && m[hi] == 0 {
		hi--
	}
	s := fmt.Sprintf("%#x", m[hi])
	for j := hi - 1; j >= 0; j-- {
		s += fmt.Sprintf("%016x", m[j])
	}
	return s
}
