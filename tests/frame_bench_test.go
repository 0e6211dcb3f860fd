package tests

// Engine frame cost with module processes attached (GitHub issue 4): a
// benchmark of the per-frame engine time with 10 modules against the same
// world with no modules, and a test that an engine frame allocates nothing
// in steady state while modules read the world and send commands.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// Components of the frame benchmark: 4 components, 64 bytes per entity.
type fbPos struct{ X, Y, Z, W float32 }
type fbVel struct{ X, Y, Z, W float32 }
type fbHealth struct {
	HP, Max int32
	Regen   float32
	_       uint32
}
type fbStamp struct {
	Frame uint64
	Owner uint32
	_     uint32
}

// Event types: the simulation's and the modules'.
const (
	fbEvSim    uint16 = 10
	fbEvModule uint16 = 20
)

type fbSchema struct {
	reg                 *world.Registry
	pos, vel, hp, stamp world.ComponentID
}

func newFBSchema() *fbSchema {
	s := &fbSchema{reg: world.NewRegistry()}
	s.pos, _ = world.Register[fbPos](s.reg, "Pos")
	s.vel, _ = world.Register[fbVel](s.reg, "Vel")
	s.hp, _ = world.Register[fbHealth](s.reg, "Health")
	s.stamp, _ = world.Register[fbStamp](s.reg, "Stamp")
	return s
}

func (s *fbSchema) mask(names string) world.Mask {
	var m world.Mask
	for _, n := range strings.Split(names, ",") {
		if id, ok := s.reg.Lookup(n); ok {
			m = m.With(id)
		}
	}
	return m
}

// fbSim is the engine's simulation: it moves the entities of 30% of the
// chunks (a different 30% each frame) and emits a few events.
type fbSim struct {
	s     *fbSchema
	w     *world.World
	frame int
	ev    [12]byte
}

func (sim *fbSim) Step(float32) {
	sim.frame++
	q := sim.w.Query(world.MaskOf(sim.s.pos, sim.s.vel))
	for q.Next() {
		if (q.Chunk()+sim.frame)%10 >= 3 {
			continue
		}
		pos := world.ColumnMut[fbPos](&q, sim.s.pos)
		vel := world.Column[fbVel](&q, sim.s.vel)
		for i := range pos {
			pos[i].X += vel[i].X
			pos[i].Y += vel[i].Y
		}
	}
	for k := 0; k < 4; k++ {
		binary.LittleEndian.PutUint32(sim.ev[:], uint32(sim.frame))
		binary.LittleEndian.PutUint64(sim.ev[4:], uint64(k))
		sim.w.Emit(world.EventType(fbEvSim), sim.ev[:])
	}
}

// fbModule is the module run by the child processes. Each tick it reads the
// events since its last run, scans entities (summing their components),
// looks up 8 entities by handle and queues 3 commands. The fast tier (a
// sensor of one quarter of the world, part = chunk index mod 4) reads
// Pos+Vel of its quarter and sets Health of 2 entities; the slow tier reads
// its declared mask over the whole world, checks the entity count and stamps
// 2 entities.
type fbModule struct {
	s        *fbSchema
	spec     module.Spec
	part     int
	entities int
	ticks    int
	rng      uint64
	sink     float64
	ev       [8]byte
}

func (m *fbModule) Spec() module.Spec { return m.spec }

func (m *fbModule) next() int {
	m.rng ^= m.rng << 13
	m.rng ^= m.rng >> 7
	m.rng ^= m.rng << 17
	return int(m.rng % uint64(m.entities))
}

func (m *fbModule) Tick(v *module.View, c *module.Commands, dt time.Duration) error {
	m.ticks++
	events := 0
	if _, err := v.Events(func(_, _ uint64, typ uint16, _ []byte) {
		if typ == fbEvSim {
			events++
		}
	}); err != nil {
		return err
	}
	s := m.s
	var sum float64
	if m.spec.Tier == module.Fast {
		q := v.Query(world.MaskOf(s.pos, s.vel))
		for q.Next() {
			if q.Chunk()%4 != m.part {
				continue
			}
			pos := module.Column[fbPos](v, &q, s.pos)
			vel := module.Column[fbVel](v, &q, s.vel)
			for i := 0; i < q.Rows(); i++ {
				if q.Match(i) {
					sum += float64(pos[i].X + vel[i].X*float32(dt.Seconds()))
				}
			}
		}
	} else {
		q := v.Query(m.spec.Reads)
		for q.Next() {
			if m.spec.Reads.Has(s.pos) {
				pos := module.Column[fbPos](v, &q, s.pos)
				for i := 0; i < q.Rows(); i++ {
					if q.Match(i) {
						sum += float64(pos[i].X + pos[i].Y)
					}
				}
			}
			if m.spec.Reads.Has(s.hp) {
				for _, h := range module.Column[fbHealth](v, &q, s.hp)[:q.Rows()] {
					sum += float64(h.HP)
				}
			}
			if m.spec.Reads.Has(s.stamp) {
				for _, st := range module.Column[fbStamp](v, &q, s.stamp)[:q.Rows()] {
					sum += float64(st.Frame)
				}
			}
		}
		if n := v.Count(m.spec.Reads); n != m.entities {
			return fmt.Errorf("%s: frame %d has %d entities with mask %v, want %d",
				m.spec.Name, v.Frame(), n, m.spec.Reads, m.entities)
		}
	}
	for k := 0; k < 8; k++ {
		e := world.MakeEntity(uint32(m.next()), 1)
		if !v.IsAlive(e) {
			return fmt.Errorf("%s: entity %v not alive in frame %d", m.spec.Name, e, v.Frame())
		}
		if !m.spec.Reads.Has(s.hp) {
			continue // reading outside the module's Reads fails its tick
		}
		if h, ok := module.Get[fbHealth](v, e, s.hp); ok {
			sum += float64(h.HP)
		}
	}
	m.sink += sum
	for k := 0; k < 2; k++ {
		e := world.MakeEntity(uint32(m.next()), 1)
		if m.spec.Tier == module.Fast {
			module.Set(c, e, s.hp, fbHealth{HP: int32(m.ticks), Max: 100, Regen: float32(events)})
		} else {
			module.Set(c, e, s.stamp, fbStamp{Frame: v.Frame(), Owner: uint32(m.ticks)})
		}
	}
	binary.LittleEndian.PutUint64(m.ev[:], uint64(m.ticks))
	c.Publish(fbEvModule, m.ev[:])
	return c.Err()
}

// TestFrameBenchChild is the module process of the frame benchmark and of
// TestEngineFrameZeroAllocsWithModules (the parent re-executes the test
// binary with -test.run selecting this test and FDP_FB_ROLE set).
func TestFrameBenchChild(t *testing.T) {
	if os.Getenv("FDP_FB_ROLE") == "" {
		t.Skip("child process of the frame benchmark")
	}
	s := newFBSchema()
	every, _ := strconv.Atoi(os.Getenv("FDP_FB_EVERY"))
	n, _ := strconv.Atoi(os.Getenv("FDP_FB_ENTITIES"))
	part, _ := strconv.Atoi(os.Getenv("FDP_FB_PART"))
	name := os.Getenv("FDP_FB_NAME")
	m := &fbModule{s: s, entities: n, part: part, rng: uint64(len(name))*0x9E3779B97F4A7C15 + uint64(every) + 1, spec: module.Spec{
		Name: name, Tier: os.Getenv("FDP_FB_ROLE"), Every: every, Reads: s.mask(os.Getenv("FDP_FB_READS")), Group: os.Getenv("FDP_FB_GROUP"),
	}}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := module.Run(context.Background(), m, module.Options{Instance: os.Getenv("FDP_FB_INSTANCE"), Registry: s.reg, Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		t.Fatal(err)
	}
}

// fbRig is an engine with the benchmark world in this process.
type fbRig struct {
	tb       testing.TB
	s        *fbSchema
	eng      *host.Engine
	inst     string
	entities int
	cmds     []*exec.Cmd
}

func newFBRig(tb testing.TB, entities, frameRate int) *fbRig {
	s := newFBSchema()
	chunks := (entities + 1023) / 1024
	w, err := world.New(s.reg, world.Config{ChunkCapacity: 1024, MaxChunks: chunks + 1})
	require.NoError(tb, err)
	for i := 0; i < entities; i++ {
		e, err := w.Create()
		require.NoError(tb, err)
		require.NoError(tb, world.Set(w, e, s.pos, fbPos{X: float32(i), Y: float32(i % 7)}))
		require.NoError(tb, world.Set(w, e, s.vel, fbVel{X: 1, Y: 0.5}))
		require.NoError(tb, world.Set(w, e, s.hp, fbHealth{HP: 100, Max: 100}))
		require.NoError(tb, world.Set(w, e, s.stamp, fbStamp{}))
	}
	inst := fmt.Sprintf("fb%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	eng, err := host.New(host.Config{Instance: inst, FrameRate: frameRate, NoPrewake: os.Getenv("FDP_FB_NOPREWAKE") != "",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, w, &fbSim{s: s, w: w})
	require.NoError(tb, err)
	r := &fbRig{tb: tb, s: s, eng: eng, inst: inst, entities: entities}
	tb.Cleanup(r.close)
	return r
}

func (r *fbRig) close() {
	for _, c := range r.cmds {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
	r.eng.Close()
}

// spawn starts a module process. Its stdout is discarded and its stderr is
// the test's: no copier goroutine runs in this process (it would allocate).
func (r *fbRig) spawn(name, tier string, every, part int, reads, group string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestFrameBenchChild$")
	cmd.Env = append(os.Environ(), "FDP_FB_ROLE="+tier, "FDP_FB_NAME="+name, "FDP_FB_EVERY="+strconv.Itoa(every),
		"FDP_FB_READS="+reads, "FDP_FB_GROUP="+group, "FDP_FB_INSTANCE="+r.inst, "FDP_FB_ENTITIES="+strconv.Itoa(r.entities), "FDP_FB_PART="+strconv.Itoa(part))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(r.tb, cmd.Start())
	if n := module.EnvInt("FDP_FB_NICE", 0); n != 0 {
		require.NoError(r.tb, syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, n))
	}
	r.cmds = append(r.cmds, cmd)
}

// spawnMix starts the benchmark's 10 modules: 4 fast, and 6 slow in two
// convoys of 3 (every 4 frames, reading Pos+Health; every 10 frames,
// reading Health+Stamp). Convoy members read different masks; the convoy
// snapshot holds their union.
func (r *fbRig) spawnMix() {
	for i := 0; i < 4; i++ {
		r.spawn(fmt.Sprintf("fast%d", i), module.Fast, 1, i, "Pos,Vel", "")
	}
	for i := 0; i < 3; i++ {
		r.spawn(fmt.Sprintf("ai%d", i), module.Slow, 4, 0, []string{"Pos,Health", "Pos", "Health"}[i], "ai")
		r.spawn(fmt.Sprintf("stats%d", i), module.Slow, 10, 0, []string{"Health,Stamp", "Stamp", "Health"}[i], "stats")
	}
}

// stepUntil runs frames until cond holds (bounded).
func (r *fbRig) stepUntil(what string, cond func() bool) {
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		require.True(r.tb, time.Now().Before(deadline), "timed out waiting for %s", what)
		r.eng.Step()
	}
}

// everyModuleRan reports whether all n modules joined and each had at least
// min runs with commands applied and no failure.
func (r *fbRig) everyModuleRan(n int, min uint64) func() bool {
	return func() bool {
		mods := r.eng.Modules()
		if len(mods) < n {
			return false
		}
		for _, m := range mods {
			require.Zero(r.tb, m.Stats.Failures, "module %s failed", m.Name)
			if m.State == host.StateDead || m.Stats.Runs < min || m.Stats.Applied == 0 {
				return false
			}
		}
		return true
	}
}

func (r *fbRig) totals() (runs, applied, rejected, failures uint64) {
	for _, m := range r.eng.Modules() {
		runs += m.Stats.Runs
		applied += m.Stats.Applied
		rejected += m.Stats.Rejected
		failures += m.Stats.Failures
	}
	return
}

// TestEngineFrameZeroAllocsWithModules: with fast and slow (convoy) module
// processes attached that read the world and send commands every tick, an
// engine frame — including dispatch, snapshots for the convoy, the wait for
// the fast tier and command playback — allocates nothing in steady state.
func TestEngineFrameZeroAllocsWithModules(t *testing.T) {
	r := newFBRig(t, 4000, 60)
	r.spawn("fast0", module.Fast, 1, 0, "Pos,Vel", "")
	r.spawn("fast1", module.Fast, 1, 1, "Pos,Vel", "")
	r.spawn("ai0", module.Slow, 2, 0, "Pos,Health", "ai")
	r.spawn("ai1", module.Slow, 2, 0, "Stamp", "ai")
	r.stepUntil("modules running", r.everyModuleRan(4, 5))
	for i := 0; i < 30; i++ { // warm up: playback buffers, event log, slots
		r.eng.Step()
	}
	runs0, applied0, _, _ := r.totals()
	frame0 := r.eng.Frame()
	allocs := testing.AllocsPerRun(100, func() { r.eng.Step() })
	runs, applied, rejected, failures := r.totals()
	require.Equal(t, frame0+101, r.eng.Frame())
	// The modules really worked during the measured frames.
	require.Greater(t, runs, runs0+100)
	require.Greater(t, applied, applied0+100)
	require.Zero(t, rejected)
	require.Zero(t, failures)
	require.Zero(t, allocs, "allocations per engine frame with modules attached")
}

// fbPhase is the measurement of one run of frames.
type fbPhase struct {
	total   []time.Duration
	own     []time.Duration // total minus the wait for the fast tier
	publish []time.Duration
	late    int
	cmds    int
	allocs  uint64
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// measure runs frames paced by Engine.Run at the engine's frame rate and
// records each frame's engine time (FrameStats.Total: simulate, events,
// publish, dispatch, wait for the fast tier, playback) and the mallocs of
// this process during the run.
func (r *fbRig) measure(frames int) fbPhase {
	ph := fbPhase{total: make([]time.Duration, 0, frames), own: make([]time.Duration, 0, frames), publish: make([]time.Duration, 0, frames)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	onFrame := func(st host.FrameStats) {
		ph.total = append(ph.total, st.Total)
		ph.own = append(ph.own, st.Total-st.Wait)
		ph.publish = append(ph.publish, st.Publish.Duration)
		ph.late += st.Late
		ph.cmds += st.Commands
		if st.PublishErr != nil {
			r.tb.Errorf("publish: %v", st.PublishErr)
		}
		if len(ph.total) == frames {
			cancel()
		}
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	require.NoError(r.tb, r.eng.Run(ctx, onFrame))
	runtime.ReadMemStats(&m1)
	ph.allocs = m1.Mallocs - m0.Mallocs
	require.Len(r.tb, ph.total, frames)
	return ph
}

// BenchmarkEngineFrame10Modules: the engine frame time of a 100K-entity
// world (4 components, 64 B/entity, 30% of the chunks dirty per frame) with
// 10 module processes attached (4 fast, 6 slow in 2 convoys), against the
// same world and engine with no module attached, in the same run, at the
// engine's real frame rate (60 Hz; FDP_FB_FRAMES frames per phase, default
// 300). One op is the whole measurement; run with -benchtime=1x.
// FDP_FB_NICE=n starts the module processes at that nice value (the engine
// competing for 2 cores with 10 module processes at equal priority is
// preempted by the modules it wakes). FDP_FB_NOPREWAKE=1 turns the engine's
// pre-wake of fast modules off.
func BenchmarkEngineFrame10Modules(b *testing.B) {
	frames := module.EnvInt("FDP_FB_FRAMES", 300)
	for i := 0; i < b.N; i++ {
		r := newFBRig(b, 100_000, 60)
		for k := 0; k < 30; k++ { // warm up every slot
			r.eng.Step()
		}
		base := r.measure(frames)

		r.spawnMix()
		r.stepUntil("10 modules running", r.everyModuleRan(10, 2))
		for k := 0; k < 60; k++ {
			r.eng.Step()
		}
		runs0, applied0, _, _ := r.totals()
		mods := r.measure(frames)
		runs, applied, rejected, failures := r.totals()
		if failures != 0 || rejected != 0 || applied == applied0 {
			b.Fatalf("modules did not work cleanly: %d failures, %d rejected, %d applied", failures, rejected, applied-applied0)
		}
		us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
		bp50, bp99 := pct(base.total, 50), pct(base.total, 99)
		mp50, mp99 := pct(mods.total, 50), pct(mods.total, 99)
		op50, op99 := pct(mods.own, 50), pct(mods.own, 99)
		b.Logf("baseline (0 modules): frame p50 %v p99 %v, publish p50 %v, %d allocs in %d frames",
			bp50, bp99, pct(base.publish, 50), base.allocs, frames)
		b.Logf("10 modules: frame p50 %v p99 %v (without the fast-tier wait: p50 %v p99 %v), publish p50 %v, "+
			"%d late, %d runs, %d commands, %d allocs in %d frames",
			mp50, mp99, op50, op99, pct(mods.publish, 50), mods.late, runs-runs0, mods.cmds, mods.allocs, frames)
		for _, m := range r.eng.Modules() {
			b.Logf("%-7s %s every %2d group %-12s runs %4d skipped %4d late %3d applied %5d",
				m.Name, m.Tier, m.Every, m.Group, m.Stats.Runs, m.Stats.Skipped, m.Stats.Late, m.Stats.Applied)
		}
		b.ReportMetric(us(bp50), "base-p50-us")
		b.ReportMetric(us(bp99), "base-p99-us")
		b.ReportMetric(us(mp50), "mods-p50-us")
		b.ReportMetric(us(mp99), "mods-p99-us")
		b.ReportMetric(float64(mp50)/float64(bp50), "p50-ratio")
		b.ReportMetric(float64(mp99)/float64(bp99), "p99-ratio")
		// The engine's own work per frame (everything but waiting for the
		// fast tier): the cost of hosting the modules.
		b.ReportMetric(us(op50), "own-p50-us")
		b.ReportMetric(us(op99), "own-p99-us")
		b.ReportMetric(float64(op50)/float64(bp50), "own-p50-ratio")
		b.ReportMetric(float64(op99)/float64(bp99), "own-p99-ratio")
		b.ReportMetric(float64(mods.cmds)/float64(frames), "cmds/frame")
		b.ReportMetric(float64(mods.late)/float64(frames), "late/frame")
		b.ReportMetric(float64(base.allocs)/float64(frames), "base-allocs/frame")
		b.ReportMetric(float64(mods.allocs)/float64(frames), "mods-allocs/frame")
	}
}
