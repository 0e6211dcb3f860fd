package tests

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// resyncEntities is how many entities the resync world keeps alive.
const resyncEntities = 40

// resyncSim replaces one entity every frame (destroys the first one a query
// finds, creates one): the set of alive entities changes in every frame. It
// keeps no state, so it runs a recovered world as well as a fresh one.
type resyncSim struct {
	s *schema
	w *world.World
}

func (sim *resyncSim) Step(float32) {
	q := sim.w.Query(world.MaskOf(sim.s.pos))
	for q.Next() && q.Rows() > 0 {
		if q.Match(0) {
			_ = sim.w.Destroy(q.Entity(0))
			break
		}
	}
	for sim.w.Count() < resyncEntities {
		e, err := sim.w.Create()
		if err != nil {
			return
		}
		_ = world.Set(sim.w, e, sim.s.pos, Pos{X: 1})
	}
}

// startResyncEngine is the engine start-up path of `engine run` for the
// resync world: recover a dead engine's world if there is one, resume after
// its frame.
func startResyncEngine(inst string, log *slog.Logger) (*host.Engine, host.StartInfo, error) {
	s := newSchema()
	fresh := func() (*world.World, error) {
		return world.New(s.reg, world.Config{ChunkCapacity: 64, MaxChunks: 16})
	}
	w, info, err := host.PrepareStart(inst, fresh, log)
	if err != nil {
		return nil, info, err
	}
	if w == nil {
		if w, err = fresh(); err != nil {
			return nil, info, err
		}
	}
	sim := &resyncSim{s: s, w: w}
	sim.Step(0) // populate a fresh world (a recovered one is full)
	eng, err := host.New(host.Config{Instance: inst, FrameRate: 500, Logger: log}, w, sim)
	if err != nil {
		return nil, info, err
	}
	if resume := max(info.Frame, info.ResumeFrame); resume > 0 {
		if err := eng.ResumeAfter(resume); err != nil {
			eng.Close()
			return nil, info, err
		}
	}
	return eng, info, nil
}

// resyncModule keeps two models of the alive entities: a, from its observers
// rebuilt by OnResync; b, what a module without OnResync has: loaded from
// the view on its process's first tick, then kept from the lifecycle events
// only. Each tick prints the view's frame, whether it resynced, the lowest
// frame of its events and whether each model equals the view.
type resyncModule struct {
	s        *schema
	a, b     map[world.Entity]bool
	started  bool
	resynced bool
}

func (m *resyncModule) Spec() module.Spec {
	return module.Spec{Name: "resync", Tier: module.Slow, Every: 25, Reads: world.MaskOf(m.s.pos)}
}

func (m *resyncModule) alive(v *module.View) map[world.Entity]bool {
	out := map[world.Entity]bool{}
	q := v.Query(world.MaskOf(m.s.pos))
	for q.Next() {
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) {
				out[q.Entity(i)] = true
			}
		}
	}
	return out
}

func (m *resyncModule) Observe(o *module.Observers) {
	o.OnResync(func(v *module.View) { m.a, m.resynced = m.alive(v), true })
	o.OnCreated(func(e world.Entity) { m.a[e] = true })
	o.OnDestroyed(func(e world.Entity) { delete(m.a, e) })
}

func (m *resyncModule) Tick(v *module.View, _ *module.Commands, _ time.Duration) error {
	first := !m.started
	if first {
		m.b, m.started = m.alive(v), true
	}
	minEv := uint64(0)
	if _, err := v.Events(func(_, frame uint64, typ uint16, p []byte) {
		if minEv == 0 || frame < minEv {
			minEv = frame
		}
		if first || !layout.IsLifecycleEvent(typ) {
			return // b was loaded from this very view
		}
		switch k, e, _, _ := layout.DecodeLifecycle(typ, p); k {
		case layout.LifecycleCreated:
			m.b[world.Entity(e)] = true
		case layout.LifecycleDestroyed:
			delete(m.b, world.Entity(e))
		}
	}); err != nil {
		return err
	}
	want := m.alive(v)
	last, _ := v.LastTick()
	fmt.Printf("tick frame=%d last=%d resync=%v minev=%d a=%v b=%v\n", v.Frame(), last, m.resynced, minEv,
		mapsEqual(m.a, want), mapsEqual(m.b, want))
	m.resynced = false
	return nil
}

func mapsEqual(x, y map[world.Entity]bool) bool {
	if len(x) != len(y) {
		return false
	}
	for k := range x {
		if !y[k] {
			return false
		}
	}
	return true
}

// resyncTick is one printed tick of the resync module.
type resyncTick struct {
	frame, last, minEv uint64
	resync, a, b       bool
}

// resyncChild runs the resync test's child processes.
func resyncChild() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	inst := os.Getenv("FDP_INSTANCE")
	switch os.Getenv("FDP_TEST_CHILD") {
	case "resync-engine":
		eng, _, err := startResyncEngine(inst, log)
		if err != nil {
			fmt.Fprintln(os.Stderr, "engine:", err)
			os.Exit(1)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		_ = eng.Run(ctx, nil)
		stop()
		eng.Close()
		os.Exit(0)
	case "resync-module":
		s := newSchema()
		err := module.Run(context.Background(), &resyncModule{s: s, a: map[world.Entity]bool{}}, module.Options{Instance: inst, Registry: s.reg, Logger: log})
		if err != nil && !errors.Is(err, module.ErrEngineGone) {
			fmt.Fprintln(os.Stderr, "module:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// TestObserversResyncAfterEngineKill: an engine SIGKILLed while a module
// keeps a model of the alive entities from its observers; the new engine
// recovers the world and the module's first tick with it gets none of the
// changes between its last committed tick and its admission (the lowest
// frame of its events is past them, and the model kept from events alone
// no longer equals the view), while OnResync, run on that tick, rebuilds the
// model from the view: it equals the view in every tick, before and after.
func TestObserversResyncAfterEngineKill(t *testing.T) {
	resyncChild()
	inst := uniqueInstance(t, "rs")
	eng := exec.Command(os.Args[0], "-test.run=^TestObserversResyncAfterEngineKill$")
	eng.Env = append(os.Environ(), "FDP_TEST_CHILD=resync-engine", "FDP_INSTANCE="+inst)
	eng.Stderr = os.Stderr
	require.NoError(t, eng.Start())
	t.Cleanup(func() { _ = eng.Process.Kill(); _ = eng.Wait() })

	mod := exec.Command(os.Args[0], "-test.run=^TestObserversResyncAfterEngineKill$")
	mod.Env = append(os.Environ(), "FDP_TEST_CHILD=resync-module", "FDP_INSTANCE="+inst)
	mod.Stderr = os.Stderr
	stdout, err := mod.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, mod.Start())
	t.Cleanup(func() { _ = mod.Process.Kill(); _ = mod.Wait() })
	ticks := make(chan resyncTick, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r resyncTick
			if _, err := fmt.Sscanf(sc.Text(), "tick frame=%d last=%d resync=%t minev=%d a=%t b=%t",
				&r.frame, &r.last, &r.resync, &r.minEv, &r.a, &r.b); err == nil {
				ticks <- r
			}
		}
		close(ticks)
	}()
	next := func() resyncTick {
		select {
		case r, ok := <-ticks:
			require.True(t, ok, "the module exited")
			return r
		case <-time.After(30 * time.Second):
			t.Fatal("no tick of the module in 30 s")
		}
		return resyncTick{}
	}

	// Before the kill: both models equal the view in every tick; the
	// process's first tick resyncs, no other.
	var before []resyncTick
	for len(before) < 4 {
		r := next()
		require.True(t, r.a && r.b, "before the kill: %+v", r)
		require.Equal(t, len(before) == 0, r.resync, "%+v", r)
		before = append(before, r)
	}
	// Kill the engine a few frames after the module's tick (the next one is
	// 25 frames later): changes the module has not seen.
	last := before[len(before)-1].frame
	waitFor(t, "frames after the module's tick", 30*time.Second, func() bool { return latestFrameOf(inst) >= last+3 })
	require.NoError(t, syscall.Kill(eng.Process.Pid, syscall.SIGKILL))
	_ = eng.Wait()

	e, info, err := startResyncEngine(inst, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer e.Close()
	require.True(t, info.Recovered, "%v", info.Reason)

	var after []resyncTick
	deadline := time.Now().Add(30 * time.Second)
	for len(after) < 4 {
		e.Step()
		select {
		case r, ok := <-ticks:
			require.True(t, ok, "the module exited")
			if r.frame <= info.Frame { // a tick of the dead engine, read late
				require.True(t, r.a && r.b && !r.resync, "before the kill: %+v", r)
				last = max(last, r.frame)
				continue
			}
			after = append(after, r)
		default:
			time.Sleep(time.Millisecond) // frame pacing, not a synchronisation
		}
		require.True(t, time.Now().Before(deadline), "the module did not tick with the new engine")
	}
	require.Greater(t, info.Frame, last, "the dead engine published frames the module did not tick")
	first := after[0]
	require.True(t, first.resync, "the first tick with the new engine resyncs: %+v", first)
	require.Greater(t, first.frame, info.Frame)
	require.True(t, first.minEv == 0 || first.minEv > info.Frame, "the frames after the module's last tick (%d) are never delivered: %+v", last, first)
	staleB := false
	for i, r := range after {
		require.True(t, r.a, "the model with OnResync equals the view: %+v", r)
		require.Equal(t, i == 0, r.resync, "%+v", r)
		staleB = staleB || !r.b
	}
	require.True(t, staleB, "the model kept from events alone misses the lost frames' changes: %+v", after)
	_ = mod.Process.Kill()
	_ = mod.Wait()
	require.NoError(t, e.Close())
	requireNoSegments(t, inst)
}
