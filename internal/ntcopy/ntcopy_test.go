package ntcopy

import (
	"bytes"
	"testing"
)

// check copies src[so:so+n] to dst[do:] with Copy and with copy() into a
// twin buffer, and fails unless both buffers are equal byte for byte (the
// bytes around the destination range included: a store past the end shows).
func check(t *testing.T, dst, want, src []byte, do, so, n int) {
	t.Helper()
	for i := range dst {
		dst[i] = 0xAA
		want[i] = 0xAA
	}
	got := Copy(dst[do:do+n], src[so:so+n])
	copy(want[do:do+n], src[so:so+n])
	if got != n {
		t.Fatalf("dst+%d src+%d n=%d: Copy returned %d", do, so, n, got)
	}
	if !bytes.Equal(dst, want) {
		for i := range dst {
			if dst[i] != want[i] {
				t.Fatalf("dst+%d src+%d n=%d: byte %d is %#x, want %#x", do, so, n, i, dst[i], want[i])
			}
		}
	}
}

// aligned64 returns a buffer of n bytes starting 64-byte aligned.
func aligned64(n int) []byte {
	b := make([]byte, n+64)
	off := 0
	for ; !aligned(b[off:], 64); off++ {
	}
	return b[off : off+n]
}

func pattern(n int) []byte {
	b := aligned64(n)
	for i := range b {
		b[i] = byte(i*7 + i>>8 + 1)
	}
	return b
}

// TestCopyAlignments: every alignment of source and destination (0..63)
// and every size 0..300 (the head, the 32-byte loop, the 128-byte loop and
// the tail in every combination).
func TestCopyAlignments(t *testing.T) {
	if !Available() {
		t.Log("no AVX2: Copy is copy(); the test still checks it")
	}
	const maxN = 300
	src := pattern(maxN + 64)
	dst := aligned64(maxN + 64 + 64)
	want := aligned64(len(dst))
	for do := 0; do < 64; do++ {
		for so := 0; so < 64; so++ {
			for n := 0; n <= maxN; n++ {
				check(t, dst, want, src, do, so, n)
			}
		}
	}
}

// TestCopyLarge: sizes of chunk columns and whole frames, odd sizes and
// alignments around them.
func TestCopyLarge(t *testing.T) {
	const maxN = 4<<20 + 131
	src := pattern(maxN + 64)
	dst := aligned64(maxN + 128)
	want := aligned64(len(dst))
	for _, n := range []int{1024, 4096 - 1, 16 << 10, 16<<10 + 33, 1 << 20, 1<<20 + 5, maxN} {
		for _, a := range [][2]int{{0, 0}, {1, 0}, {0, 1}, {31, 17}, {32, 63}, {63, 63}} {
			check(t, dst, want, src, a[0], a[1], n)
		}
	}
}

// TestCopyShort: Copy copies min(len(dst), len(src)) like copy().
func TestCopyShort(t *testing.T) {
	src := pattern(500)
	dst := make([]byte, 300)
	if n := Copy(dst, src); n != 300 || !bytes.Equal(dst, src[:300]) {
		t.Fatalf("long src: %d", n)
	}
	dst = make([]byte, 500)
	if n := Copy(dst, src[:200]); n != 200 || !bytes.Equal(dst[:200], src[:200]) || dst[200] != 0 {
		t.Fatalf("short src: %d", n)
	}
	if n := Copy(nil, src); n != 0 {
		t.Fatalf("nil dst: %d", n)
	}
}

// TestCopyOverlap: overlapping slices are copied as copy() does.
func TestCopyOverlap(t *testing.T) {
	for _, shift := range []int{-100, -33, -1, 1, 32, 100} {
		a := pattern(1000)
		b := append([]byte(nil), a...)
		lo, hi := 200, 700
		Copy(a[lo+shift:hi+shift], a[lo:hi])
		copy(b[lo+shift:hi+shift], b[lo:hi])
		if !bytes.Equal(a, b) {
			t.Fatalf("shift %d: differs", shift)
		}
	}
}

func benchCopy(b *testing.B, n int, f func(dst, src []byte) int) {
	src := pattern(n)
	dst := aligned64(n)
	b.SetBytes(int64(n))
	for b.Loop() {
		for off := 0; off < n; off += 16 << 10 { // in chunk-column pieces
			end := min(off+16<<10, n)
			f(dst[off:end], src[off:end])
		}
	}
}

func BenchmarkPieces64MiB(b *testing.B) {
	b.Run("copy", func(b *testing.B) { benchCopy(b, 64<<20, func(d, s []byte) int { return copy(d, s) }) })
	b.Run("nt", func(b *testing.B) { benchCopy(b, 64<<20, Copy) })
}
