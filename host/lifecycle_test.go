package host

import (
	"math/rand"
	"os"
	"testing"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// joinHello admits a module from a hello checked as the control plane
// checks it.
func (r *schedRig) joinHello(h ipc.Hello) (*Module, error) {
	r.t.Helper()
	h.ProtoVersion = ipc.ControlProtoVersion
	if err := ipc.ValidHello(&h); err != nil {
		return nil, err
	}
	if _, err := r.e.admit(h, ipc.PeerCred{PID: os.Getpid()}); err != nil {
		return nil, err
	}
	for _, m := range r.e.mods {
		if m.Name == h.Name {
			return m, nil
		}
	}
	r.t.Fatalf("no module %s", h.Name)
	return nil, nil
}

// wakeSim emits event type wakeType and sets HP of an entity on frames of
// its choosing, and moves positions every frame (a component nobody wakes
// on); it records the frames whose events or HP writes should wake.
type wakeSim struct {
	s     *rSchema
	w     *world.World
	rng   *rand.Rand
	e     world.Entity
	frame uint64
	wakes map[uint64]bool
}

const wakeType = 7

func (s *wakeSim) Step(float32) {
	s.frame++
	_ = world.Set(s.w, s.e, s.s.pos, rPos{X: float32(s.frame)})
	if s.rng.Intn(8) == 0 {
		s.w.Emit(wakeType, []byte{1})
		s.wakes[s.frame] = true
	}
	if s.rng.Intn(8) == 0 {
		s.w.Emit(wakeType+1, []byte{1}) // not woken on
	}
	if s.rng.Intn(8) == 0 {
		_ = world.Set(s.w, s.e, s.s.hp, rHP{V: int32(s.frame)})
		s.wakes[s.frame] = true
	}
}

// TestWakeOnDispatchModel: a slow module with a wake_on (event type 7 and
// component HP) and Every 0 runs exactly in the frames the model says: the
// frame of each wake, or, when it is busy then (its ticks last 0 to 3
// frames), the first frame at which it is idle, once however many wakes
// came meanwhile; and at its join. A second one with Every 5 runs on its
// period and its wakes, a wake not moving its period. Event types and
// components it does not watch never run it.
func TestWakeOnDispatchModel(t *testing.T) {
	r := newSchedRig(t)
	w := r.e.World()
	e, err := w.Create()
	require.NoError(t, err)
	sim := &wakeSim{s: newRSchema(), w: w, rng: rand.New(rand.NewSource(3)), e: e, wakes: map[uint64]bool{}} // the rig's schema
	r.e.SetSimulation(sim)
	wake := &ipc.WakeOnSub{Events: []uint16{wakeType}, Components: []uint64{1 << sim.s.hp}}
	only, err := r.joinHello(ipc.Hello{Name: "only", Tier: ipc.TierSlow, Every: 0, WakeOn: wake})
	require.NoError(t, err)
	five, err := r.joinHello(ipc.Hello{Name: "five", Tier: ipc.TierSlow, Every: 5, WakeOn: wake, Group: "solo"})
	require.NoError(t, err)
	require.Equal(t, "auto:slow/0", only.Group)

	type model struct {
		every           int
		next, busyUntil uint64
		pending         bool
		runs, wantRuns  []uint64
		rng             *rand.Rand
		wantWakes       uint64
		m               *Module
		lastTick        uint64
	}
	mods := []*model{{every: 0, m: only, rng: rand.New(rand.NewSource(1))}, {every: 5, m: five, rng: rand.New(rand.NewSource(2))}}
	for f := uint64(1); f <= 600; f++ {
		r.step()
		for _, md := range mods {
			// The model's dispatch of frame f.
			md.pending = md.pending || sim.wakes[f]
			due := f >= md.next
			if (due || md.pending) && f > md.busyUntil {
				md.wantRuns = append(md.wantRuns, f)
				if md.pending {
					md.wantWakes++
				}
				if due {
					md.next = md.m.nextDue(f)
				}
				md.pending = false
			}
			// What the engine did, and the tick's length.
			if tf := tickFrame(md.m); tf != md.lastTick {
				require.Equal(t, f, tf)
				md.lastTick = tf
				md.runs = append(md.runs, tf)
				d := uint64(md.rng.Intn(4))
				md.busyUntil = f + d
			}
			if md.lastTick != 0 && f >= md.busyUntil {
				finish(md.m)
			}
		}
	}
	for _, md := range mods {
		require.Equal(t, md.wantRuns, md.runs, "%s: run frames", md.m.Name)
		require.Equal(t, md.wantWakes, md.m.Stats.Wakes, "%s: ticks with a pending wake", md.m.Name)
		require.Greater(t, len(md.runs), 40, "%s", md.m.Name)
		t.Logf("%s: %d runs in 600 frames, %d with a wake, %d frames with a wake", md.m.Name, len(md.runs), md.m.Stats.Wakes, len(sim.wakes))
	}
	require.Less(t, len(mods[0].runs), len(sim.wakes), "busy frames merge wakes")
}

// TestLifecycleSubscriptionUnion: the world records the union of the
// modules' subscriptions (waking on a lifecycle type subscribes to it for
// every component), a dead module's included; a rejoin replaces its own;
// components beyond the schema are refused and counted.
func TestLifecycleSubscriptionUnion(t *testing.T) {
	r := newSchedRig(t)
	w := r.e.World()
	require.True(t, w.Lifecycle().Empty())
	all := w.Registry().Mask()
	a, err := r.joinHello(ipc.Hello{Name: "a", Tier: ipc.TierFast, Every: 1, Lifecycle: &ipc.LifecycleSub{Created: true, Added: []uint64{1 << 1}}})
	require.NoError(t, err)
	require.Equal(t, world.Lifecycle{Created: true, Added: world.MaskOf(1)}, w.Lifecycle())
	_, err = r.joinHello(ipc.Hello{Name: "b", Tier: ipc.TierSlow, Every: 0,
		WakeOn: &ipc.WakeOnSub{Events: []uint16{uint16(layout.EventRemoved), 5}}})
	require.NoError(t, err)
	require.Equal(t, world.Lifecycle{Created: true, Added: world.MaskOf(1), Removed: all}, w.Lifecycle())

	r.e.ModuleDied(a.PID) // the test's own pid: both are dead now
	require.Equal(t, StateDead, a.State)
	require.Equal(t, world.Lifecycle{Created: true, Added: world.MaskOf(1), Removed: all}, w.Lifecycle(),
		"a dead module's subscription stays for its next process")
	_, err = r.joinHello(ipc.Hello{Name: "a", Tier: ipc.TierFast, Every: 1, Lifecycle: &ipc.LifecycleSub{Destroyed: true}})
	require.NoError(t, err)
	require.Equal(t, world.Lifecycle{Destroyed: true, Removed: all}, w.Lifecycle())

	for _, c := range []struct {
		h    ipc.Hello
		want string
	}{
		{ipc.Hello{Name: "c", Tier: ipc.TierFast, Every: 1, Lifecycle: &ipc.LifecycleSub{Added: []uint64{1 << 4}}},
			"lifecycle.added names component 4, beyond the schema's 4"},
		{ipc.Hello{Name: "c", Tier: ipc.TierFast, Every: 1, Lifecycle: &ipc.LifecycleSub{Removed: []uint64{1 << 5, 1}}},
			"lifecycle.removed names components 5, 64, beyond the schema's 4"},
		{ipc.Hello{Name: "c", Tier: ipc.TierSlow, Every: 1, WakeOn: &ipc.WakeOnSub{Components: []uint64{1 << 9}}},
			"wake_on.components names component 9, beyond the schema's 4"},
	} {
		bad := r.e.BadMasks
		_, err := r.joinHello(c.h)
		require.ErrorIs(t, err, ipc.ErrBadHello)
		require.ErrorContains(t, err, c.want)
		require.Equal(t, bad+1, r.e.BadMasks)
	}
	require.Equal(t, world.Lifecycle{Destroyed: true, Removed: all}, w.Lifecycle(), "a refused hello changes nothing")
}

// TestWakeAndLifecycleZeroAllocs: frames with lifecycle events recorded
// for a subscribed module and a slow module woken by them allocate nothing
// once warm.
func TestWakeAndLifecycleZeroAllocs(t *testing.T) {
	r := newSchedRig(t)
	w := r.e.World()
	m, err := r.joinHello(ipc.Hello{Name: "rx", Tier: ipc.TierSlow, Every: 0, Lifecycle: &ipc.LifecycleSub{Added: []uint64{7}, Removed: []uint64{7}},
		WakeOn: &ipc.WakeOnSub{Events: []uint16{uint16(layout.EventDestroyed), 9}, Components: []uint64{1 << 1}}})
	require.NoError(t, err)
	var live []world.Entity
	sim := simFunc(func() {
		e, _ := w.Create()
		_ = world.Set(w, e, 0, rPos{X: 1})
		_ = world.Set(w, e, 1, rHP{V: 1})
		live = append(live, e)
		if len(live) > 10 {
			_ = w.Destroy(live[0])
			live = append(live[:0], live[1:]...)
		}
		w.Emit(9, []byte{1, 2})
	})
	r.e.SetSimulation(sim)
	frame := func() {
		r.step()
		finish(m)
	}
	for range 100 {
		frame()
	}
	runs := m.Stats.Runs
	require.Zero(t, testing.AllocsPerRun(200, frame))
	require.Equal(t, runs+201, m.Stats.Runs, "woken every frame")
	require.Equal(t, world.Lifecycle{Destroyed: true, Added: world.MaskOf(0, 1, 2), Removed: world.MaskOf(0, 1, 2)}, w.Lifecycle())
}

type simFunc func()

func (f simFunc) Step(float32) { f() }

// TestWakeInConvoy: a woken member of a convoy group is dispatched alone
// between the group's ticks (one snapshot, the others not ticked) without
// moving the group's phase, and with the group, in its one snapshot, when
// the group is due in the frame of the wake.
func TestWakeInConvoy(t *testing.T) {
	r := newSchedRig(t)
	w := r.e.World()
	emit := false
	r.e.SetSimulation(simFunc(func() {
		if emit {
			w.Emit(wakeType, []byte{1})
		}
	}))
	woke, err := r.joinHello(ipc.Hello{Name: "woke", Tier: ipc.TierSlow, Every: 6, Group: "g", WakeOn: &ipc.WakeOnSub{Events: []uint16{wakeType}}})
	require.NoError(t, err)
	other := r.join("other", ipc.TierSlow, 6, "g")
	r.step() // frame 1: both due at their join, one snapshot
	require.Equal(t, uint64(1), tickFrame(woke))
	require.Equal(t, uint64(1), tickFrame(other))
	require.Equal(t, tickSlot(woke), tickSlot(other))
	finish(woke)
	finish(other)
	snaps := r.e.Snapshots
	r.stepTo(3)
	emit = true
	r.step() // frame 4: woken
	emit = false
	require.Equal(t, uint64(4), tickFrame(woke), "woken in the frame of its event")
	require.Equal(t, uint64(1), tickFrame(other), "the group is not due")
	require.Equal(t, snaps+1, r.e.Snapshots)
	require.Equal(t, uint64(1), woke.Stats.Wakes)
	require.Zero(t, woke.Stats.CatchUps)
	finish(woke)
	r.stepTo(7) // the group's period counts from frame 1, not from the wake
	require.Equal(t, uint64(7), tickFrame(woke))
	require.Equal(t, uint64(7), tickFrame(other))
	require.Equal(t, tickSlot(woke), tickSlot(other), "one snapshot for the group")
	finish(woke)
	finish(other)
	r.stepTo(12)
	emit = true
	r.step() // frame 13: due and woken, with the group
	require.Equal(t, uint64(13), tickFrame(woke))
	require.Equal(t, uint64(13), tickFrame(other))
	require.Equal(t, tickSlot(woke), tickSlot(other))
	require.Equal(t, uint64(2), woke.Stats.Wakes)
	require.Equal(t, uint64(4), woke.Stats.Runs)
}
