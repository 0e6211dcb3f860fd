package remote

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/record"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

type mover struct {
	w *world.World
	p world.ComponentID
	n int
}

func (m *mover) Step(float32) {
	m.n++
	q := m.w.Query(world.MaskOf(m.p))
	for c := 0; q.Next(); c++ {
		if c%2 == m.n%2 { // half the chunks a frame
			ps := world.ColumnMut[pos](&q, m.p)
			for i := range ps {
				ps[i].X++
			}
		}
	}
}

// streamFixture runs a small engine for n frames and returns each frame
// as the mirror's receiver would queue it (a keyframe every keyEvery
// captures), with, for each, the reference image of that frame (a fresh
// image brought to it from the keyframe before it).
func streamFixture(t *testing.T, n, keyEvery int) ([]unitItem, []*record.Image) {
	reg := world.NewRegistry()
	p, err := world.Register[pos](reg, "Pos")
	require.NoError(t, err)
	w, err := world.New(reg, world.Config{ChunkCapacity: 16, MaxChunks: 16})
	require.NoError(t, err)
	for i := 0; i < 100; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, p, pos{X: float32(i)}))
	}
	inst := fmt.Sprintf("remm%d", os.Getpid())
	e, err := host.New(host.Config{Instance: inst, FrameRate: 60, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, w, &mover{w: w, p: p})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	e.Step()
	r, err := fsync.Attach(inst, fsync.AttachOptions{Name: "t"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	h, err := record.NewHeader(r.Layout(), 1, uint64(time.Second/60), uint32(keyEvery))
	require.NoError(t, err)
	hp := h.Encode()
	hdrRec := record.AppendRecord(nil, record.KindHeader, record.CodecNone, 0, hp, len(hp))
	cp := record.NewCapturer(r.Layout(), keyEvery)
	cd := newCodec()
	var items []unitItem
	var refs []*record.Image
	for i := 0; i < n; i++ {
		if i > 0 {
			e.Step()
		}
		f, err := r.Pin()
		require.NoError(t, err)
		raw, info, err := cp.Capture(nil, f.Slot(), nil, nil)
		require.NoError(t, err)
		require.NoError(t, f.Release())
		var unit []byte
		if info.Kind == record.KindKeyframe {
			unit = append(unit, hdrRec...)
		}
		unit = cd.appendRecord(unit, info.Kind, info.Frame, raw)
		gh, fr, err := cd.decodeUnit(unit, h)
		require.NoError(t, err)
		items = append(items, unitItem{hdr: gh, f: fr})
		snap := record.NewImage(h)
		// The reference of frame i: a fresh image brought to it from the
		// last keyframe at or before i.
		k := i
		for k > 0 && items[k].f.Kind != record.KindKeyframe {
			k--
		}
		for j := k; j <= i; j++ {
			require.NoError(t, snap.Apply(items[j].f))
		}
		refs = append(refs, snap)
	}
	return items, refs
}

// sameImage: two images hold the same frame, byte for byte.
func sameImage(t *testing.T, a, b *record.Image, g int) {
	t.Helper()
	require.Equal(t, a.Frame, b.Frame)
	require.Equal(t, a.Chunks, b.Chunks)
	for c := 0; c < int(a.Chunks); c++ {
		require.True(t, bytes.Equal(a.RecordBytes(c), b.RecordBytes(c)), "chunk %d records", c)
		for k := 0; k < g; k++ {
			ca, _ := a.Column(c, k)
			cb, _ := b.Column(c, k)
			require.True(t, bytes.Equal(ca, cb), "chunk %d column %d", c, k)
		}
	}
}

// TestMirrorSkips: the mirror's source (M1–M3) gives whole frames only:
// what is waiting is applied in order; more than SkipAfter waiting skips
// to the latest keyframe among them (counted); a gap (a delta not taken
// against the image's frame) waits for the next keyframe (counted), and
// nothing is shown meanwhile.
func TestMirrorSkips(t *testing.T) {
	items, refs := streamFixture(t, 40, 10) // keyframes at 0, 10, 20, 30
	m := &Mirror{opt: MirrorOptions{SkipAfter: 8}, units: make(chan unitItem, 64), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s := &mirrorSource{m: m, hdr: items[0].hdr, im: record.NewImage(items[0].hdr), period: time.Millisecond, full: true}
	feed := func(from, to int) {
		for i := from; i < to; i++ {
			m.units <- items[i]
		}
	}
	next := func() *host.ReplayFrame {
		rf, err := s.Next()
		require.NoError(t, err)
		return rf
	}
	// Frames 0..4 waiting: applied in order, the first given whole.
	feed(0, 5)
	rf := next()
	require.True(t, rf.Full)
	require.Equal(t, items[4].f.Frame, rf.Frame)
	require.Equal(t, 5, s.applied)
	sameImage(t, s.im, refs[4], 1)
	// Nothing waiting: no frame.
	_, err := s.Next()
	require.ErrorIs(t, err, host.ErrReplayWait)
	// Frames 5..16 waiting (12 > 8): skip to the latest keyframe among
	// them (10, or a later one the capturer's keyframe budget made).
	key := func(from, to int) int {
		for i := to; i >= from; i-- {
			if items[i].f.Kind == record.KindKeyframe {
				return i
			}
		}
		t.Fatalf("no keyframe in %d..%d", from, to)
		return 0
	}
	k := key(6, 16)
	feed(5, 17)
	rf = next()
	require.Equal(t, items[16].f.Frame, rf.Frame)
	require.Equal(t, uint64(k-5), m.Stats.Skipped.Load())
	require.Equal(t, 17-k, s.applied)
	sameImage(t, s.im, refs[16], 1)
	// A gap: 17 lost, the deltas after it cannot apply; nothing shown,
	// counted.
	require.Equal(t, record.KindDelta, items[18].f.Kind)
	kf := 18
	for items[kf].f.Kind != record.KindKeyframe {
		kf++
	}
	feed(18, kf)
	_, err = s.Next()
	require.ErrorIs(t, err, host.ErrReplayWait)
	require.Equal(t, uint64(k-5+kf-18), m.Stats.Skipped.Load())
	sameImage(t, s.im, refs[16], 1)
	// The next keyframe and what follows show.
	feed(kf, kf+3)
	rf = next()
	require.True(t, rf.Full, "the frame after a keyframe that followed a gap is whole")
	require.Equal(t, items[kf+2].f.Frame, rf.Frame)
	sameImage(t, s.im, refs[kf+2], 1)
	// A delta after it is given as its changes (if the next capture is
	// one).
	feed(kf+3, kf+4)
	rf = next()
	require.Equal(t, items[kf+3].f.Kind == record.KindKeyframe, rf.Full)
	sameImage(t, s.im, refs[kf+3], 1)
}
