package host

// Replay: an engine whose frames come from a recording instead of a
// simulation (`engine replay`, docs/ARCHITECTURE.md "Flight recorder and
// replay").
//
// The engine runs its ordinary frame loop (publish, dispatch, wait,
// playback, joins and deaths) with three differences, all in Step:
//
//   - the world is set from the recorded frame (world/restore.go:
//     SetChunkData, RestoreColumn, RestoreSingleton, RestoreFinish) instead
//     of being simulated, and the frame number is the recorded one. Restored
//     chunks and columns are stamped with the replay world's own versions
//     (after World.Advance): the publisher's "copy what is newer than the
//     slot" rule (World.Seal's invariant) then holds across seeks, where the
//     recorded versions would go back. Readers compare versions of one
//     engine only, so nothing a module reads depends on them;
//   - the Time singleton is not stepped: the recorded one is restored with
//     the other singletons, verbatim;
//   - the event log gets the recorded events of the frame, verbatim (type,
//     payload and the frame number they were recorded with), and nothing
//     else: the world generates no lifecycle event (a restore is not a
//     create, destroy, add or remove) and a dry-run playback no created
//     notice, so no event of the live run is published twice.
//
// Commands the modules send are played back with world.Playback.DryRun:
// validated and counted like live ones (the module's applied and
// rejected_by_reason figures), then dropped. The recording never changes.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// ReplayFrame is one recorded frame as a ReplaySource gives it: the state
// of the world the live engine published under Frame, as changes against
// the previous ReplayFrame the source gave (or, when Full, whole).
type ReplayFrame struct {
	Frame uint64
	// Full: Chunks holds every chunk in use with its records and every
	// column the frame holds; chunks beyond ChunksInUse are emptied and the
	// columns not given are zeroed (a seek, the first frame). Otherwise
	// Chunks holds only what changed since the previous frame.
	Full        bool
	ChunksInUse int
	Chunks      []ReplayChunk
	// Singletons: the singletons whose value changed (every one when Full);
	// Data nil is a singleton never set.
	Singletons []ReplaySingleton
	// Events: the events the live engine appended to its log for this
	// frame, in order.
	Events []ReplayEvent
}

// ReplayChunk is one chunk of a ReplayFrame.
type ReplayChunk struct {
	Index int
	// Records: the chunk's entity records, ChunkCapacity of them in the
	// layout's encoding (layout.RecordSize each); nil when unchanged.
	Records []byte
	Columns []ReplayColumn
}

// ReplayColumn is one component column of a chunk, with a variable-size
// component's arena (World.RestoreColumn's data).
type ReplayColumn struct {
	ID   world.ComponentID
	Data []byte
}

// ReplaySingleton is a singleton's value.
type ReplaySingleton struct {
	ID   world.SingletonID
	Data []byte
}

// ReplayEvent is one recorded event.
type ReplayEvent struct {
	Frame   uint64
	Type    uint16
	Payload []byte
}

// ReplaySource gives the frames of a replay, in the order they are to be
// published. Next returns io.EOF at the end of the recording; any other
// error ends the replay with it. Next is called on the frame thread.
type ReplaySource interface {
	Next() (*ReplayFrame, error)
}

// ErrReplayWait is what a ReplaySource's Next returns when it has no frame
// yet but will have (a mirror waiting for its stream): the engine's turn
// runs nothing and publishes nothing, and the next turn asks again.
var ErrReplayWait = errors.New("fdp/host: no replay frame yet")

// ErrReplay wraps every error of a replayed frame that cannot be applied.
var ErrReplay = errors.New("fdp/host: replay")

// SetReplay makes e a replay engine: from the next Step on, every frame
// comes from src (see the top of this file). It must be called before the
// first Step.
func (e *Engine) SetReplay(src ReplaySource) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Frames != 0 {
		return fmt.Errorf("%w: the engine already ran %d frames", ErrReplay, e.Frames)
	}
	e.replay = src
	return nil
}

// Replaying reports whether e is a replay engine.
func (e *Engine) Replaying() bool { return e.replay != nil }

// ReplayErr returns why the replay ended (nil: the recording's end, or not
// ended).
func (e *Engine) ReplayErr() error { return e.replayErr }

// nextReplay fetches the next recorded frame and sets the world from it.
// It returns false at the end of the replay (e.replayEnded; replayErr set
// unless the source ended cleanly).
func (e *Engine) nextReplay() (*ReplayFrame, bool) {
	if e.replayRestart {
		e.replayEnded = true // a seek back: RunReplay starts a new engine
		return nil, false
	}
	rf, err := e.replay.Next()
	if errors.Is(err, ErrReplayWait) {
		return nil, false // no frame this turn (a mirror): not the end
	}
	if err == nil && e.Frames != 0 && rf.Frame <= e.frame {
		err = fmt.Errorf("%w: frame %d after frame %d: frame numbers go back within the recording", ErrReplay, rf.Frame, e.frame)
	}
	if err == nil {
		err = e.applyReplay(rf)
	}
	if err != nil {
		e.replayEnded = true
		if !errors.Is(err, io.EOF) {
			e.replayErr = err
		}
		return nil, false
	}
	return rf, true
}

// applyReplay sets the world to rf. Everything is stamped with the world's
// current version (see the top of the file).
func (e *Engine) applyReplay(rf *ReplayFrame) error {
	w := e.w
	fail := func(err error) error { return fmt.Errorf("%w: frame %d: %w", ErrReplay, rf.Frame, err) }
	if rf.ChunksInUse < 0 || rf.ChunksInUse > w.MaxChunks() {
		return fail(fmt.Errorf("%d chunks in use, the world has room for %d", rf.ChunksInUse, w.MaxChunks()))
	}
	v := w.Version()
	capacity, words := w.ChunkCapacity(), w.MaskWords()
	size := layout.RecordSize(words)
	ncomp := w.Registry().Len()
	var given []bool
	if rf.Full {
		given = make([]bool, ncomp)
	}
	for _, ch := range rf.Chunks {
		if ch.Index < 0 || ch.Index >= max(rf.ChunksInUse, 0) {
			return fail(fmt.Errorf("chunk %d beyond the %d chunks in use", ch.Index, rf.ChunksInUse))
		}
		if ch.Records != nil {
			if len(ch.Records) != capacity*size {
				return fail(fmt.Errorf("chunk %d: %d bytes of records, want %d", ch.Index, len(ch.Records), capacity*size))
			}
			if cap(e.recScratch) < capacity {
				e.recScratch = make([]layout.EntityRecord, capacity)
			}
			recs := e.recScratch[:capacity]
			for i := range recs {
				recs[i] = layout.DecodeRecord(ch.Records[i*size:], words)
			}
			if err := w.SetChunkData(ch.Index, recs, v); err != nil {
				return fail(err)
			}
		} else if rf.Full {
			return fail(fmt.Errorf("chunk %d of a full frame without records", ch.Index))
		}
		if rf.Full {
			clear(given)
		}
		for _, col := range ch.Columns {
			if err := w.RestoreColumn(ch.Index, col.ID, col.Data, v); err != nil {
				return fail(err)
			}
			if rf.Full {
				given[col.ID] = true
			}
		}
		if rf.Full {
			for k, ok := range given {
				if !ok && w.ChunkComponentVersion(ch.Index, world.ComponentID(k)) != 0 {
					if err := w.RestoreColumn(ch.Index, world.ComponentID(k), e.zeroColumn(k), v); err != nil {
						return fail(err)
					}
				}
			}
		}
	}
	if rf.Full {
		empty := make([]layout.EntityRecord, capacity)
		for c := rf.ChunksInUse; c < w.NumChunks(); c++ {
			if err := w.SetChunkData(c, empty, v); err != nil {
				return fail(err)
			}
		}
	}
	for _, s := range rf.Singletons {
		if int(s.ID) >= w.NumSingletons() {
			return fail(fmt.Errorf("%w: singleton %d", world.ErrUnknownSingleton, s.ID))
		}
		data, ver := s.Data, v
		if data == nil {
			info, _ := w.Registry().Singleton(s.ID)
			data, ver = make([]byte, info.Size), 0
		}
		if err := w.RestoreSingleton(s.ID, data, ver); err != nil {
			return fail(err)
		}
	}
	if rf.Full {
		w.RestoreFinish(v)
	} else {
		// Only the chunks whose records changed have derived state to
		// rebuild (world/replay.go).
		e.restored = e.restored[:0]
		for _, ch := range rf.Chunks {
			if ch.Records != nil {
				e.restored = append(e.restored, ch.Index)
			}
		}
		w.RestoreChunks(e.restored, v)
	}
	return nil
}

// zeroColumn returns a zeroed column of component k (with its arena).
func (e *Engine) zeroColumn(k int) []byte {
	info, _ := e.w.Registry().Info(world.ComponentID(k))
	return make([]byte, e.w.ChunkCapacity()*(info.Size+info.PerEntity))
}

// publishReplayEvents appends the recorded events of rf to the event log,
// verbatim (host/engine.go captures the simulation's events instead).
func (e *Engine) publishReplayEvents(rf *ReplayFrame) {
	for _, ev := range rf.Events {
		if e.evw.Append(ev.Frame, ev.Type, ev.Payload) == nil && e.wake.active {
			e.wake.saw(ev.Type)
		}
	}
	e.evw.Commit()
	e.w.ClearEvents()
}

// Recording is what RunReplay reads: the frames of a recording in order
// (ReplaySource) and a way to move in it.
type Recording interface {
	ReplaySource
	// Seek positions the recording so that Next returns recorded frame
	// frame next, whole (ReplayFrame.Full), from the nearest keyframe at or
	// before it.
	Seek(frame uint64) error
	// Frames returns the first and last frame of the recording.
	Frames() (first, last uint64)
}

// ReplayOptions are RunReplay's.
type ReplayOptions struct {
	// Loop: at the end of the recording, start again at its first frame.
	Loop bool
	// Speed is the initial speed (time control's `speed`: the publication
	// rate is the frame rate × Speed); 0 is 1.
	Speed float64
	// Paused: start paused, showing the first frame (then `engine ctl`
	// step or resume).
	Paused bool
	// OnEngine is called with every engine RunReplay starts (a backward
	// seek or a loop starts a new one), before its first frame.
	OnEngine func(*Engine)
}

// RunReplay publishes rec as instance cfg.Instance until ctx is done or the
// recording ends (without Loop), with time control (`engine ctl`: pause,
// resume, step, speed, seek) through the engine's Replayer hook. newWorld
// returns an empty world of the recording's schema and size.
//
// Frame numbers never go back within one engine: the frame protocol
// between the engine and its modules (tick and done words, dispatch
// phases, the event log read up to the view's frame) counts on it. A seek
// forward stays in the engine; a seek back, to the current frame or
// before, and a loop replace the engine by a new one at the frame asked,
// exactly as an engine restart: the modules rejoin (module.Run does it on
// its own), their first tick with the new engine is a new attach (OnResync)
// and the new event log holds the recorded events from that frame on. The
// pause and speed carry over; a paused replay shows the frame asked.
func RunReplay(ctx context.Context, cfg Config, newWorld func() (*world.World, error), rec Recording, opt ReplayOptions, onFrame func(FrameStats)) error {
	paused, steps, speed := opt.Paused, uint64(0), opt.Speed
	if paused {
		steps = 1 // the first frame is shown
	}
	if speed == 0 {
		speed = 1
	}
	for {
		w, err := newWorld()
		if err != nil {
			return err
		}
		e, err := New(cfg, w, nil)
		if err != nil {
			return err
		}
		_ = e.SetReplay(rec) // before the first Step: cannot fail
		e.SetReplayer(&replayer{e: e, rec: rec})
		e.tc.mu.Lock()
		e.tc.paused, e.tc.steps, e.tc.speed, e.tc.changed = paused, steps, speed, true
		e.tc.mu.Unlock()
		if opt.OnEngine != nil {
			opt.OnEngine(e)
		}
		err = e.Run(ctx, onFrame)
		st := e.TimeControl()
		paused, speed = st.Paused, st.Speed
		restart, ended := e.replayRestart, e.replayEnded && e.replayErr == nil && !e.replayRestart
		if restart {
			// The seek's reply is written after the frame thread took the
			// seek: let it out before the close cuts its connection.
			for deadline := time.Now().Add(2 * time.Second); e.ctl.CtlActive() > 0 && time.Now().Before(deadline); {
				time.Sleep(100 * time.Microsecond) // polling the condition, bounded
			}
		}
		e.Close()
		switch {
		case err != nil || ctx.Err() != nil:
			return err
		case restart:
		case ended && opt.Loop:
			first, _ := rec.Frames()
			if err := rec.Seek(first); err != nil {
				return err
			}
		default:
			return nil
		}
		steps = 0
		if paused {
			steps = 1 // the frame asked is shown (host/timectl.go, T4)
		}
	}
}

// replayer is RunReplay's time-control hook (Replayer).
type replayer struct {
	e   *Engine
	rec Recording
}

// Seek moves the recording to frame; a frame not after the engine's
// current one ends the engine for a new one (RunReplay).
func (r *replayer) Seek(frame uint64) error {
	first, last := r.rec.Frames()
	if frame < first || frame > last {
		return fmt.Errorf("frame %d is outside the recording (frames %d to %d)", frame, first, last)
	}
	if err := r.rec.Seek(frame); err != nil {
		return err
	}
	if frame <= r.e.frame {
		r.e.replayRestart = true
	}
	return nil
}

// Frames is the recording's.
func (r *replayer) Frames() (first, last uint64) { return r.rec.Frames() }
