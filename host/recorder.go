package host

// The flight recorder (docs/ARCHITECTURE.md, "Flight recorder"): every
// published frame, captured from its slot into a recording file
// (package record) off the frame thread.
//
// Threads. The frame thread (Step) does only what must happen between two
// of its own writes: right after a publish it leases the slot just
// published to sync.RecorderHolder (the slot leaves the rotation and is
// never rewritten or trimmed while held) and hands it to the capture
// goroutine with the frame's events and the command batches played back
// since the previous publish, copied into the recorder's buffers. The
// capture goroutine encodes the slot (a keyframe or a version-based delta:
// record.Capturer, which reads only the slot) and queues the payload to the
// file writer (record.Writer: its own goroutine compresses and writes);
// then it says it is done, and the frame thread releases the lease at its
// next frame. So the frame thread never waits for a capture, a compression
// or a write.
//
// Dropped frames (never silent: each is counted by its reason, and the
// writer counts them all): a publish that finds the previous capture still
// running (RecorderStats.DroppedBusy), a frame whose events and batches pass
// RecordConfig.MaxFrameBytes (DroppedOverflow), a capture the writer's
// bounded queue cannot take (DroppedQueue; the capturer is rewound so that
// the next delta is based on the last frame the file has), a capture that
// failed (DroppedError). Frames that were not published are not frames:
// nothing is recorded or dropped for them, and their events go with the
// next published frame (each event carries its own frame number).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/record"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// RecordConfig configures the flight recorder (Config.Record). A zero File
// turns it off.
type RecordConfig struct {
	// File is the recording's path; it is created (or truncated), 0600.
	File string
	// KeyframeEvery makes every N-th recorded frame a keyframe (default
	// DefaultKeyframeEvery; a seek decodes at most N-1 deltas).
	KeyframeEvery int
	// QueueFrames bounds the frames captured and not yet written (the
	// writer's queue; default 64).
	QueueFrames int
	// MaxFrameBytes bounds the bytes of one frame's events and command
	// batches the frame thread copies for the recorder (default 8 MiB): a
	// frame beyond it is dropped (counted), never half-recorded.
	MaxFrameBytes int
	// Uncompressed stores payloads without zstd (`--record-compression
	// none`, tests, benchmarks).
	Uncompressed bool
	// Overwrite replaces an existing recording (record.WriterOptions):
	// without it an existing File is refused.
	Overwrite bool
	// captureHook, if set (tests), runs on the capture goroutine before
	// each capture: a test blocks it to hold a capture running.
	captureHook func()
}

// DefaultKeyframeEvery is RecordConfig.KeyframeEvery's default: a keyframe
// every 5 s at 60 Hz.
const DefaultKeyframeEvery = 300

// DefaultRecordFrameBytes is RecordConfig.MaxFrameBytes's default.
const DefaultRecordFrameBytes = 8 << 20

func (c *RecordConfig) defaults() {
	if c.KeyframeEvery == 0 {
		c.KeyframeEvery = DefaultKeyframeEvery
	}
	if c.QueueFrames == 0 {
		c.QueueFrames = 64
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultRecordFrameBytes
	}
}

func (c *RecordConfig) validate() error {
	switch {
	case c.File == "":
		return nil
	case c.KeyframeEvery < 1:
		return fmt.Errorf("%w: Record.KeyframeEvery %d, want at least 1", ErrConfig, c.KeyframeEvery)
	case c.QueueFrames < 1:
		return fmt.Errorf("%w: Record.QueueFrames %d, want at least 1", ErrConfig, c.QueueFrames)
	case c.MaxFrameBytes < 1:
		return fmt.Errorf("%w: Record.MaxFrameBytes %d, want at least 1", ErrConfig, c.MaxFrameBytes)
	}
	return nil
}

// RecorderStats are the recorder's figures (Engine.Recorder).
type RecorderStats struct {
	// On: the engine records (Config.Record.File), into File.
	On   bool
	File string
	// Frames counts the frames handed to the capture goroutine; Recorded
	// those queued to the writer, Written those in the file (of which
	// Keyframes), Queued those waiting for the writer.
	Frames, Recorded, Written, Keyframes uint64
	Queued                               int
	// Dropped is every frame published while recording and not recorded:
	// the sum of the reasons below (package comment).
	Dropped, DroppedBusy, DroppedOverflow, DroppedQueue, DroppedError uint64
	// RawBytes are the payload bytes written before compression, FileBytes
	// the file's size; DirtyBytes the slot bytes the captures copied.
	RawBytes, FileBytes, DirtyBytes uint64
	// CaptureTime is the capture goroutine's total time in captures;
	// FrameThreadTime the frame thread's total time in the recorder (the
	// lease, the copies of events and batches, the hand-off).
	CaptureTime, FrameThreadTime time.Duration
	// Err is the writer's error, if it failed (it then stops writing and
	// every later frame is dropped).
	Err string
}

// recJob is one frame handed to the capture goroutine.
type recJob struct {
	slot  int
	frame uint64
	buf   *recBuf
}

// recBuf holds the events and batches of one frame: the frame thread fills
// one while the capture goroutine reads the other.
type recBuf struct {
	arena   []byte
	events  []recEvent
	batches []recBatch
	over    bool // passed MaxFrameBytes: the frame is dropped
	// What the capture reads (built from the above at hand-off).
	ev []record.Event
	ba []record.Batch
}

type recEvent struct {
	typ      uint16
	frame    uint64
	off, len int
}

type recBatch struct {
	module            string
	slot              uint16
	pid               uint32
	incarnation, seq  uint64
	applied, rejected uint32
	off, len          int
}

func (b *recBuf) reset() {
	b.arena, b.events, b.batches, b.over = b.arena[:0], b.events[:0], b.batches[:0], false
}

// room reports whether n more bytes fit the frame's bound; a frame past it
// is marked dropped and copies nothing more.
func (b *recBuf) room(n, limit int) bool {
	if b.over || len(b.arena)+n > limit {
		b.over = true
		return false
	}
	return true
}

// materialize builds the record values the capture reads (their bytes
// alias the arena, which no longer grows).
func (b *recBuf) materialize() {
	b.ev, b.ba = b.ev[:0], b.ba[:0]
	for _, e := range b.events {
		b.ev = append(b.ev, record.Event{Type: e.typ, Frame: e.frame, Payload: b.arena[e.off : e.off+e.len : e.off+e.len]})
	}
	for _, x := range b.batches {
		b.ba = append(b.ba, record.Batch{Module: x.module, Slot: x.slot, PID: x.pid, Incarnation: x.incarnation, Seq: x.seq,
			Applied: x.applied, Rejected: x.rejected, Commands: b.arena[x.off : x.off+x.len : x.off+x.len]})
	}
}

// recorder is the engine's flight recorder. Fields without a note are the
// frame thread's.
type recorder struct {
	cfg  RecordConfig
	pub  *fsync.Publisher
	w    *record.Writer
	cap  *record.Capturer // capture goroutine only
	log  *slog.Logger
	bufs [2]recBuf
	fill *recBuf // the frame thread's
	// job is the frame handed off: written by the frame thread while no
	// capture is in flight, then published by storing pending (release);
	// the capture goroutine reads it after loading pending (acquire).
	job     recJob
	pending atomic.Bool
	quit    atomic.Bool
	poll    time.Duration // the capture goroutine's polling interval
	stop    gosync.WaitGroup

	held     int  // slot leased to the recorder, -1 none
	inflight bool // a job was handed off and not seen done
	done     atomic.Bool
	closed   bool

	// Counters: the frame thread's (plain) and the capture goroutine's
	// (atomic); stats() reads them from any goroutine through the atomics.
	frames, busy, over                                    atomic.Uint64
	recorded, queueFull, capErr, dirty, capNanos, ftNanos atomic.Uint64
}

// newRecorder creates the recording file and starts the capture goroutine.
func newRecorder(cfg RecordConfig, pub *fsync.Publisher, period time.Duration, log *slog.Logger) (*recorder, error) {
	h, err := record.NewHeader(pub.Layout(), time.Now().UnixNano(), uint64(period), uint32(cfg.KeyframeEvery))
	if err != nil {
		return nil, fmt.Errorf("recording %s: %w", cfg.File, err)
	}
	w, err := record.Create(cfg.File, h, record.WriterOptions{QueueFrames: cfg.QueueFrames, Uncompressed: cfg.Uncompressed, Overwrite: cfg.Overwrite})
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	r := &recorder{cfg: cfg, pub: pub, w: w, cap: record.NewCapturer(pub.Layout(), cfg.KeyframeEvery), log: log,
		held: -1, poll: min(time.Millisecond, max(period/8, 50*time.Microsecond))}
	r.fill = &r.bufs[0]
	r.stop.Add(1)
	go r.run()
	return r, nil
}

// run is the capture goroutine: one job at a time. It polls for the next
// job (every poll: at most 1 ms, an eighth of the frame period) instead of
// waiting on a channel: a send to a goroutine parked on a channel readies
// it, and readying a goroutine may wake an idle thread of the runtime with
// a futex, which on the 2-vCPU VM costs the frame thread 20-30 µs per frame
// (measured: BenchmarkRecorderOverhead100K30); a poll costs the frame thread
// nothing, and the capture has the whole frame period to run.
func (r *recorder) run() {
	defer r.stop.Done()
	for {
		if !r.pending.Load() {
			if r.quit.Load() {
				return
			}
			time.Sleep(r.poll) // polling the frame thread's hand-off
			continue
		}
		j := r.job
		if h := r.cfg.captureHook; h != nil {
			h()
		}
		start := time.Now()
		raw, info, err := r.cap.Capture(r.w.Buffer(), j.slot, j.buf.ev, j.buf.ba)
		switch {
		case err != nil:
			r.capErr.Add(1)
			r.w.NoteDropped()
			r.cap.ForceKeyframe()
		case !r.w.TryEnqueue(info.Kind, j.frame, raw):
			r.queueFull.Add(1) // the writer counted it
			r.cap.Rewind()
		default:
			r.recorded.Add(1)
			r.dirty.Add(uint64(info.Dirty))
		}
		r.capNanos.Add(uint64(time.Since(start)))
		if err != nil {
			r.log.Warn("recorder: capture failed; frame dropped", "frame", j.frame, "err", err)
		}
		r.pending.Store(false)
		r.done.Store(true)
	}
}

// reap releases the slot of a capture that is done (frame thread).
func (r *recorder) reap() {
	if r.inflight && r.done.Load() {
		r.inflight = false
		if r.held >= 0 {
			_ = r.pub.ReleaseHolder(r.held, fsync.RecorderHolder)
			r.held = -1
		}
	}
}

// addEvents copies the frame's events (frame thread, before they are
// cleared): those the event log took, i.e. not longer than maxPayload (a
// longer one was refused and counted by the log; a replay publishes what
// the live log held).
func (r *recorder) addEvents(frame uint64, evs []world.Event, maxPayload int) {
	if r.closed {
		return
	}
	b := r.fill
	for _, ev := range evs {
		if len(ev.Payload) > maxPayload {
			continue
		}
		if !b.room(len(ev.Payload), r.cfg.MaxFrameBytes) {
			return
		}
		off := len(b.arena)
		b.arena = append(b.arena, ev.Payload...)
		b.events = append(b.events, recEvent{typ: uint16(ev.Type), frame: frame, off: off, len: len(ev.Payload)})
	}
}

// batchStart begins the copy of a module's batch; addCommand appends one
// of its records in the ring's wire form (docs/LAYOUT.md "Command ring");
// batchEnd closes it with its counts. Frame thread (playback).
func (r *recorder) batchStart(m *Module) {
	b := r.fill
	m.batchSeq++
	b.batches = append(b.batches, recBatch{module: m.Name, slot: uint16(m.Slot), pid: uint32(m.PID),
		incarnation: m.Stats.Joins, seq: m.batchSeq, off: len(b.arena)})
}

func (r *recorder) addCommand(typ uint16, payload []byte) {
	b := r.fill
	n := len(payload)
	size := (8 + n + 7) &^ 7
	if !b.room(size, r.cfg.MaxFrameBytes) {
		return
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(size))
	binary.LittleEndian.PutUint16(hdr[4:], typ)
	binary.LittleEndian.PutUint16(hdr[6:], uint16(size-8-n))
	b.arena = append(b.arena, hdr[:]...)
	b.arena = append(b.arena, payload...)
	b.arena = append(b.arena, make([]byte, size-8-n)...)
}

func (r *recorder) batchEnd(applied, rejected int) {
	b := r.fill
	if len(b.batches) == 0 {
		return
	}
	x := &b.batches[len(b.batches)-1]
	x.len = len(b.arena) - x.off
	x.applied, x.rejected = uint32(applied), uint32(rejected)
	if x.len == 0 && applied == 0 && rejected == 0 {
		b.batches = b.batches[:len(b.batches)-1] // nothing was played back
	}
}

// published hands the frame just published to the capture goroutine
// (frame thread, right after a successful publish), or counts it dropped.
func (r *recorder) published(frame uint64) {
	b := r.fill
	switch {
	case r.closed:
		return
	case b.over:
		r.over.Add(1)
		r.w.NoteDropped()
	case r.inflight:
		r.busy.Add(1)
		r.w.NoteDropped()
		return // its events and batches go with the next recorded frame
	default:
		s, f, err := r.pub.LeaseLatest(fsync.RecorderHolder)
		if err == nil && f != frame { // not the frame just published: never expected
			_ = r.pub.ReleaseHolder(s, fsync.RecorderHolder)
			err = fmt.Errorf("latest frame %d, published %d", f, frame)
		}
		if err != nil {
			r.capErr.Add(1)
			r.w.NoteDropped()
			r.log.Warn("recorder: cannot lease the frame just published; frame dropped", "frame", frame, "err", err)
			return // its events and batches go with the next recorded frame
		}
		r.held, r.inflight = s, true
		r.done.Store(false)
		b.materialize()
		r.frames.Add(1)
		r.job = recJob{slot: s, frame: frame, buf: b}
		r.pending.Store(true) // ORDER: publishes r.job and b to the capture goroutine
		// The other buffer is free: its job (if any) is done.
		if b == &r.bufs[0] {
			r.fill = &r.bufs[1]
		} else {
			r.fill = &r.bufs[0]
		}
	}
	r.fill.reset()
}

// close stops the capture goroutine, writes what is queued and the file's
// index, and releases the lease (frame thread, or after Run).
func (r *recorder) close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.quit.Store(true) // the goroutine ends once no job is pending
	r.stop.Wait()
	r.done.Store(true)
	r.reap()
	return r.w.Close()
}

// stats returns the recorder's figures (any goroutine).
func (r *recorder) stats() RecorderStats {
	ws := r.w.Stats()
	st := RecorderStats{On: true, File: r.cfg.File,
		Frames: r.frames.Load(), Recorded: r.recorded.Load(), Written: ws.Written, Keyframes: ws.Keyframes, Queued: ws.Queued,
		DroppedBusy: r.busy.Load(), DroppedOverflow: r.over.Load(), DroppedQueue: r.queueFull.Load(), DroppedError: r.capErr.Load(),
		RawBytes: ws.RawBytes, FileBytes: ws.FileBytes, DirtyBytes: r.dirty.Load(),
		CaptureTime: time.Duration(r.capNanos.Load()), FrameThreadTime: time.Duration(r.ftNanos.Load())}
	st.Dropped = st.DroppedBusy + st.DroppedOverflow + st.DroppedQueue + st.DroppedError
	if err := r.w.Err(); err != nil {
		st.Err = err.Error()
	}
	return st
}

// writeSegment stores the figures in the world header's recorder words
// (layout/recorder.go) for `engine stat` and `engine top` (frame thread).
func (r *recorder) writeSegment(b []byte) {
	st := r.stats()
	state := layout.RecorderOn
	if st.Err != "" {
		state = layout.RecorderFailed
	}
	layout.PutRecorderStats(b, layout.RecorderStats{State: state, Written: st.Written, Dropped: st.Dropped,
		FileBytes: st.FileBytes, RawBytes: st.RawBytes, Keyframes: st.Keyframes})
}

// ErrNotRecording is returned by Engine.StopRecording without a recorder.
var ErrNotRecording = errors.New("the engine is not recording")
