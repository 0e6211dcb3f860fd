package layout

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRingRegionSize(t *testing.T) {
	require.Equal(t, RingHeaderSize+4096, RingRegionSize(4096))
	require.Equal(t, RingHeaderSize+1<<20, RingRegionSize(1<<20))
	for _, bad := range []int{-1, 0, 8, 2048, 4097, 6000, MaxRingCapacity * 2} {
		require.Equal(t, -1, RingRegionSize(bad), "capacity %d", bad)
	}
	// The producer and consumer lines never share a 128-byte line.
	lines := map[int]string{}
	for name, off := range map[string]int{"static": RingOffCapacity, "tail": RingOffTail, "head": RingOffHead, "prod": RingOffProdRecords, "cons": RingOffConsRecords} {
		l := off / 128
		require.NotContains(t, lines, l, "%s shares line %d with %s", name, l, lines[l])
		lines[l] = name
	}
	require.Equal(t, 0, RingHeaderSize%64)
}

func TestRingEncodeDecodeHeader(t *testing.T) {
	r := make([]byte, RingRegionSize(8192))
	require.NoError(t, EncodeRing(r, 8192))
	c, err := DecodeRingHeader(r)
	require.NoError(t, err)
	require.Equal(t, uint64(8192), c)

	require.ErrorIs(t, EncodeRing(r, 4096), ErrInvalidParam)      // wrong region size
	require.ErrorIs(t, EncodeRing(r[:100], 100), ErrInvalidParam) // bad capacity
	_, err = DecodeRingHeader(r[:RingHeaderSize-1])
	require.ErrorIs(t, err, ErrTooSmall)
	_, err = DecodeRingHeader(r[:len(r)-8])
	require.ErrorIs(t, err, ErrCorrupt)

	mut := func(off int, v uint32) []byte {
		x := append([]byte(nil), r...)
		binary.LittleEndian.PutUint32(x[off:], v)
		return x
	}
	for name, x := range map[string][]byte{
		"magic":    mut(RingOffMagic, 0x1234),
		"flags":    mut(RingOffFlags, 1),
		"capacity": mut(RingOffCapacity, 8191),
	} {
		_, err := DecodeRingHeader(x)
		require.ErrorIs(t, err, ErrCorrupt, name)
	}
}

func TestCheckRingIndices(t *testing.T) {
	require.NoError(t, CheckRingIndices(0, 0, 4096))
	require.NoError(t, CheckRingIndices(8, 4104, 4096))
	require.NoError(t, CheckRingIndices(1<<40, 1<<40+4096, 4096))
	require.ErrorIs(t, CheckRingIndices(0, 4104, 4096), ErrCorrupt) // too far apart
	require.ErrorIs(t, CheckRingIndices(16, 8, 4096), ErrCorrupt)   // tail behind head
	require.ErrorIs(t, CheckRingIndices(0, 12, 4096), ErrCorrupt)   // misaligned
	require.ErrorIs(t, CheckRingIndices(4, 8, 4096), ErrCorrupt)
}

func TestRecordLen(t *testing.T) {
	for n, want := range map[int][2]int{0: {8, 0}, 1: {16, 7}, 7: {16, 1}, 8: {16, 0}, 56: {64, 0}, 57: {72, 7}} {
		l, p := RecordLen(n)
		require.Equal(t, want, [2]int{l, p}, "payload %d", n)
		require.Equal(t, n, RecordPayloadLen(uint32(l), uint16(p)))
	}
}

func TestDecodeRecordHeader(t *testing.T) {
	const capacity = 4096
	data := make([]byte, capacity)
	put := func(off int, length uint32, typ, flags uint16) {
		binary.LittleEndian.PutUint64(data[off:], PackRecordHeader(length, typ, flags))
	}
	put(0, 64, 7, 3)
	l, typ, fl, err := DecodeRecordHeader(data, 0, capacity)
	require.NoError(t, err)
	require.Equal(t, [3]uint64{64, 7, 3}, [3]uint64{uint64(l), uint64(typ), uint64(fl)})
	require.Equal(t, 53, RecordPayloadLen(l, fl))

	put(capacity-64, 64, RecordTypePad, 0) // pad exactly to the end
	l, typ, _, err = DecodeRecordHeader(data, capacity-64, capacity)
	require.NoError(t, err)
	require.Equal(t, uint32(64), l)
	require.Equal(t, RecordTypePad, typ)

	put(0, 8, 1, 0) // empty payload
	_, _, _, err = DecodeRecordHeader(data, 0, capacity)
	require.NoError(t, err)

	bad := []struct {
		name             string
		off              int
		length           uint32
		typ, flags       uint16
		decodeOff        int
		decodeCapacityOK bool
	}{
		{"zero length", 0, 0, 1, 0, 0, true},
		{"short length", 0, 4, 1, 0, 0, true},
		{"unaligned length", 0, 20, 1, 0, 0, true},
		{"past end", capacity - 16, 24, 1, 0, capacity - 16, true},
		{"pad short of end", 0, 64, RecordTypePad, 0, 0, true},
		{"pad with flags", capacity - 64, 64, RecordTypePad, 1, capacity - 64, true},
		{"too long", 0, capacity/2 + 8, 1, 0, 0, true},
		{"reserved flags", 0, 64, 1, 0x100, 0, true},
		{"alignment bytes exceed payload", 0, 8, 1, 3, 0, true},
		{"misaligned offset", 0, 64, 1, 0, 4, true},
		{"negative offset", 0, 64, 1, 0, -8, true},
		{"offset at end", 0, 64, 1, 0, capacity, true},
		{"capacity beyond data", 0, 64, 1, 0, 0, false},
	}
	for _, c := range bad {
		clear(data)
		put(c.off, c.length, c.typ, c.flags)
		cp := uint64(capacity)
		if !c.decodeCapacityOK {
			cp = 2 * capacity
		}
		_, _, _, err := DecodeRecordHeader(data, c.decodeOff, cp)
		require.Error(t, err, c.name)
		require.True(t, errors.Is(err, ErrCorrupt), "%s: %v", c.name, err)
	}
}

func FuzzDecodeRecordHeader(f *testing.F) {
	rec := make([]byte, 64)
	binary.LittleEndian.PutUint64(rec, PackRecordHeader(64, 3, 5))
	f.Add(rec, 0, uint64(64))
	f.Add(rec, 8, uint64(4096))
	f.Add([]byte{}, 0, uint64(0))
	f.Add(make([]byte, 16), -8, ^uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, off int, capacity uint64) {
		l, typ, fl, err := DecodeRecordHeader(data, off, capacity)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		// Every accepted record lies inside the data area and has a
		// consistent payload length.
		require.LessOrEqual(t, uint64(off)+uint64(l), capacity)
		require.LessOrEqual(t, capacity, uint64(len(data)))
		require.Zero(t, l%RecordAlign)
		pl := RecordPayloadLen(l, fl)
		require.GreaterOrEqual(t, pl, 0)
		if typ != RecordTypePad {
			require.LessOrEqual(t, uint64(l), MaxRecordLen(capacity))
		} else {
			require.Equal(t, capacity, uint64(off)+uint64(l))
		}
		_ = data[off+RecordHeaderSize : off+RecordHeaderSize+pl]
	})
}
