package layout

import (
	"encoding/binary"
	"hash/fnv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFieldTableBytes: the field table of the test world is exactly the
// bytes docs/LAYOUT.md "Field table" describes, built here independently of
// encodeFields: entries grouped by owner (components, then singletons),
// names packed in entry order after the entries, zero padding to 64.
func TestFieldTableBytes(t *testing.T) {
	b, g := encodeTestWorld(t)
	w, err := DecodeWorld(b)
	require.NoError(t, err)
	sec, ok := w.Header.Section(SecFields)
	require.True(t, ok)
	type row struct {
		owner FieldOwner
		id    uint16
		f     FieldDesc
	}
	var rows []row
	for i, c := range testComponents() {
		for _, f := range c.Fields {
			rows = append(rows, row{OwnerComponent, uint16(i), f})
		}
	}
	for i, s := range testSingletons() {
		for _, f := range s.Fields {
			rows = append(rows, row{OwnerSingleton, uint16(i), f})
		}
	}
	var want []byte
	var pool []byte
	for _, r := range rows {
		e := make([]byte, 32)
		e[0], e[1] = byte(r.owner), byte(r.f.Type)
		binary.LittleEndian.PutUint16(e[2:], r.id)
		binary.LittleEndian.PutUint32(e[4:], r.f.Offset)
		binary.LittleEndian.PutUint32(e[8:], r.f.Count)
		binary.LittleEndian.PutUint32(e[12:], uint32(32*len(rows)+len(pool)))
		binary.LittleEndian.PutUint32(e[16:], uint32(len(r.f.Name)))
		want = append(want, e...)
		pool = append(pool, r.f.Name...)
	}
	want = append(want, pool...)
	for len(want)%64 != 0 {
		want = append(want, 0)
	}
	require.Equal(t, uint32(len(rows)), sec.Count)
	require.Equal(t, uint64(g.FieldsOff), sec.Offset)
	require.Equal(t, g.SingletonsOff+64*len(g.Singletons), g.FieldsOff, "right after the singleton table")
	require.Equal(t, want, b[sec.Offset:sec.Offset+sec.Size])
	require.Equal(t, Align(g.FieldsOff+len(want), PageSize), g.SlotsOff)
	for i, c := range w.Components {
		require.True(t, c.Equal(testComponents()[i]), "component %d round-trips with its fields", i)
	}
	for i, s := range w.Singletons {
		require.True(t, s.Equal(testSingletons()[i]), "singleton %d round-trips with its fields", i)
	}
}

// TestFieldsFingerprintCanonical: the fingerprint is FNV-1a 64 of the
// documented canonical description (u32 size, u32 align, u32 n, then per
// field u8 type, u32 offset, u32 count, u32 len(name), name).
func TestFieldsFingerprintCanonical(t *testing.T) {
	fields := []FieldDesc{{"Pos.X", FieldF64, 0, 1}, {"Tags", FieldU16, 8, 3}}
	d := []byte{16, 0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0,
		10, 0, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 'P', 'o', 's', '.', 'X',
		3, 8, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 'T', 'a', 'g', 's'}
	h := fnv.New64a()
	h.Write(d)
	require.Equal(t, h.Sum64(), FieldsFingerprint(16, 8, fields))
	require.NotEqual(t, FingerprintBytes, FingerprintString)
	require.Equal(t, FieldsFingerprint(8, 4, []FieldDesc{{Type: FieldString}}), FingerprintString)
	for ft := FieldType(1); ft.Valid(); ft++ {
		back, ok := FieldTypeByName(ft.String())
		require.True(t, ok)
		require.Equal(t, ft, back)
	}
	require.Equal(t, "type(16)", FieldType(16).String())
}

// TestFieldsRefused: each rule of the field description (F2..F5) refuses a
// world whose description breaks it, with a fingerprint that matches the
// bad description (so the rule, not the fingerprint, refuses it).
func TestFieldsRefused(t *testing.T) {
	for what, fields := range map[string][]FieldDesc{
		"none":             nil,
		"overlap":          {{"A", FieldU32, 0, 1}, {"B", FieldU16, 2, 1}},
		"out of order":     {{"A", FieldU32, 4, 1}, {"B", FieldU32, 0, 1}},
		"beyond the value": {{"A", FieldU32, 0, 3}},
		"misaligned":       {{"A", FieldU8, 0, 1}, {"B", FieldU32, 2, 1}},
		"count 0":          {{"A", FieldU32, 0, 0}},
		"unknown type":     {{"A", FieldType(99), 0, 1}},
		"bytes in fixed":   {{"", FieldBytes, 0, 0}},
		"duplicate":        {{"A", FieldU32, 0, 1}, {"A", FieldU32, 4, 1}},
		"unnamed and more": {{"", FieldU32, 0, 1}, {"A", FieldU32, 4, 1}},
		"NUL in a name":    {{"A\x00", FieldU32, 0, 1}},
	} {
		c := ComponentDesc{Name: "C", Size: 8, Align: 4, Fields: fields, Fingerprint: FieldsFingerprint(8, 4, fields)}
		_, err := ComputeWorldGeometry(WorldParams{Instance: "t", Slots: 2, ChunkCapacity: 16, MaxChunks: 1, Components: []ComponentDesc{c}})
		require.ErrorIs(t, err, ErrInvalidParam, what)
	}
	good := []FieldDesc{{"A", FieldU32, 0, 1}}
	c := ComponentDesc{Name: "C", Size: 8, Align: 4, Fields: good, Fingerprint: FieldsFingerprint(8, 4, good) + 1}
	_, err := ComputeWorldGeometry(WorldParams{Instance: "t", Slots: 2, ChunkCapacity: 16, MaxChunks: 1, Components: []ComponentDesc{c}})
	require.ErrorContains(t, err, "fingerprint", "a fingerprint its fields do not describe")
	v := ComponentDesc{Name: "V", Size: 8, Align: 4, Fingerprint: FingerprintBytes, MaxLen: 8, PerEntity: 8, Fields: good}
	_, err = ComputeWorldGeometry(WorldParams{Instance: "t", Slots: 2, ChunkCapacity: 16, MaxChunks: 1, Components: []ComponentDesc{v}})
	require.ErrorIs(t, err, ErrInvalidParam, "a variable-size component described as a u32")
}

// TestFieldTableDecodeRejects: a decoder refuses a field table whose bytes
// break the placement rules, as corrupt, never panicking.
func TestFieldTableDecodeRejects(t *testing.T) {
	b, g := encodeTestWorld(t)
	base := g.FieldsOff
	n := g.FieldCount()
	for what, mutate := range map[string]func(c []byte){
		"reserved byte":      func(c []byte) { c[base+20] = 1 },
		"name offset":        func(c []byte) { c[base+FieldNameOff] ^= 8 },
		"name length":        func(c []byte) { c[base+FieldNameLen] = 200 },
		"type":               func(c []byte) { c[base+FieldTypeOff] = byte(FieldF64) },
		"offset":             func(c []byte) { c[base+FieldOffset] = 4 },
		"owner kind":         func(c []byte) { c[base+FieldOwnerKind] = 3 },
		"owner out of order": func(c []byte) { c[base+FieldEntrySize+FieldOwnerID] = 2 }, // entry 2 is component 0 again
		"singleton owner":    func(c []byte) { c[base+(n-1)*FieldEntrySize+FieldOwnerID] = 9 },
		"name byte":          func(c []byte) { c[base+n*FieldEntrySize] = 'Q' },
		"padding":            func(c []byte) { c[base+g.FieldTableSize()-1] = 1 },
	} {
		c := append([]byte(nil), b...)
		mutate(c)
		_, err := DecodeWorld(c)
		require.ErrorIs(t, err, ErrCorrupt, what)
	}
	// The section missing: dropped from the section table (the header's
	// checksum recomputed, so only the missing table refuses it).
	c := append([]byte(nil), b...)
	h, err := DecodeHeader(c)
	require.NoError(t, err)
	var keep []Section
	for _, s := range h.Sections {
		if s.ID != SecFields {
			keep = append(keep, s)
		}
	}
	h.Sections = keep
	require.NoError(t, EncodeHeader(c, h))
	MarkReady(c)
	_, err = DecodeWorld(c)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "field table")
}
