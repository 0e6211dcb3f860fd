package layout

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func manyComponents(n int) []ComponentDesc {
	cs := make([]ComponentDesc, n)
	for i := range cs {
		cs[i] = Opaque(ComponentDesc{Name: fmt.Sprintf("C%d", i), Size: uint32(4 + 4*(i%3)), Align: 4})
	}
	return cs
}

// TestMaskWords: W = ceil(C/64), at least 1; records are 8 + 8W bytes.
func TestMaskWords(t *testing.T) {
	for _, c := range []struct{ comps, words, rec int }{
		{0, 1, 16}, {1, 1, 16}, {64, 1, 16}, {65, 2, 24}, {128, 2, 24}, {129, 3, 32}, {200, 4, 40}, {256, 4, 40},
	} {
		require.Equal(t, c.words, MaskWords(c.comps), "%d components", c.comps)
		require.Equal(t, c.rec, RecordSize(MaskWords(c.comps)), "%d components", c.comps)
	}
	require.Equal(t, 4, MaxMaskWords)
}

// TestGeometryUnchangedUpTo64: a world of at most 64 components keeps the
// geometry it had with 64-bit masks (16-byte records, a 4096-byte component
// table, slots after it and the field table: at 8192 while the field table
// fits in the page), so its memory and publish cost do not change.
func TestGeometryUnchangedUpTo64(t *testing.T) {
	for _, n := range []int{0, 4, 64} {
		g, err := ComputeWorldGeometry(WorldParams{Slots: 2, ChunkCapacity: 64, MaxChunks: 2, Components: manyComponents(n)})
		require.NoError(t, err)
		require.Equal(t, 1, g.MaskWords)
		require.Equal(t, 16, g.RecordSize)
		require.Equal(t, Align(8192+32*n, PageSize), g.SlotsOff, "one opaque field of 32 bytes per component")
		require.Equal(t, 8192, g.FieldsOff)
		require.Equal(t, 64+((8*n+63)/64)*64, g.ChunkHeaderSize)
	}
}

// TestWorld256Components: 256 components make a valid segment with 4-word
// masks that round-trips; a 257th is refused with one error naming the cap.
func TestWorld256Components(t *testing.T) {
	p := WorldParams{Instance: "t", Slots: 2, ChunkCapacity: 16, MaxChunks: 2, Components: manyComponents(MaxComponents)}
	g, err := ComputeWorldGeometry(p)
	require.NoError(t, err)
	require.Equal(t, 4, g.MaskWords)
	require.Equal(t, 40, g.RecordSize)
	require.Equal(t, 4096+256*64, g.FieldsOff)
	require.Equal(t, 4096+256*64+256*32, g.SlotsOff)
	require.Equal(t, 64+256*8, g.ChunkHeaderSize)
	b := make([]byte, g.TotalSize)
	require.NoError(t, EncodeWorld(b, g, Header{Instance: "t"}))
	MarkReady(b)
	w, err := DecodeWorld(b)
	require.NoError(t, err)
	require.Equal(t, 4, w.MaskWords)
	require.Equal(t, uint32(4), binary.LittleEndian.Uint32(b[OffWMaskWords:]))
	eo, ee := w.EntityRange(1, 1)
	require.Equal(t, 16*40, ee-eo)
	require.LessOrEqual(t, ee, w.ChunkOff(1, 1)+w.ColumnOff[0])

	// A stored W that disagrees with the component count is corrupt.
	binary.LittleEndian.PutUint32(b[OffWMaskWords:], 2)
	_, err = DecodeWorld(b)
	require.ErrorIs(t, err, ErrCorrupt)

	p.Components = manyComponents(MaxComponents + 1)
	_, err = ComputeWorldGeometry(p)
	require.ErrorIs(t, err, ErrInvalidParam)
	require.ErrorContains(t, err, "257 components (max 256)")
}

// TestMaskWordsZeroReadsAsOne: a segment written before the mask-words
// field existed (0 there) still decodes when it has at most 64 components.
func TestMaskWordsZeroReadsAsOne(t *testing.T) {
	b, _ := encodeTestWorld(t)
	binary.LittleEndian.PutUint32(b[OffWMaskWords:], 0)
	w, err := DecodeWorld(b)
	require.NoError(t, err)
	require.Equal(t, 1, w.MaskWords)
}

// TestSplitMaskOffsets: words 1..3 of the split masks lie in bytes no other
// field uses, and word 0 is where the 64-bit mask always was.
func TestSplitMaskOffsets(t *testing.T) {
	require.Equal(t, []int{24, 72, 80, 88}, offsets(SlotMaskOff))
	require.Equal(t, []int{16, 32, 40, 48}, offsets(LeaseMaskOff))
	require.Equal(t, []int{1040, 1088, 1096, 1104}, offsets(ModuleMaskOff))
	require.Equal(t, []int{16, 24, 32, 40}, offsets(ChunkRecordMaskOff))
	// Slot header: after the last field (chunk columns copied, u32 at 64),
	// inside the 256-byte header.
	require.GreaterOrEqual(t, SlotMaskHi, SlotChunksCopy+4)
	require.LessOrEqual(t, SlotMaskOff(3)+8, SlotHeaderSize)
	// Lease entry: after the reserved u32 at 24, inside the entry.
	require.GreaterOrEqual(t, LeaseMaskHi, LeaseEngine+4)
	require.LessOrEqual(t, LeaseMaskOff(3)+8, SlotLeaseSize)
	// Module kind header: after the name, before the tick line.
	require.GreaterOrEqual(t, OffMMaskHi, OffMName+ModuleNameLen)
	require.LessOrEqual(t, ModuleMaskOff(3)+8, OffMTick)
	// Chunk header: before the component versions.
	require.LessOrEqual(t, ChunkRecordMaskOff(3)+8, ChunkVersions)
	require.Panics(t, func() { SlotMaskOff(4) })
}

func offsets(f func(int) int) []int {
	var o []int
	for j := 0; j < MaxMaskWords; j++ {
		o = append(o, f(j))
	}
	return o
}

func TestSchemaMaskAndFormat(t *testing.T) {
	require.Equal(t, [4]uint64{}, SchemaMask(0))
	require.Equal(t, [4]uint64{0xf}, SchemaMask(4))
	require.Equal(t, [4]uint64{^uint64(0)}, SchemaMask(64))
	require.Equal(t, [4]uint64{^uint64(0), 1}, SchemaMask(65))
	require.Equal(t, [4]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}, SchemaMask(256))
	require.Equal(t, [4]uint64{0, 2}, MaskBeyond([4]uint64{1, 3}, 65))
	require.Equal(t, "0x0", FormatMask([4]uint64{}))
	require.Equal(t, "0x3", FormatMask([4]uint64{3}))
	require.Equal(t, "0x10000000000000003", FormatMask([4]uint64{3, 1}))
	require.Equal(t, "0x8000000000000000000000000000000000000000000000000000000000000000", FormatMask([4]uint64{0, 0, 0, 1 << 63}))
}

func TestRecordRoundTrip(t *testing.T) {
	for w := 1; w <= MaxMaskWords; w++ {
		r := EntityRecord{Gen: 7, Flags: FlagAlive}
		for j := 0; j < w; j++ {
			r.Mask[j] = uint64(j+1) << 60
		}
		b := make([]byte, RecordSize(w))
		EncodeRecord(b, w, r)
		require.Equal(t, r, DecodeRecord(b, w))
		require.Equal(t, uint32(7), binary.LittleEndian.Uint32(b))
		require.Equal(t, uint64(1)<<60, binary.LittleEndian.Uint64(b[8:]))
	}
}
