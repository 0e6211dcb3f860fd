package layout

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestModStatsOffsets: every field of the statistics block is naturally
// aligned, inside [OffMStats, OffMStats+ModStatsLen), the block inside the
// header page and after the event line, and no two fields overlap.
func TestModStatsOffsets(t *testing.T) {
	require.GreaterOrEqual(t, OffMStats, OffMAckPos+8)
	require.LessOrEqual(t, OffMStats+ModStatsLen, ModuleStatsEnd)
	type field struct{ off, size int }
	fields := []field{{OffMSVersion, 4}, {OffMSLength, 4}, {OffMSSeq, 8}, {OffMSFrame, 8}, {OffMSState, 4}, {OffMSStreak, 4},
		{OffMSRejectBy, 8 * ModStatsReasons}, {OffMSTickHist, 8 * TickBuckets}}
	for off := OffMSRuns; off <= OffMSTickSum; off += 8 {
		fields = append(fields, field{off, 8})
	}
	used := map[int]bool{}
	for _, f := range fields {
		require.Zero(t, f.off%min(f.size, 8), "offset %d not aligned", f.off)
		require.GreaterOrEqual(t, f.off, OffMStats)
		require.LessOrEqual(t, f.off+f.size, OffMStats+ModStatsLen)
		for i := f.off; i < f.off+f.size; i++ {
			require.False(t, used[i], "byte %d used twice", i)
			used[i] = true
		}
	}
	require.Equal(t, OffMStats+ModStatsLen, OffMSTickHist+8*TickBuckets, "the histogram ends the block")
}

func testModStats() ModStats {
	s := ModStats{Frame: 99, State: ModuleBreakerOpen, FailStreak: 5, Runs: 1, Late: 2, Failures: 3, Skipped: 4,
		Overruns: 5, Revoked: 6, BreakerTrips: 7, BreakerUntil: 8, Applied: 9, Rejected: 10, Snapshots: 11,
		CatchUps: 12, EventsDelivered: 13, EventsLost: 14, LagFrames: 15, LagMax: 16, LastTickFrame: 17,
		Joins: 18, Deaths: 19, Ticks: 20, TickLast: 21, TickMax: 22, TickSum: 23}
	for i := range s.RejectedByReason {
		s.RejectedByReason[i] = uint64(100 + i)
	}
	for i := range s.TickHist {
		s.TickHist[i] = uint64(1000 + i)
	}
	return s
}

func TestModStatsRoundTrip(t *testing.T) {
	b, _ := encodeTestModule(t, 1<<12)
	_, _, err := DecodeModStats(b)
	require.ErrorIs(t, err, ErrNoModStats, "a new segment has no block")
	want := testModStats()
	EncodeModStats(b, &want)
	got, stable, err := DecodeModStats(b)
	require.NoError(t, err)
	require.True(t, stable)
	require.Equal(t, want, got)
	require.Equal(t, uint64(2), Load64(b, OffMSSeq), "one write: seq 0 -> 1 -> 2")
	// The rest of the module segment is untouched.
	m, err := DecodeModule(b)
	require.NoError(t, err)
	require.Equal(t, testModuleInfo(), m.Info)
	for off := OffMStats + ModStatsLen; off < ModuleStatsEnd; off++ {
		require.Zero(t, b[off], "byte %d beyond the block", off)
	}
	// A second write keeps the seq even.
	want.Runs = 1000
	EncodeModStats(b, &want)
	got, _, _ = DecodeModStats(b)
	require.Equal(t, uint64(1000), got.Runs)
	require.Equal(t, uint64(4), Load64(b, OffMSSeq))
}

// TestModStatsRejects: a block of another version or a short length is
// corrupt, a block being written (odd seq) is reported unstable, and a
// longer block of a later version that appends fields is read.
func TestModStatsRejects(t *testing.T) {
	b, _ := encodeTestModule(t, 1<<12)
	s := testModStats()
	EncodeModStats(b, &s)
	Store32(b, OffMSVersion, 2)
	_, _, err := DecodeModStats(b)
	require.ErrorIs(t, err, ErrCorrupt)
	Store32(b, OffMSVersion, ModStatsVersion)
	Store32(b, OffMSLength, ModStatsLen-8)
	_, _, err = DecodeModStats(b)
	require.ErrorIs(t, err, ErrCorrupt)
	Store32(b, OffMSLength, uint32(ModuleStatsEnd-OffMStats+8))
	_, _, err = DecodeModStats(b)
	require.ErrorIs(t, err, ErrCorrupt)
	Store32(b, OffMSLength, uint32(ModuleStatsEnd-OffMStats))
	got, stable, err := DecodeModStats(b)
	require.NoError(t, err)
	require.True(t, stable)
	require.Equal(t, s, got)
	Store64(b, OffMSSeq, 7)
	_, stable, err = DecodeModStats(b)
	require.NoError(t, err)
	require.False(t, stable, "odd seq: the engine is writing")
	_, _, err = DecodeModStats(b[:100])
	require.True(t, errors.Is(err, ErrCorrupt))
}

func TestModuleStateString(t *testing.T) {
	for s, want := range map[ModuleState]string{ModuleNone: "none", ModuleJoined: "joined", ModuleRunning: "running",
		ModuleBreakerOpen: "breaker-open", ModuleDead: "dead", ModuleLeft: "left", 9: "state(9)"} {
		require.Equal(t, want, s.String())
	}
	require.Equal(t, "corrupt_ring", RejectReasonName(12))
	require.Equal(t, "reason(31)", RejectReasonName(31))
	require.LessOrEqual(t, len(ModStatsRejectNames), ModStatsReasons)
}

func TestTickPercentile(t *testing.T) {
	var h [TickBuckets]uint64
	require.Zero(t, TickPercentile(&h, 0, 50))
	// 98 ticks of 1 ms, 2 of 100 ms.
	for i := 0; i < 98; i++ {
		h[TickBucket(uint64(time.Millisecond))]++
	}
	h[TickBucket(uint64(100*time.Millisecond))] += 2
	maxNs := uint64(100 * time.Millisecond)
	p50 := TickPercentile(&h, maxNs, 50)
	require.GreaterOrEqual(t, p50, uint64(time.Millisecond))
	require.Less(t, p50, uint64(2*time.Millisecond))
	require.Less(t, TickPercentile(&h, maxNs, 98), uint64(2*time.Millisecond))
	require.Equal(t, maxNs, TickPercentile(&h, maxNs, 99), "capped at the max")
	require.Equal(t, 1, TickBucket(0))
	require.Equal(t, 1, TickBucket(1))
	require.Equal(t, 2, TickBucket(2))
	require.Equal(t, TickBuckets-1, TickBucket(1<<62))
}

// BenchmarkEncodeModStats is the engine's cost of one write of a module's
// statistics block (at most one per module per frame).
func BenchmarkEncodeModStats(b *testing.B) {
	g, err := ComputeModuleGeometry(1 << 12)
	require.NoError(b, err)
	seg := make([]byte, g.TotalSize)
	s := testModStats()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Runs = uint64(i)
		EncodeModStats(seg, &s)
	}
}
