package top

import (
	"math/bits"
	"math/rand"
	"sort"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// engineModel is an independent model of what an engine writes into its
// segments: counters that grow by known amounts and the raw durations
// behind its histograms. snapshot copies it the way a Source would read it.
type engineModel struct {
	id        Identity
	frame     uint64
	publishes uint64
	skipped   uint64
	pubDur    []uint64 // every publish duration, in order
	frameDur  []uint64
	modules   []*moduleModel
}

type moduleModel struct {
	slot                           int
	name                           string
	pid                            uint32
	alive                          bool
	state                          layout.ModuleState
	runs, failures, late, rejected uint64
	lag                            uint64
	ticks                          []uint64 // every tick duration seen done
}

// logDur draws a duration log-uniformly from 500 ns to 100 ms.
func logDur(rng *rand.Rand) uint64 {
	return uint64(500 * float64(uint64(1)<<uint(rng.Intn(18))) * (1 + rng.Float64()))
}

// advance moves the engine by a random number of frames.
func (e *engineModel) advance(rng *rand.Rand) {
	frames := rng.Intn(80)
	for i := 0; i < frames; i++ {
		e.frame++
		e.frameDur = append(e.frameDur, logDur(rng))
		if rng.Intn(20) == 0 {
			e.skipped++
			continue
		}
		e.publishes++
		e.pubDur = append(e.pubDur, logDur(rng)/10)
	}
	for _, m := range e.modules {
		n := uint64(rng.Intn(60))
		m.runs += n
		for j := uint64(0); j < n && rng.Intn(10) > 0; j++ {
			m.ticks = append(m.ticks, logDur(rng))
		}
		m.failures += uint64(rng.Intn(3))
		m.late += uint64(rng.Intn(2))
		m.rejected += uint64(rng.Intn(5))
		m.lag = uint64(rng.Intn(4))
	}
}

func (e *engineModel) snapshot(at time.Time) *Snapshot {
	s := &Snapshot{At: at, Instance: "m", Engine: EngineLive, Creator: e.id, Published: e.publishes > 0,
		Frame: e.frame, Publishes: e.publishes, Skipped: e.skipped, ShmHeld: 123 << 20}
	for _, d := range e.pubDur {
		s.PubHist[layout.DurHistBucket(d)]++
	}
	for _, d := range e.frameDur {
		s.FrameHist[layout.DurHistBucket(d)]++
	}
	for _, m := range e.modules {
		ms := ModuleSnap{Slot: m.slot, Name: m.name, PID: m.pid, Alive: m.alive}
		st := &layout.ModStats{State: m.state, Runs: m.runs, Failures: m.failures, Late: m.late,
			Rejected: m.rejected, LagFrames: m.lag, Ticks: uint64(len(m.ticks))}
		for _, d := range m.ticks {
			st.TickSum += d
			st.TickMax = max(st.TickMax, d)
			st.TickHist[layout.TickBucket(d)]++
		}
		ms.Stats = st
		s.Modules = append(s.Modules, ms)
	}
	return s
}

// exactPct is the p-th percentile of ds by rank max(1, round(n·p/100)).
func exactPct(ds []uint64, p float64) uint64 {
	s := append([]uint64(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	want := max(int(float64(len(s))*p/100+0.5), 1)
	return s[want-1]
}

// bucketEnd is the upper end of the world histogram bucket holding d.
func bucketEnd(d uint64) uint64 {
	if d >= 1<<layout.DurHistHighBits {
		return 1 << layout.DurHistHighBits
	}
	_, up := layout.DurHistBounds(layout.DurHistBucket(d))
	return up
}

// TestComputeDifferential: views computed from pairs of snapshots of a model
// engine, against the model's own figures over each interval: frame rate =
// publishes added / Δt, skipped added, publish and frame p50/p99 = the
// bucket ends of the exact percentiles of the durations added, per module
// runs/s, the exact mean tick of the ticks added and their p99 bound, and
// the failures, late ticks and rejects added.
func TestComputeDifferential(t *testing.T) {
	rng := rand.New(rand.NewSource(14))
	for round := 0; round < 300; round++ {
		e := &engineModel{id: Identity{PID: 100, Start: 7, Created: 1}}
		for i := 0; i < 1+rng.Intn(4); i++ {
			e.modules = append(e.modules, &moduleModel{slot: i * 3, name: string(rune('a' + i)), pid: uint32(200 + i),
				alive: true, state: layout.ModuleRunning})
		}
		e.advance(rng)
		t0 := time.Unix(1_800_000_000, int64(rng.Intn(1e9)))
		prev := e.snapshot(t0)
		pubBefore, frameBefore := len(e.pubDur), len(e.frameDur)
		tickBefore := make([]int, len(e.modules))
		type counts struct{ runs, fail, late, rej uint64 }
		before := make([]counts, len(e.modules))
		for i, m := range e.modules {
			tickBefore[i] = len(m.ticks)
			before[i] = counts{m.runs, m.failures, m.late, m.rejected}
		}
		pubs0, skipped0 := e.publishes, e.skipped
		e.advance(rng)
		dt := time.Duration(1+rng.Intn(3000)) * time.Millisecond
		cur := e.snapshot(t0.Add(dt))
		v := Compute(prev, cur)

		require.Equal(t, dt, v.Interval)
		require.Equal(t, float64(e.publishes-pubs0)/dt.Seconds(), v.FPS, "round %d", round)
		require.Equal(t, e.skipped-skipped0, v.SkipDelta)
		require.Equal(t, e.frame, v.Frame)
		newPub, newFrame := e.pubDur[pubBefore:], e.frameDur[frameBefore:]
		require.Equal(t, uint64(len(newPub)), v.PubCount)
		require.Equal(t, uint64(len(newFrame)), v.FrameCount)
		if len(newPub) > 0 {
			require.Equal(t, bucketEnd(exactPct(newPub, 50)), v.PubP50, "round %d", round)
			require.Equal(t, bucketEnd(exactPct(newPub, 99)), v.PubP99, "round %d", round)
		}
		if len(newFrame) > 0 {
			require.Equal(t, bucketEnd(exactPct(newFrame, 50)), v.FrameP50, "round %d", round)
			require.Equal(t, bucketEnd(exactPct(newFrame, 99)), v.FrameP99, "round %d", round)
		}
		require.Len(t, v.Modules, len(e.modules))
		for i, m := range e.modules {
			r := v.Modules[i]
			require.Equal(t, m.name, r.Name)
			require.Equal(t, RowRunning, r.State)
			require.Equal(t, m.runs, r.Runs)
			require.Equal(t, float64(m.runs-before[i].runs)/dt.Seconds(), r.RunsPerSec)
			require.Equal(t, m.lag, r.Lag)
			require.Equal(t, m.failures-before[i].fail, r.FailDelta)
			require.Equal(t, m.late-before[i].late, r.LateDelta)
			require.Equal(t, m.rejected-before[i].rej, r.RejectDelta)
			require.Equal(t, m.failures, r.Failures)
			require.Equal(t, m.late, r.Late)
			require.Equal(t, m.rejected, r.Rejected)
			added := m.ticks[tickBefore[i]:]
			require.Equal(t, uint64(len(added)), r.Ticks)
			if len(added) == 0 {
				require.Zero(t, r.TickMean)
				continue
			}
			var sum, longest uint64
			for _, d := range added {
				sum += d
			}
			for _, d := range m.ticks {
				longest = max(longest, d)
			}
			require.Equal(t, sum/uint64(len(added)), r.TickMean, "round %d module %s", round, m.name)
			// The block's p99: the power-of-two bucket end of the exact
			// figure, capped at the longest tick ever.
			require.Equal(t, min(uint64(1)<<bits.Len64(exactPct(added, 99)), longest), r.TickP99)
		}
	}
}

// TestComputeWithoutInterval: the first snapshot, one of another engine (its
// counters lower than before), and one not later than the previous give no
// rates, only the current figures.
func TestComputeWithoutInterval(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	e := &engineModel{id: Identity{PID: 1, Start: 2, Created: 3},
		modules: []*moduleModel{{name: "m", pid: 9, alive: true, state: layout.ModuleRunning}}}
	e.advance(rng)
	t0 := time.Unix(1_800_000_000, 0)
	a := e.snapshot(t0)
	other := &engineModel{id: Identity{PID: 4, Start: 5, Created: 6},
		modules: []*moduleModel{{name: "m", pid: 9, alive: true, state: layout.ModuleRunning}}}
	other.advance(rng)
	for name, pair := range map[string][2]*Snapshot{
		"first":        {nil, a},
		"other engine": {a, other.snapshot(t0.Add(time.Second))},
		"same time":    {a, e.snapshot(t0)},
	} {
		v := Compute(pair[0], pair[1])
		require.Zero(t, v.Interval, name)
		require.Zero(t, v.FPS, name)
		require.Zero(t, v.PubCount, name)
		require.Zero(t, v.FrameCount, name)
		require.Zero(t, v.Modules[0].RunsPerSec, name)
		require.Zero(t, v.Modules[0].Ticks, name)
		require.Equal(t, pair[1].Frame, v.Frame, name)
		require.Equal(t, pair[1].Modules[0].Stats.Runs, v.Modules[0].Runs, name)
	}
}

// TestRowStates: the state shown for each statistics block state, with the
// module's process alive or gone, and without a block.
func TestRowStates(t *testing.T) {
	cases := []struct {
		state layout.ModuleState
		alive bool
		stats bool
		want  RowState
	}{
		{layout.ModuleJoined, true, true, RowJoined},
		{layout.ModuleRunning, true, true, RowRunning},
		{layout.ModuleBreakerOpen, true, true, RowBreakerOpen},
		{layout.ModuleDead, true, true, RowDead},
		{layout.ModuleDead, false, true, RowDead},
		{layout.ModuleRunning, false, true, RowGone},
		{layout.ModuleJoined, false, true, RowGone},
		{0, true, false, RowNone},
		{0, false, false, RowGone},
	}
	for _, c := range cases {
		ms := ModuleSnap{Name: "x", PID: 5, Alive: c.alive}
		if c.stats {
			ms.Stats = &layout.ModStats{State: c.state}
		}
		v := Compute(nil, &Snapshot{Engine: EngineLive, Creator: Identity{PID: 1}, Modules: []ModuleSnap{ms}})
		require.Equal(t, c.want, v.Modules[0].State, "%v alive=%v stats=%v", c.state, c.alive, c.stats)
	}
	require.Equal(t, "breaker-open", RowBreakerOpen.String())
	require.Equal(t, "gone", RowGone.String())
	require.Equal(t, "row-state(99)", RowState(99).String())
	require.Equal(t, "dead", EngineDead.String())
	require.Equal(t, "engine-state(99)", EngineState(99).String())
}

// TestStalled: a live engine whose last publish is older than StallAfter is
// stalled; a dead one is dead, not stalled.
func TestStalled(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := &Snapshot{At: now, Engine: EngineLive, Creator: Identity{PID: 1}, Published: true,
		HeartbeatNano: uint64(now.Add(-StallAfter - time.Millisecond).UnixNano())}
	v := Compute(nil, s)
	require.True(t, v.Stalled)
	require.Equal(t, StallAfter+time.Millisecond, v.PublishAge)
	s.HeartbeatNano = uint64(now.Add(-StallAfter).UnixNano())
	require.False(t, Compute(nil, s).Stalled)
	s.HeartbeatNano, s.Engine = 1, EngineDead
	require.False(t, Compute(nil, s).Stalled)
	s.HeartbeatNano = 0
	require.Equal(t, time.Duration(-1), Compute(nil, s).PublishAge, "never published")

	// A paused engine publishes nothing and is not stalled.
	s.HeartbeatNano, s.Engine = uint64(now.Add(-time.Minute).UnixNano()), EngineLive
	s.Time, s.Instance = layout.TimeControl{State: layout.TimePaused, Speed: 0.5}, "demo"
	v = Compute(nil, s)
	require.False(t, v.Stalled)
	require.True(t, v.Paused)
	require.Equal(t, 0.5, v.Speed)
	out := Render(&v, RenderOptions{})
	require.Contains(t, out, "engine pid 1 live PAUSED (engine ctl demo resume)  speed 0.5")
	require.NotContains(t, out, "STALLED")
}

// TestTrackerEngineLifecycle: an engine that publishes, dies, is moved aside
// and replaced: the views say each, keep the last note, and give rates
// again once two snapshots of the new engine are at hand.
func TestTrackerEngineLifecycle(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	a := Identity{PID: 10, Start: 1, Created: 1}
	b := Identity{PID: 20, Start: 2, Created: 2}
	snap := func(sec int, st EngineState, id Identity, pubs uint64) *Snapshot {
		return &Snapshot{At: t0.Add(time.Duration(sec) * time.Second), Engine: st, Creator: id, Publishes: pubs, Published: pubs > 0}
	}
	var tr Tracker
	steps := []struct {
		s    *Snapshot
		note string
		fps  float64
	}{
		{snap(0, EngineLive, a, 10), "", 0},
		{snap(1, EngineLive, a, 70), "", 60},
		{snap(2, EngineDead, a, 80), "engine pid 10 died at about 03:04:07", 10},
		{snap(3, EngineDead, a, 80), "engine pid 10 died at about 03:04:07", 0},
		{snap(4, EngineAbsent, Identity{}, 0), "engine pid 10 died at about 03:04:07", 0},
		{snap(5, EngineStarting, Identity{}, 0), "engine pid 10 died at about 03:04:07", 0},
		{snap(6, EngineLive, b, 5), "re-attached at 03:04:11 to a new engine, pid 20 (was pid 10)", 0},
		{snap(7, EngineLive, b, 35), "re-attached at 03:04:11 to a new engine, pid 20 (was pid 10)", 30},
		{snap(8, EngineAbsent, Identity{}, 0), "engine pid 20 went away at about 03:04:13 (its world segment was removed or moved aside)", 0},
	}
	for i, st := range steps {
		v := tr.Next(st.s)
		require.Equal(t, st.note, v.Note, "step %d", i)
		require.Equal(t, st.fps, v.FPS, "step %d", i)
		require.Equal(t, st.s.Engine, v.Engine, "step %d", i)
	}
}
