package layout

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func testVarComponents() []ComponentDesc {
	return append(testComponents(),
		ComponentDesc{Name: "Name", Size: 8, Align: 4, Fingerprint: FingerprintString, MaxLen: 30, PerEntity: 16, Fields: VarSizeFields(true)},
		ComponentDesc{Name: "Blob", Size: 8, Align: 4, Fingerprint: FingerprintBytes, MaxLen: 100, PerEntity: 104, Fields: VarSizeFields(false)})
}

// TestVarSizeGeometry: a variable-size component's column is K handles of
// 8 bytes followed by its arena of K × PerEntity bytes, in one span that
// backing allocates whole; the table keeps MaxLen and PerEntity; the schema
// hash covers them and stays what it was for fixed-size components.
func TestVarSizeGeometry(t *testing.T) {
	comps := testVarComponents()
	g, err := ComputeWorldGeometry(WorldParams{Instance: "t", Slots: 2, ChunkCapacity: 16, MaxChunks: 3, Components: comps})
	require.NoError(t, err)
	name, blob := 4, 5
	ho, he := g.ColumnRange(1, 2, name)
	require.Equal(t, 16*8, he-ho, "the handles")
	ao, ae := g.ArenaRange(1, 2, name)
	require.Equal(t, he, ao, "the arena follows the handles")
	require.Equal(t, 16*16, ae-ao)
	require.Equal(t, 16*16, g.ArenaSize(name))
	so, se := g.ColumnSpan(1, 2, name)
	require.Equal(t, [2]int{ho, ae}, [2]int{so, se})
	require.Equal(t, Align(ae-g.ChunkOff(1, 2), 64), g.ColumnOff[blob], "the next column after the arena")
	require.Zero(t, ao%64)
	_, fe := g.ColumnSpan(0, 0, 0)
	fo, _ := g.ColumnRange(0, 0, 0)
	require.Equal(t, 16*12, fe-fo, "a fixed-size component has no arena")
	require.Zero(t, g.ArenaSize(0))

	// Backing allocates the arena with its column.
	var spans [][2]int
	g.SlotSpans(1, [MaxMaskWords]uint64{1 << name}, 0, 3, func(lo, hi int) { spans = append(spans, [2]int{lo, hi}) })
	covered := func(lo, hi int) bool {
		for _, sp := range spans {
			if sp[0] <= lo && hi <= sp[1] {
				return true
			}
		}
		return false
	}
	for c := 0; c < 3; c++ {
		lo, hi := g.ColumnSpan(1, c, name)
		lo = max(lo, g.SlotOff(1)+g.SlotHead) // the head is always allocated
		require.True(t, covered(lo, hi), "chunk %d: the column and its arena", c)
	}

	require.Equal(t, SchemaHash(testComponents()), SchemaHash(comps[:4]), "fixed-size components hash as before")
	other := testVarComponents()
	other[4].PerEntity = 24
	require.NotEqual(t, SchemaHash(comps), SchemaHash(other))
	other = testVarComponents()
	other[4].Fingerprint = FingerprintBytes
	require.NotEqual(t, SchemaHash(comps), SchemaHash(other))
	require.True(t, comps[4].IsString())
	require.False(t, comps[5].IsString())
	require.True(t, comps[5].VarSize())
	require.False(t, comps[0].VarSize())

	// The table round-trips and the decoder validates it.
	b := make([]byte, g.TotalSize)
	require.NoError(t, EncodeWorld(b, g, Header{Instance: "t"}))
	MarkReady(b)
	w, err := DecodeWorld(b)
	require.NoError(t, err)
	require.Equal(t, comps, w.Components)
	entry := g.ComponentsOff + name*ComponentEntrySize
	require.Equal(t, uint32(30), get32(b, entry+ComponentMaxLen))
	require.Equal(t, uint32(16), get32(b, entry+ComponentPerEntity))
	for what, mutate := range map[string]func(b []byte){
		"max length beyond the cap": func(b []byte) { put32(b, entry+ComponentMaxLen, MaxValueLen+1) },
		"arena not a multiple of 8": func(b []byte) { put32(b, entry+ComponentPerEntity, 12) },
		"arena beyond the max":      func(b []byte) { put32(b, entry+ComponentPerEntity, 40) },
		"arena of a fixed one":      func(b []byte) { put32(b, g.ComponentsOff+ComponentPerEntity, 8) },
		"max length of a fixed one": func(b []byte) { put32(b, g.ComponentsOff+ComponentMaxLen, 8) },
	} {
		c := append([]byte(nil), b...)
		mutate(c)
		_, err := DecodeWorld(c)
		require.ErrorIs(t, err, ErrCorrupt, what)
	}
	for what, c := range map[string]ComponentDesc{
		"size":        {Name: "x", Size: 16, Align: 4, Fingerprint: FingerprintBytes, MaxLen: 8, PerEntity: 8, Fields: VarSizeFields(false)},
		"fingerprint": {Name: "x", Size: 8, Align: 4, Fingerprint: 1, MaxLen: 8, PerEntity: 8, Fields: VarSizeFields(false)},
		"no arena":    {Name: "x", Size: 8, Align: 4, Fingerprint: FingerprintBytes, MaxLen: 8, Fields: VarSizeFields(false)},
	} {
		_, err := ComputeWorldGeometry(WorldParams{Instance: "t", Slots: 2, ChunkCapacity: 16, MaxChunks: 1, Components: []ComponentDesc{c}})
		require.ErrorIs(t, err, ErrInvalidParam, what)
	}
	_, err = ComputeWorldGeometry(WorldParams{Instance: "t", Slots: 2, ChunkCapacity: MaxChunkCapacity, MaxChunks: 1,
		Components: []ComponentDesc{{Name: "x", Size: 8, Align: 4, Fingerprint: FingerprintBytes, MaxLen: MaxValueLen, PerEntity: MaxValueLen, Fields: VarSizeFields(false)}}})
	require.ErrorContains(t, err, "arena", "an arena whose offsets would not fit in u32")
}

func TestBytesHandle(t *testing.T) {
	b := make([]byte, 8)
	EncodeHandle(b, BytesHandle{Off: 16, Len: 5})
	require.Equal(t, []byte{16, 0, 0, 0, 5, 0, 0, 0}, b)
	h := DecodeHandle(b)
	require.Equal(t, BytesHandle{16, 5}, h)
	require.True(t, h.Valid(21, 5))
	require.False(t, h.Valid(20, 5), "past the arena")
	require.False(t, h.Valid(100, 4), "longer than the max")
	require.False(t, BytesHandle{Off: 1<<32 - 1, Len: 2}.Valid(1<<31, 8), "no overflow")
	require.NotEqual(t, FingerprintBytes, FingerprintString)
}
