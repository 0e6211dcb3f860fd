package host

import (
	"os"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// schedRig drives an engine frame by frame with modules admitted in
// process: nothing answers their ticks but the test, which reports a tick
// done by writing the module's done frame (finish).
type schedRig struct {
	t *testing.T
	e *Engine
}

func newSchedRig(t *testing.T) *schedRig {
	s := newRSchema()
	// A fast tick nobody answers is late at once instead of after 4 ms.
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog(), FastDeadline: time.Nanosecond}, newRWorld(t, s), nil)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return &schedRig{t: t, e: e}
}

func (r *schedRig) join(name, tier string, every int, group string) *Module {
	r.t.Helper()
	return r.joinMask(name, tier, every, group, world.Mask{})
}

// joinMask joins a module that reads mask (0: every component).
func (r *schedRig) joinMask(name, tier string, every int, group string, mask world.Mask) *Module {
	r.t.Helper()
	h := ipc.Hello{Name: name, Tier: tier, Every: every, Group: group}
	h.SetReadMask(mask)
	_, err := r.e.admit(h, ipc.PeerCred{PID: os.Getpid()})
	require.NoError(r.t, err)
	for _, m := range r.e.mods {
		if m.Name == name {
			return m
		}
	}
	r.t.Fatalf("no module %s", name)
	return nil
}

// tickFrame is the frame of m's last tick (0: none).
func tickFrame(m *Module) uint64 { return layout.Load64(m.seg.Data, layout.OffMTickFrame) }

// tickSlot is the snapshot slot leased with m's last tick (-1: none).
func tickSlot(m *Module) int {
	s, _ := layout.UnpackTick(layout.Load64(m.seg.Data, layout.OffMTickLease))
	return s
}

// finish reports m's last tick done, as the module would.
func finish(m *Module) { layout.Store64(m.seg.Data, layout.OffMDoneFrame, tickFrame(m)) }

// runTicks runs n frames in which each module of dur reports its tick done
// dur[m] frames after the tick's frame, as a module whose ticks last that
// long would, and returns how many ticks each one began.
func (r *schedRig) runTicks(n int, dur map[*Module]uint64) map[*Module]int {
	began := map[*Module]uint64{}
	runs := map[*Module]int{}
	for f := 0; f < n; f++ {
		r.step()
		for m, d := range dur {
			tf := tickFrame(m)
			if tf != 0 && tf != began[m] {
				began[m] = tf
				runs[m]++
			}
			if tf != 0 && r.e.frame >= tf+d {
				finish(m)
			}
		}
	}
	return runs
}

// step runs one frame and returns the frame number.
func (r *schedRig) step() uint64 { return r.e.Step().Frame }

// stepTo runs frames up to frame f.
func (r *schedRig) stepTo(f uint64) {
	for r.e.frame < f {
		r.step()
	}
}

// TestJoinedSlowModuleDueAtOnce: a slow module that (re)joins gets its first
// tick on the next frame, not at the next multiple of Every; after that it
// runs every Every frames counted from that tick.
func TestJoinedSlowModuleDueAtOnce(t *testing.T) {
	r := newSchedRig(t)
	r.step() // frame 1
	m := r.join("slow", ipc.TierSlow, 6, "")
	r.step() // frame 2: not a multiple of 6, but the module never ran
	require.Equal(t, uint64(2), tickFrame(m), "a joined slow module is due at once")
	require.Equal(t, uint64(1), m.Stats.Runs)
	finish(m)
	for f := uint64(3); f <= 7; f++ {
		r.step()
		require.Equal(t, uint64(2), tickFrame(m), "frame %d: not due (6 frames after frame 2 is 8)", f)
	}
	r.step()
	require.Equal(t, uint64(8), tickFrame(m), "due 6 frames after its last dispatch")
	require.Equal(t, uint64(2), m.Stats.Runs)
}

// TestFastEvery: a fast module with Every 3 ticks on every 3rd frame,
// counted from its join, on the latest frame (no leased slot); a tick that
// is still running when it is due delays the next one to the first frame on
// which the module is idle, and the period counts from there.
func TestFastEvery(t *testing.T) {
	r := newSchedRig(t)
	r.step()
	m := r.join("fast3", ipc.TierFast, 3, "")
	var ticks []uint64
	for i := 0; i < 12; i++ {
		f := r.step()
		if tickFrame(m) == f {
			ticks = append(ticks, f)
			require.Equal(t, -1, tickSlot(m), "a fast tick pins the latest frame")
			finish(m)
		}
	}
	require.Equal(t, []uint64{2, 5, 8, 11}, ticks)
	// Frame 14 is due; the module holds that tick until frame 19 is over.
	r.stepTo(14)
	require.Equal(t, uint64(14), tickFrame(m))
	skipped := m.Stats.Skipped
	r.stepTo(19)
	require.Equal(t, uint64(14), tickFrame(m), "busy: no tick")
	require.Equal(t, skipped+3, m.Stats.Skipped, "due at 17, 18, 19 while busy")
	finish(m)
	require.Equal(t, uint64(20), r.step())
	require.Equal(t, uint64(20), tickFrame(m), "idle and 3 frames past: at once")
	finish(m)
	r.stepTo(23)
	require.Equal(t, uint64(23), tickFrame(m), "the period counts from the delayed tick")
}

// TestSlowBusyDelaysNotDrops: a slow module still busy on its due frame runs
// on the first frame on which it is idle (the old rule, frame % Every == 0,
// dropped the period and waited for the next multiple).
func TestSlowBusyDelaysNotDrops(t *testing.T) {
	r := newSchedRig(t)
	r.step()
	m := r.join("slow", ipc.TierSlow, 4, "")
	r.step() // 2: first tick
	finish(m)
	r.stepTo(6)
	require.Equal(t, uint64(6), tickFrame(m))
	r.stepTo(12) // due at 10; busy through 12
	require.Equal(t, uint64(6), tickFrame(m))
	require.Equal(t, uint64(3), m.Stats.Skipped, "due at 10, 11, 12 while busy")
	r.step() // 13: still busy
	finish(m)
	require.Equal(t, uint64(14), r.step())
	require.Equal(t, uint64(14), tickFrame(m), "runs as soon as it is idle")
	require.Equal(t, uint64(8), m.Stats.LagFrames, "done seen at frame 14, 8 frames after its tick's frame 6")
	finish(m)
	r.stepTo(18)
	require.Equal(t, uint64(18), tickFrame(m), "Every frames after the delayed tick")
	require.Equal(t, uint64(4), m.Stats.Runs)
}

// TestConvoyStraggler: two members of a convoy group share one snapshot per
// dispatch. When one is still busy at the group's dispatch, the other goes
// alone; the busy one gets a catch-up tick with its own snapshot as soon as
// it is idle and is back with the group at the group's next dispatch.
func TestConvoyStraggler(t *testing.T) {
	r := newSchedRig(t)
	r.step()
	a := r.joinMask("a", ipc.TierSlow, 4, "g", world.MaskOf(0))
	b := r.joinMask("b", ipc.TierSlow, 4, "g", world.MaskOf(1))
	union := world.MaskOf(0, 1)
	snaps := r.e.Snapshots
	r.step() // 2: both, one snapshot
	require.Equal(t, uint64(2), tickFrame(a))
	require.Equal(t, uint64(2), tickFrame(b))
	require.Equal(t, tickSlot(a), tickSlot(b))
	require.Equal(t, snaps+1, r.e.Snapshots)
	finish(a)
	finish(b)
	r.stepTo(6)
	require.Equal(t, uint64(6), tickFrame(a))
	require.Equal(t, uint64(6), tickFrame(b))
	require.Equal(t, snaps+2, r.e.Snapshots)
	finish(a) // b holds its tick of frame 6
	r.stepTo(10)
	require.Equal(t, uint64(10), tickFrame(a), "the group goes without its busy member")
	require.Equal(t, union, a.snapMask, "the group's snapshot holds every member's components")
	require.Equal(t, uint64(6), tickFrame(b))
	require.Equal(t, snaps+3, r.e.Snapshots)
	finish(a)
	r.step() // 11: b still busy
	finish(b)
	require.Equal(t, uint64(12), r.step())
	require.Equal(t, uint64(12), tickFrame(b), "catch-up as soon as it is idle")
	require.Equal(t, uint64(10), tickFrame(a), "a is not due")
	require.Equal(t, snaps+4, r.e.Snapshots, "the catch-up has a snapshot of its own")
	require.Equal(t, uint64(1), b.Stats.CatchUps)
	require.Equal(t, uint64(2), b.Stats.Skipped, "frames 10 (due) and 11 (owed a catch-up), busy at both: one per frame, like a solo module")
	require.Equal(t, union, b.snapMask, "a catch-up holds what the group's snapshots hold")
	finish(b)
	r.stepTo(14)
	require.Equal(t, uint64(14), tickFrame(a))
	require.Equal(t, uint64(14), tickFrame(b), "back with its group")
	require.Equal(t, tickSlot(a), tickSlot(b))
	require.Equal(t, snaps+5, r.e.Snapshots)
	require.Equal(t, uint64(4), b.Stats.Snapshots, "2, 6, 12, 14")
	require.Equal(t, uint64(4), a.Stats.Snapshots, "2, 6, 10, 14")
}

// TestJoinerTakesGroupPhase: a module that joins a convoy group whose
// members have ticked runs at once (a catch-up) and then with the group; a
// solo module that joins at the same frame keeps its own phase.
func TestJoinerTakesGroupPhase(t *testing.T) {
	r := newSchedRig(t)
	r.step()
	a := r.join("a", ipc.TierSlow, 4, "g")
	r.step() // 2
	finish(a)
	r.step() // 3
	b := r.join("b", ipc.TierSlow, 4, "g")
	solo := r.join("s", ipc.TierSlow, 4, "solo")
	require.Equal(t, uint64(4), r.step())
	require.Equal(t, uint64(4), tickFrame(b), "due at once")
	require.Equal(t, uint64(4), tickFrame(solo))
	require.NotEqual(t, tickSlot(b), tickSlot(solo), "different groups")
	require.Equal(t, uint64(1), b.Stats.CatchUps)
	finish(b)
	finish(solo)
	r.stepTo(6)
	require.Equal(t, uint64(6), tickFrame(a))
	require.Equal(t, uint64(6), tickFrame(b), "with the group two frames after its catch-up")
	require.Equal(t, tickSlot(a), tickSlot(b))
	require.Equal(t, uint64(4), tickFrame(solo), "the solo module keeps its own period")
	r.stepTo(8)
	require.Equal(t, uint64(8), tickFrame(solo))
}

// TestModStatsWritten: the statistics block of a module's segment follows
// the engine's counters: written at the join, after each tick seen done,
// at a failure that opens the breaker, with the playback's rejects by
// reason.
func TestModStatsWritten(t *testing.T) {
	r := newSchedRig(t)
	r.step()
	m := r.join("m", ipc.TierSlow, 1, "")
	read := func() layout.ModStats {
		s, stable, err := layout.DecodeModStats(m.seg.Data)
		require.NoError(t, err)
		require.True(t, stable)
		return s
	}
	s := read()
	require.Equal(t, StateJoined, s.State)
	require.Equal(t, uint64(1), s.Joins)
	require.Zero(t, s.Runs)

	r.step() // 2: tick
	s = read()
	require.Equal(t, uint64(1), s.Runs)
	require.Equal(t, uint64(1), s.Snapshots)
	require.Equal(t, uint64(2), s.LastTickFrame)
	require.Zero(t, s.Ticks, "not done yet")
	// The tick sends one good and two bad commands.
	prod, err := ipc.NewProducer(m.lm.Ring())
	require.NoError(t, err)
	var rec [8]byte
	world.EncodeCreate(rec[:], 1)
	require.NoError(t, prod.Append(world.CmdCreate, rec[:]))
	require.NoError(t, prod.Append(999, rec[:]))                       // unknown type
	require.NoError(t, prod.Append(world.CmdDestroy, make([]byte, 8))) // entity 0: stale
	prod.Commit()
	finish(m)
	r.step() // 3: done seen, batch played back, next tick
	s = read()
	require.Equal(t, StateRunning, s.State)
	require.Equal(t, uint64(1), s.Ticks)
	require.Equal(t, uint64(1), s.LagFrames)
	require.Equal(t, uint64(1), s.Applied)
	require.Equal(t, uint64(2), s.Rejected)
	require.Equal(t, uint64(1), s.RejectedByReason[world.RejectUnknownType])
	require.Equal(t, uint64(1), s.RejectedByReason[world.RejectStaleEntity])
	require.Equal(t, m.tickHist.Buckets(), s.TickHist)
	require.Equal(t, uint64(m.tickHist.Max()), s.TickMax)
	// The block's power-of-two buckets are the engine's parts folded: its
	// percentile is the coarser bound of the same value.
	require.Equal(t, m.tickHist.Buckets(), s.TickHist)
	require.GreaterOrEqual(t, layout.TickPercentile(&s.TickHist, s.TickMax, 99), uint64(m.tickHist.Percentile(99)))

	// MaxFailures (5) failed ticks in a row open the breaker.
	for i := 0; i < r.e.cfg.MaxFailures; i++ {
		layout.Store64(m.seg.Data, layout.OffMDoneFrame, tickFrame(m)|layout.DoneFailed)
		r.step()
	}
	s = read()
	require.Equal(t, StateBroken, s.State)
	require.Equal(t, uint64(5), s.Failures)
	require.Equal(t, uint64(1), s.BreakerTrips)
	require.Equal(t, uint32(5), s.FailStreak)
	require.Equal(t, uint64(m.breakerUntil.UnixNano()), s.BreakerUntil)
	require.Equal(t, uint64(6), s.Ticks)
	require.Equal(t, m.Stats.Runs, s.Runs)

	// A failed probe tick opens the breaker again: a second trip.
	m.breakerUntil = time.Now().Add(-time.Millisecond)
	runs := m.Stats.Runs
	r.step() // the probe tick
	require.Equal(t, runs+1, m.Stats.Runs, "the probe tick was dispatched")
	layout.Store64(m.seg.Data, layout.OffMDoneFrame, tickFrame(m)|layout.DoneFailed)
	r.step()
	s = read()
	require.Equal(t, StateBroken, s.State)
	require.Equal(t, uint64(2), s.BreakerTrips)
	require.Equal(t, uint64(6), s.Failures)

	// A death is a state change.
	r.e.reclaim(m)
	r.step()
	s = read()
	require.Equal(t, StateDead, s.State)
	require.Equal(t, uint64(1), s.Deaths)
}

// TestCleanLeaveIsNoDeath: a module whose connection ends after it stored
// its leaving word (a stop it was asked for) is shown as left, in the
// statistics block and ModuleInfo, with no death counted; one that ends
// without it (a crash) is dead with one death; a rejoin clears the mark.
func TestCleanLeaveIsNoDeath(t *testing.T) {
	r := newSchedRig(t)
	r.step()
	m := r.join("m", ipc.TierSlow, 1, "")
	r.step()
	info := func() ModuleInfo {
		for _, mi := range r.e.Modules() {
			if mi.Name == "m" {
				return mi
			}
		}
		t.Fatal("no module m")
		return ModuleInfo{}
	}
	layout.Store64(m.seg.Data, layout.OffMLeaving, 1)
	r.e.reclaim(m)
	r.step()
	s, _, err := layout.DecodeModStats(m.seg.Data)
	require.NoError(t, err)
	require.Equal(t, StateLeft, s.State)
	require.Zero(t, s.Deaths)
	require.Equal(t, StateLeft, info().State)
	require.Zero(t, info().Stats.Deaths)

	m = r.join("m", ipc.TierSlow, 1, "") // a new segment: leaving is 0
	require.Equal(t, StateJoined, info().State)
	r.step()
	r.e.reclaim(m)
	r.step()
	require.Equal(t, StateDead, info().State)
	require.Equal(t, uint64(1), info().Stats.Deaths)
}

// TestRejectNamesMatchWorld: the reason names of the statistics block
// (layout) are world's reject reasons, index for index.
func TestRejectNamesMatchWorld(t *testing.T) {
	require.LessOrEqual(t, int(world.NumRejectReasons), layout.ModStatsReasons)
	require.Len(t, layout.ModStatsRejectNames, int(world.NumRejectReasons))
	for r := world.RejectReason(0); r < world.NumRejectReasons; r++ {
		require.Equal(t, r.String(), layout.RejectReasonName(int(r)))
	}
}

// TestScarceSlotsTakenInTurn: with one slot for snapshots (the latest, the
// fsync.PublishSlots a snapshot leaves to the publish, one to lease), two
// solo slow modules whose ticks outlast their period both keep ticking: the
// groups take snapshots in turn. Before, the module first in slot order took the
// slot each time it came free and the other waited as long as it ran.
func TestScarceSlotsTakenInTurn(t *testing.T) {
	s := newRSchema()
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog(), Slots: 2 + fsync.PublishSlots}, newRWorld(t, s), nil)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	r := &schedRig{t: t, e: e}
	r.step()
	a := r.join("a", ipc.TierSlow, 2, "solo")
	b := r.join("b", ipc.TierSlow, 2, "solo")
	// Each tick lasts 3 frames; then the module is done, and due again.
	runs := r.runTicks(240, map[*Module]uint64{a: 3, b: 3})
	require.Greater(t, runs[a], 20, "a's ticks")
	require.Greater(t, runs[b], 20, "b's ticks")
	require.InDelta(t, runs[a], runs[b], 2, "a %d ticks, b %d: in turn", runs[a], runs[b])
}

// TestAdmitMaskBeyondSchema: a read mask naming a component beyond the
// schema in any word (here word 2 of a small world) is an invalid hello,
// counted in BadMasks; a module that declares nothing reads every component.
func TestAdmitMaskBeyondSchema(t *testing.T) {
	r := newSchedRig(t)
	h := ipc.Hello{Name: "wide", Tier: ipc.TierFast, Every: 1}
	h.SetReadMask(world.MaskOf(0, 140))
	_, err := r.e.admit(h, ipc.PeerCred{PID: os.Getpid()})
	require.ErrorIs(t, err, ipc.ErrBadHello)
	require.ErrorContains(t, err, "names component 140, beyond the schema's")
	require.Equal(t, uint64(1), r.e.BadMasks)
	m := r.join("all", ipc.TierFast, 1, "")
	require.Equal(t, r.e.w.Registry().Mask(), m.Mask)
}
