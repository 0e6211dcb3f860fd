package host

import (
	"encoding/binary"
	"io"
	"testing"

	"github.com/fdp-engine/fdp/internal/testutil"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// evSim is detSim plus one event per frame whose payload is the frame.
type evSim struct {
	*detSim
	events map[uint64][]ReplayEvent
}

const replayEventType = 77

func (s *evSim) Step(dt float32) {
	s.detSim.Step(dt)
	tm, _ := world.GetSingleton[world.Time](s.w)
	p := binary.LittleEndian.AppendUint64(nil, tm.Frame)
	s.w.Emit(replayEventType, p)
	s.events[tm.Frame] = append(s.events[tm.Frame], ReplayEvent{Frame: tm.Frame, Type: replayEventType, Payload: p})
}

// captureFrame builds the ReplayFrame of w as published under frame: whole
// (full) or what was stamped at or after version since. It reads the world
// through its public accessors only (independent of package record).
func captureFrame(w *world.World, frame uint64, full bool, since uint64, events []ReplayEvent) *ReplayFrame {
	rf := &ReplayFrame{Frame: frame, Full: full, ChunksInUse: w.NumChunks(), Events: events}
	reg := w.Registry()
	for c := 0; c < w.NumChunks(); c++ {
		ch := ReplayChunk{Index: c}
		if full || w.ChunkStructVersion(c) >= since {
			words := w.ChunkRecordWords(c)
			ch.Records = make([]byte, 8*len(words))
			for i, x := range words {
				binary.LittleEndian.PutUint64(ch.Records[8*i:], x)
			}
		}
		for k := 0; k < reg.Len(); k++ {
			id := world.ComponentID(k)
			v := w.ChunkComponentVersion(c, id)
			if v == 0 || !full && v < since {
				continue
			}
			info, _ := reg.Info(id)
			data := make([]byte, w.ChunkCapacity()*(info.Size+info.PerEntity))
			copy(data, w.ChunkColumn(c, id))
			ch.Columns = append(ch.Columns, ReplayColumn{ID: id, Data: data})
		}
		if ch.Records != nil || len(ch.Columns) > 0 {
			rf.Chunks = append(rf.Chunks, ch)
		}
	}
	for i := 0; i < w.NumSingletons(); i++ {
		id := world.SingletonID(i)
		if !full && w.SingletonVersion(id) < since {
			continue
		}
		b, ok := w.SingletonRaw(id)
		s := ReplaySingleton{ID: id}
		if ok {
			s.Data = append([]byte(nil), b...)
		}
		rf.Singletons = append(rf.Singletons, s)
	}
	return rf
}

type sliceSource struct{ frames []*ReplayFrame }

func (s *sliceSource) Next() (*ReplayFrame, error) {
	if len(s.frames) == 0 {
		return nil, io.EOF
	}
	f := s.frames[0]
	s.frames = s.frames[1:]
	return f, nil
}

func latestSum(t *testing.T, r *fsync.Reader) (uint64, uint64) {
	t.Helper()
	f, sum, err := testutil.PinnedChecksum(r.Layout(), r.Pin)
	require.NoError(t, err)
	return f, sum
}

// startEvLive starts a live engine over evSim in a new world of a new
// rSchema and attaches a reader to it; stop closes the reader, then the
// engine.
func startEvLive(t *testing.T) (*rSchema, *world.World, *evSim, *Engine, *fsync.Reader, func()) {
	t.Helper()
	s := newRSchema()
	lw := newRWorld(t, s)
	sim := &evSim{detSim: newDetSim(t, s, lw), events: map[uint64][]ReplayEvent{}}
	live, err := New(Config{Instance: testInstance(t), Logger: quietLog()}, lw, sim)
	require.NoError(t, err)
	lr, err := fsync.Attach(live.Config().Instance, fsync.AttachOptions{Name: "test"})
	if err != nil {
		live.Close()
	}
	require.NoError(t, err)
	return s, lw, sim, live, lr, func() { lr.Close(); live.Close() }
}

// startReplay starts an engine (no simulation) in a new world of s that
// replays src and attaches a reader to it; stop closes the reader, then
// the engine.
func startReplay(t *testing.T, s *rSchema, src ReplaySource) (*Engine, *fsync.Reader, func()) {
	t.Helper()
	rep, err := New(Config{Instance: testInstance(t), Logger: quietLog()}, newRWorld(t, s), nil)
	require.NoError(t, err)
	if err := rep.SetReplay(src); err != nil {
		rep.Close()
		require.NoError(t, err)
	}
	rr, err := fsync.Attach(rep.Config().Instance, fsync.AttachOptions{Name: "test"})
	if err != nil {
		rep.Close()
	}
	require.NoError(t, err)
	return rep, rr, func() { rr.Close(); rep.Close() }
}

// TestReplayChecksums runs a live engine over a churning world (creates,
// destroys, a variable-size component, singletons, an event per frame),
// captures each published frame (a keyframe every 10 frames, deltas
// between), replays the captures in another engine and checks that every
// replayed frame has the live frame's number, content checksum (computed
// from the two segments by testutil's independent reader), Time singleton
// and events.
func TestReplayChecksums(t *testing.T) {
	s, lw, sim, live, lr, stop := startEvLive(t)
	defer stop()

	const frames = 60
	var caps []*ReplayFrame
	liveSums := map[uint64]uint64{}
	var since uint64
	for i := 0; i < frames; i++ {
		st := live.Step()
		require.NoError(t, st.PublishErr)
		f, sum := latestSum(t, lr)
		require.Equal(t, st.Frame, f)
		liveSums[f] = sum
		caps = append(caps, captureFrame(lw, f, i%10 == 0, since, sim.events[f]))
		since = lw.Version()
	}

	rw := newRWorld(t, s)
	rep, err := New(Config{Instance: testInstance(t), Logger: quietLog()}, rw, nil)
	require.NoError(t, err)
	defer rep.Close()
	require.NoError(t, rep.SetReplay(&sliceSource{frames: caps}))
	rr, err := fsync.Attach(rep.Config().Instance, fsync.AttachOptions{Name: "test"})
	require.NoError(t, err)
	defer rr.Close()
	ef, err := testutil.FollowEvents(rep.Config().Instance)
	require.NoError(t, err)
	defer ef.Close()
	var n int
	for {
		st := rep.Step()
		if st.End {
			break
		}
		require.NoError(t, st.PublishErr)
		f, sum := latestSum(t, rr)
		require.Equal(t, st.Frame, f)
		require.Equal(t, liveSums[f], sum, "frame %d: replayed checksum differs from the live one", f)
		tm, _ := world.GetSingleton[world.Time](rw)
		require.Equal(t, f, tm.Frame, "recorded Time restored verbatim")
		var got []ReplayEvent
		require.NoError(t, ef.Read(func(_, frame uint64, typ uint16, payload []byte) {
			got = append(got, ReplayEvent{Frame: frame, Type: typ, Payload: append([]byte(nil), payload...)})
		}))
		want := sim.events[f]
		require.Len(t, got, len(want), "frame %d events", f)
		require.Equal(t, want, got, "frame %d events", f)
		n++
	}
	require.Equal(t, frames, n)
	require.NoError(t, rep.ReplayErr())
}

var testutilFollow = testutil.FollowEvents
