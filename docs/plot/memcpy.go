package main

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/fdp-engine/fdp/internal/ntcopy"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// copyBuffers are the source and destination of the memcpy baseline.
//
// The baseline mirrors sync's publishVsMemcpy (sync/bench_test.go): the
// bytes a publish copied, from one warm buffer into another, in pieces of
// one chunk column as the publish copies them. It is the most favourable
// case for memcpy: what fits in cache stays there, while a publish reads the
// live world and alternates between two slots. The source is written once
// (untouched pages would all map the kernel's zero page) and the
// destination is offset from page alignment to keep it clear of 4K-aliasing
// stalls.
type copyBuffers struct {
	src, dst []byte
}

func newCopyBuffers(n int) *copyBuffers {
	b := &copyBuffers{src: make([]byte, n), dst: make([]byte, n+4096)[1024:][:n]}
	for i := range b.src {
		b.src[i] = byte(i)
	}
	copy(b.dst, b.src)
	return b
}

// piece is the publish's unit of copy: one chunk column.
const piece = chunkCap * compSize

// pieces copies the first n bytes in chunk-column pieces (temporal stores:
// Go's memmove uses non-temporal stores only for a single copy of 1 MiB or
// more).
func (b *copyBuffers) pieces(n int) {
	copyPieces(b.dst[:n], b.src[:n])
}

func copyPieces(dst, src []byte) {
	for off := 0; off < len(src); off += piece {
		end := min(off+piece, len(src))
		copy(dst[off:end], src[off:end])
	}
}

// piecesNT copies the first n bytes in chunk-column pieces with
// non-temporal stores (ntcopy.Copy, as a publish with NTCopyMin reached).
func (b *copyBuffers) piecesNT(n int) {
	dst, src := b.dst[:n], b.src[:n]
	for off := 0; off < n; off += piece {
		end := min(off+piece, n)
		ntcopy.Copy(dst[off:end], src[off:end])
	}
}

// whole copies the first n bytes with one copy: non-temporal stores from
// 1 MiB on (runtime memmove on amd64).
func (b *copyBuffers) whole(n int) { copy(b.dst[:n], b.src[:n]) }

// parallel copies the first n bytes in chunk-column pieces on two
// goroutines, each half of the range.
func (b *copyBuffers) parallel(n int) {
	half := (n / 2) &^ (piece - 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		copyPieces(b.dst[half:n], b.src[half:n])
	}()
	copyPieces(b.dst[:half], b.src[:half])
	wg.Wait()
}

// timeIt returns the median of k runs of f.
func timeIt(k int, f func()) time.Duration {
	d := make([]time.Duration, k)
	for i := range d {
		t0 := time.Now()
		f()
		d[i] = time.Since(t0)
	}
	return median(d)
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// interleaved measures every fraction reps times, k samples a median: in
// each repetition the publishers publish in turn (the order rotates, and
// before(i) runs just before publisher i does), then each of copies times
// a copy of the bytes the publishes copied. It returns, per fraction, those
// bytes, and the medians [publisher][fraction][rep] and the copy times
// [copy][fraction][rep].
func (tw *testWorld) interleaved(k, reps int, pubs []*fsync.Publisher, before func(i int), copies []func(b *copyBuffers, n int)) (
	bytes []int, runs, cps [][][]time.Duration, err error) {
	frame := uint64(0)
	buf := newCopyBuffers(int(tw.contentBytes(world.MaskAll())))
	bytes = make([]int, len(fractions))
	grid := func(n int) [][][]time.Duration {
		g := make([][][]time.Duration, n)
		for i := range g {
			g[i] = make([][]time.Duration, len(fractions))
		}
		return g
	}
	runs, cps = grid(len(pubs)), grid(len(copies))
	for r := 0; r < reps; r++ {
		for fi, f := range fractions {
			for j := range pubs {
				i := (j + r) % len(pubs)
				before(i)
				d, nb, err := tw.medianPublish(pubs[i], f, &frame, k)
				if err != nil {
					return nil, nil, nil, err
				}
				bytes[fi] = nb
				runs[i][fi] = append(runs[i][fi], d)
			}
			nb := min(bytes[fi], len(buf.src))
			for c, cp := range copies {
				cps[c][fi] = append(cps[c][fi], timeIt(k, func() { cp(buf, nb) }))
			}
		}
	}
	return bytes, runs, cps, nil
}

// span renders the min–max over the repetitions of d[i] / base[i].
func span(d, base []time.Duration) string {
	lo, hi := math.Inf(1), 0.0
	for i := range d {
		x := float64(d[i]) / float64(base[i])
		lo, hi = min(lo, x), max(hi, x)
	}
	return fmt.Sprintf("%.2f–%.2f×", lo, hi)
}

// ratio renders the median of d and its span against base.
func ratio(d, base []time.Duration) string {
	return fmt.Sprintf("%v (%s)", round(median(d)), span(d, base))
}
