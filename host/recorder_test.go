package host

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/record"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// eventSim is detSim plus events: three per frame, their payloads naming
// the frame.
type eventSim struct {
	*detSim
	n uint32
}

func (s *eventSim) Step(dt float32) {
	s.detSim.Step(dt)
	for k := 0; k < 3; k++ {
		s.n++
		var p [12]byte
		binary.LittleEndian.PutUint32(p[:], s.n)
		binary.LittleEndian.PutUint64(p[4:], uint64(s.step))
		s.w.Emit(world.EventType(10+k), p[:4+4*k])
	}
}

// digest is a test's own content hash of a frame (FNV-1a 64), computed the
// same way from a pinned live frame (frameDigest) and from a decoded image
// (imageDigest): the slot header fields a frame holds, every chunk's
// records, every fixed-size column whole, every live variable-size value,
// every singleton that was set. It shares no code with package record.
type digest struct {
	h interface{ Write([]byte) (int, error) }
}

func (d digest) u64(v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	d.h.Write(b[:])
}

func (d digest) bytes(b []byte) { d.u64(uint64(len(b))); d.h.Write(b) }

func bytesOf[T any](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
}

func frameDigest(t *testing.T, s *rSchema, f *fsync.Frame) uint64 {
	h := fnv.New64a()
	d := digest{h}
	in := f.Info()
	d.u64(in.Frame)
	d.u64(uint64(in.Chunks))
	d.u64(uint64(in.Entities))
	d.u64(uint64(in.Alive))
	d.u64(in.PubNanos)
	for _, m := range in.Mask {
		d.u64(m)
	}
	for c := 0; c < f.Chunks(); c++ {
		recs := f.Records(c)
		for _, r := range recs {
			d.u64(uint64(r.Gen) | uint64(r.Flags)<<32)
			d.u64(r.Mask[0])
		}
		d.bytes(bytesOf(fsync.Column[rPos](f, c, s.pos)))
		d.bytes(bytesOf(fsync.Column[rHP](f, c, s.hp)))
		d.bytes(bytesOf(fsync.Column[rTag](f, c, s.tag)))
		col := fsync.ColumnBytes(f, c, s.name)
		for row, r := range recs {
			if r.Flags&layout.FlagAlive != 0 && world.Mask(r.Mask).Has(s.name) {
				d.bytes(col.Bytes(row))
			}
		}
	}
	for _, id := range []world.SingletonID{s.clock, s.step} {
		if v, ok := f.SingletonBytes(id); ok {
			d.bytes(v)
		} else {
			d.u64(0)
		}
	}
	return h.Sum64()
}

func imageDigest(s *rSchema, im *record.Image) uint64 {
	h := fnv.New64a()
	d := digest{h}
	g := im.Header().Geometry
	d.u64(im.Frame)
	d.u64(uint64(im.Chunks))
	d.u64(uint64(im.Entities))
	d.u64(uint64(im.Alive))
	d.u64(im.PubNanos)
	for _, m := range im.Mask {
		d.u64(m)
	}
	column := func(c int, id world.ComponentID) []byte {
		b, _ := im.Column(c, int(id))
		n := g.ChunkCapacity * int(g.Components[id].Size)
		if b == nil {
			return make([]byte, n) // never published: a slot's column reads as zeros
		}
		return b[:n]
	}
	for c := 0; c < int(im.Chunks); c++ {
		recs, _ := im.ChunkRecords(c)
		for _, r := range recs {
			d.u64(uint64(r.Gen) | uint64(r.Flags)<<32)
			d.u64(r.Mask[0])
		}
		d.bytes(column(c, s.pos))
		d.bytes(column(c, s.hp))
		d.bytes(column(c, s.tag))
		col, _ := im.Column(c, int(s.name))
		for row, r := range recs {
			if r.Flags&layout.FlagAlive != 0 && world.Mask(r.Mask).Has(s.name) {
				hd := layout.DecodeHandle(col[row*layout.BytesHandleSize:])
				arena := col[g.ChunkCapacity*layout.BytesHandleSize:]
				d.bytes(arena[hd.Off : hd.Off+hd.Len])
			}
		}
	}
	for _, id := range []world.SingletonID{s.clock, s.step} {
		if v, ver := im.Singleton(int(id)); ver != 0 {
			d.bytes(v)
		} else {
			d.u64(0)
		}
	}
	return h.Sum64()
}

// recEngine is an engine of detSim's world (with events) that records into
// a file of the test's directory.
func recEngine(t *testing.T, rc RecordConfig) (*Engine, *rSchema, string) {
	t.Helper()
	s := newRSchema()
	w := newRWorld(t, s)
	sim := &eventSim{detSim: newDetSim(t, s, w)}
	rc.File = filepath.Join(t.TempDir(), "rec.fdpr")
	inst := fmt.Sprintf("r%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	eng, err := New(Config{Instance: inst, FrameRate: 500, Record: rc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, w, sim)
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	return eng, s, rc.File
}

// TestRecorderFramesEqualPublished: every frame the engine publishes while
// recording is either in the file or counted dropped, and every frame in
// the file, decoded from the nearest keyframe on, equals the frame a reader
// pinned live, by content (the test's own digest of both). A capture held
// running (the capture hook blocks) makes each frame published meanwhile a
// counted "busy" drop, exactly; the frames after it are recorded again, as
// deltas against the last frame the file has.
func TestRecorderFramesEqualPublished(t *testing.T) {
	gate := make(chan struct{})
	var hold atomic.Bool
	holding := make(chan struct{}, 1)
	hook := func() {
		if hold.Load() {
			holding <- struct{}{}
			<-gate
		}
	}
	eng, s, path := recEngine(t, RecordConfig{KeyframeEvery: 7, captureHook: hook})
	r, err := fsync.Attach(eng.Config().Instance, fsync.AttachOptions{Name: "rec-test"})
	require.NoError(t, err)
	defer r.Close()
	live := map[uint64]uint64{}
	step := func() {
		st := eng.Step()
		require.NoError(t, st.PublishErr)
		f, err := r.Pin()
		require.NoError(t, err)
		require.Equal(t, st.Frame, f.Number())
		live[f.Number()] = frameDigest(t, s, f)
		require.NoError(t, f.Release())
	}
	for i := 0; i < 40; i++ {
		step()
	}
	// Hold the next capture: every frame published while it runs is a
	// busy drop.
	before := eng.Recorder()
	idle(t, eng) // so that the next publish hands its frame off
	hold.Store(true)
	step()
	<-holding // the capture of that frame is running (and held)
	hold.Store(false)
	const held = 9
	for i := 0; i < held; i++ {
		step()
	}
	require.Equal(t, before.DroppedBusy+held, eng.Recorder().DroppedBusy, "frames published while a capture ran")
	close(gate)
	for i := 0; i < 40; i++ {
		step()
	}
	require.NoError(t, eng.StopRecording())
	rs := eng.Recorder()
	published := eng.Publisher().Publishes
	require.Equal(t, published, rs.Written+rs.Dropped, "every published frame is recorded or counted dropped: %+v", rs)
	require.GreaterOrEqual(t, rs.Dropped, uint64(held))
	require.Empty(t, rs.Err)

	rd, err := record.Open(path)
	require.NoError(t, err)
	defer rd.Close()
	require.False(t, rd.Rebuilt(), "a file closed cleanly has its index")
	require.Len(t, rd.Index(), int(rs.Written))
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, int64(rs.FileBytes), st.Size(), "the file's size is the recorder's FileBytes")
	im := record.NewImage(rd.Header())
	keys := 0
	prev := uint64(0) // the previous recorded frame
	for i, e := range rd.Index() {
		f, err := rd.Frame(i)
		require.NoError(t, err)
		require.NoError(t, im.Apply(f), "frame %d", e.Frame)
		want, ok := live[e.Frame]
		require.True(t, ok, "frame %d in the file was never published", e.Frame)
		require.Equal(t, want, imageDigest(s, im), "frame %d: the recorded frame differs from the published one", e.Frame)
		if e.Kind == record.KindKeyframe {
			keys++
		}
		if e.Frame > 1 { // three events per simulation step, of every frame since the previous recorded one
			require.Len(t, f.Events, 3*int(e.Frame-max(prev, 1)), "frame %d events", e.Frame)
			require.Equal(t, max(prev, 1)+1, f.Events[0].Frame)
			require.Equal(t, e.Frame, f.Events[len(f.Events)-1].Frame)
		}
		prev = e.Frame
	}
	require.Equal(t, int(rs.Keyframes), keys)
	require.GreaterOrEqual(t, keys, int(rs.Written)/7)
}

// TestRecorderTinyQueue: with a writer queue of one frame, frames the queue
// cannot take are counted (DroppedQueue), never lost silently; the file
// still decodes in order, and every frame in it equals what was published.
func TestRecorderTinyQueue(t *testing.T) {
	eng, s, path := recEngine(t, RecordConfig{QueueFrames: 1, KeyframeEvery: 5})
	r, err := fsync.Attach(eng.Config().Instance, fsync.AttachOptions{Name: "rec-test"})
	require.NoError(t, err)
	defer r.Close()
	live := map[uint64]uint64{}
	for i := 0; i < 150; i++ {
		st := eng.Step()
		require.NoError(t, st.PublishErr)
		f, err := r.Pin()
		require.NoError(t, err)
		live[f.Number()] = frameDigest(t, s, f)
		require.NoError(t, f.Release())
	}
	require.NoError(t, eng.StopRecording())
	rs := eng.Recorder()
	require.Equal(t, eng.Publisher().Publishes, rs.Written+rs.Dropped, "%+v", rs)
	require.Equal(t, rs.Dropped, rs.DroppedBusy+rs.DroppedQueue+rs.DroppedOverflow+rs.DroppedError)
	t.Logf("tiny queue: %d written, %d dropped (%d busy, %d queue full)", rs.Written, rs.Dropped, rs.DroppedBusy, rs.DroppedQueue)
	rd, err := record.Open(path)
	require.NoError(t, err)
	defer rd.Close()
	im := record.NewImage(rd.Header())
	for i, e := range rd.Index() {
		f, err := rd.Frame(i)
		require.NoError(t, err)
		require.NoError(t, im.Apply(f), "frame %d", e.Frame)
		require.Equal(t, live[e.Frame], imageDigest(s, im), "frame %d", e.Frame)
	}
}

// idle waits until the recorder's capture in flight (if any) is done.
func idle(t *testing.T, e *Engine) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !e.rec.done.Load() && e.rec.inflight {
		require.True(t, time.Now().Before(deadline), "the capture in flight never ended")
		time.Sleep(time.Millisecond)
	}
}
