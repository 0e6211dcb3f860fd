package host

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/record"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/stretchr/testify/require"
)

// recordLive runs a live engine over evSim for frames frames and records
// every published frame but those skip names (as a recorder that dropped
// them) with package record's capturer and writer, keyframes every
// keyEvery. It returns the file and the live checksum of every frame.
func recordLive(t *testing.T, frames, keyEvery int, skip func(f uint64) bool) (string, map[uint64]uint64, map[uint64][]ReplayEvent) {
	t.Helper()
	_, _, sim, live, lr, stop := startEvLive(t)
	defer stop()
	seg, err := layout.DecodeWorld(live.segs.World.Data)
	require.NoError(t, err)
	h, err := record.NewHeader(seg, 1, uint64(live.Period()), uint32(keyEvery))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "rec.fdpr")
	wr, err := record.Create(path, h, record.WriterOptions{QueueFrames: 1 << 12, QueueBytes: 1 << 30})
	require.NoError(t, err)
	capt := record.NewCapturer(seg, keyEvery)
	sums := map[uint64]uint64{}
	for i := 0; i < frames; i++ {
		st := live.Step()
		require.NoError(t, st.PublishErr)
		f, sum := latestSum(t, lr)
		sums[f] = sum
		if skip != nil && skip(f) {
			continue
		}
		_, slot, ok := layout.UnpackLatest(layout.Load64(live.segs.World.Data, layout.OffWLatest))
		require.True(t, ok)
		var evs []record.Event
		for _, ev := range sim.events[f] {
			evs = append(evs, record.Event{Type: ev.Type, Frame: ev.Frame, Payload: ev.Payload})
		}
		raw, info, err := capt.Capture(nil, slot, evs, nil)
		require.NoError(t, err)
		require.True(t, wr.TryEnqueue(info.Kind, f, raw))
	}
	require.NoError(t, wr.Close())
	return path, sums, sim.events
}

// TestReplayRecordingFile: a recording written by package record (deltas,
// keyframes every 8, frames dropped by the recorder) replays with the
// live checksums, frame numbers and events of every recorded frame; a
// seek lands on the frame asked (from its keyframe), whole.
func TestReplayRecordingFile(t *testing.T) {
	dropped := func(f uint64) bool { return f%7 == 3 }
	path, sums, events := recordLive(t, 50, 8, dropped)
	rec, err := OpenRecording(path)
	require.NoError(t, err)
	defer rec.Close()
	first, last := rec.Frames()
	require.Equal(t, uint64(1), first)
	require.Equal(t, uint64(50), last)

	s := newRSchema()
	rep, rr, stop := startReplay(t, s, rec)
	defer stop()
	ef := followEvents(t, rep)
	var seen []uint64
	for {
		st := rep.Step()
		if st.End {
			break
		}
		f, sum := latestSum(t, rr)
		require.Equal(t, st.Frame, f)
		require.Equal(t, sums[f], sum, "frame %d", f)
		require.Equal(t, events[f], ef(), "frame %d events", f)
		seen = append(seen, f)
	}
	require.NoError(t, rep.ReplayErr())
	var want []uint64
	for f := uint64(1); f <= 50; f++ {
		if !dropped(f) {
			want = append(want, f)
		}
	}
	require.Equal(t, want, seen, "every recorded frame, in order, with its number")

	// Seeks, back and forth, each into a new engine (as RunReplay does for
	// a seek back) and forward in the same one.
	for _, target := range []uint64{37, 5, 50, 1, 16} {
		e2, err := New(Config{Instance: testInstance(t), Logger: quietLog()}, newRWorld(t, s), nil)
		require.NoError(t, err)
		require.NoError(t, e2.SetReplay(rec))
		require.NoError(t, rec.Seek(target))
		r2, err := fsync.Attach(e2.Config().Instance, fsync.AttachOptions{Name: "test"})
		require.NoError(t, err)
		st := e2.Step()
		require.False(t, st.End)
		f, sum := latestSum(t, r2)
		require.Equal(t, target, f, "seek lands on the frame asked")
		require.Equal(t, sums[target], sum, "frame %d after a seek", target)
		if target+9 <= 50 {
			require.NoError(t, rec.Seek(target+9)) // forward, same engine
			e2.Step()
			f, sum = latestSum(t, r2)
			want := target + 9
			for dropped(want) {
				want-- // a frame the recorder dropped: the last one before it
			}
			require.Equal(t, want, f)
			require.Equal(t, sums[want], sum, "frame %d after a seek forward", want)
		}
		r2.Close()
		e2.Close()
	}
	require.Error(t, rec.Seek(0), "before the first frame")
}

// followEvents returns a function giving the events committed since its
// previous call.
func followEvents(t *testing.T, e *Engine) func() []ReplayEvent {
	t.Helper()
	ef, err := testutilFollow(e.Config().Instance)
	require.NoError(t, err)
	t.Cleanup(func() { ef.Close() })
	return func() []ReplayEvent {
		var got []ReplayEvent
		require.NoError(t, ef.Read(func(_, frame uint64, typ uint16, payload []byte) {
			got = append(got, ReplayEvent{Frame: frame, Type: typ, Payload: append([]byte(nil), payload...)})
		}))
		return got
	}
}

// TestReplayCutRecording: a recording cut short (as by a SIGKILL of its
// engine: no index, a partial last record) replays up to its last complete
// frame, every frame with its live checksum.
func TestReplayCutRecording(t *testing.T) {
	path, sums, _ := recordLive(t, 40, 8, nil)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(path, st.Size()*2/3))
	rec, err := OpenRecording(path)
	require.NoError(t, err)
	defer rec.Close()
	require.Error(t, rec.Reader().Damage(), "the cut is reported")
	first, last := rec.Frames()
	require.Equal(t, uint64(1), first)
	require.Less(t, last, uint64(40))
	require.Greater(t, last, uint64(10))
	rep, rr, stop := startReplay(t, newRSchema(), rec)
	defer stop()
	n := uint64(0)
	for st := rep.Step(); !st.End; st = rep.Step() {
		f, sum := latestSum(t, rr)
		require.Equal(t, sums[f], sum, "frame %d", f)
		n++
	}
	require.NoError(t, rep.ReplayErr())
	require.Equal(t, last, n, "every frame up to the cut")
}
