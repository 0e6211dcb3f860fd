package layout

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func encodeTestEvents(t testing.TB, capacity int) ([]byte, *EventsGeometry) {
	g, err := ComputeEventsGeometry(capacity)
	require.NoError(t, err)
	b := make([]byte, g.TotalSize)
	require.NoError(t, EncodeEvents(b, g, Header{Instance: "ev", CreatorPID: 9, SchemaHash: 0xabc}))
	MarkReady(b)
	return b, g
}

func TestEventsRoundTrip(t *testing.T) {
	b, g := encodeTestEvents(t, 2*PageSize)
	e, err := DecodeEvents(b)
	require.NoError(t, err)
	require.Equal(t, 2*PageSize, e.Capacity)
	require.Equal(t, 2*PageSize/4, e.MaxPayload)
	require.Equal(t, HeaderSize, e.AreaOff)
	require.Equal(t, g.TotalSize, len(b))
	require.Len(t, e.Area(), e.Capacity)
	require.True(t, e.WordsAligned())
	require.Equal(t, uint64(0xabc), e.Header.SchemaHash)
	// Empty log: both pairs start at {seq 1, pos 0} with generation 0.
	require.Equal(t, uint64(0), Load64(b, OffECommitGen))
	require.Equal(t, uint64(1), Load64(b, OffECommitPairs))
	require.Equal(t, uint64(0), Load64(b, OffECommitPairs+8))
	require.Equal(t, uint64(1), Load64(b, OffEOldestPairs))
	// Shared words do not overlap the common header's section table and sit
	// before the area.
	require.Greater(t, OffECommitGen, OffSectionTab+MaxSections*SectionEntry)
	require.Less(t, OffEStatNanos+8, HeaderSize)
	require.Equal(t, 128, OffEOldestGen-OffECommitGen, "commit and oldest words on separate 128-byte lines")

	_, err = DecodeWorld(b)
	require.ErrorIs(t, err, ErrBadKind)
	wb, _ := encodeTestWorld(t)
	_, err = DecodeEvents(wb)
	require.ErrorIs(t, err, ErrBadKind)
}

func TestEventsGeometryRejects(t *testing.T) {
	for _, c := range []int{0, -PageSize, PageSize - 8, PageSize + 8, MaxEventCapacity + PageSize} {
		_, err := ComputeEventsGeometry(c)
		require.ErrorIs(t, err, ErrInvalidParam, "capacity %d", c)
	}
	g, _ := ComputeEventsGeometry(PageSize)
	require.ErrorIs(t, EncodeEvents(make([]byte, 100), g, Header{Instance: "x"}), ErrInvalidParam)
}

func TestDecodeEventsRejectsCorruptKindHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		off  int
		v    uint64
		w32  bool
	}{
		{"capacity", OffECapacity, PageSize * 4, false},
		{"huge capacity", OffECapacity, 1 << 62, false},
		{"record header", OffERecHeader, 16, true},
		{"max payload", OffEMaxPayload, 5000, true},
		{"area offset", OffEAreaOff, 8192, false},
	} {
		b, _ := encodeTestEvents(t, 2*PageSize)
		if tc.w32 {
			put32(b, tc.off, uint32(tc.v))
		} else {
			put64(b, tc.off, tc.v)
		}
		_, err := DecodeEvents(b)
		require.ErrorIs(t, err, ErrCorrupt, tc.name)
	}
}

func TestEventRecordEncodeDecode(t *testing.T) {
	area := make([]byte, 256)
	r := EventRecord{Seq: 7, Frame: 99, Type: 3, Len: 13}
	PutEventRecord(area, 8, r)
	got, err := DecodeEventRecord(area, 8, 64)
	require.NoError(t, err)
	require.Equal(t, r, got)
	require.Equal(t, 24+16, EventRecordSize(13))
	require.Equal(t, 24, EventRecordSize(0))

	// Payload larger than allowed, payload past the end, misaligned or
	// out-of-range offsets, and a padding record of the wrong length.
	_, err = DecodeEventRecord(area, 8, 12)
	require.ErrorIs(t, err, ErrCorrupt)
	PutEventRecord(area, 200, EventRecord{Seq: 1, Len: 40})
	_, err = DecodeEventRecord(area, 200, 64)
	require.ErrorIs(t, err, ErrCorrupt)
	for _, off := range []int{-8, 3, 240, 256, 1 << 40} {
		_, err = DecodeEventRecord(area, off, 64)
		require.ErrorIs(t, err, ErrCorrupt, "offset %d", off)
	}
	PutEventRecord(area, 200, EventRecord{Seq: 0, Len: 256 - 200 - 24})
	got, err = DecodeEventRecord(area, 200, 64)
	require.NoError(t, err)
	require.True(t, got.IsPad())
	PutEventRecord(area, 200, EventRecord{Seq: 0, Len: 8})
	_, err = DecodeEventRecord(area, 200, 64)
	require.ErrorIs(t, err, ErrCorrupt)
}

// FuzzDecodeEvents: arbitrary bytes or single-byte mutations of a valid
// segment never panic the decoders, and an accepted view has its area inside
// the buffer; any record header decoded from it is inside the area.
func FuzzDecodeEvents(f *testing.F) {
	b, _ := encodeTestEvents(f, PageSize)
	f.Add([]byte{}, 0, byte(0), 0)
	f.Add([]byte("FDPSEGMT"), OffECapacity, byte(1), 8)
	for _, off := range []int{OffECapacity, OffECapacity + 1, OffERecHeader, OffEMaxPayload, OffEAreaOff, OffSectionTab + 16, HeaderSize} {
		f.Add([]byte{}, off, byte(0x7f), off)
	}
	f.Fuzz(func(t *testing.T, data []byte, off int, val byte, recOff int) {
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
		e, err := DecodeEvents(buf)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooSmall) && !errors.Is(err, ErrBadMagic) &&
				!errors.Is(err, ErrBadVersion) && !errors.Is(err, ErrBadChecksum) && !errors.Is(err, ErrNotReady) && !errors.Is(err, ErrBadKind) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if e.AreaOff+e.Capacity > len(buf) {
			t.Fatalf("area [%d,+%d) beyond buffer %d", e.AreaOff, e.Capacity, len(buf))
		}
		area := e.Area()
		r, err := DecodeEventRecord(area, recOff, e.MaxPayload)
		if err == nil && recOff+EventRecordHeader+int(r.Len) > len(area) {
			t.Fatalf("record at %d with payload %d accepted beyond area %d", recOff, r.Len, len(area))
		}
	})
}
