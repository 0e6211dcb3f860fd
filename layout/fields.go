package layout

// The field table (section SecFields of a world segment): the self-describing
// schema. For every component and every singleton it lists the scalar fields
// of its value, so that a reader in any language can interpret a value's
// bytes without the Go source, and verify the value's fingerprint: the
// fingerprint of a component or singleton is FieldsFingerprint of its size,
// alignment and fields (the canonical description, docs/LAYOUT.md "Field
// table"), and every decoder recomputes it.
//
// Section layout (at FieldsOff, right after the singleton table):
//
//	F entries of FieldEntrySize bytes, then the name pool: the entries'
//	names concatenated in entry order (no separators), the section padded
//	with zeros to a multiple of 64 bytes.
//
// Invariants (F1..F5, checked by validFields):
//
//	F1 entries are grouped by owner: every component in id order, then
//	   every singleton in id order; each owner has at least one field;
//	F2 an owner's fields are in increasing offset order and do not overlap;
//	   each lies inside the value (offset + count × scalar size ≤ size) at an
//	   offset that is a multiple of its type's alignment;
//	F3 a fixed-size value's fields have scalar types and count ≥ 1; a
//	   variable-size component has exactly one field: name "", type bytes
//	   or string, offset 0, count 0;
//	F4 names are UTF-8 without NUL, at most MaxFieldName bytes, unique per
//	   owner; "" (the value itself) only as an owner's only field;
//	F5 the owner's fingerprint is FieldsFingerprint(size, align, fields).

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"unicode/utf8"
)

// FieldType is the scalar type of a field (the u8 at FieldType in an entry).
type FieldType uint8

// Field types. The numbering is wire format: never reuse a value.
const (
	FieldU8     FieldType = 1
	FieldI8     FieldType = 2
	FieldU16    FieldType = 3
	FieldI16    FieldType = 4
	FieldU32    FieldType = 5
	FieldI32    FieldType = 6
	FieldU64    FieldType = 7
	FieldI64    FieldType = 8
	FieldF32    FieldType = 9
	FieldF64    FieldType = 10
	FieldBool   FieldType = 11 // one byte, 0 or 1
	FieldC64    FieldType = 12 // complex64: f32 real, f32 imaginary
	FieldC128   FieldType = 13 // complex128: f64 real, f64 imaginary
	FieldBytes  FieldType = 14 // a variable-size component's value (any bytes)
	FieldString FieldType = 15 // a variable-size component's value (valid UTF-8)
)

// fieldTypes holds, per FieldType, its name, size and alignment (size 0:
// variable-size).
var fieldTypes = [...]struct {
	name        string
	size, align uint32
}{
	FieldU8: {"u8", 1, 1}, FieldI8: {"i8", 1, 1}, FieldU16: {"u16", 2, 2}, FieldI16: {"i16", 2, 2},
	FieldU32: {"u32", 4, 4}, FieldI32: {"i32", 4, 4}, FieldU64: {"u64", 8, 8}, FieldI64: {"i64", 8, 8},
	FieldF32: {"f32", 4, 4}, FieldF64: {"f64", 8, 8}, FieldBool: {"bool", 1, 1}, FieldC64: {"c64", 8, 4},
	FieldC128: {"c128", 16, 8}, FieldBytes: {"bytes", 0, 1}, FieldString: {"string", 0, 1},
}

// Valid reports whether t is a known field type.
func (t FieldType) Valid() bool { return t != 0 && int(t) < len(fieldTypes) }

// String returns the type's name (u8 … string), or type(N) for an unknown one.
func (t FieldType) String() string {
	if !t.Valid() {
		return fmt.Sprintf("type(%d)", uint8(t))
	}
	return fieldTypes[t].name
}

// Size returns the bytes of one element (0 for bytes and string).
func (t FieldType) Size() uint32 {
	if !t.Valid() {
		return 0
	}
	return fieldTypes[t].size
}

// Align returns the alignment of the type's offset inside a value.
func (t FieldType) Align() uint32 {
	if !t.Valid() {
		return 1
	}
	return fieldTypes[t].align
}

// VarSize reports whether t is the type of a variable-size value.
func (t FieldType) VarSize() bool { return t == FieldBytes || t == FieldString }

// FieldTypeByName returns the type named s (u8 … string).
func FieldTypeByName(s string) (FieldType, bool) {
	for t := range fieldTypes {
		if FieldType(t).Valid() && fieldTypes[t].name == s {
			return FieldType(t), true
		}
	}
	return 0, false
}

// FieldOwner is the kind of value a field belongs to (the u8 at FieldOwnerKind).
type FieldOwner uint8

// Owner kinds.
const (
	OwnerComponent FieldOwner = 1
	OwnerSingleton FieldOwner = 2
)

// String names the owner kind.
func (o FieldOwner) String() string {
	switch o {
	case OwnerComponent:
		return "component"
	case OwnerSingleton:
		return "singleton"
	}
	return fmt.Sprintf("owner(%d)", uint8(o))
}

const (
	// SecFields is the section id of the field table (world segments).
	SecFields uint32 = 9
	// FieldEntrySize is the size of one field table entry.
	FieldEntrySize = 32
	// MaxFieldName bounds a field's name (a dotted path, e.g. "Pos.X" or
	// "Wheels[2].Pressure").
	MaxFieldName = 255
)

// Field table entry fields (offsets inside an entry).
const (
	FieldOwnerKind = 0  // u8 FieldOwner
	FieldTypeOff   = 1  // u8 FieldType
	FieldOwnerID   = 2  // u16 component or singleton id
	FieldOffset    = 4  // u32 offset of the first element inside the value
	FieldCount     = 8  // u32 elements (1 for a scalar; 0 for bytes/string)
	FieldNameOff   = 12 // u32 offset of the name inside the section (in the pool)
	FieldNameLen   = 16 // u32 bytes of the name
	// Bytes 20..31 are reserved and zero.
)

// FieldDesc describes one field of a component or singleton value: a scalar
// (Count 1) or a flat array of Count scalars (nested arrays of scalars are
// flattened in row-major order) at Offset, under Name, the dotted path of the
// field from the value ("" for the value itself: a scalar value, or a
// variable-size component's bytes).
type FieldDesc struct {
	Name   string
	Type   FieldType
	Offset uint32
	Count  uint32
}

// FieldsFingerprint is the fingerprint of a value of the given size,
// alignment and fields: FNV-1a 64 over its canonical description, u32 size,
// u32 align, u32 len(fields), then for each field u8 type, u32 offset, u32
// count, u32 len(name) and the name's bytes (little-endian, no padding).
func FieldsFingerprint(size, align uint32, fields []FieldDesc) uint64 {
	h := fnv.New64a()
	var buf [13]byte
	le.PutUint32(buf[0:], size)
	le.PutUint32(buf[4:], align)
	le.PutUint32(buf[8:], uint32(len(fields)))
	h.Write(buf[:12])
	for _, f := range fields {
		buf[0] = byte(f.Type)
		le.PutUint32(buf[1:], f.Offset)
		le.PutUint32(buf[5:], f.Count)
		le.PutUint32(buf[9:], uint32(len(f.Name)))
		h.Write(buf[:13])
		h.Write([]byte(f.Name))
	}
	return h.Sum64()
}

// VarSizeFields returns the one field of a variable-size component.
func VarSizeFields(utf8 bool) []FieldDesc {
	if utf8 {
		return []FieldDesc{{Type: FieldString}}
	}
	return []FieldDesc{{Type: FieldBytes}}
}

// OpaqueFields describes a fixed-size value of size bytes as one u8 array
// named "" (the value itself): for values whose structure is not known (a
// test's, a fixture's).
func OpaqueFields(size uint32) []FieldDesc {
	return []FieldDesc{{Type: FieldU8, Count: size}}
}

// Opaque returns c described by OpaqueFields, with the fingerprint of that
// description.
func Opaque(c ComponentDesc) ComponentDesc {
	c.Fields = OpaqueFields(c.Size)
	c.Fingerprint = FieldsFingerprint(c.Size, c.Align, c.Fields)
	return c
}

// OpaqueSingleton is Opaque for a singleton.
func OpaqueSingleton(s SingletonDesc) SingletonDesc {
	s.Fields = OpaqueFields(s.Size)
	s.Fingerprint = FieldsFingerprint(s.Size, s.Align, s.Fields)
	return s
}

// validFields checks an owner's fields (F2..F5) against its size, alignment,
// fingerprint and kind (varSize: a variable-size component; utf8 its
// string-ness is implied by the field's type).
func validFields(what string, size, align uint32, fp uint64, varSize bool, fields []FieldDesc) error {
	if len(fields) == 0 {
		return fmt.Errorf("%s: no fields", what)
	}
	if varSize {
		f := fields[0]
		if len(fields) != 1 || !f.Type.VarSize() || f.Name != "" || f.Offset != 0 || f.Count != 0 {
			return fmt.Errorf("%s: a variable-size component has exactly one field: \"\", bytes or string, offset 0, count 0", what)
		}
	}
	end := uint64(0)
	for i, f := range fields {
		switch {
		case !f.Type.Valid():
			return fmt.Errorf("%s: field %q: unknown type %d", what, f.Name, uint8(f.Type))
		case len(f.Name) > MaxFieldName || !utf8.ValidString(f.Name) || bytes.IndexByte([]byte(f.Name), 0) >= 0:
			return fmt.Errorf("%s: field %q: a name is at most %d bytes of UTF-8 without NUL", what, f.Name, MaxFieldName)
		case f.Name == "" && len(fields) != 1:
			return fmt.Errorf("%s: the unnamed field (the value itself) must be the only one", what)
		case varSize:
			continue
		case f.Type.VarSize():
			return fmt.Errorf("%s: field %q: %s in a fixed-size value", what, f.Name, f.Type)
		case f.Count == 0:
			return fmt.Errorf("%s: field %q: count 0", what, f.Name)
		case f.Offset%f.Type.Align() != 0:
			return fmt.Errorf("%s: field %q: offset %d is not a multiple of %s's alignment %d", what, f.Name, f.Offset, f.Type, f.Type.Align())
		case uint64(f.Offset) < end:
			return fmt.Errorf("%s: field %q: offset %d overlaps or precedes the previous field (ends at %d)", what, f.Name, f.Offset, end)
		}
		end = uint64(f.Offset) + uint64(f.Count)*uint64(f.Type.Size())
		if end > uint64(size) {
			return fmt.Errorf("%s: field %q ends at %d, beyond the value's %d bytes", what, f.Name, end, size)
		}
		for _, p := range fields[:i] {
			if p.Name == f.Name {
				return fmt.Errorf("%s: field %q appears twice", what, f.Name)
			}
		}
	}
	if want := FieldsFingerprint(size, align, fields); fp != want {
		return fmt.Errorf("%s: fingerprint %#x, but its fields describe %#x", what, fp, want)
	}
	return nil
}

// fieldTable lists every field of g in table order (F1) with its owner.
func (g *WorldGeometry) fieldTable() (owners []FieldOwner, ids []int, fields []FieldDesc) {
	for i, c := range g.Components {
		for _, f := range c.Fields {
			owners, ids, fields = append(owners, OwnerComponent), append(ids, i), append(fields, f)
		}
	}
	for i, s := range g.Singletons {
		for _, f := range s.Fields {
			owners, ids, fields = append(owners, OwnerSingleton), append(ids, i), append(fields, f)
		}
	}
	return owners, ids, fields
}

// FieldCount returns the number of field table entries.
func (g *WorldGeometry) FieldCount() int {
	n := 0
	for _, c := range g.Components {
		n += len(c.Fields)
	}
	for _, s := range g.Singletons {
		n += len(s.Fields)
	}
	return n
}

// FieldTableSize is the size of the field table section: the entries and the
// name pool, rounded up to 64.
func (g *WorldGeometry) FieldTableSize() int {
	n := 0
	_, _, fields := g.fieldTable()
	for _, f := range fields {
		n += FieldEntrySize + len(f.Name)
	}
	return align(n, 64)
}

// encodeFields writes the field table at g.FieldsOff.
func (g *WorldGeometry) encodeFields(b []byte) {
	owners, ids, fields := g.fieldTable()
	base := g.FieldsOff
	pool := len(fields) * FieldEntrySize
	for i, f := range fields {
		o := base + i*FieldEntrySize
		b[o+FieldOwnerKind] = byte(owners[i])
		b[o+FieldTypeOff] = byte(f.Type)
		le.PutUint16(b[o+FieldOwnerID:], uint16(ids[i]))
		put32(b, o+FieldOffset, f.Offset)
		put32(b, o+FieldCount, f.Count)
		put32(b, o+FieldNameOff, uint32(pool))
		put32(b, o+FieldNameLen, uint32(len(f.Name)))
		copy(b[base+pool:], f.Name)
		pool += len(f.Name)
	}
}

// decodeFields reads the field table of a world segment and attaches each
// owner's fields to comps and singles (DecodeFieldTable).
func decodeFields(b []byte, h *Header, comps []ComponentDesc, singles []SingletonDesc) error {
	sec, ok := h.Section(SecFields)
	if !ok {
		return corrupt("field table section missing")
	}
	return DecodeFieldTable(b[sec.Offset:sec.Offset+sec.Size], int(sec.Count), comps, singles)
}

// FieldTable returns the bytes of the field table of a schema, as a world
// segment's section SecFields holds them (and a recording's header:
// record/header.go), and its number of entries.
func FieldTable(comps []ComponentDesc, singles []SingletonDesc) ([]byte, int) {
	g := &WorldGeometry{Components: comps, Singletons: singles}
	b := make([]byte, g.FieldTableSize())
	g.encodeFields(b)
	return b, g.FieldCount()
}

// DecodeFieldTable reads a field table of n entries (the bytes of the
// section) and attaches each owner's fields to comps and singles (F1; the
// rest is validated with the geometry, ComputeWorldGeometry). The placement
// of every name is checked: the pool holds the names in entry order, and
// the padding after it is zero. It never panics.
func DecodeFieldTable(table []byte, n int, comps []ComponentDesc, singles []SingletonDesc) error {
	if n < 0 || uint64(n)*FieldEntrySize > uint64(len(table)) {
		return corrupt("field table: %d entries in %d bytes", n, len(table))
	}
	pool := n * FieldEntrySize
	kind, id := OwnerComponent, 0 // the owner the next entry may continue or follow
	for i := 0; i < n; i++ {
		o := i * FieldEntrySize
		ok2, oid := FieldOwner(table[o+FieldOwnerKind]), int(le.Uint16(table[o+FieldOwnerID:]))
		nameOff, nameLen := int(get32(table, o+FieldNameOff)), int(get32(table, o+FieldNameLen))
		if !allZero(table[o+20 : o+FieldEntrySize]) {
			return corrupt("field %d: reserved bytes are not zero", i)
		}
		if nameOff != pool || nameLen > MaxFieldName || pool+nameLen > len(table) {
			return corrupt("field %d: name at %d (+%d), want it at %d in the pool", i, nameOff, nameLen, pool)
		}
		f := FieldDesc{Name: string(table[pool : pool+nameLen]), Type: FieldType(table[o+FieldTypeOff]),
			Offset: get32(table, o+FieldOffset), Count: get32(table, o+FieldCount)}
		pool += nameLen
		// F1: the same owner as the previous entry, or a later one.
		if ok2 != kind || oid != id {
			switch {
			case ok2 == kind && oid > id, ok2 == OwnerSingleton && kind == OwnerComponent:
				kind, id = ok2, oid
			default:
				return corrupt("field %d: owner %s %d out of order", i, ok2, oid)
			}
		}
		switch {
		case kind == OwnerComponent && id < len(comps):
			comps[id].Fields = append(comps[id].Fields, f)
		case kind == OwnerSingleton && id < len(singles):
			singles[id].Fields = append(singles[id].Fields, f)
		default:
			return corrupt("field %d: no %s %d", i, kind, id)
		}
	}
	if !allZero(table[pool:]) {
		return corrupt("field table: padding after the names is not zero")
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
