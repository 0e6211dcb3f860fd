package layout

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLeasesReaderCount: the external reader table has the size the
// engine asked for, within [MinReaders, MaxReaders]; the kind header
// records it, and the decoder refuses a count out of range or one that
// does not match the sections.
func TestLeasesReaderCount(t *testing.T) {
	for _, n := range []int{MinReaders, DefaultReaders, 300, MaxReaders} {
		g, err := ComputeLeasesGeometry(4, n)
		require.NoError(t, err, "%d readers", n)
		require.Equal(t, HeaderSize+n*ReaderEntrySize, g.LeasesOff)
		b := make([]byte, g.TotalSize)
		require.NoError(t, EncodeLeases(b, g, Header{Instance: "r"}))
		MarkReady(b)
		l, err := DecodeLeases(b)
		require.NoError(t, err)
		require.Equal(t, n, l.Readers)
		require.Equal(t, uint32(n), binary.LittleEndian.Uint32(b[OffLReaders:]))
		rs, ok := l.Header.Section(SecReaders)
		require.True(t, ok)
		require.Equal(t, uint32(n), rs.Count)
	}
	for _, n := range []int{0, -1, MaxReaders + 1} {
		_, err := ComputeLeasesGeometry(4, n)
		require.ErrorIs(t, err, ErrInvalidParam, "%d readers", n)
	}

	g, err := ComputeLeasesGeometry(4, 8)
	require.NoError(t, err)
	good := make([]byte, g.TotalSize)
	require.NoError(t, EncodeLeases(good, g, Header{Instance: "r"}))
	MarkReady(good)
	for _, n := range []uint32{0, 7, 9, MaxReaders + 1, 1 << 31} {
		b := append([]byte(nil), good...)
		binary.LittleEndian.PutUint32(b[OffLReaders:], n)
		_, err := DecodeLeases(b)
		require.ErrorIs(t, err, ErrCorrupt, "reader count %d in a segment of 8", n)
	}
}

// TestLeaseHoldersWide: the holder set of a slot lease entry holds every
// module slot (MaxModules), in the entry's second cache line, and reads
// back as it was stored.
func TestLeaseHoldersWide(t *testing.T) {
	g, err := ComputeLeasesGeometry(3, DefaultReaders)
	require.NoError(t, err)
	b := make([]byte, g.TotalSize)
	require.NoError(t, EncodeLeases(b, g, Header{Instance: "h"}))
	hs := ModuleSetOf(0, 63, 64, 200, MaxModules-1)
	PutModuleSet(b, g.LeaseOff(1)+LeaseHolders, hs)
	require.Equal(t, hs, GetModuleSet(b, g.LeaseOff(1)+LeaseHolders))
	require.Equal(t, ModuleSet{}, GetModuleSet(b, g.LeaseOff(0)+LeaseHolders), "slot 0's entry untouched")
	require.Equal(t, ModuleSet{}, GetModuleSet(b, g.LeaseOff(2)+LeaseHolders), "slot 2's entry untouched")
	// Slot n is bit n%64 of little-endian word n/64.
	lo := g.LeaseOff(1) + LeaseHolders
	require.Equal(t, uint64(1)|1<<63, binary.LittleEndian.Uint64(b[lo:]))
	require.Equal(t, uint64(1), binary.LittleEndian.Uint64(b[lo+8:]))
	require.Zero(t, binary.LittleEndian.Uint64(b[lo+16:]))
	require.Equal(t, uint64(1)<<(200-192)|1<<63, binary.LittleEndian.Uint64(b[lo+24:]))
	require.LessOrEqual(t, LeaseHolders+ModuleSetBytes, SlotLeaseSize)
}
