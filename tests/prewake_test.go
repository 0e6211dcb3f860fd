package tests

import (
	"runtime"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	"github.com/stretchr/testify/require"
)

// tickNeedWake maps a module's segment read-only and returns a function that
// loads its tick need-wake word (1: the module sleeps, or is about to, on its
// tick bell; 0: it runs or polls).
func (r *rig) tickNeedWake(name string) func() uint32 {
	seg, err := shm.Open(layout.ModuleSegmentName(r.inst, r.module(name).Slot), false)
	require.NoError(r.t, err)
	r.t.Cleanup(func() { seg.Close() })
	return func() uint32 { return layout.Load32(seg.Data, layout.OffMTickNeedWake) }
}

// awaitNeedWake waits (bounded) until need() == want and reports whether it
// happened.
func awaitNeedWake(need func() uint32, want uint32, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for need() != want {
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
	}
	return true
}

// gateSim is a simulation step that waits until the fast module polls its
// tick bell (need-wake cleared after the engine's pre-wake) or a second
// passes, so that its tick is rung while it polls.
type gateSim struct {
	need   func() uint32
	polled int
}

func (g *gateSim) Step(float32) {
	if awaitNeedWake(g.need, 0, time.Second) {
		g.polled++
	}
}

// TestEnginePrewakesFastModules: between frames a fast module sleeps on its
// tick bell; the engine pre-wakes it at the start of the frame (before the
// simulation), the module polls, and the tick reaches it warm,
// without a futex wake. Slow modules and fast modules beyond PrewakeMax are
// never pre-woken; with NoPrewake nobody is, and the fast module's ticks wake
// it from FUTEX_WAIT.
func TestEnginePrewakesFastModules(t *testing.T) {
	const frames = 40
	t.Run("prewake", func(t *testing.T) {
		// Always pre-wake at the start of the frame: the gate's wait is part
		// of the simulation's time, which would move the pre-wake behind it.
		// At most one fast module is pre-woken per frame: the first in slot
		// (join) order, named quick below; the other one never is.
		r := newRigConfig(t, 100, func(c *host.Config) { c.PrewakeEarlyMax, c.PrewakeMax = time.Hour, 1 })
		r.spawn("fast-a", "idle", module.Fast, 1, "Pos", "")
		r.spawn("fast-b", "idle", module.Fast, 1, "Pos", "")
		r.spawn("sloth", "idle", module.Slow, 2, "Pos", "")
		r.stepUntil("join", r.joined(3))
		quick, other := "fast-a", "fast-b"
		if r.module(other).Slot < r.module(quick).Slot {
			quick, other = other, quick
		}
		r.stepUntil("first runs", func() bool { return r.module(quick).Stats.Runs >= 2 && r.module("sloth").Stats.Runs >= 1 })
		need := r.tickNeedWake(quick)
		gate := &gateSim{need: need}
		r.eng.SetSimulation(gate)
		before := r.module(quick)
		for i := 0; i < frames; i++ {
			require.True(t, awaitNeedWake(need, 1, 10*time.Second), "quick never went back to sleep")
			r.eng.Step()
		}
		q, sl := r.module(quick), r.module("sloth")
		t.Logf("prewoken %d, polled %d, warm %d, cold %d of %d frames; wake p50 %v", q.Stats.Prewoken-before.Stats.Prewoken, gate.polled,
			q.Wake.Warm-before.Wake.Warm, q.Wake.Cold-before.Wake.Cold, frames, r.eng.WakeHist.Percentile(50))
		require.Zero(t, sl.Stats.Prewoken, "slow modules are not pre-woken")
		require.Zero(t, r.module(other).Stats.Prewoken, "beyond PrewakeMax")
		require.GreaterOrEqual(t, q.Stats.Prewoken-before.Stats.Prewoken, uint64(frames*3/4), "a sleeping fast module is pre-woken")
		require.GreaterOrEqual(t, gate.polled, frames*3/4, "after the pre-wake the module polls")
		// A tick rung while the module polls is seen warm (the engine's
		// ring needs no futex wake); allow for a poll that ran out under load.
		require.GreaterOrEqual(t, q.Wake.Warm-before.Wake.Warm, uint64(gate.polled*3/4))
		require.Positive(t, r.eng.WakeHist.Count(), "the engine records the fast tier's wake latency")
	})
	t.Run("no-prewake", func(t *testing.T) {
		r := newRigConfig(t, 100, func(c *host.Config) { c.NoPrewake = true })
		r.spawn("quick", "idle", module.Fast, 1, "Pos", "")
		r.stepUntil("join", r.joined(1))
		r.stepUntil("first runs", func() bool { return r.module("quick").Stats.Runs >= 2 })
		need := r.tickNeedWake("quick")
		before := r.module("quick")
		for i := 0; i < frames; i++ {
			require.True(t, awaitNeedWake(need, 1, 10*time.Second), "quick never went back to sleep")
			r.eng.Step()
		}
		q := r.module("quick")
		t.Logf("warm %d, cold %d of %d frames", q.Wake.Warm-before.Wake.Warm, q.Wake.Cold-before.Wake.Cold, frames)
		require.Zero(t, q.Stats.Prewoken)
		// The ring can land between the module's need-wake store and its
		// sleep (warm), but most find it in FUTEX_WAIT.
		require.GreaterOrEqual(t, q.Wake.Cold-before.Wake.Cold, uint64(frames/2))
	})
}
