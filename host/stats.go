package host

// Copies of the engine's statistics for another goroutine (a metrics
// exporter), made by the frame thread without waiting and without
// allocating.
//
// The figures live in memory the frame thread writes without a lock of its
// own (they are guarded by mu, which the frame thread holds for a whole
// frame). A reader that took mu would make the next frame wait for it, so
// the copy goes the other way: a reader asks (statsBox.want), and the frame
// thread copies every figure at the end of its next frame into the box,
// under the box's lock, which it only tries (TryLock): a reader that is
// reading the previous copy at that moment costs the frame nothing, the
// copy is made at the next frame instead. The box is allocated by the
// reader (CopyStats), with room for Config.MaxModules modules, so a copy
// allocates nothing: module names are string headers, histograms are
// arrays.

import (
	"context"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/world"
)

// Stats is a copy of the engine's statistics as of the end of one frame.
type Stats struct {
	// Seq numbers the copies (1 for the first); Taken is when the frame
	// thread made this one.
	Seq   uint64
	Taken time.Time
	// Frame is the number of the last completed frame; Frames the frames
	// this engine ran (Engine.Frames).
	Frame, Frames uint64
	// FrameTime and PublishTime are Engine.Hist and Engine.PubHist;
	// WakeLatency is Engine.WakeHist.
	FrameTime, PublishTime, WakeLatency Histogram
	// Published, Skipped, SkippedNoMemory and PublishBytes are the
	// publisher's Publishes, Skipped (every publish that found no slot),
	// PubNoSpace (those of them for which no slot could be given memory)
	// and Bytes.
	Published, Skipped, SkippedNoMemory, PublishBytes uint64
	// Snapshots and SnapshotBytes are Engine.Snapshots and
	// Engine.SnapBytes; Bounds the engine's bound counters (Engine.Bounds),
	// SnapshotsRefused among them.
	Snapshots, SnapshotBytes uint64
	Bounds                   BoundStats
	// Events are the event log writer's counters.
	Events ipc.EventWriterStats
	// ShmBytes is the shared memory the world segment holds
	// (Publisher.Backed).
	ShmBytes int64
	// Recorder is the flight recorder's figures (Engine.Recorder).
	Recorder RecorderStats
	// Paused, Speed and StepsPending are the time control
	// (host/timectl.go); Control the control plane's counters (time-control
	// requests served and refused among them).
	Paused       bool
	Speed        float64
	StepsPending uint64
	Control      ipc.ControlStats
	// Modules are the module table, in slot order.
	Modules []StatsModule
}

// StatsModule is a copy of one module's statistics.
type StatsModule struct {
	Slot              int
	Name, Tier, Group string
	Every             int
	State             State
	Stats             ModuleStats
	// Rejected counts the commands its playback rejected, by reason.
	Rejected [world.NumRejectReasons]uint64
	// Ticks holds the tick durations the engine saw (from its ring to the
	// done it saw).
	Ticks Histogram
}

// statsBox is where the frame thread leaves a copy of the statistics.
type statsBox struct {
	want atomic.Bool // a reader waits for a copy
	// mu guards the rest; the frame thread only TryLocks it.
	mu gosync.Mutex
	s  Stats
	// copied is closed by the frame thread after its next copy (nil: no
	// reader waits); readers make it.
	copied chan struct{}
}

// CopyStats asks the frame thread for a copy of the engine's statistics,
// waits until it made one at the end of a frame, and copies it into dst
// (reusing dst.Modules). The frame thread never waits for a reader and
// allocates nothing for the copy (see statsBox).
//
// When ctx ends first (no frame ran: the engine is stopped, hung, or its
// frames are driven by hand and none came), dst gets the last copy made,
// if any (dst.Seq 0 when none), and CopyStats returns ctx's error; the
// request stays, and the next frame makes a copy. A ctx that has ended
// already asks for nothing: dst gets the last copy.
func (e *Engine) CopyStats(ctx context.Context, dst *Stats) error {
	b := &e.stats
	if err := ctx.Err(); err != nil {
		b.read(dst)
		return err
	}
	b.mu.Lock()
	if cap(b.s.Modules) < e.cfg.MaxModules {
		b.s.Modules = make([]StatsModule, 0, e.cfg.MaxModules)
	}
	if b.copied == nil {
		b.copied = make(chan struct{})
	}
	copied := b.copied
	b.mu.Unlock()
	// ORDER(stats): after copied exists; pairs with the frame thread's
	// load in copyStats, which closes the channel it finds under mu.
	b.want.Store(true)
	var err error
	select {
	case <-copied:
	case <-ctx.Done():
		err = ctx.Err()
	}
	b.read(dst)
	return err
}

// read copies the last copy into dst.
func (b *statsBox) read(dst *Stats) {
	b.mu.Lock()
	defer b.mu.Unlock()
	mods := append(dst.Modules[:0], b.s.Modules...)
	*dst = b.s
	dst.Modules = mods
}

// RequestStats asks the frame thread for a copy at the end of its next
// frame without waiting for it (CopyStats does this and waits); for a
// caller that drives frames itself.
func (e *Engine) RequestStats() {
	b := &e.stats
	b.mu.Lock()
	if cap(b.s.Modules) < e.cfg.MaxModules {
		b.s.Modules = make([]StatsModule, 0, e.cfg.MaxModules)
	}
	b.mu.Unlock()
	b.want.Store(true)
}

// copyStats makes the copy a reader asked for, unless a reader holds the
// box (then the next frame does). Called by the frame thread with mu held,
// at the end of a frame.
func (e *Engine) copyStats() {
	b := &e.stats
	if !b.want.Load() || !b.mu.TryLock() {
		return
	}
	s := &b.s
	s.Seq++
	s.Taken = time.Now()
	s.Frame, s.Frames = e.frame, e.Frames
	s.FrameTime, s.PublishTime, s.WakeLatency = *e.Hist, *e.PubHist, *e.WakeHist
	p := e.pub
	s.Published, s.Skipped, s.SkippedNoMemory, s.PublishBytes = p.Publishes, p.Skipped, p.PubNoSpace, p.Bytes
	s.Snapshots, s.SnapshotBytes = e.Snapshots, e.SnapBytes
	s.Bounds = BoundStats{Overruns: e.Overruns, Revoked: e.Revoked, PinsDropped: e.PinsDropped,
		SnapshotsRefused: e.SnapshotsRefused, SlotsReused: e.SlotsReused, ModulesRefused: e.ModulesRefused}
	s.Events = e.evw.Stats()
	s.ShmBytes = p.Backed()
	s.Recorder = e.Recorder()
	e.tc.mu.Lock()
	s.Paused, s.Speed, s.StepsPending = e.tc.paused, e.tc.speed, e.tc.steps
	e.tc.mu.Unlock()
	s.Control = e.ctl.Stats()
	// The box has room for MaxModules (CopyStats), the most e.mods holds.
	s.Modules = s.Modules[:min(len(e.mods), cap(s.Modules))]
	for i := range s.Modules {
		m, c := e.mods[i], &s.Modules[i]
		c.Slot, c.Name, c.Tier, c.Group, c.Every, c.State = m.Slot, m.Name, m.Tier, m.Group, m.Every, m.State
		c.Stats = m.Stats
		c.Rejected = [world.NumRejectReasons]uint64{}
		if m.play != nil {
			c.Rejected = m.play.Stats.Rejected
		}
		c.Ticks = m.tickHist
	}
	b.want.Store(false)
	if b.copied != nil {
		close(b.copied)
		b.copied = nil
	}
	b.mu.Unlock()
}
