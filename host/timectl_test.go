package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// tcSim counts its steps and the dt of each; as a replay it stands for a
// recording of frames first..last whose Time it restores (frame f:
// Nanos f×1000, Dt 1000) and numbers each frame it runs.
type tcSim struct {
	e   *Engine
	w   *world.World
	mu  sync.Mutex
	dts []float32
	// replay
	replay      bool
	next        uint64 // the recorded frame the next Step publishes
	first, last uint64
	seeks       []uint64
	seekOnFrame []bool // Seek ran on the frame thread (the engine's lock held)
}

func (s *tcSim) Step(dt float32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dts = append(s.dts, dt)
	if s.replay {
		s.e.SetFrame(s.next)
		_ = world.SetSingleton(s.w, world.Time{Frame: s.next, Nanos: int64(s.next) * 1000, Dt: 1000, Scale: 1})
		if s.next < s.last {
			s.next++
		}
	}
}

func (s *tcSim) Seek(frame uint64) error {
	held := !s.e.mu.TryLock()
	if !held {
		s.e.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if frame < s.first || frame > s.last {
		return fmt.Errorf("frame %d is outside the recording (%d..%d)", frame, s.first, s.last)
	}
	s.seeks = append(s.seeks, frame)
	s.seekOnFrame = append(s.seekOnFrame, held)
	s.next = frame
	return nil
}

func (s *tcSim) Frames() (uint64, uint64) { return s.first, s.last }

func (s *tcSim) steps() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.dts)
}

// newTCEngine runs an engine of rate frames per second with a time
// singleton (Run, until the test ends).
func newTCEngine(t *testing.T, rate int, replay bool) (*Engine, *tcSim, string) {
	t.Helper()
	reg := world.NewRegistry()
	_, err := world.RegisterTime(reg)
	require.NoError(t, err)
	w, err := world.New(reg, world.Config{ChunkCapacity: 64, MaxChunks: 4})
	require.NoError(t, err)
	inst := fmt.Sprintf("tc%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	t.Cleanup(func() { _, _ = shm.RemoveInstance(inst) })
	sim := &tcSim{w: w, replay: replay, first: 100, last: 200, next: 100}
	e, err := New(Config{Instance: inst, FrameRate: rate, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, w, sim)
	require.NoError(t, err)
	sim.e = e
	if replay {
		e.SetReplayer(sim)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		_ = e.Close()
	})
	return e, sim, inst
}

func tcCtl(t *testing.T, inst string, req ipc.CtlRequest) ipc.CtlState {
	t.Helper()
	st, err := ipc.Ctl(inst, req, 10*time.Second)
	require.NoError(t, err, "%+v", req)
	return st
}

// tcWait polls cond with a generous deadline.
func tcWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(time.Millisecond)
	}
}

// TestTimeControlLive: paused, Run runs no Step; step N runs exactly N,
// the steps pending never pass ipc.CtlMaxStep; speed scales the dt given
// to the simulation and the time singleton's step, not the loop's period;
// seek is refused with ipc.ErrSeekLive; the world header words follow.
func TestTimeControlLive(t *testing.T) {
	e, sim, inst := newTCEngine(t, 200, false)
	tcWait(t, "frames", func() bool { return sim.steps() > 5 })
	st := tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlPause})
	require.True(t, st.Paused)
	n := sim.steps()
	beat := func() uint64 { return layout.Load64(e.segs.World.Data, layout.OffWTimeBeat) }
	b0 := beat()
	tcWait(t, "100 paused turns", func() bool { return beat() > b0+uint64(500*time.Millisecond) })
	require.Equal(t, n, sim.steps(), "paused: no simulation step")
	tc := layout.LoadTimeControl(e.segs.World.Data)
	require.Equal(t, layout.TimePaused, tc.State)
	require.Equal(t, 1.0, tc.Speed)
	// The statistics copy (metrics) is made by paused turns too.
	var s Stats
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	require.NoError(t, e.CopyStats(ctx, &s))
	cancel()
	require.True(t, s.Paused)
	require.Equal(t, 1.0, s.Speed)
	require.Equal(t, uint64(1), s.Control.CtlServed)
	require.Equal(t, uint64(n), s.Frame, "no frame ran")

	st = tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlStep, Frames: 7})
	require.Equal(t, uint64(7), st.Steps)
	tcWait(t, "7 steps", func() bool { return tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlStatus}).Steps == 0 })
	b0 = beat()
	tcWait(t, "paused turns after the steps", func() bool { return beat() > b0+uint64(200*time.Millisecond) })
	require.Equal(t, n+7, sim.steps(), "exactly 7 steps")
	tm := tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlStatus})
	require.Equal(t, int64(tm.Frame)*int64(e.period), tm.SimNanos, "speed 1: simulation time = frames × period")

	// The steps pending are bounded.
	tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlSpeed, Speed: 0.25}) // (no frame runs meanwhile: paused)
	_, err := ipc.Ctl(inst, ipc.CtlRequest{Op: ipc.CtlStep, Frames: ipc.CtlMaxStep}, 10*time.Second)
	require.NoError(t, err)
	_, err = ipc.Ctl(inst, ipc.CtlRequest{Op: ipc.CtlStep, Frames: 1}, 10*time.Second)
	require.ErrorIs(t, err, ipc.ErrCtlRefused)
	require.Contains(t, err.Error(), "pending already")
	_, err = ipc.Ctl(inst, ipc.CtlRequest{Op: ipc.CtlSeek, Frame: 1}, 10*time.Second)
	require.ErrorIs(t, err, ipc.ErrCtlRefused)
	require.Contains(t, err.Error(), ipc.ErrSeekLive.Error())

	// Resume drops the steps; dt is the period × 0.25 from the first frame
	// after the speed changed.
	m := sim.steps()
	st = tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlResume})
	require.False(t, st.Paused)
	require.Zero(t, st.Steps)
	tcWait(t, "frames at speed 0.25", func() bool { return sim.steps() > m+20 })
	sim.mu.Lock()
	quarter := float32((time.Duration(float64(e.period) * 0.25)).Seconds())
	for i, dt := range sim.dts[:n] {
		require.Equal(t, float32(e.period.Seconds()), dt, "frame %d", i)
	}
	for i, dt := range sim.dts[m:] {
		require.Equal(t, quarter, dt, "frame %d after the speed change", m+i)
	}
	sim.mu.Unlock()
	tc = layout.LoadTimeControl(e.segs.World.Data)
	require.Equal(t, layout.TimeRunning, tc.State)
	require.Equal(t, 0.25, tc.Speed)
	require.False(t, tc.Replay)
}

// TestTimeControlReplayer: with a Replayer the speed scales the loop's
// period and not dt; the engine publishes the recording's Time untouched;
// a seek runs Replayer.Seek on the frame thread and, paused, publishes the
// frame asked at once (one step); a seek the Replayer refuses is
// ctl_refused with its text; the status names the recording's frames.
func TestTimeControlReplayer(t *testing.T) {
	e, sim, inst := newTCEngine(t, 100, true)
	tcWait(t, "frames", func() bool { return sim.steps() > 3 })
	st := tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlPause})
	require.True(t, st.Replay)
	require.Equal(t, uint64(100), st.First)
	require.Equal(t, uint64(200), st.Last)
	n := sim.steps()

	st = tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlSeek, Frame: 150})
	tcWait(t, "the frame sought", func() bool { return tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlStatus}).Frame == 150 })
	b0 := layout.Load64(e.segs.World.Data, layout.OffWTimeBeat)
	tcWait(t, "paused turns after it", func() bool {
		return layout.Load64(e.segs.World.Data, layout.OffWTimeBeat) > b0+uint64(200*time.Millisecond)
	})
	require.Equal(t, n+1, sim.steps(), "one frame: the one asked")
	st = tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlStatus})
	require.True(t, st.Paused)
	require.Zero(t, st.Steps)
	require.Equal(t, uint64(150), st.Frame, "the frame asked is the last completed")
	require.Equal(t, int64(150*1000), st.SimNanos, "the recording's time, not the engine's")
	sim.mu.Lock()
	require.Equal(t, []uint64{150}, sim.seeks)
	require.Equal(t, []bool{true}, sim.seekOnFrame, "Seek runs with the engine's lock held")
	sim.mu.Unlock()
	tm, ok := world.GetSingleton[world.Time](e.w)
	require.True(t, ok)
	require.Equal(t, world.Time{Frame: 150, Nanos: 150000, Dt: 1000, Scale: 1}, tm, "published verbatim")

	_, err := ipc.Ctl(inst, ipc.CtlRequest{Op: ipc.CtlSeek, Frame: 999}, 10*time.Second)
	require.ErrorIs(t, err, ipc.ErrCtlRefused)
	require.Contains(t, err.Error(), "outside the recording")

	// Speed 4: the loop turns 4 times as often; dt stays the period.
	tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlSpeed, Speed: 4})
	e.tc.mu.Lock()
	period := e.periodLocked()
	e.tc.mu.Unlock()
	require.Equal(t, e.period/4, period)
	tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlStep, Frames: 3})
	tcWait(t, "3 steps", func() bool { return sim.steps() == n+4 })
	sim.mu.Lock()
	for _, dt := range sim.dts {
		require.Equal(t, float32(e.period.Seconds()), dt)
	}
	sim.mu.Unlock()
	require.True(t, layout.LoadTimeControl(e.segs.World.Data).Replay)
	require.False(t, errors.Is(err, ipc.ErrBadCtl))
}

// TestTimeControlPauseDropsSteps: a pause after a step request not yet run
// drops the steps pending and no frame runs after its reply.
func TestTimeControlPauseDropsSteps(t *testing.T) {
	_, sim, inst := newTCEngine(t, 200, false)
	tcWait(t, "frames", func() bool { return sim.steps() > 3 })
	st := tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlStep, Frames: ipc.CtlMaxStep})
	require.NotZero(t, st.Steps)
	tcWait(t, "a step run", func() bool { return tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlStatus}).Steps < ipc.CtlMaxStep })
	st = tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlPause})
	require.True(t, st.Paused)
	require.Zero(t, st.Steps, "pause drops the steps pending")
	n := sim.steps()
	f := st.Frame
	// 50 turns of the loop later (paused turns stamp the heartbeat), still
	// the same frame and no step.
	for i := 0; i < 50; i++ {
		st = tcCtl(t, inst, ipc.CtlRequest{Op: ipc.CtlStatus})
		require.Zero(t, st.Steps)
		require.Equal(t, f, st.Frame)
	}
	require.Equal(t, n, sim.steps(), "no frame after the pause")
}
