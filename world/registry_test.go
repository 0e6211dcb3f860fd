package world

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

type Vec3 struct{ X, Y, Z float32 }

type Inner struct {
	A int32
	B [2]uint16
}

type Good struct {
	P     Vec3
	Flags uint8
	In    Inner
	Arr   [4]Inner
	C     complex128
	OK    bool
	N     int
	U     uint
	F     float64
}

type BadInner struct{ Bar string }

type BadString struct {
	X   int32
	Foo BadInner
}
type BadPtr struct{ P *int }
type BadSlice struct{ S []int }
type BadMap struct{ M map[int]int }
type BadIface struct{ I any }
type BadChan struct{ C chan int }
type BadFunc struct{ F func() }
type BadUnsafe struct{ U unsafe.Pointer }
type BadUintptr struct{ U uintptr }
type BadArrayElem struct{ A [3]struct{ S []byte } }
type Empty struct{}
type Huge struct {
	B [layout.MaxComponentSize + 1]byte
}
type MaxSize struct{ B [layout.MaxComponentSize]byte }

func TestRegisterAccepts(t *testing.T) {
	r := NewRegistry()
	ids := []ComponentID{}
	for _, f := range []func() (ComponentID, error){
		func() (ComponentID, error) { return Register[Good](r, "Good") },
		func() (ComponentID, error) { return Register[Vec3](r, "Vec3") },
		func() (ComponentID, error) { return Register[float64](r, "Scalar") },
		func() (ComponentID, error) { return Register[[8]int16](r, "Array") },
		func() (ComponentID, error) { return Register[MaxSize](r, "MaxSize") },
		func() (ComponentID, error) { return Register[bool](r, "Flag") },
	} {
		id, err := f()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	require.Equal(t, []ComponentID{0, 1, 2, 3, 4, 5}, ids)
	require.Equal(t, 6, r.Len())

	info, ok := r.Info(0)
	require.True(t, ok)
	require.Equal(t, "Good", info.Name)
	require.Equal(t, int(unsafe.Sizeof(Good{})), info.Size)
	require.Equal(t, int(unsafe.Alignof(Good{})), info.Align)
	_, ok = r.Info(6)
	require.False(t, ok)

	id, ok := r.Lookup("Vec3")
	require.True(t, ok)
	require.Equal(t, ComponentID(1), id)
	_, ok = r.Lookup("nope")
	require.False(t, ok)
	id, ok = ID[[8]int16](r)
	require.True(t, ok)
	require.Equal(t, ComponentID(3), id)
	_, ok = ID[int8](r)
	require.False(t, ok)

	comps := r.Components()
	require.Len(t, comps, 6)
	require.Equal(t, layout.ComponentDesc{Name: "Vec3", Size: 12, Align: 4, Fingerprint: Fingerprint(reflect.TypeFor[Vec3]()),
		Fields: []layout.FieldDesc{{Name: "X", Type: layout.FieldF32, Offset: 0, Count: 1}, {Name: "Y", Type: layout.FieldF32, Offset: 4, Count: 1},
			{Name: "Z", Type: layout.FieldF32, Offset: 8, Count: 1}}}, comps[1])
	require.Equal(t, layout.SchemaHash(comps), r.SchemaHash())
	require.Equal(t, MaskWord(0x3f), r.Mask())

	// The registered schema is accepted by the segment layout.
	_, err := layout.ComputeWorldGeometry(layout.WorldParams{Slots: 2, ChunkCapacity: 16, MaxChunks: 1, Components: comps})
	require.NoError(t, err)
}

func TestRegisterRejects(t *testing.T) {
	const tail = "; components must be pointer-free fixed-size types"
	cases := []struct {
		name string
		reg  func(r *Registry) error
		want string
	}{
		{"string field", func(r *Registry) error { _, err := Register[BadString](r, "Bad"); return err },
			`fdp/world: component "Bad": field Foo.Bar is a string` + tail},
		{"pointer", func(r *Registry) error { _, err := Register[BadPtr](r, "Bad"); return err },
			"field P is a pointer" + tail},
		{"slice", func(r *Registry) error { _, err := Register[BadSlice](r, "Bad"); return err },
			"field S is a slice" + tail},
		{"map", func(r *Registry) error { _, err := Register[BadMap](r, "Bad"); return err },
			"field M is a map" + tail},
		{"interface", func(r *Registry) error { _, err := Register[BadIface](r, "Bad"); return err },
			"field I is an interface" + tail},
		{"chan", func(r *Registry) error { _, err := Register[BadChan](r, "Bad"); return err },
			"field C is a channel" + tail},
		{"func", func(r *Registry) error { _, err := Register[BadFunc](r, "Bad"); return err },
			"field F is a func" + tail},
		{"unsafe.Pointer", func(r *Registry) error { _, err := Register[BadUnsafe](r, "Bad"); return err },
			"field U is an unsafe.Pointer" + tail},
		{"uintptr", func(r *Registry) error { _, err := Register[BadUintptr](r, "Bad"); return err },
			"field U is a uintptr" + tail},
		{"array element", func(r *Registry) error { _, err := Register[BadArrayElem](r, "Bad"); return err },
			"field A[].S is a slice" + tail},
		{"top-level string", func(r *Registry) error { _, err := Register[string](r, "Bad"); return err },
			"type string is a string" + tail},
		{"top-level pointer", func(r *Registry) error { _, err := Register[*Vec3](r, "Bad"); return err },
			"type *world.Vec3 is a pointer" + tail},
		{"zero size", func(r *Registry) error { _, err := Register[Empty](r, "Bad"); return err },
			"has size 0"},
		{"zero-length array", func(r *Registry) error { _, err := Register[[0]int32](r, "Bad"); return err },
			"has size 0"},
		{"too large", func(r *Registry) error { _, err := Register[Huge](r, "Bad"); return err },
			fmt.Sprintf("is %d bytes (max %d)", layout.MaxComponentSize+1, layout.MaxComponentSize)},
		{"empty name", func(r *Registry) error { _, err := Register[Vec3](r, ""); return err },
			"name must be"},
		{"long name", func(r *Registry) error { _, err := Register[Vec3](r, strings.Repeat("n", 32)); return err },
			"name must be"},
		{"NUL in name", func(r *Registry) error { _, err := Register[Vec3](r, "a\x00b"); return err },
			"name must be"},
		{"duplicate name", func(r *Registry) error {
			if _, err := Register[Vec3](r, "Dup"); err != nil {
				return err
			}
			_, err := Register[Inner](r, "Dup")
			return err
		}, `component "Dup": name already registered`},
		{"duplicate type", func(r *Registry) error {
			if _, err := Register[Vec3](r, "A"); err != nil {
				return err
			}
			_, err := Register[Vec3](r, "B")
			return err
		}, `component "B": type world.Vec3 already registered as "A"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRegistry()
			err := tc.reg(r)
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrRegistry))
			require.Contains(t, err.Error(), tc.want)
			require.True(t, strings.HasPrefix(err.Error(), "fdp/world: "), err.Error())
			_, ok := r.Lookup("Bad")
			require.False(t, ok, "rejected component must not be registered")
		})
	}
}

func TestRegisterLimitAndFreeze(t *testing.T) {
	r := NewRegistry()
	for i := 0; i < layout.MaxComponents; i++ {
		_, err := r.register(reflect.ArrayOf(i+1, reflect.TypeFor[byte]()), fmt.Sprintf("C%d", i))
		require.NoError(t, err)
	}
	require.Equal(t, Mask{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}, r.Mask())
	_, err := Register[Vec3](r, "Extra")
	require.ErrorIs(t, err, ErrRegistry)
	require.EqualError(t, err, `fdp/world: component "Extra": too many components: 256 are registered, the cap is 256 (layout.MaxComponents)`)
	require.Equal(t, layout.MaxComponents, r.Len())

	r2 := NewRegistry()
	_, err = Register[Vec3](r2, "Pos")
	require.NoError(t, err)
	_, err = New(r2, Config{})
	require.NoError(t, err)
	require.True(t, r2.Frozen())
	_, err = Register[Inner](r2, "Late")
	require.ErrorIs(t, err, ErrRegistry)
	require.ErrorContains(t, err, "frozen")
	require.Equal(t, 1, r2.Len())

	// A full 256-component world works, including components 63, 64 and 255.
	w, err := New(r, Config{ChunkCapacity: 16, MaxChunks: 1})
	require.NoError(t, err)
	require.Equal(t, 4, w.MaskWords())
	e, _ := w.Create()
	require.NoError(t, Set(w, e, 63, [64]byte{1, 2, 3}))
	v, ok := Get[[64]byte](w, e, 63)
	require.True(t, ok)
	require.Equal(t, byte(3), v[2])
	require.NoError(t, Set(w, e, 64, [65]byte{64: 9}))
	require.NoError(t, w.Add(e, 255))
	v2, ok := Get[[65]byte](w, e, 64)
	require.True(t, ok)
	require.Equal(t, byte(9), v2[64])
	require.Equal(t, MaskOf(63, 64, 255), w.Mask(e))
	require.Equal(t, layout.EntityRecord{Gen: 1, Flags: layout.FlagAlive, Mask: [4]uint64{1 << 63, 1, 0, 1 << 63}}, w.ChunkRecord(0, 0))
	require.Equal(t, 1, countMatching(w, MaskOf(64, 255)))
	require.NoError(t, w.Remove(e, 64))
	require.Equal(t, 0, countMatching(w, MaskOf(64, 255)))
	require.Equal(t, 1, countMatching(w, MaskOf(63, 255)))
}

// Layout-identical types declared elsewhere.
type vec3Twin struct{ X, Y, Z float32 }
type vec3Reordered struct{ Y, X, Z float32 }
type vec3Renamed struct{ X, Y, W float32 }
type vec3Wider struct{ X, Y, Z float64 }
type innerPadded struct {
	A int32
	_ [4]byte
	B [2]uint16
}

func TestFingerprint(t *testing.T) {
	fp := func(t reflect.Type) uint64 { return Fingerprint(t) }
	base := fp(reflect.TypeFor[Vec3]())
	// Stable: recomputing gives the same value, and type names do not matter.
	require.Equal(t, base, fp(reflect.TypeFor[Vec3]()))
	require.Equal(t, base, fp(reflect.TypeFor[vec3Twin]()))
	require.Equal(t, base, fp(reflect.TypeOf(struct{ X, Y, Z float32 }{})))
	// Golden value: the fingerprint is part of the shared-memory schema and
	// must not change between builds (FNV-64a of the canonical description).
	require.Equal(t, uint64(0xd3a504e0f05602b2), base, "got %#x", base)
	// And it is what the documented canonical description hashes to.
	// (docs/LAYOUT.md "Field table"): u32 size, u32 align, u32 fields, then
	// per field u8 type, u32 offset, u32 count, u32 len(name), name.
	var d []byte
	le := binary.LittleEndian
	d = le.AppendUint32(d, 12)
	d = le.AppendUint32(d, 4)
	d = le.AppendUint32(d, 3)
	for i, n := range []string{"X", "Y", "Z"} {
		d = append(d, 9) // f32
		d = le.AppendUint32(d, uint32(4*i))
		d = le.AppendUint32(d, 1)
		d = le.AppendUint32(d, 1)
		d = append(d, n...)
	}
	h := fnv.New64a()
	h.Write(d)
	require.Equal(t, h.Sum64(), base)

	// Sensitive to reordering, renaming, field types, padding, array length.
	others := []reflect.Type{
		reflect.TypeFor[vec3Reordered](),
		reflect.TypeFor[vec3Renamed](),
		reflect.TypeFor[vec3Wider](),
		reflect.TypeFor[[3]float32](),
		reflect.TypeFor[Inner](),
		reflect.TypeFor[innerPadded](),
		reflect.TypeFor[[2]Vec3](),
		reflect.TypeFor[[3]Vec3](),
		reflect.TypeFor[struct{ X, Y, Z int32 }](),
	}
	seen := map[uint64]reflect.Type{base: reflect.TypeFor[Vec3]()}
	for _, o := range others {
		f := fp(o)
		prev, dup := seen[f]
		require.False(t, dup, "%v and %v share fingerprint %#x", o, prev, f)
		seen[f] = o
	}

	// Schema hash follows registration order.
	r1, r2 := NewRegistry(), NewRegistry()
	_, _ = Register[Vec3](r1, "A")
	_, _ = Register[Inner](r1, "B")
	_, _ = Register[Inner](r2, "B")
	_, _ = Register[Vec3](r2, "A")
	require.NotEqual(t, r1.SchemaHash(), r2.SchemaHash())
	r3 := NewRegistry()
	_, _ = Register[vec3Twin](r3, "A")
	_, _ = Register[Inner](r3, "B")
	require.Equal(t, r1.SchemaHash(), r3.SchemaHash())
}
