package layout

import (
	"math"
	"math/rand"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDurHistBuckets: the buckets tile [0, ∞) in order, each bucket's bounds
// map back to it, and from 2^10 ns to 2^34 ns a bucket's upper end is at most
// 25% above its lower end.
func TestDurHistBuckets(t *testing.T) {
	require.Equal(t, 98, DurHistBuckets, "docs/LAYOUT.md names the bucket count")
	var prevUpper uint64
	for i := 0; i < DurHistBuckets; i++ {
		lo, up := DurHistBounds(i)
		require.Equal(t, prevUpper, lo, "bucket %d starts where %d ended", i, i-1)
		require.Less(t, lo, up, "bucket %d", i)
		require.Equal(t, i, DurHistBucket(lo), "lower end of bucket %d", i)
		if i < DurHistBuckets-1 {
			require.Equal(t, i, DurHistBucket(up-1), "last duration of bucket %d", i)
			require.Equal(t, i+1, DurHistBucket(up), "upper end of bucket %d", i)
		}
		if i > 0 && i < DurHistBuckets-1 {
			require.LessOrEqual(t, 4*(up-lo), lo, "bucket %d [%d, %d) is at most 25%% wide", i, lo, up)
		}
		prevUpper = up
	}
	require.Equal(t, uint64(math.MaxUint64), prevUpper)
	require.Equal(t, DurHistBuckets-1, DurHistBucket(math.MaxUint64))
	require.Equal(t, 0, DurHistBucket(0))
}

// TestWorldDurHistWords: the two histograms fill the end of the world header
// after the statistics words, 8-byte aligned, zero in a new segment, outside
// what the checksum covers (counts leave the segment decodable), and each
// count lands in its own histogram's bucket.
func TestWorldDurHistWords(t *testing.T) {
	require.Equal(t, 2528, OffWPubHist, "docs/LAYOUT.md names this offset")
	require.Equal(t, 3312, OffWFrameHist, "docs/LAYOUT.md names this offset")
	require.Equal(t, HeaderSize, OffWFrameHist+8*DurHistBuckets)
	require.GreaterOrEqual(t, OffWPubHist, OffWStatTrimmed+8, "after the last statistics word")
	require.Zero(t, OffWPubHist%8)
	b, _ := encodeTestWorld(t)
	pub, frame := ReadDurHist(b, OffWPubHist), ReadDurHist(b, OffWFrameHist)
	require.Zero(t, pub.Count(), "a new segment")
	require.Zero(t, frame.Count(), "a new segment")
	AddDurHist(b, OffWPubHist, 5000)
	AddDurHist(b, OffWPubHist, 5000)
	AddDurHist(b, OffWFrameHist, 3e6)
	AddDurHist(b, OffWFrameHist, 1<<40)
	w, err := DecodeWorld(b)
	require.NoError(t, err, "histogram counts keep the segment valid")
	pub, frame = ReadDurHist(w.B, OffWPubHist), ReadDurHist(w.B, OffWFrameHist)
	var wantPub, wantFrame DurHist
	wantPub[DurHistBucket(5000)] = 2
	wantFrame[DurHistBucket(3e6)], wantFrame[DurHistBuckets-1] = 1, 1
	require.Equal(t, wantPub, pub)
	require.Equal(t, wantFrame, frame)
	require.Zero(t, Load64(b, OffWStatTrimmed), "the statistics words are untouched")
}

// TestDurHistPercentileModel: percentiles of the counts between two reads
// against the exact percentiles of the durations counted between them
// (sorted, the same rank: round(n·p/100), at least 1): the histogram's
// figure is the exact one's bucket end, at most 25% above it, and never
// below it.
func TestDurHistPercentileModel(t *testing.T) {
	rng := rand.New(rand.NewSource(14))
	for round := 0; round < 200; round++ {
		var h DurHist
		before := rng.Intn(50)
		for i := 0; i < before; i++ { // counted before the first read
			h[DurHistBucket(uint64(rng.Int63n(1e9)))]++
		}
		first := h
		n := 1 + rng.Intn(400)
		ds := make([]uint64, n)
		for i := range ds {
			// log-uniform from 100 ns to 60 s: every region of the range
			ds[i] = uint64(math.Exp(rng.Float64()*(math.Log(60e9)-math.Log(100)) + math.Log(100)))
			h[DurHistBucket(ds[i])]++
		}
		d := h.Sub(&first)
		require.Equal(t, uint64(n), d.Count())
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		for _, p := range []float64{1, 50, 90, 99, 100} {
			want := max(uint64(float64(n)*p/100+0.5), 1)
			exact := ds[want-1]
			got := d.Percentile(p)
			switch {
			case exact < 1<<DurHistLowBits:
				require.Equal(t, uint64(1<<DurHistLowBits), got, "p%v of %d durations, exact %d", p, n, exact)
			case exact >= 1<<DurHistHighBits:
				require.Equal(t, uint64(1<<DurHistHighBits), got, "p%v of %d durations, exact %d", p, n, exact)
			default:
				require.Greater(t, got, exact, "p%v of %d durations", p, n)
				require.LessOrEqual(t, got, exact+exact/4, "p%v of %d durations, exact %d", p, n, exact)
				_, up := DurHistBounds(DurHistBucket(exact))
				require.Equal(t, up, got, "p%v: the end of the exact figure's bucket", p)
			}
		}
	}
	var empty DurHist
	require.Zero(t, empty.Percentile(50))
}

// BenchmarkAddDurHist is the engine's cost of counting one duration (twice
// a frame: its publish and the frame), against the atomic add of one
// statistics word in the same run (the publishes counter beside it).
func BenchmarkAddDurHist(b *testing.B) {
	seg, _ := encodeTestWorld(b)
	b.Run("durhist", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			AddDurHist(seg, OffWPubHist, uint64(i)*2654435761%(1<<26))
		}
	})
	b.Run("x-add64", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Add64(seg, OffWStatPublishes, 1)
		}
	})
}
