package main

import (
	"sort"
	"sync"
	"time"

	"github.com/fdp-engine/fdp/internal/ntcopy"
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
