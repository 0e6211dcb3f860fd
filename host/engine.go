// Package host is the ModuleHost kernel: the engine's frame loop, the module
// registry (modules join through the control plane), tiers, frequencies,
// convoys, deadlines, the circuit breaker and per-module statistics.
//
// One frame (see shared/DESIGN.md):
//
//	simulate -> capture events -> publish (GDB) -> dispatch ticks (fast every
//	frame; slow on their frequency, with an SoD/convoy snapshot leased to
//	them) -> wait for fast modules up to the deadline -> play back committed
//	command batches -> handle joins and deaths
package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// Simulation is the engine's own systems, run once per frame.
type Simulation interface {
	Step(dt float32)
}

// SystemEventCreated is the event type the engine publishes after playback
// for each temporary id it resolved: payload u32 module slot, u32 temp id,
// u64 entity.
const SystemEventCreated = layout.SystemEventCreated

// FrameStats describe one engine frame.
type FrameStats struct {
	Frame      uint64
	Simulate   time.Duration
	Publish    fsync.PublishStats
	PublishErr error
	Dispatched int
	Late       int
	Wait       time.Duration // time spent waiting for the fast tier
	Commands   int
	Rejected   int
	Total      time.Duration
	// End: a replay engine's recording ended (or could not be read:
	// Engine.ReplayErr); the frame was not run and Run returns.
	End bool
	// Waiting: a replay engine's source had no frame yet (ErrReplayWait,
	// a mirror between frames of its stream): nothing ran or was published.
	Waiting bool
	// Paused: no frame ran (the engine is paused, host/timectl.go); Frame
	// is the last that ran. Run reports one such turn per frame period.
	Paused bool
}

// Engine owns the live world and publishes it each frame.
type Engine struct {
	cfg   Config
	w     *world.World
	sim   Simulation
	segs  *fsync.WorldSegments
	pub   *fsync.Publisher
	evSeg *shm.Segment
	evw   *ipc.EventWriter
	ctl   *ipc.ControlServer
	log   *slog.Logger

	mu   gosync.Mutex // guards mods and the control-plane events
	mods []*Module
	// owners: the world owner id of each module name's entities
	// (host/quota.go), never reused.
	owners map[string]uint16
	// Deaths reported by the control plane, handled by the frame loop. They
	// have their own lock so that a report never waits for a frame; closing
	// and doneBell let a frame waiting for a fast module see its death at
	// once instead of at the deadline.
	deathMu  gosync.Mutex
	deaths   []death
	closing  [layout.MaxModules]atomic.Int64 // pid whose connection closed, per slot
	doneBell [layout.MaxModules]atomic.Pointer[ipc.Doorbell]
	// bellMu: onClose rings a done bell under the read lock; dropSegment
	// unmaps a segment under the write lock.
	bellMu gosync.RWMutex
	frame  uint64
	period time.Duration
	// lastSimPub is how long the last frame took from its start to the end
	// of its publish: the lead an early pre-wake would give.
	lastSimPub time.Duration

	// Stats.
	Frames  uint64
	Hist    *Histogram // engine frame time
	PubHist *Histogram // publish time
	// WakeHist is the tick wake latency of fast modules as they measured it
	// (CLOCK_MONOTONIC at wake minus the engine's tick stamp).
	WakeHist  *Histogram
	Snapshots uint64
	// ReclaimedReaders counts slot state no live reader held that the
	// engine reclaimed after a publish found no free slot: lease holders,
	// pins of stuck ticks, external reader entries of dead processes.
	ReclaimedReaders uint64
	// BadMasks counts hellos refused for a mask beyond the schema (the
	// read mask, or the components of a lifecycle subscription or wake_on);
	// BadWakeReports module wake latencies ignored as implausible.
	BadMasks, BadWakeReports uint64
	// SegmentFaults counts modules disconnected because an access to their
	// segment faulted or found it truncated (ModuleStats.SegmentFaults per
	// module); NameRefused hellos refused because the module name belongs
	// to another uid.
	SegmentFaults, NameRefused uint64
	faultWarned                time.Time // rate limit of the segment fault warning
	faultHeld                  uint64    // warnings suppressed since
	noSlotWarned               time.Time // rate limit of the no-free-slot warning
	noSlotHeld                 uint64    // warnings suppressed since
	SnapBytes                  uint64
	// Overruns counts slow ticks that passed their runtime, Revoked the
	// snapshot leases ended for them, PinsDropped fast-tick pins no longer
	// honoured (ModuleStats per module); SnapshotsRefused snapshots a due
	// convoy group did not get (no free slot); SlotsReused module slots of
	// dead modules given to new names; ModulesRefused hellos refused because
	// every slot is held by a live module.
	Overruns, Revoked, PinsDropped, SnapshotsRefused, SlotsReused, ModulesRefused uint64
	overrunWarned, snapRefusedWarned                                              time.Time
	overrunHeld, snapRefusedHeld                                                  uint64
	// nameOwners: the uid that first registered each name (see admit),
	// kept when the name's slot is reused; at most maxNameOwners names.
	nameOwners   map[string]uint32
	created      [16]byte
	asideDropped bool // dropAside ran (after the first successful publish)
	closeOnce    gosync.Once
	allMask      world.Mask
	// slowFirst is the module index the slow tier's dispatch starts from
	// (round robin among groups refused a snapshot; see dispatch).
	slowFirst int
	// wake: what wakes modules with a wake_on (host/lifecycle.go).
	wake wakeWatch
	// stats: copies of the statistics for other goroutines (stats.go).
	stats statsBox
	// rec is the flight recorder (recorder.go); nil when not recording.
	rec *recorder
	// tc: time control (host/timectl.go).
	tc timeCtl
	// replay: the source of a replay engine's frames (host/replay.go);
	// replayEnded once it gave its last, replayErr why, if not the end.
	replay      ReplaySource
	replayEnded bool
	replayErr   error
	// replayRestart: a seek asked for a frame not after the current one
	// (RunReplay replaces the engine).
	replayRestart bool
	restored      []int                 // scratch of applyReplay
	recScratch    []layout.EntityRecord // scratch of applyReplay
	// ReplayDropped counts the valid commands of a replay, dropped.
	ReplayDropped uint64
	// forward: a mirror's hook for the modules' batches (host/remote.go);
	// remote: the batches of modules on other hosts (host/remote.go).
	forward func(ForwardBatch)
	remote  remoteState
	fwdBuf  []byte
}

// New creates the segments and the control socket of an instance and
// returns an engine around w. sim may be nil.
func New(cfg Config, w *world.World, sim Simulation) (*Engine, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.MaxEntitiesPerModule == 0 {
		cfg.MaxEntitiesPerModule = max((w.MaxEntities()-w.Count())/4, 1)
	}
	e := &Engine{cfg: cfg, w: w, sim: sim, log: cfg.Logger, Hist: NewHistogram(), PubHist: NewHistogram(), WakeHist: NewHistogram(),
		nameOwners: map[string]uint32{}}
	e.period = time.Second / time.Duration(cfg.FrameRate)
	e.tc.speed = 1
	e.allMask = w.Registry().Mask()
	var err error
	if e.segs, err = fsync.CreateWorldSegments(cfg.Instance, w, cfg.Slots, cfg.Readers); err != nil {
		return nil, err
	}
	if e.pub, err = fsync.NewPublisher(w, e.segs); err != nil {
		e.Close()
		return nil, err
	}
	if min := e.pub.MinShmLimit(); cfg.ShmLimit != 0 && cfg.ShmLimit < min {
		e.Close()
		return nil, fmt.Errorf("%w: ShmLimit %d bytes (%.1f MiB) is below the two copies of the world the publish needs: at least %d bytes (%.1f MiB)",
			ErrConfig, cfg.ShmLimit, float64(cfg.ShmLimit)/(1<<20), min, float64(min)/(1<<20))
	}
	e.pub.SetShmLimit(cfg.ShmLimit)
	if cfg.SlotIdle > 0 {
		e.pub.SetTrimAfter(uint64(max(cfg.SlotIdle*time.Duration(cfg.FrameRate)/time.Second, 1)))
	}
	// No slot is written before the first frame: a slot holds shared memory
	// only once a publish or snapshot fills it (fsync's backing.go).
	if err := e.createEvents(); err != nil {
		e.Close()
		return nil, err
	}
	// The publish needs two whole copies of the world: a directory without
	// the room for them fails the start with one line, as a directory
	// without room for the fixed part or the event log does (shm.Create), instead of an
	// engine that runs and publishes nothing.
	if err := e.segs.World.NeedSpace(2 * e.pub.CopyBytes()); err != nil {
		e.Close()
		return nil, fmt.Errorf("the world's two copies at its largest (%d entities) do not fit: %w", w.MaxEntities(), err)
	}

	if cfg.Record.File != "" {
		if e.rec, err = newRecorder(cfg.Record, e.pub, e.period, e.log); err != nil {
			e.Close()
			return nil, err
		}
	}

	e.ctl, err = ipc.Listen(cfg.Instance, ipc.ControlConfig{
		SchemaHash: w.Registry().SchemaHash(),
		Handler:    e.admit,
		OnClose:    e.onClose,
		Ctl:        e.ctlRequest,
		Remote:     e.remoteRequest,
		OnError:    func(err error) { e.log.Warn("control plane", "err", err) }, // rate-limited by ipc
		AllowUIDs:  cfg.AllowUIDs,
	})
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *Engine) header() layout.Header {
	return layout.Header{
		Instance: e.cfg.Instance, CreatorPID: uint32(os.Getpid()), CreatorTime: shm.SelfStartTime(), CreatedNano: time.Now().UnixNano(),
	}
}

func (e *Engine) createEvents() error {
	g, err := layout.ComputeEventsGeometry(e.cfg.EventLogBytes)
	if err != nil {
		return err
	}
	if e.evSeg, err = shm.Create(shm.SegmentName(e.cfg.Instance, "events"), g.TotalSize); err != nil {
		return err
	}
	if err := layout.EncodeEvents(e.evSeg.Data, g, e.header()); err != nil {
		return err
	}
	layout.MarkReady(e.evSeg.Data)
	e.evw, err = ipc.NewEventWriter(e.evSeg.Data)
	return err
}

// ControlStats returns the control plane's counters (connections accepted
// and refused, peers refused for their uid).
func (e *Engine) ControlStats() ipc.ControlStats { return e.ctl.Stats() }

// World returns the live world.
func (e *Engine) World() *world.World { return e.w }

// Publisher returns the frame publisher.
func (e *Engine) Publisher() *fsync.Publisher { return e.pub }

// Frame returns the number of the last completed frame.
func (e *Engine) Frame() uint64 { return e.frame }

// Config returns the engine's configuration (with defaults filled in).
func (e *Engine) Config() Config { return e.cfg }

// Period returns the frame period.
func (e *Engine) Period() time.Duration { return e.period }

// Close stops the control plane, ends the recording (StopRecording), closes
// every module segment and unlinks all of the instance's segments.
func (e *Engine) Close() error {
	var first error
	e.closeOnce.Do(func() {
		if e.ctl != nil {
			e.ctl.Close()
		}
		if err := e.StopRecording(); err != nil && !errors.Is(err, ErrNotRecording) {
			first = err
		}
		e.mu.Lock()
		for _, m := range e.mods {
			if m != nil && m.seg != nil {
				m.seg.Unlink()
				m.seg.Close()
			}
		}
		e.mu.Unlock()
		if e.evSeg != nil {
			e.evSeg.Unlink()
			e.evSeg.Close()
		}
		if e.pub != nil {
			e.pub.WaitTrims()
		}
		if e.segs != nil {
			if err := e.segs.Unlink(); err != nil && first == nil {
				first = err
			}
			e.segs.Close()
		}
	})
	return first
}

// Run runs frames at the configured rate until ctx is done, calling
// onFrame after each; while the engine is paused (host/timectl.go) it runs
// none and calls onFrame once per frame period with FrameStats.Paused.
//
// Frames run with debug.SetPanicOnFault: a memory fault in one of the
// engine's own segments (a segment file truncated under the engine, which
// SIGBUSes the next access beyond its new end; only the engine's uid can do
// that) ends Run with an error naming the segment, e.g. "world segment
// truncated or unmapped under the engine", instead of crashing the process
// with a fault trace. A fault in a module's segment (the module can
// truncate it) only disconnects that module (see guard). Any other panic is
// not recovered.
func (e *Engine) Run(ctx context.Context, onFrame func(FrameStats)) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		fault, ok := r.(interface{ Addr() uintptr })
		if _, rt := r.(runtime.Error); !ok || !rt {
			panic(r)
		}
		addr := fault.Addr()
		kind, seg := "a shared-memory segment", (*shm.Segment)(nil)
		switch {
		case e.segs != nil && e.segs.World.Contains(addr):
			kind, seg = "world segment", e.segs.World
		case e.evSeg.Contains(addr):
			kind, seg = "event log segment", e.evSeg
		default:
			e.mu.Lock()
			for _, m := range e.mods {
				if m != nil && m.seg.Contains(addr) {
					kind, seg = "module segment", m.seg
				}
			}
			e.mu.Unlock()
		}
		where := fmt.Sprintf("fault at %#x", addr)
		if seg != nil {
			size := "gone"
			if st, serr := os.Stat(seg.Path); serr == nil {
				size = fmt.Sprintf("%d bytes", st.Size())
			}
			where = fmt.Sprintf("%s: mapped %d bytes, file now %s", seg.Path, len(seg.Data), size)
		}
		err = fmt.Errorf("fdp/host: %s truncated or unmapped under the engine (%s)", kind, where)
	}()
	next := time.Now()
	// One timer for the whole loop (a timer per frame would allocate 3
	// objects per frame). Since Go 1.23 Reset needs no drain after Stop.
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.takeDeaths()
			return nil
		default:
		}
		// Paused: no frame, the control plane still served (host/timectl.go).
		run, period := e.tcTurn()
		if run {
			st := e.Step()
			if st.End {
				e.takeDeaths()
				return e.replayErr
			}
			if st.Waiting {
				// No frame ran (a mirror between frames): a step is
				// still owed.
				e.tc.mu.Lock()
				e.tc.stepping = false
				e.tc.mu.Unlock()
			} else {
				e.stepDone()
			}
			if onFrame != nil && !st.Waiting {
				onFrame(st)
			}
		} else {
			e.pausedTurn()
			if onFrame != nil {
				onFrame(FrameStats{Frame: e.frame, Paused: true})
			}
		}
		next = next.Add(period)
		if d := time.Until(next); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				t.Stop()
				e.takeDeaths()
				return nil
			case <-t.C:
			}
		} else if d < -period*4 {
			next = time.Now() // fell far behind: do not try to catch up
		}
	}
}

// takeDeaths handles the deaths (and clean leaves) the control plane has
// seen since the last frame, so that what Run's caller reports after a stop
// (a summary) knows how each module ended: under `engine up` the modules are
// stopped before the engine.
func (e *Engine) takeDeaths() {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // as in Step: reclaim's guards
	e.mu.Lock()
	defer e.mu.Unlock()
	e.handleDeaths()
}

// Step runs one frame now.
//
// A fault in a module's segment (see guard) disconnects that module; the
// frame goes on for the others.
func (e *Engine) Step() FrameStats {
	start := time.Now()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	e.mu.Lock()
	defer e.mu.Unlock()
	e.handleDeaths()
	var rf *ReplayFrame
	if e.replay != nil {
		ok := false
		if !e.replayEnded {
			e.w.Advance() // the restore stamps the version after it
			rf, ok = e.nextReplay()
		}
		if !ok && !e.replayEnded {
			return FrameStats{Frame: e.frame, Waiting: true} // ErrReplayWait
		}
		if !ok {
			return FrameStats{Frame: e.frame, End: true}
		}
		e.frame = rf.Frame
	} else {
		e.frame++
	}
	st := FrameStats{Frame: e.frame}
	if e.rec != nil {
		t := time.Now()
		e.rec.reap() // the previous capture's slot back to the rotation
		e.rec.ftNanos.Add(uint64(time.Since(t)))
	}
	// Pre-wake the fast modules (Engine.prewake) as early as their warm spin
	// allows: here, before the simulation, when the last frame's simulation
	// and publish together took less than Config.PrewakeEarlyMax; else just
	// before the publish.
	early := !e.cfg.NoPrewake && e.lastSimPub < e.cfg.PrewakeEarlyMax
	if early {
		e.prewake(start)
	}
	if rf != nil {
		st.Simulate = time.Since(start)
		e.publishReplayEvents(rf) // the recorded events (host/replay.go)
	} else {
		e.w.Advance()
		dt := e.stepTime() // the period × the speed (host/timectl.go)
		if e.sim != nil {
			e.sim.Step(float32(dt.Seconds()))
		}
		st.Simulate = time.Since(start)

		// Capture the frame's events into the shared log (and the
		// recorder's copy).
		evs := e.w.FrameEvents()
		for _, ev := range evs {
			if e.evw.Append(e.frame, uint16(ev.Type), ev.Payload) == nil && e.wake.active {
				e.wake.saw(uint16(ev.Type)) // a module may wake on it (host/lifecycle.go)
			}
		}
		if e.rec != nil && len(evs) > 0 {
			t := time.Now()
			e.rec.addEvents(e.frame, evs, e.evw.MaxPayload())
			e.rec.ftNanos.Add(uint64(time.Since(t)))
		}
		e.evw.Commit()
		e.w.ClearEvents()
	}

	// Publish the latest full frame (GDB).
	if !e.cfg.NoPrewake && !early {
		e.prewake(start)
	}
	// The publish scans the pins watched in module segments: a fault there
	// drops the module (and its pin), and the publish is tried again.
	for e.guard(func() { st.Publish, st.PublishErr = e.pub.Publish(e.frame, e.allMask) }) {
	}
	e.lastSimPub = time.Since(start)
	if st.PublishErr == nil {
		if e.rec != nil {
			t := time.Now()
			e.rec.published(e.frame)
			e.rec.ftNanos.Add(uint64(time.Since(t)))
		}
		e.PubHist.Record(st.Publish.Duration)
		if !e.asideDropped {
			e.dropAside(st.Frame)
		}
	} else {
		// Every slot pinned or leased, or no memory for one (counted in
		// the publisher's Skipped and the world segment's skipped stat):
		// reclaim what no live reader holds, so that the next frame can
		// publish.
		e.reclaimSlots(st.PublishErr)
	}

	// Dispatch ticks, wait for the fast tier, play back.
	st.Dispatched = e.dispatch(start)
	waitStart := time.Now()
	st.Late = e.waitFast(start.Add(e.cfg.FastDeadline + st.Simulate))
	st.Wait = time.Since(waitStart)
	e.handleDeaths() // deaths seen during the wait: their rings are reset before playback
	st.Commands, st.Rejected = e.playback()
	e.playRemote()
	if e.replay != nil {
		e.ReplayDropped += uint64(st.Commands) // validated, counted, dropped (host/replay.go)
	}
	e.flushModStats()

	// Slots unused for SlotIdle give their memory back (the punch runs on
	// another goroutine).
	e.guard(func() { e.pub.Trim() })

	st.Total = time.Since(start)
	e.Hist.Record(st.Total)
	e.Frames++
	layout.Store64(e.segs.World.Data, layout.OffWStatFrameNanos, uint64(st.Total))
	if e.rec != nil && !e.rec.closed {
		e.rec.writeSegment(e.segs.World.Data)
	}
	layout.AddDurHist(e.segs.World.Data, layout.OffWFrameHist, uint64(st.Total))
	e.copyStats() // only when a reader asked (host/stats.go)
	e.tcFrameDone()
	return st
}

// dropAside runs once, after the engine's first successful publish: the
// world a dead engine left (kept aside by PrepareStart until now, so that a
// kill before this publish loses nothing) is no longer needed.
func (e *Engine) dropAside(frame uint64) {
	e.asideDropped = true
	if removed, err := DropAside(e.cfg.Instance); err != nil {
		e.log.Warn("cannot remove the aside copies of the dead engine's world", "instance", e.cfg.Instance, "err", err)
	} else if len(removed) > 0 {
		e.log.Info("first frame published; removed the aside copies", "instance", e.cfg.Instance, "frame", frame, "removed", removed)
	}
}

func (e *Engine) String() string { return fmt.Sprintf("engine %s frame %d", e.cfg.Instance, e.frame) }

// WorldPath returns the file path of the world segment.
func (e *Engine) WorldPath() string { return e.segs.World.Path }

// SetSimulation replaces the engine's systems.
func (e *Engine) SetSimulation(sim Simulation) {
	e.mu.Lock()
	e.sim = sim
	e.mu.Unlock()
}

// Idle reports whether no module has a tick in progress.
func (e *Engine) Idle() bool {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range e.mods {
		if m.busy && !e.checkDone(m) {
			return false
		}
	}
	return true
}

// LeasedSlots counts slots with holders (SoD/convoy leases outstanding).
func (e *Engine) LeasedSlots() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pub.LeasedSlots()
}

// Recorder returns the flight recorder's figures (RecorderStats.On false
// when the engine does not record). Safe from any goroutine.
func (e *Engine) Recorder() RecorderStats {
	if r := e.rec; r != nil {
		return r.stats()
	}
	return RecorderStats{}
}

// StopRecording ends the recording: the capture in progress and the frames
// queued are written, then the file's index; the figures stay readable
// (Recorder). It is called by Close; after Run returned, or from the frame
// thread. ErrNotRecording without a recorder.
func (e *Engine) StopRecording() error {
	if e.rec == nil {
		return ErrNotRecording
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rec.closed {
		return nil
	}
	err := e.rec.close()
	if e.segs != nil {
		e.rec.writeSegment(e.segs.World.Data)
	}
	return err
}
