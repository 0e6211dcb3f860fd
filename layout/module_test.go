package layout

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func testModuleInfo() ModuleInfo {
	return ModuleInfo{Slot: 5, Name: "ai.convoy-1", Tier: 2, Frequency: 10, Mask: [MaxMaskWords]uint64{0b1011, 0, 1 << 3}, Group: "ai"}
}

func encodeTestModule(t testing.TB, ringCap int) ([]byte, *ModuleGeometry) {
	g, err := ComputeModuleGeometry(ringCap)
	require.NoError(t, err)
	b := make([]byte, g.TotalSize)
	require.NoError(t, EncodeModule(b, g, Header{Instance: "t", SchemaHash: 0xabc, CreatorPID: 42, CreatorTime: 7, CreatedNano: 99}, testModuleInfo()))
	MarkReady(b)
	return b, g
}

func TestModuleRoundTrip(t *testing.T) {
	b, g := encodeTestModule(t, 1<<16)
	require.Equal(t, 0, g.TotalSize%PageSize)
	require.Equal(t, HeaderSize, g.RingOff)
	require.Equal(t, RingRegionSize(1<<16), g.RingSize)
	m, err := DecodeModule(b)
	require.NoError(t, err)
	require.Equal(t, testModuleInfo(), m.Info)
	require.Equal(t, KindModule, m.Header.Kind)
	require.Equal(t, uint64(0xabc), m.Header.SchemaHash)
	require.Equal(t, 1<<16, m.RingCapacity)
	c, err := DecodeRingHeader(m.Ring())
	require.NoError(t, err)
	require.Equal(t, uint64(1<<16), c)
	require.Equal(t, "fdp.inst.mod.5", ModuleSegmentName("inst", 5))
	// Doorbell, done and heartbeat lines are distinct 128-byte lines inside the header page.
	lines := map[int]bool{}
	for _, off := range []int{OffMTick, OffMDone, OffMHeartbeat} {
		require.Zero(t, off%128)
		require.False(t, lines[off/128])
		lines[off/128] = true
		require.Less(t, off+128, HeaderSize+1)
	}
	for _, off := range []int{OffMTickNeedWake, OffMTickFrame, OffMTickLease} {
		require.Equal(t, OffMTick/128, off/128)
	}
	// The group field lies in the kind header, after the read mask.
	require.Equal(t, ModuleMaskOff(MaxMaskWords-1)+8, OffMGroup)
	require.LessOrEqual(t, OffMGroup+ModuleNameLen, OffMTick)
	require.Equal(t, "slow", ModuleTierName(ModuleTierSlow))
	// The words are usable as atomics.
	Store32(b, OffMTick, 3)
	require.Equal(t, uint32(3), Load32(b, OffMTick))
}

func TestModuleGeometryRejects(t *testing.T) {
	for _, c := range []int{0, 100, 2048, 4095, 6000, MaxRingCapacity * 2} {
		_, err := ComputeModuleGeometry(c)
		require.ErrorIs(t, err, ErrInvalidParam, "capacity %d", c)
	}
	g, err := ComputeModuleGeometry(4096)
	require.NoError(t, err)
	for name, info := range map[string]ModuleInfo{
		"slot":  {Slot: MaxModules, Name: "a"},
		"name":  {Name: ""},
		"chars": {Name: "a/b"},
		"long":  {Name: "0123456789012345678901234567890123"},
		"tier":  {Name: "a", Tier: MaxTier + 1},
	} {
		b := make([]byte, g.TotalSize)
		require.ErrorIs(t, EncodeModule(b, g, Header{Instance: "t"}, info), ErrInvalidParam, name)
	}
	require.ErrorIs(t, EncodeModule(make([]byte, 10), g, Header{Instance: "t"}, testModuleInfo()), ErrInvalidParam)
}

func TestDecodeModuleRejects(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(b []byte) []byte
		want   error
	}{
		{"truncated", func(b []byte) []byte { return b[:100] }, ErrTooSmall},
		{"not ready", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[OffReady:], 0); return b }, ErrNotReady},
		{"slot", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[OffMSlot:], MaxModules); return b }, ErrCorrupt},
		{"tier", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[OffMTier:], 99); return b }, ErrCorrupt},
		{"reserved", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[OffMReserved:], 1); return b }, ErrCorrupt},
		{"name empty", func(b []byte) []byte { b[OffMName] = 0; return b }, ErrCorrupt},
		{"name chars", func(b []byte) []byte { b[OffMName] = '/'; return b }, ErrCorrupt},
		{"name garbage after NUL", func(b []byte) []byte { b[OffMName+ModuleNameLen-1] = 'x'; return b }, ErrCorrupt},
		{"group garbage after NUL", func(b []byte) []byte { b[OffMGroup+ModuleNameLen-1] = 'x'; return b }, ErrCorrupt},
		{"ring cap kind header", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[OffMRingCap:], 8192); return b }, ErrCorrupt},
		{"ring cap not pow2", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[OffMRingCap:], 5000); return b }, ErrCorrupt},
		{"ring magic", func(b []byte) []byte { b[ModuleRingOff+RingOffMagic] ^= 1; return b }, ErrCorrupt},
		{"ring header capacity", func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[ModuleRingOff+RingOffCapacity:], 8192)
			return b
		}, ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, _ := encodeTestModule(t, 4096)
			_, err := DecodeModule(c.mutate(b))
			require.Error(t, err)
			require.True(t, errors.Is(err, c.want), "got %v, want %v", err, c.want)
		})
	}
	// A world segment is not a module segment.
	w, _ := encodeTestWorld(t)
	_, err := DecodeModule(w)
	require.ErrorIs(t, err, ErrBadKind)
}

// FuzzDecodeModule feeds arbitrary bytes, and one-byte mutations of a valid
// segment (with the header checksum fixed up so the module decoder's own
// checks are reached), to DecodeModule: it must never panic, and an accepted
// segment must have a valid identity and ring inside the buffer.
func FuzzDecodeModule(f *testing.F) {
	b, _ := encodeTestModule(f, 4096)
	f.Add([]byte{}, 0, byte(0))
	f.Add([]byte("FDPSEGMT"), 3, byte(1))
	f.Add(make([]byte, HeaderSize+10), 5, byte(0xff))
	for _, off := range []int{OffMSlot, OffMTier, OffMReserved, OffMRingCap, OffMName, OffMName + 31, OffSectionTab + 8,
		ModuleRingOff + RingOffCapacity, ModuleRingOff + RingOffMagic, ModuleRingOff + RingOffFlags} {
		f.Add([]byte{}, off, byte(0x7f))
	}
	f.Fuzz(func(t *testing.T, data []byte, off int, val byte) {
		buf := data
		if len(data) == 0 {
			buf = append([]byte(nil), b...)
			if off < 0 {
				off = -off
			}
			off %= len(buf)
			buf[off] = val
			if off < OffKindHeader && off != OffChecksum {
				le.PutUint64(buf[OffChecksum:], headerChecksum(buf))
			}
		}
		m, err := DecodeModule(buf)
		if err != nil {
			return
		}
		require.Equal(t, len(buf), m.TotalSize)
		require.True(t, ValidModuleName(m.Info.Name))
		require.Less(t, m.Info.Slot, uint32(MaxModules))
		_, err = DecodeRingHeader(m.Ring())
		require.NoError(t, err)
		if _, err := DecodeWorld(buf); err == nil {
			t.Fatalf("a buffer decoded as both module and world")
		}
	})
}
