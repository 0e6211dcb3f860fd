package world

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/fdp-engine/fdp/layout"
)

type wheel struct {
	Pressure float32
	Worn     bool
}

type car struct {
	Pos    Vec3
	_      [4]byte // padding: not described
	ID     uint64
	Wheels [2]wheel
	M      [2][3]int16
	Z      complex64
	Count  int
	None   [0]int32
}

// TestFieldsByReflection: the registry's description of a type is its
// scalars in memory order under dotted paths, arrays of scalars flattened,
// arrays of structs element by element, blank and zero-size fields left
// out; written here by hand from the Go spec's layout rules.
func TestFieldsByReflection(t *testing.T) {
	f := func(name string, ty layout.FieldType, off, n uint32) layout.FieldDesc {
		return layout.FieldDesc{Name: name, Type: ty, Offset: off, Count: n}
	}
	want := []layout.FieldDesc{
		f("Pos.X", layout.FieldF32, 0, 1), f("Pos.Y", layout.FieldF32, 4, 1), f("Pos.Z", layout.FieldF32, 8, 1),
		f("ID", layout.FieldU64, 16, 1),
		f("Wheels[0].Pressure", layout.FieldF32, 24, 1), f("Wheels[0].Worn", layout.FieldBool, 28, 1),
		f("Wheels[1].Pressure", layout.FieldF32, 32, 1), f("Wheels[1].Worn", layout.FieldBool, 36, 1),
		f("M", layout.FieldI16, 40, 6), f("Z", layout.FieldC64, 52, 1), f("Count", layout.FieldI64, 64, 1),
	}
	got, err := Fields(reflect.TypeFor[car]())
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Equal(t, layout.FieldsFingerprint(uint32(unsafe.Sizeof(car{})), 8, want), Fingerprint(reflect.TypeFor[car]()))

	got, err = Fields(reflect.TypeFor[float64]())
	require.NoError(t, err)
	require.Equal(t, []layout.FieldDesc{f("", layout.FieldF64, 0, 1)}, got, "a scalar type is its own unnamed field")
	got, err = Fields(reflect.TypeFor[[4][4]float32]())
	require.NoError(t, err)
	require.Equal(t, []layout.FieldDesc{f("", layout.FieldF32, 0, 16)}, got)

	// A registry's world accepts its own description, and a type with
	// nothing to describe is refused at registration with one clear error.
	r := NewRegistry()
	_, err = Register[car](r, "Car")
	require.NoError(t, err)
	_, err = Register[struct{ _ int32 }](r, "Blank")
	require.ErrorIs(t, err, ErrRegistry)
	require.ErrorContains(t, err, "no fields to describe")
	_, err = RegisterSingleton[wheel](r, "W")
	require.NoError(t, err)
	_, err = layout.ComputeWorldGeometry(layout.WorldParams{Instance: "t", Slots: 2, ChunkCapacity: 16, MaxChunks: 1,
		Components: r.Components(), Singletons: r.Singletons()})
	require.NoError(t, err)
	info, _ := r.Info(0)
	require.Equal(t, want, info.Fields)
	require.Equal(t, []layout.FieldDesc{f("Pressure", layout.FieldF32, 0, 1), f("Worn", layout.FieldBool, 4, 1)}, r.Singletons()[0].Fields)
}

// TestFingerprintMatchesHandWritten: a type's fingerprint equals the one of
// a description written by hand, as a client in another language writes it.
func TestFingerprintMatchesHandWritten(t *testing.T) {
	xyz := []layout.FieldDesc{{Name: "X", Type: layout.FieldF32, Offset: 0, Count: 1}, {Name: "Y", Type: layout.FieldF32, Offset: 4, Count: 1},
		{Name: "Z", Type: layout.FieldF32, Offset: 8, Count: 1}}
	require.Equal(t, layout.FieldsFingerprint(12, 4, xyz), Fingerprint(reflect.TypeFor[Vec3]()))
	require.Equal(t, layout.FieldsFingerprint(40, 8, []layout.FieldDesc{{Name: "Frame", Type: layout.FieldU64, Count: 1},
		{Name: "Nanos", Type: layout.FieldI64, Offset: 8, Count: 1}, {Name: "Dt", Type: layout.FieldI64, Offset: 16, Count: 1},
		{Name: "Scale", Type: layout.FieldF64, Offset: 24, Count: 1}, {Name: "Paused", Type: layout.FieldU32, Offset: 32, Count: 1},
		{Name: "Reserved", Type: layout.FieldU32, Offset: 36, Count: 1}}),
		Fingerprint(reflect.TypeFor[Time]()))
}
