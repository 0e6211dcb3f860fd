package layout

// Variable-size components: byte strings of 0..MaxLen bytes per entity
// (world.RegisterBytes). Their column holds one BytesHandle per row (8
// bytes: u32 offset, u32 length) and is followed, inside the same column
// span of the chunk block, by the chunk's arena for the component:
// ChunkCapacity × PerEntity bytes where the values of the chunk's entities
// live, each at its handle's offset. A column and its arena are one unit:
// allocated, copied and given back together (backing.go: ColumnSpan), so a
// filtered snapshot holds the arena bytes of the variable-size components of
// its mask only, and a fill copies the arena of a chunk whose column version
// moved (the handles and the arena's used prefix, one copy).
//
// Invariants of a complete slot (checked by audit): for every alive record
// that names variable-size component k of the slot mask, the handle of its
// row has Len <= MaxLen[k], Off a multiple of 8, and Off + Len <= the
// arena's size; the values of two such rows of a chunk do not overlap; a
// string component's values are valid UTF-8. Handles of other rows are
// unspecified bytes, like the column rows of fixed-size components.

import "fmt"

const (
	// MaxValueLen bounds a variable-size component's MaxLen.
	MaxValueLen = 1 << 16
	// MaxArenaBytes bounds a chunk's arena for one component (ChunkCapacity
	// × PerEntity): handle offsets are u32.
	MaxArenaBytes = 1 << 31
	// BytesHandleSize is the size of a handle: the column's element.
	BytesHandleSize = 8
	// BytesHandleAlign is the alignment of a handle.
	BytesHandleAlign = 4
	// ArenaAlign is the alignment of every value's offset in an arena.
	ArenaAlign = 8
)

// Component table entry fields of variable-size components (offsets inside
// an entry; 0 for a fixed-size component).
const (
	ComponentMaxLen    = 56 // u32 MaxLen: the longest value, 1..MaxValueLen
	ComponentPerEntity = 60 // u32 arena bytes per entity: the chunk's arena is ChunkCapacity × it
)

// Fingerprints of variable-size components: those of their one field
// (VarSizeFields) in a value of the handle's size and alignment, like any
// other (a string component's values are valid UTF-8).
var (
	FingerprintBytes  = FieldsFingerprint(BytesHandleSize, BytesHandleAlign, VarSizeFields(false))
	FingerprintString = FieldsFingerprint(BytesHandleSize, BytesHandleAlign, VarSizeFields(true))
)

// VarSize reports whether the component is variable-size.
func (c ComponentDesc) VarSize() bool { return c.MaxLen != 0 }

// IsString reports whether the component is a variable-size string
// component (valid UTF-8 values).
func (c ComponentDesc) IsString() bool { return c.MaxLen != 0 && c.Fingerprint == FingerprintString }

// validVarSize checks the fields of a variable-size component.
func validVarSize(c ComponentDesc) error {
	switch {
	case c.Size != BytesHandleSize || c.Align != BytesHandleAlign:
		return fmt.Errorf("variable-size component %q: size %d align %d, want the handle's %d and %d", c.Name, c.Size, c.Align, BytesHandleSize, BytesHandleAlign)
	case c.Fingerprint != FingerprintBytes && c.Fingerprint != FingerprintString:
		return fmt.Errorf("variable-size component %q: fingerprint %#x is neither bytes nor string", c.Name, c.Fingerprint)
	case c.MaxLen > MaxValueLen:
		return fmt.Errorf("variable-size component %q: max length %d (at most %d)", c.Name, c.MaxLen, MaxValueLen)
	case c.PerEntity < ArenaAlign || c.PerEntity%ArenaAlign != 0 || int(c.PerEntity) > align(int(c.MaxLen), ArenaAlign):
		return fmt.Errorf("variable-size component %q: %d arena bytes per entity, want a multiple of %d in [%d, %d]",
			c.Name, c.PerEntity, ArenaAlign, ArenaAlign, align(int(c.MaxLen), ArenaAlign))
	}
	return nil
}

// ArenaSize returns the bytes of a chunk's arena for component k (0 for a
// fixed-size component).
func (g *WorldGeometry) ArenaSize(k int) int { return g.ChunkCapacity * int(g.Components[k].PerEntity) }

// ArenaRange returns [off, end) of component k's arena in chunk c of slot
// s: right after its column of handles (empty for a fixed-size component).
func (g *WorldGeometry) ArenaRange(s, c, k int) (int, int) {
	_, o := g.ColumnRange(s, c, k)
	return o, o + g.ArenaSize(k)
}

// ColumnSpan returns [off, end) of component k's column in chunk c of slot s
// with its arena: what backing allocates and gives back for the column.
func (g *WorldGeometry) ColumnSpan(s, c, k int) (int, int) {
	o, _ := g.ColumnRange(s, c, k)
	_, e := g.ArenaRange(s, c, k)
	return o, e
}

// BytesHandle is the column element of a variable-size component: the
// value's offset in the chunk's arena and its length.
type BytesHandle struct {
	Off, Len uint32
}

// DecodeHandle reads the handle at b[0:8].
func DecodeHandle(b []byte) BytesHandle { return BytesHandle{Off: get32(b, 0), Len: get32(b, 4)} }

// EncodeHandle writes h at b[0:8].
func EncodeHandle(b []byte, h BytesHandle) { put32(b, 0, h.Off); put32(b, 4, h.Len) }

// Valid reports whether h names a value inside an arena of arena bytes and
// of at most maxLen bytes (the reader's check; the alignment and overlap of
// values are the writer's invariants, which audit checks).
func (h BytesHandle) Valid(arena int, maxLen uint32) bool {
	return h.Len <= maxLen && uint64(h.Off)+uint64(h.Len) <= uint64(arena)
}
