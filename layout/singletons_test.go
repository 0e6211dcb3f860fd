package layout

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSingletonGeometry: the singleton area's bytes as docs/LAYOUT.md
// ("Singletons") gives them: version words from slot offset 256, values
// 8-aligned after them, chunk 0 at the next multiple of 64, a head of whole
// pages that holds memory from creation; a world without singletons keeps
// the placement and the hash it always had.
func TestSingletonGeometry(t *testing.T) {
	p := WorldParams{Instance: "t", Slots: 2, ChunkCapacity: 16, MaxChunks: 2, Components: testComponents()}
	plain, err := ComputeWorldGeometry(p)
	require.NoError(t, err)
	require.Equal(t, SlotHeaderSize, plain.ChunksOff)
	require.Equal(t, PageSize, plain.SlotHead)
	require.Equal(t, 8192, plain.FieldsOff)
	require.Equal(t, 12288, plain.SlotsOff, "the field table of 8 fields and 3 bytes of names")
	require.Equal(t, SchemaHash(p.Components), plain.SchemaHash())
	require.Equal(t, plain.SlotOff(1)+256, plain.ChunkOff(1, 0))

	p.Singletons = testSingletons() // 24, 1 and 12 bytes
	g, err := ComputeWorldGeometry(p)
	require.NoError(t, err)
	// Versions at 256..279; Time at 280, Flag at 304, Wind at 312 (8-aligned).
	require.Equal(t, []int{280, 304, 312}, g.SingletonOff)
	require.Equal(t, 384, g.ChunksOff, "the end of the area (324) rounded up to 8, then to 64")
	require.Equal(t, PageSize, g.SlotHead)
	require.Equal(t, 12288, g.SlotsOff, "the singleton table after the component table")
	require.Equal(t, 8192, g.SingletonsOff)
	require.Equal(t, g.SlotOff(1)+384, g.ChunkOff(1, 0))
	require.Equal(t, g.SlotOff(1)+256+8, g.SingletonVersionOff(1, 1))
	lo, hi := g.SingletonRange(1, 2)
	require.Equal(t, [2]int{g.SlotOff(1) + 312, g.SlotOff(1) + 324}, [2]int{lo, hi})
	require.NotEqual(t, plain.SchemaHash(), g.SchemaHash())
	require.Equal(t, g.SlotsOff+2*PageSize, g.FixedBytes())

	// A large singleton area: the head spans pages, chunk spans start
	// after it, and it is all fixed.
	big := p
	big.MaxChunks = 16
	big.Singletons = nil
	for i := 0; i < 3; i++ {
		big.Singletons = append(big.Singletons, OpaqueSingleton(SingletonDesc{Name: string(rune('a' + i)), Size: 4096, Align: 8}))
	}
	bg, err := ComputeWorldGeometry(big)
	require.NoError(t, err)
	require.Equal(t, Align(256+24+3*4096, 64), bg.ChunksOff)
	require.Equal(t, 4*PageSize, bg.SlotHead)
	require.Equal(t, bg.SlotsOff+2*4*PageSize, bg.FixedBytes())
	first := -1
	bg.SlotSpans(1, [MaxMaskWords]uint64{0xf}, 0, 16, func(lo, hi int) {
		if first < 0 {
			first = lo
		}
	})
	require.Equal(t, bg.SlotOff(1)+bg.SlotHead, first, "spans never include the head")

	// Bounds and validation.
	bad := p
	bad.Singletons = append(testSingletons(), testSingletons()[0])
	_, err = ComputeWorldGeometry(bad)
	require.ErrorContains(t, err, "registered twice")
	bad.Singletons = []SingletonDesc{OpaqueSingleton(SingletonDesc{Name: "x", Size: 3, Align: 2})}
	_, err = ComputeWorldGeometry(bad)
	require.ErrorIs(t, err, ErrInvalidParam)
	bad.Singletons = []SingletonDesc{OpaqueSingleton(SingletonDesc{Name: "x", Size: 4, Align: 4, Flags: 2})}
	_, err = ComputeWorldGeometry(bad)
	require.ErrorContains(t, err, "unknown flags")
	bad.Singletons = make([]SingletonDesc, MaxSingletons+1)
	_, err = ComputeWorldGeometry(bad)
	require.ErrorContains(t, err, "singletons")
}

// TestDecodeWorldSingletons: the decoder takes the singleton table and
// refuses a table that disagrees with the geometry or the header.
func TestDecodeWorldSingletons(t *testing.T) {
	b, g := encodeTestWorld(t)
	w, err := DecodeWorld(b)
	require.NoError(t, err)
	require.Equal(t, testSingletons(), w.Singletons)
	require.Equal(t, g.SingletonOff, w.SingletonOff)
	require.True(t, w.Singletons[0].EngineOwned())
	require.False(t, w.Singletons[1].EngineOwned())

	entry := g.SingletonsOff + SingletonEntrySize // singleton 1
	for name, mutate := range map[string]func(b []byte){
		"value offset":  func(b []byte) { put32(b, entry+SingletonValueOff, 8) },
		"reserved":      func(b []byte) { b[entry+60] = 1 },
		"flags":         func(b []byte) { put32(b, entry+SingletonFlags, 4) },
		"name garbage":  func(b []byte) { b[entry+20] = 'x' },
		"count":         func(b []byte) { put32(b, OffWSingletons, 2) },
		"count too big": func(b []byte) { put32(b, OffWSingletons, MaxSingletons+1) },
		"chunks offset": func(b []byte) { put64(b, OffWChunksOff, 256) },
		"size":          func(b []byte) { put32(b, entry+SingletonSize, 2) },
	} {
		c := append([]byte(nil), b...)
		mutate(c)
		_, err := DecodeWorld(c)
		require.ErrorIs(t, err, ErrCorrupt, name)
	}
}
