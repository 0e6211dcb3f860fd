package top

import (
	"fmt"
	"time"

	"github.com/fdp-engine/fdp/layout"
)

// StallAfter is how long a live engine may go without publishing before the
// view calls it stalled: the supervisor's default engine heartbeat timeout
// (hang.engine_timeout).
const StallAfter = 2 * time.Second

// View is what one screen shows: the figures of the latest snapshot and the
// rates and deltas over the interval since the one before it.
type View struct {
	Instance string
	At       time.Time
	Engine   EngineState
	Err      string // EngineUnreadable: why
	PID      uint32 // the engine's, 0 without a decoded world segment
	Uptime   time.Duration
	// Interval is the time between the two snapshots the rates and deltas
	// are over; 0 when there are none (the first snapshot, or the first
	// of another engine).
	Interval time.Duration
	// Stalled: the engine is alive but has not published for StallAfter
	// and is not paused.
	Stalled bool
	// Paused and Speed are the engine's time control (`engine ctl`).
	Paused bool
	Speed  float64
	// Note is the last thing that happened to the engine (it died, the
	// view re-attached to a new one), kept until the next such event.
	Note string

	Published  bool
	Frame      uint64
	FPS        float64       // publishes per second over the interval
	PublishAge time.Duration // since the last publish; -1: never published
	Skipped    uint64
	SkipDelta  uint64
	ShmHeld    uint64
	ShmLimit   uint64
	// Publish and frame times over the interval: the p50 and p99 of the
	// histogram counts added in it (upper bucket ends, layout.DurHist),
	// and how many were counted (0: no figures).
	PubCount, PubP50, PubP99       uint64
	FrameCount, FrameP50, FrameP99 uint64
	LastPublishNano, FrameNano     uint64

	Modules []ModuleRow
}

// RowState is a module's state as the view shows it: the statistics
// block's, or what the view knows better.
type RowState uint8

// Row states.
const (
	// RowNone: the engine has not written the module's block yet.
	RowNone RowState = iota
	RowJoined
	RowRunning
	RowBreakerOpen
	RowDead
	// RowGone: the block says the module lives but its process does not
	// exist (the engine has not seen the death yet, or the engine is dead).
	RowGone
	// RowLeft: the module stopped cleanly (layout.ModuleLeft).
	RowLeft
	numRowStates
)

var rowStateNames = [numRowStates]string{"none", "joined", "running", "breaker-open", "dead", "gone", "left"}

func (s RowState) String() string {
	if s < numRowStates {
		return rowStateNames[s]
	}
	return fmt.Sprintf("row-state(%d)", uint8(s))
}

// ModuleRow is one module of a View.
type ModuleRow struct {
	Slot  int
	Name  string
	PID   uint32
	State RowState
	Err   string // the statistics block could not be read

	Runs       uint64  // ticks dispatched, since the engine first admitted the name
	RunsPerSec float64 // over the interval (0 without one)
	Lag        uint64  // frames between the last done tick's frame and the frame it was seen done
	// Ticks seen done in the interval, their mean duration (exact: the
	// block's sum and count) and their p99 (upper end of the block's
	// power-of-two bucket, capped at the longest tick: within 2x).
	Ticks, TickMean, TickP99 uint64

	Failures, FailDelta   uint64
	Late, LateDelta       uint64
	Rejected, RejectDelta uint64
}

// sub is a-b for counters, 0 when a counter went back (another engine's).
func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// Compute returns the view of cur, with rates and deltas over the interval
// since prev when prev is a snapshot of the same engine taken earlier (prev
// may be nil).
func Compute(prev, cur *Snapshot) View {
	v := View{
		Instance: cur.Instance, At: cur.At, Engine: cur.Engine, Err: cur.Err, PID: cur.Creator.PID,
		Published: cur.Published, Frame: cur.Frame, PublishAge: -1, Skipped: cur.Skipped,
		ShmHeld: cur.ShmHeld, ShmLimit: cur.ShmLimit, LastPublishNano: cur.LastPublishNano, FrameNano: cur.FrameNano,
	}
	v.Paused, v.Speed = cur.Time.State == layout.TimePaused, cur.Time.Speed
	if cur.Creator.Created != 0 {
		v.Uptime = cur.At.Sub(time.Unix(0, cur.Creator.Created))
	}
	if cur.HeartbeatNano != 0 {
		v.PublishAge = cur.At.Sub(time.Unix(0, int64(cur.HeartbeatNano)))
		v.Stalled = cur.Engine == EngineLive && v.PublishAge > StallAfter && cur.Time.State != layout.TimePaused
	}
	same := prev != nil && prev.Creator != (Identity{}) && prev.Creator == cur.Creator && cur.At.After(prev.At)
	if same {
		v.Interval = cur.At.Sub(prev.At)
		v.FPS = float64(sub(cur.Publishes, prev.Publishes)) / v.Interval.Seconds()
		v.SkipDelta = sub(cur.Skipped, prev.Skipped)
		pub, frame := cur.PubHist.Sub(&prev.PubHist), cur.FrameHist.Sub(&prev.FrameHist)
		v.PubCount, v.PubP50, v.PubP99 = pub.Count(), pub.Percentile(50), pub.Percentile(99)
		v.FrameCount, v.FrameP50, v.FrameP99 = frame.Count(), frame.Percentile(50), frame.Percentile(99)
	}
	for i := range cur.Modules {
		var pm *ModuleSnap
		if same {
			pm = findModule(prev.Modules, &cur.Modules[i])
		}
		v.Modules = append(v.Modules, moduleRow(pm, &cur.Modules[i], v.Interval))
	}
	return v
}

// findModule returns the module of the same slot and name in ms, or nil.
func findModule(ms []ModuleSnap, m *ModuleSnap) *ModuleSnap {
	for i := range ms {
		if ms[i].Slot == m.Slot && ms[i].Name == m.Name {
			return &ms[i]
		}
	}
	return nil
}

func moduleRow(prev, cur *ModuleSnap, dt time.Duration) ModuleRow {
	r := ModuleRow{Slot: cur.Slot, Name: cur.Name, PID: cur.PID, Err: cur.StatsErr}
	s := cur.Stats
	if s == nil {
		r.State = RowNone
		if !cur.Alive {
			r.State = RowGone
		}
		return r
	}
	switch s.State {
	case layout.ModuleJoined:
		r.State = RowJoined
	case layout.ModuleRunning:
		r.State = RowRunning
	case layout.ModuleBreakerOpen:
		r.State = RowBreakerOpen
	case layout.ModuleDead:
		r.State = RowDead
	case layout.ModuleLeft:
		r.State = RowLeft
	}
	if r.State != RowDead && r.State != RowLeft && !cur.Alive {
		r.State = RowGone
	}
	r.Runs, r.Lag, r.Failures, r.Late, r.Rejected = s.Runs, s.LagFrames, s.Failures, s.Late, s.Rejected
	if prev == nil || prev.Stats == nil || dt <= 0 {
		return r
	}
	p := prev.Stats
	r.RunsPerSec = float64(sub(s.Runs, p.Runs)) / dt.Seconds()
	r.FailDelta, r.LateDelta, r.RejectDelta = sub(s.Failures, p.Failures), sub(s.Late, p.Late), sub(s.Rejected, p.Rejected)
	if r.Ticks = sub(s.Ticks, p.Ticks); r.Ticks > 0 {
		r.TickMean = sub(s.TickSum, p.TickSum) / r.Ticks
		var h [layout.TickBuckets]uint64
		for i := range h {
			h[i] = sub(s.TickHist[i], p.TickHist[i])
		}
		r.TickP99 = layout.TickPercentile(&h, s.TickMax, 99)
	}
	return r
}

// Tracker turns a sequence of snapshots into views: each over the interval
// since the one before, with a note of what happened to the engine (it
// died; the view re-attached to another engine).
type Tracker struct {
	prev *Snapshot
	last Identity // the last engine a snapshot decoded
	note string
}

// Next returns the view of cur (taken after every snapshot given before).
func (t *Tracker) Next(cur *Snapshot) View {
	v := Compute(t.prev, cur)
	at := cur.At.Format("15:04:05")
	switch {
	case cur.Creator != (Identity{}) && t.last != (Identity{}) && cur.Creator != t.last:
		t.note = fmt.Sprintf("re-attached at %s to a new engine, pid %d (was pid %d)", at, cur.Creator.PID, t.last.PID)
	case t.prev != nil && t.prev.Engine == EngineLive && cur.Engine == EngineDead:
		t.note = fmt.Sprintf("engine pid %d died at about %s", cur.Creator.PID, at)
	case t.prev != nil && t.prev.Engine == EngineLive && cur.Engine == EngineAbsent:
		t.note = fmt.Sprintf("engine pid %d went away at about %s (its world segment was removed or moved aside)", t.last.PID, at)
	}
	if cur.Creator != (Identity{}) {
		t.last = cur.Creator
	}
	t.prev = cur
	v.Note = t.note
	return v
}
