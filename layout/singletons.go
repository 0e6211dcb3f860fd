package layout

import (
	"bytes"
	"errors"
	"fmt"
)

// Singletons: components with exactly one instance per world (the engine's
// time, a simulation's configuration), published in every slot.
//
// A world segment of NS > 0 singletons has a singleton table (section
// SecSingletons, NS entries of SingletonEntrySize bytes, right after the
// component table) and, in every slot, a singleton area between the slot
// header and chunk 0:
//
//	slot + 256 + 8i        u64 version of singleton i (0: never set)
//	slot + SingletonOff[i] size_i bytes: the value of singleton i
//
// Values follow the NS version words, each at the next multiple of 8
// (SingletonOff). Chunk 0 starts at ChunksOff, the end of the area rounded
// up to 64 (256, right after the header, when NS = 0: the byte layout of a
// world without singletons is unchanged). The slot's head, [slot, slot +
// SlotHead) with SlotHead = ChunksOff rounded up to a page, holds memory
// from the segment's creation on and is never given back (backing.go), so
// a reader may always read the singleton area.
//
// Invariant (S1): every slot holds every singleton: every publish and every
// snapshot, whatever its component mask, copies the singletons whose world
// version is newer than the slot's version word, and a complete slot's
// singleton versions are <= its slot version. A singleton is readable in a
// slot exactly when its version word is not 0.

const (
	// MaxSingletons bounds the singletons of a world.
	MaxSingletons = 64
	// SingletonEntrySize is the size of one singleton table entry.
	SingletonEntrySize = 64
	// SlotSingletons is the offset, in a slot, of the singleton area.
	SlotSingletons = SlotHeaderSize
	// SingletonEngineOwned (flags bit 0): only the engine sets the
	// singleton; a module's command that sets it is rejected.
	SingletonEngineOwned uint32 = 1
)

// Singleton table entry fields (offsets inside an entry).
const (
	SingletonName        = 0  // [32]byte NUL padded
	SingletonSize        = 32 // u32
	SingletonAlign       = 36 // u32
	SingletonFingerprint = 40 // u64
	SingletonValueOff    = 48 // u32 offset of the value inside a slot
	SingletonFlags       = 52 // u32 SingletonEngineOwned
)

// SingletonDesc describes one registered singleton.
type SingletonDesc struct {
	Name        string
	Size        uint32
	Align       uint32
	Fingerprint uint64
	Flags       uint32 // SingletonEngineOwned
	// Fields describe the value's bytes (fields.go); Fingerprint is
	// FieldsFingerprint of Size, Align and them.
	Fields []FieldDesc
}

// Equal reports whether s and d describe the same singleton.
func (s SingletonDesc) Equal(d SingletonDesc) bool {
	return s.Name == d.Name && s.Size == d.Size && s.Align == d.Align && s.Fingerprint == d.Fingerprint &&
		s.Flags == d.Flags && equalFields(s.Fields, d.Fields)
}

// EngineOwned reports whether only the engine sets the singleton.
func (d SingletonDesc) EngineOwned() bool { return d.Flags&SingletonEngineOwned != 0 }

// SchemaHashOf hashes the schema of a world: SchemaHash of its components,
// continued, when it has singletons, with the bytes "singletons" and, for
// each singleton in id order, its name and u32 size, u32 align, u64
// fingerprint, u32 len(name), u32 flags (24 bytes, little-endian). A world
// without singletons has the hash it always had.
func SchemaHashOf(comps []ComponentDesc, singles []SingletonDesc) uint64 {
	h := schemaHasher(comps)
	if len(singles) > 0 {
		h.Write([]byte("singletons"))
		var buf [24]byte
		for _, s := range singles {
			h.Write([]byte(s.Name))
			le.PutUint32(buf[0:], s.Size)
			le.PutUint32(buf[4:], s.Align)
			le.PutUint64(buf[8:], s.Fingerprint)
			le.PutUint32(buf[16:], uint32(len(s.Name)))
			le.PutUint32(buf[20:], s.Flags)
			h.Write(buf[:])
		}
	}
	return h.Sum64()
}

// validSingleton checks a singleton's name, size and alignment (the rules
// of a component's) and its flags.
func validSingleton(s SingletonDesc) error {
	if err := validComponent(ComponentDesc{Name: s.Name, Size: s.Size, Align: s.Align, Fingerprint: s.Fingerprint, Fields: s.Fields}); err != nil {
		return fmt.Errorf("singleton: %w", err)
	}
	if s.Flags&^SingletonEngineOwned != 0 {
		return fmt.Errorf("singleton %q: unknown flags %#x", s.Name, s.Flags)
	}
	return nil
}

// placeSingletons fills g's singleton placement: the value offsets, where
// chunk 0 starts and the slot head (see the file comment).
func (g *WorldGeometry) placeSingletons() {
	ns := len(g.Singletons)
	g.SingletonOff = make([]int, ns)
	g.ChunksOff = SlotHeaderSize
	if ns > 0 {
		off := SlotSingletons + 8*ns
		for i, s := range g.Singletons {
			g.SingletonOff[i] = off
			off = align(off+int(s.Size), 8)
		}
		g.ChunksOff = align(off, 64)
	}
	g.SlotHead = align(g.ChunksOff, PageSize)
}

// SingletonTableSize is the size of the singleton table section (0 for a
// world without singletons: it has no such section).
func (g *WorldGeometry) SingletonTableSize() int { return SingletonEntrySize * len(g.Singletons) }

// SingletonVersionOff returns the offset of singleton i's version word in
// slot s.
func (g *WorldGeometry) SingletonVersionOff(s, i int) int { return g.SlotOff(s) + SlotSingletons + 8*i }

// SingletonRange returns [off, end) of singleton i's value in slot s.
func (g *WorldGeometry) SingletonRange(s, i int) (int, int) {
	o := g.SlotOff(s) + g.SingletonOff[i]
	return o, o + int(g.Singletons[i].Size)
}

// encodeSingletons writes the singleton table.
func (g *WorldGeometry) encodeSingletons(b []byte) {
	for i, s := range g.Singletons {
		o := g.SingletonsOff + i*SingletonEntrySize
		copy(b[o+SingletonName:o+SingletonName+ComponentNameLen], s.Name)
		put32(b, o+SingletonSize, s.Size)
		put32(b, o+SingletonAlign, s.Align)
		put64(b, o+SingletonFingerprint, s.Fingerprint)
		put32(b, o+SingletonValueOff, uint32(g.SingletonOff[i]))
		put32(b, o+SingletonFlags, s.Flags)
	}
}

// decodeSingletons reads the singleton table of a segment with ns
// singletons (the world kind header's count); the offsets it stores are
// returned for the caller to compare with the recomputed ones.
func decodeSingletons(b []byte, h *Header, ns int) ([]SingletonDesc, []uint32, error) {
	if ns > MaxSingletons {
		return nil, nil, corrupt("%d singletons (max %d)", ns, MaxSingletons)
	}
	sec, ok := h.Section(SecSingletons)
	switch {
	case ns == 0 && ok:
		return nil, nil, corrupt("a singleton table section in a world without singletons")
	case ns == 0:
		return nil, nil, nil
	case !ok || int(sec.Count) != ns || sec.Size != uint64(ns*SingletonEntrySize):
		return nil, nil, corrupt("singleton table section missing or wrong size")
	}
	out := make([]SingletonDesc, ns)
	offs := make([]uint32, ns)
	for i := range out {
		o := int(sec.Offset) + i*SingletonEntrySize
		name, err := entryName(b[o+SingletonName : o+SingletonName+ComponentNameLen])
		if err != nil {
			return nil, nil, corrupt("singleton %d: %v", i, err)
		}
		out[i] = SingletonDesc{Name: name, Size: get32(b, o+SingletonSize), Align: get32(b, o+SingletonAlign),
			Fingerprint: get64(b, o+SingletonFingerprint), Flags: get32(b, o+SingletonFlags)}
		offs[i] = get32(b, o+SingletonValueOff)
		if get64(b, o+56) != 0 {
			return nil, nil, corrupt("singleton %d: reserved bytes are not zero", i)
		}
	}
	return out, offs, nil
}

// entryName decodes a NUL-padded name field: nothing but NULs after the
// first NUL.
func entryName(f []byte) (string, error) {
	if j := bytes.IndexByte(f, 0); j >= 0 {
		if bytes.ContainsFunc(f[j:], func(r rune) bool { return r != 0 }) {
			return "", errors.New("garbage after name")
		}
		f = f[:j]
	}
	return string(f), nil
}
