package host

// Time control (`engine ctl INSTANCE pause|resume|step N|speed X|seek F|status`):
// requests come over the control socket (ipc/control_ctl.go) on a server
// goroutine and change the state below under tc.mu; the frame loop (Run)
// reads it at every turn. Invariants:
//
//	T1 Paused and no step pending: Run runs no frame (no simulation, no
//	   publish, no tick, no playback); each turn, at the frame rate, it
//	   handles deaths, writes the module statistics and the engine's
//	   statistics copy, and stamps the paused heartbeat word, so the control
//	   plane, joins, deaths, `engine stat` and the supervisor's hang check
//	   are still served.
//	T2 A step request of N adds N to the steps pending (and pauses); each
//	   frame Run runs while paused takes one, so exactly N frames run, then
//	   the engine stays paused. Resume and pause drop the steps not run.
//	T3 Live, the speed scales the step: dt = period × speed (world.Time.Dt,
//	   Simulation.Step's dt), the frame rate stays. With a Replayer the
//	   speed scales the frame rate instead (Run's period ÷ speed) and the
//	   engine does not set world.Time: the recording's is published.
//	T4 Seek is refused live (ipc.ErrSeekLive); with a Replayer it is done on
//	   the frame thread between frames (Replayer.Seek), and a paused engine
//	   then runs that one frame so that the frame asked is published.
//
// Engine.Step itself ignores the paused state: a caller that drives frames
// by hand (tests, tools) runs them; only Run honours pause and steps.

import (
	"fmt"
	"math"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// Replayer is the hook of a program that publishes a recording instead of
// simulating (`engine replay`): Engine.SetReplayer makes time control drive
// it. Its methods are called on the frame thread, between frames, with the
// engine's lock held (they may call Engine.SetFrame, and touch the world).
type Replayer interface {
	// Seek positions the recording so that the next frame the engine runs
	// (its Simulation.Step) publishes recorded frame `frame`. An error
	// refuses the request with its text (e.g. a frame outside Frames()).
	// A paused engine then runs that one frame at once (it counts as a
	// step: world.Time.Paused is 1 in it), so a paused replay shows the
	// frame asked; a running one runs it as its next frame.
	Seek(frame uint64) error
	// Frames returns the first and last frame of the recording (for the
	// status reply and `engine stat`).
	Frames() (first, last uint64)
}

// timeCtl is the engine's time-control state.
type timeCtl struct {
	mu     gosync.Mutex // guards the fields up to seeks; never held across a frame
	paused bool
	speed  float64
	steps  uint64
	seeks  []seekReq // for the frame thread (T4)
	// turned: closed at the next turn of Run (a pause waits for it, so
	// that its reply names the frame the engine holds at).
	turned []chan struct{}
	// changed: the state changed since the frame thread last wrote the
	// world header's words.
	changed bool

	replayer Replayer // set before Run (SetReplayer)
	// frame and simNanos are the last completed frame's number and time,
	// for the replies (the frame thread stores them).
	frame    atomic.Uint64
	simNanos atomic.Int64
	// stepping: the frame being run is a step of a paused engine (frame
	// thread only).
	stepping bool
}

type seekReq struct {
	frame uint64
	done  chan error
}

// seekWait bounds how long a seek request waits for the frame thread.
const seekWait = 4 * time.Second

// SetReplayer makes e a replay (see Replayer): call it before Run.
func (e *Engine) SetReplayer(r Replayer) {
	e.tc.mu.Lock()
	e.tc.replayer = r
	e.tc.changed = true
	e.tc.mu.Unlock()
}

// SetFrame sets the engine's current frame number: in a Simulation's Step
// (or a Replayer's Seek), the number of the frame being run, which its
// publish and events carry; between frames, the last completed frame (the
// next is n+1). For a replay, whose frames keep their recorded numbers.
// Frame thread only.
func (e *Engine) SetFrame(n uint64) { e.frame = n }

// TimeControl returns the time-control state (any goroutine).
func (e *Engine) TimeControl() ipc.CtlState {
	e.tc.mu.Lock()
	defer e.tc.mu.Unlock()
	return e.tcStateLocked()
}

func (e *Engine) tcStateLocked() ipc.CtlState {
	st := ipc.CtlState{Paused: e.tc.paused, Speed: e.tc.speed, Steps: e.tc.steps, PeriodNanos: int64(e.period),
		Frame: e.tc.frame.Load(), SimNanos: e.tc.simNanos.Load()}
	if r := e.tc.replayer; r != nil {
		st.Replay = true
		st.First, st.Last = r.Frames()
	}
	return st
}

// ctlRequest answers a time-control request (ipc.ControlConfig.Ctl, on a
// server goroutine).
func (e *Engine) ctlRequest(req ipc.CtlRequest) (ipc.CtlState, error) {
	tc := &e.tc
	tc.mu.Lock()
	switch req.Op {
	case ipc.CtlPause:
		// A pause stops at once: it drops the steps pending (T2), so a
		// pause after `step N --no-wait` does not go on simulating them.
		tc.paused, tc.steps = true, 0
		// Wait for the next turn of Run: a frame running now completes
		// first, and the reply names the frame the engine holds at.
		ch := make(chan struct{})
		tc.turned = append(tc.turned, ch)
		tc.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(seekWait): // Run is not running: frames by hand
		}
		tc.mu.Lock()
	case ipc.CtlResume:
		tc.paused, tc.steps = false, 0
	case ipc.CtlStep:
		if tc.steps+req.Frames > ipc.CtlMaxStep {
			n := tc.steps
			tc.mu.Unlock()
			return ipc.CtlState{}, fmt.Errorf("%w: step %d: %d frames are pending already, at most %d may be", ipc.ErrCtlRefused, req.Frames, n, ipc.CtlMaxStep)
		}
		tc.paused = true
		tc.steps += req.Frames
	case ipc.CtlSpeed:
		tc.speed = req.Speed
	case ipc.CtlSeek:
		if tc.replayer == nil {
			tc.mu.Unlock()
			return ipc.CtlState{}, fmt.Errorf("%w: %w", ipc.ErrCtlRefused, ipc.ErrSeekLive)
		}
		done := make(chan error, 1)
		tc.seeks = append(tc.seeks, seekReq{frame: req.Frame, done: done})
		tc.mu.Unlock()
		select {
		case err := <-done:
			if err != nil {
				return ipc.CtlState{}, fmt.Errorf("%w: seek %d: %w", ipc.ErrCtlRefused, req.Frame, err)
			}
		case <-time.After(seekWait):
			return ipc.CtlState{}, fmt.Errorf("%w: seek %d: the frame loop did not take it within %v", ipc.ErrCtlRefused, req.Frame, seekWait)
		}
		tc.mu.Lock()
	}
	tc.changed = true
	st := e.tcStateLocked()
	tc.mu.Unlock()
	st.Remote = e.remoteSnapshot()
	if req.Op != ipc.CtlStatus {
		e.log.Info("time control", "op", req.Op.String(), "paused", st.Paused, "speed", st.Speed, "steps_pending", st.Steps, "frame", st.Frame)
	}
	return st, nil
}

// tcTurn decides, at the start of a turn of Run, whether a frame runs
// (run) and the period until the next turn; it takes a step when the
// frame is one, does the seeks asked (T4) and writes the world header's
// time-control words when they changed. Frame thread.
func (e *Engine) tcTurn() (run bool, period time.Duration) {
	tc := &e.tc
	tc.mu.Lock()
	seeks := tc.seeks
	tc.seeks = nil
	for _, ch := range tc.turned {
		close(ch)
	}
	tc.turned = nil
	tc.mu.Unlock()
	for _, s := range seeks {
		e.mu.Lock()
		err := tc.replayer.Seek(s.frame)
		e.mu.Unlock()
		if err == nil {
			tc.mu.Lock()
			if tc.paused {
				tc.steps++ // the frame asked is shown (T4)
			}
			tc.changed = true
			tc.mu.Unlock()
		}
		s.done <- err
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	run = !tc.paused || tc.steps > 0
	tc.stepping = tc.paused && tc.steps > 0 // the step is taken when the frame is done (stepDone)
	period = e.periodLocked()
	if tc.changed || (!run && tc.paused) {
		st := layout.TimeRunning
		if tc.paused {
			st = layout.TimePaused
		}
		var beat uint64
		if tc.paused {
			beat = uint64(time.Now().UnixNano())
		} else {
			beat = layout.Load64(e.segs.World.Data, layout.OffWTimeBeat)
		}
		layout.StoreTimeControl(e.segs.World.Data, layout.TimeControl{State: st, Speed: tc.speed, Steps: tc.steps, Beat: beat, Replay: tc.replayer != nil})
		tc.changed = false
	}
	return run, period
}

// periodLocked is the time between two turns of Run: the frame period,
// divided by the speed in a replay (T3). Called with tc.mu held.
func (e *Engine) periodLocked() time.Duration {
	if e.tc.replayer != nil {
		return time.Duration(float64(e.period) / e.tc.speed)
	}
	return e.period
}

// stepDone takes the step a frame just run was (T2): only now, so that a
// client that sees no step pending also sees the frame's number in the
// replies (tcFrameDone ran). Frame thread, after Step.
func (e *Engine) stepDone() {
	tc := &e.tc
	tc.mu.Lock()
	if tc.stepping && tc.steps > 0 { // (a resume meanwhile dropped them)
		tc.steps--
		tc.changed = true
	}
	tc.stepping = false
	tc.mu.Unlock()
}

// pausedTurn is a turn of Run that runs no frame (T1).
func (e *Engine) pausedTurn() {
	e.takeDeaths()
	e.mu.Lock()
	e.flushModStats()
	e.copyStats()
	e.mu.Unlock()
}

// stepTime sets the time singleton (world.Time, when the registry has it:
// world.RegisterTime) for the frame about to be simulated: its number, the
// step (the frame period × the speed, T3), the simulation time advanced by
// that step from the world's previous Time (so a recovered world's time
// goes on from the frame it was recovered at), the speed, and whether the
// frame is a step of a paused engine. The engine owns it: modules cannot
// set it (world.RejectEngineOwned). A replay publishes the recording's
// Time: the engine sets nothing. It returns the step.
func (e *Engine) stepTime() time.Duration {
	e.tc.mu.Lock()
	speed, replay := e.tc.speed, e.tc.replayer != nil
	e.tc.mu.Unlock()
	dt := e.period
	if !replay {
		dt = time.Duration(math.Round(float64(e.period) * speed))
	}
	if replay {
		return dt
	}
	if _, ok := world.SingletonOf[world.Time](e.w.Registry()); !ok {
		return dt
	}
	t, _ := world.GetSingleton[world.Time](e.w)
	t.Frame = e.frame
	t.Dt = int64(dt)
	t.Nanos += t.Dt
	t.Scale = speed
	t.Paused = 0
	if e.tc.stepping {
		t.Paused = 1
	}
	t.Reserved = 0
	_ = world.SetSingleton(e.w, t) // registered: cannot fail
	return dt
}

// tcFrameDone notes the frame just completed for the replies.
func (e *Engine) tcFrameDone() {
	e.tc.frame.Store(e.frame)
	if _, ok := world.SingletonOf[world.Time](e.w.Registry()); ok {
		t, _ := world.GetSingleton[world.Time](e.w)
		e.tc.simNanos.Store(t.Nanos)
	}
}
