package world

import "github.com/fdp-engine/fdp/layout"

// Entity records in the world's memory: each chunk holds its records in
// their wire form (docs/LAYOUT.md, "Entity record"), as 1+W uint64 words
// per record, W = layout.MaskWords(components): word 0 is the generation
// (low 32 bits) and the flags (high 32 bits), words 1..W the component mask.
// Publishing a chunk's records is then one copy of its words.
//
// Invariants: R1: a record's mask names only registered components (so
// words beyond W, which the record does not have, would be zero) and a dead
// record names none. R2: a chunk's recs end with recPad zero words after its
// last record, so that the 4 mask words after any record's word 0 are in
// bounds (Query.Match reads them all). The word-0 packing is the byte layout (u32 generation
// at 0, u32 flags at 4) on little-endian platforms, the only ones the
// shared-memory segments support (package sync's unsafe.go).

// recPad is the padding after a chunk's last record (R2): the mask words a
// one-word record lacks of layout.MaxMaskWords.
const recPad = layout.MaxMaskWords - 1

// rec returns the 1+W words of record row of ch.
func (w *World) rec(ch *chunk, row int) []uint64 {
	o := row * w.stride
	return ch.recs[o : o+w.stride : o+w.stride]
}

// aliveBit is layout.FlagAlive in word 0 of a record (the flags are its
// high 32 bits).
const aliveBit = uint64(layout.FlagAlive) << 32

func recGen(r []uint64) uint32   { return uint32(r[0]) }
func recFlags(r []uint64) uint32 { return uint32(r[0] >> 32) }
func recAlive(r []uint64) bool   { return recFlags(r)&layout.FlagAlive != 0 }

func setGenFlags(r []uint64, gen, flags uint32) { r[0] = uint64(gen) | uint64(flags)<<32 }

// recHas reports whether the record names component id.
func recHas(r []uint64, id ComponentID) bool {
	j := 1 + int(id>>6)
	return j < len(r) && r[j]&(1<<(id&63)) != 0
}

// recMask returns the record's component mask.
func recMask(r []uint64) (m Mask) {
	copy(m[:], r[1:])
	return m
}

// decodeRec returns record r in its decoded form.
func decodeRec(r []uint64) layout.EntityRecord {
	return layout.EntityRecord{Gen: recGen(r), Flags: recFlags(r), Mask: recMask(r)}
}

// encodeRec stores the decoded record e into r (e's mask words beyond the
// record's are dropped: callers validated them zero).
func encodeRec(r []uint64, e layout.EntityRecord) {
	setGenFlags(r, e.Gen, e.Flags)
	copy(r[1:], e.Mask[:])
}

// MaskWords returns W, the 64-bit words of the world's entity record masks
// (layout.MaskWords of its component count).
func (w *World) MaskWords() int { return w.words }

// ChunkRecordWords returns the entity records of chunk c in their wire form
// (ChunkCapacity records of 1+MaskWords() words each: see layout.RecordSize),
// or nil if c is not allocated. Read only: publishing copies them as they are.
func (w *World) ChunkRecordWords(c int) []uint64 {
	if ch := w.chunkAt(c); ch != nil {
		return ch.recs[:w.capacity*w.stride]
	}
	return nil
}

// ChunkRecord returns the decoded record of row i of chunk c (the zero
// record if c is not allocated or i is out of range).
func (w *World) ChunkRecord(c, i int) layout.EntityRecord {
	ch := w.chunkAt(c)
	if ch == nil || i < 0 || i >= w.capacity {
		return layout.EntityRecord{}
	}
	return decodeRec(w.rec(ch, i))
}

// ChunkRecords returns the decoded entity records of chunk c (ChunkCapacity
// of them), or nil if c is not allocated. It allocates a copy: it is for
// tests, tools and recovery; publishing copies ChunkRecordWords.
func (w *World) ChunkRecords(c int) []layout.EntityRecord {
	ch := w.chunkAt(c)
	if ch == nil {
		return nil
	}
	out := make([]layout.EntityRecord, w.capacity)
	for i := range out {
		out[i] = decodeRec(w.rec(ch, i))
	}
	return out
}
