package layout

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// described gives c the fields and their fingerprint.
func described(c ComponentDesc, fields ...FieldDesc) ComponentDesc {
	c.Fields = fields
	c.Fingerprint = FieldsFingerprint(c.Size, c.Align, fields)
	return c
}

func describedSingleton(s SingletonDesc, fields ...FieldDesc) SingletonDesc {
	s.Fields = fields
	s.Fingerprint = FieldsFingerprint(s.Size, s.Align, fields)
	return s
}

var xyz = []FieldDesc{{"X", FieldF32, 0, 1}, {"Y", FieldF32, 4, 1}, {"Z", FieldF32, 8, 1}}

func testComponents() []ComponentDesc {
	return []ComponentDesc{
		described(ComponentDesc{Name: "Position", Size: 12, Align: 4}, xyz...),
		described(ComponentDesc{Name: "Velocity", Size: 12, Align: 4}, FieldDesc{"V", FieldF32, 0, 3}),
		described(ComponentDesc{Name: "Health", Size: 4, Align: 4}, FieldDesc{"", FieldI32, 0, 1}),
		Opaque(ComponentDesc{Name: "Team", Size: 1, Align: 1}),
	}
}

func testSingletons() []SingletonDesc {
	return []SingletonDesc{
		describedSingleton(SingletonDesc{Name: "Time", Size: 24, Align: 8, Flags: SingletonEngineOwned},
			FieldDesc{"Frame", FieldU64, 0, 1}, FieldDesc{"Nanos", FieldI64, 8, 1}, FieldDesc{"Dt", FieldI64, 16, 1}),
		describedSingleton(SingletonDesc{Name: "Flag", Size: 1, Align: 1}, FieldDesc{"", FieldBool, 0, 1}),
		OpaqueSingleton(SingletonDesc{Name: "Wind", Size: 12, Align: 4}),
	}
}

func encodeTestWorld(t testing.TB) ([]byte, *WorldGeometry) {
	g, err := ComputeWorldGeometry(WorldParams{Instance: "t", Slots: 3, ChunkCapacity: 64, MaxChunks: 4, Components: testComponents(),
		Singletons: testSingletons()})
	require.NoError(t, err)
	b := make([]byte, g.TotalSize)
	require.NoError(t, EncodeWorld(b, g, Header{Instance: "t", CreatorPID: 42, CreatorTime: 7, CreatedNano: 99}))
	MarkReady(b)
	return b, g
}

func TestWorldRoundTrip(t *testing.T) {
	b, g := encodeTestWorld(t)
	w, err := DecodeWorld(b)
	require.NoError(t, err)
	require.Equal(t, g.TotalSize, w.TotalSize)
	require.Equal(t, testComponents(), w.Components)
	require.Equal(t, uint32(42), w.Header.CreatorPID)
	require.Equal(t, uint64(7), w.Header.CreatorTime)
	require.Equal(t, "t", w.Header.Instance)
	require.Equal(t, SchemaHashOf(testComponents(), testSingletons()), w.Header.SchemaHash)
	require.Equal(t, testSingletons(), w.Singletons)
	// Every column is 64-byte aligned and columns do not overlap.
	for k := range w.Components {
		off, end := w.ColumnRange(1, 2, k)
		require.Zero(t, off%64, "column %d", k)
		require.LessOrEqual(t, end, w.ChunkOff(1, 3))
		if k > 0 {
			_, prevEnd := w.ColumnRange(1, 2, k-1)
			require.LessOrEqual(t, prevEnd, off)
		}
	}
	eo, ee := w.EntityRange(0, 0)
	require.Equal(t, 64*RecordSize(1), ee-eo)
	_, _, ok := UnpackLatest(Load64(b, OffWLatest))
	require.False(t, ok, "fresh segment has nothing published")
}

func TestLatestAndPinPacking(t *testing.T) {
	f, s, ok := UnpackLatest(PackLatest(123456789, 5))
	require.True(t, ok)
	require.Equal(t, uint64(123456789), f)
	require.Equal(t, 5, s)
	s, q, ok := UnpackPin(PackPin(31, 1<<40+2))
	require.True(t, ok)
	require.Equal(t, 31, s)
	require.Equal(t, uint64(1<<40+2), q)
	_, _, ok = UnpackPin(0)
	require.False(t, ok)
}

func TestDecodeRejects(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(b []byte) []byte
		want   error
	}{
		{"truncated", func(b []byte) []byte { return b[:HeaderSize-1] }, ErrTooSmall},
		{"shorter than total", func(b []byte) []byte { return b[:len(b)-PageSize] }, ErrCorrupt},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, ErrBadMagic},
		{"version", func(b []byte) []byte { b[OffVersion] = 9; return b }, ErrBadVersion},
		{"checksum", func(b []byte) []byte { b[OffSchemaHash] ^= 1; return b }, ErrBadChecksum},
		{"not ready", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[OffReady:], 0); return b }, ErrNotReady},
		{"chunk stride (kind header)", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[OffWChunkStride:], 8); return b }, ErrCorrupt},
		{"component size", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[HeaderSize+32:], 7) // Position size 12 -> 7 (not a multiple of align 4)
			return b
		}, ErrCorrupt},
		{"slot count", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[OffWSlots:], 200); return b }, ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, _ := encodeTestWorld(t)
			_, err := DecodeWorld(c.mutate(b))
			require.Error(t, err)
			require.True(t, errors.Is(err, c.want), "got %v, want %v", err, c.want)
		})
	}
}

func TestDecodeWrongKind(t *testing.T) {
	g, err := ComputeLeasesGeometry(3, DefaultReaders)
	require.NoError(t, err)
	b := make([]byte, g.TotalSize)
	require.NoError(t, EncodeLeases(b, g, Header{Instance: "x"}))
	MarkReady(b)
	_, err = DecodeWorld(b)
	require.ErrorIs(t, err, ErrBadKind)
	l, err := DecodeLeases(b)
	require.NoError(t, err)
	require.Equal(t, 3, l.Slots)
	require.Equal(t, DefaultReaders, l.Readers)
}

func TestGeometryRejectsBadParams(t *testing.T) {
	good := WorldParams{Instance: "t", Slots: 3, ChunkCapacity: 64, MaxChunks: 4, Components: testComponents()}
	bad := []func(p *WorldParams){
		func(p *WorldParams) { p.Slots = 1 },
		func(p *WorldParams) { p.ChunkCapacity = 100 },
		func(p *WorldParams) { p.MaxChunks = 0 },
		func(p *WorldParams) { p.Components = append(p.Components, p.Components[0]) },
		func(p *WorldParams) {
			p.Components = []ComponentDesc{Opaque(ComponentDesc{Name: "", Size: 4, Align: 4})}
		},
		func(p *WorldParams) {
			p.Components = []ComponentDesc{Opaque(ComponentDesc{Name: "A", Size: 4, Align: 3})}
		},
		func(p *WorldParams) {
			p.Components = []ComponentDesc{Opaque(ComponentDesc{Name: "A", Size: 0, Align: 1})}
		},
	}
	_, err := ComputeWorldGeometry(good)
	require.NoError(t, err)
	for i, m := range bad {
		p := good
		p.Components = append([]ComponentDesc(nil), good.Components...)
		m(&p)
		_, err := ComputeWorldGeometry(p)
		require.ErrorIs(t, err, ErrInvalidParam, "case %d", i)
	}
}

func TestSchemaHashSensitive(t *testing.T) {
	a := testComponents()
	b := testComponents()
	require.Equal(t, SchemaHash(a), SchemaHash(b))
	b[2].Fingerprint++
	require.NotEqual(t, SchemaHash(a), SchemaHash(b))
	c := testComponents()
	c[0], c[1] = c[1], c[0]
	require.NotEqual(t, SchemaHash(a), SchemaHash(c))
}

// FuzzDecodeWorld feeds arbitrary bytes and mutations of a valid segment to
// the decoders: they must return a view or an error, never panic, and any
// accepted view must have all its ranges inside the buffer.
func FuzzDecodeWorld(f *testing.F) {
	b, _ := encodeTestWorld(f)
	f.Add(b[:HeaderSize], 0, byte(0))
	f.Add([]byte("FDPSEGMT"), 3, byte(1))
	f.Add(make([]byte, HeaderSize+10), 5, byte(0xff))
	for _, off := range []int{OffWSlots, OffWComponents, OffWChunkCap, OffWMaxChunks, OffWMaskWords, OffWSingletons, OffWChunksOff,
		OffSectionTab + 8, HeaderSize + 32, 2*HeaderSize + SingletonValueOff, 2*HeaderSize + SingletonFlags} {
		f.Add([]byte{}, off, byte(0x7f))
	}
	f.Fuzz(func(t *testing.T, data []byte, off int, val byte) {
		var buf []byte
		if len(data) == 0 {
			// Mutate one byte of a valid segment and fix its checksum, so the
			// fuzzer reaches the world decoder's own validation.
			buf = append([]byte(nil), b...)
			if off < 0 {
				off = -off
			}
			off %= len(buf)
			buf[off] = val
			if off < OffKindHeader && off != OffChecksum {
				le.PutUint64(buf[OffChecksum:], headerChecksum(buf))
			}
		} else {
			buf = data
		}
		w, err := DecodeWorld(buf)
		if err != nil {
			return
		}
		for s := 0; s < w.Slots; s++ {
			si := w.ReadSlotInfo(s)
			_ = w.ValidateSlotInfo(si)
			for k := range w.Components {
				_, end := w.ColumnRange(s, w.MaxChunks-1, k)
				if end > len(buf) {
					t.Fatalf("column range %d beyond buffer %d", end, len(buf))
				}
			}
			for i := range w.Singletons {
				lo, end := w.SingletonRange(s, i)
				if lo < w.SlotOff(s)+SlotHeaderSize || end > w.ChunkOff(s, 0) || w.SingletonVersionOff(s, i) >= lo {
					t.Fatalf("singleton %d at [%d,%d) outside the singleton area of slot %d", i, lo, end, s)
				}
			}
		}
		if _, err := DecodeLeases(buf); err == nil {
			t.Fatalf("a buffer decoded as both world and leases")
		}
	})
}

func FuzzDecodeLeases(f *testing.F) {
	g, _ := ComputeLeasesGeometry(4, 3)
	b := make([]byte, g.TotalSize)
	_ = EncodeLeases(b, g, Header{Instance: "f"})
	MarkReady(b)
	f.Add(b, 0, byte(0))
	f.Fuzz(func(t *testing.T, data []byte, off int, val byte) {
		buf := append([]byte(nil), b...)
		if off < 0 {
			off = -off
		}
		buf[off%len(buf)] = val
		if len(data) > 0 {
			buf = data
		}
		l, err := DecodeLeases(buf)
		if err != nil {
			return
		}
		if l.LeaseOff(l.Slots-1)+SlotLeaseSize > len(buf) {
			t.Fatalf("lease table beyond buffer")
		}
		if l.Readers < MinReaders || l.Readers > MaxReaders || l.ReaderOff(l.Readers-1)+ReaderEntrySize > l.LeasesOff {
			t.Fatalf("%d reader entries accepted, reader table overlaps the lease table", l.Readers)
		}
	})
}
