package host

// Dispatch: which modules are due, ringing their ticks (and pre-waking fast
// ones), completing ticks from their done words, and waiting for the fast
// tier within its deadline.
//
// Scheduling (docs/ARCHITECTURE.md, "Scheduling"): a module of either tier
// is due for a regular tick when at least Every frames have passed since its
// last regular dispatch (Module.next) and at once after a (re)join; it runs
// on the first frame on which it is due and idle, so a busy tick delays its
// next one instead of dropping a period. The due, idle slow members of a
// convoy group share one snapshot, which holds the union of the masks of
// the group's live members. A member that was busy when its group
// was dispatched keeps the group's phase (next moves with the group) and is
// owed a catch-up tick: it runs as soon as it is idle, with a snapshot of
// its own (shared with the group's other catch-ups of that frame), and goes
// back with its group at the group's next dispatch. A slow module that joins
// a group whose members have a phase takes that phase the same way.

import (
	"errors"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// mayRun reports whether m may get a tick now (breaker logic), without
// side effects.
func (m *Module) mayRun(now time.Time) bool {
	switch m.State {
	case StateDead:
		return false
	case StateBroken:
		return !now.Before(m.breakerUntil)
	}
	return true
}

// available is mayRun for a tick about to be dispatched: a module whose
// breaker is open gets it as its one probe tick.
func (m *Module) available(now time.Time) bool {
	if !m.mayRun(now) {
		return false
	}
	if m.State == StateBroken {
		m.probing = true
	}
	return true
}

// ring gives m its tick (lease slot, -1 for a fast tick). It reports
// false when m's segment faulted (m is dead then).
func (e *Engine) ring(m *Module, slot int) bool {
	return !e.guard(func() { e.ringTick(m, slot) })
}

func (e *Engine) ringTick(m *Module, slot int) {
	dt := time.Duration(e.frame-m.lastRun) * e.period
	if m.lastRun == 0 {
		dt = e.period * time.Duration(m.Every)
	}
	b := m.seg.Data
	// The lease word before the frame word: a module checks for a pending
	// tick by comparing the tick frame with its done frame (e.g. after a
	// wait timed out), so once it sees the new frame it must also see the
	// new lease, not the previous tick's (released) slot.
	// ORDER(tick): seq-cst stores, lease then frame; pair with the module's
	// load of the tick frame, then of the lease (module.session.pendingTick).
	layout.Store64(b, layout.OffMTickLease, layout.PackTick(slot, dt))
	layout.Store64(b, layout.OffMTickFrame, e.frame)
	m.lastRun, m.busy, m.holdSlot = e.frame, true, slot
	m.tickStart, m.overran = time.Now(), false
	m.Stats.Runs++
	m.statsDirty = true
	if slot < 0 {
		// A fast tick pins the latest frame: watch the module's pin word
		// until the tick is done (checkDone). Before the ring, so the pin
		// the module stores after it is scanned by every later claim.
		_ = e.pub.WatchPin(m.Slot, b, layout.OffMPin)
	}
	// ORDER(tick): the stamp before the ring; the ring (ipc.Doorbell: an
	// atomic add of the tick word, then the need-wake check) pairs with the
	// module's wait on the tick word, after which it loads the stamp.
	layout.Store64(b, layout.OffMTickStamp, ipc.MonoNanos())
	_, _ = m.tick.Ring()
}

// prewake wakes every fast module that this frame will tick and that sleeps
// on its tick bell, without ringing it (ipc.Doorbell.Prewake). Waking a
// sleeping process costs tens of microseconds on a VM whose idle vCPU halts;
// done ahead of the tick (see Step and Config.PrewakeEarlyMax), the wake-up
// overlaps the engine's own work, and the module polls its bell (its warm
// spin) until the tick is rung. Slow modules run at most every few frames on
// snapshots: they are not pre-woken; nor are fast modules beyond
// Config.PrewakeMax. The checks mirror dispatch without its side effects.
// Called with mu held.
func (e *Engine) prewake(now time.Time) {
	n := 0
	for _, m := range e.mods {
		if n >= e.cfg.PrewakeMax {
			return
		}
		if m.Tier != ipc.TierFast || !m.due(e.frame) || !m.mayRun(now) || e.leaving(m) {
			continue
		}
		e.guard(func() {
			// ORDER(done): seq-cst load; pairs with the module's store of
			// its done frame (before it rings done).
			if m.busy && layout.Load64(m.seg.Data, layout.OffMDoneFrame)&^layout.DoneFailed < m.lastRun {
				return // still running its previous tick: not asleep on the bell
			}
			n++ // counted whether it slept or not: it will run this frame
			if ok, _ := m.tick.Prewake(); ok {
				m.Stats.Prewoken++
			}
		})
	}
}

// due reports whether m is due for a regular tick in frame f: at least
// Every frames have passed since its last regular dispatch, or it
// (re)joined (next is 0).
func (m *Module) due(f uint64) bool { return f >= m.next }

// joinPhase sets when a (re)joined module is first due: at once. A slow
// module that joins a convoy group whose live members (of the same Every)
// have been dispatched takes their phase: its first tick is a catch-up, at
// once, and its next regular tick is the group's. Called with mu held.
func (e *Engine) joinPhase(m *Module) {
	m.next, m.owed, m.woken = 0, false, false
	if m.Tier != ipc.TierSlow {
		return
	}
	for _, x := range e.mods {
		if x == m || x.State == StateDead || x.Tier != ipc.TierSlow || x.Group != m.Group || x.Every != m.Every || x.next == 0 {
			continue
		}
		m.next, m.owed = max(m.next, x.next), true
	}
}

// leaving reports whether m's process said it is leaving after its current
// tick (layout.OffMLeaving, the module's own word: it can only stop its own
// ticks). A module whose segment faulted is dead, and leaving too.
func (e *Engine) leaving(m *Module) (out bool) {
	if e.guard(func() { out = layout.Load64(m.seg.Data, layout.OffMLeaving) != 0 }) {
		return true
	}
	return out
}

// dispatch rings the due, idle modules: fast ones on the latest frame, slow
// ones with one snapshot per convoy group (see the file comment for the
// rule). Called with mu held.
func (e *Engine) dispatch(now time.Time) int {
	n := 0
	// Finish bookkeeping of modules that completed since the last frame.
	for _, m := range e.mods {
		if m.busy {
			e.checkDone(m)
		}
	}
	// Slow ticks past their runtime lose their snapshot before any new
	// snapshot is taken.
	e.revokeOverruns(now)
	// Wakes of this frame (host/lifecycle.go), before any snapshot seals.
	e.wakeModules()
	for _, m := range e.mods {
		if m.Tier != ipc.TierFast || m.State == StateDead || !m.due(e.frame) || e.leaving(m) {
			continue
		}
		if m.busy {
			m.Stats.Skipped++ // delayed, not dropped: it runs when idle
			continue
		}
		if !m.available(now) {
			continue
		}
		if e.ring(m, -1) {
			m.next = m.nextDue(e.frame)
			n++
		}
	}
	// Slow tier: one snapshot for the due (or owed), idle members of each
	// convoy group.
	//
	// The groups take snapshots in turn (round robin): when a dispatch
	// refused a group (no free slot, or no memory under the limit), the next
	// one starts with the group after the last one served, or, if none was
	// served, with the first one refused. When slots or memory are scarce,
	// the group first in slot order would otherwise take every slot that
	// comes free, and a group behind it wait for as long as the first one
	// keeps ticking. (Starting with the first group refused, as before,
	// was not enough: a group whose snapshot never fits stays first, and
	// the group right behind it took every slot that came free: found from
	// outside with one group of four running 52 ticks and two none.)
	// Module sets here are indexed by position in e.mods (= the module's
	// slot, < layout.MaxModules); holders by slot.
	var handled layout.ModuleSet // modules handled
	start, refused, served := 0, -1, -1
	if e.slowFirst < len(e.mods) {
		start = e.slowFirst
	}
	for k := range e.mods {
		i := (start + k) % len(e.mods)
		m := e.mods[i]
		if m.Tier != ipc.TierSlow || handled.Has(i) {
			continue
		}
		var regular, catchUp layout.ModuleSet // members dispatched
		var mask world.Mask
		var holders layout.ModuleSet
		for j := range e.mods {
			x := e.mods[j]
			if x.Tier != ipc.TierSlow || x.Group != m.Group || handled.Has(j) {
				continue
			}
			handled.Set(j)
			if x.State == StateDead || e.leaving(x) {
				continue
			}
			// Every snapshot of a group holds the union of its live
			// members' masks, whoever of them it is for (a catch-up
			// too): what a member's view holds does not depend on which
			// members were idle.
			mask = mask.Or(x.Mask)
			due := x.due(e.frame)
			if !due && !x.owed && !x.woken {
				continue
			}
			if x.busy {
				// Delayed, not dropped: it runs when idle. Counted at every
				// frame it waits, for a regular tick or a catch-up alike
				// (the same count as a solo module's).
				x.Stats.Skipped++
				continue
			}
			if !x.mayRun(now) {
				continue
			}
			if due {
				regular.Set(j)
			} else {
				catchUp.Set(j)
			}
			holders.Set(x.Slot)
		}
		members := regular.Union(catchUp)
		if members.Empty() {
			continue
		}
		var slot int
		var st fsync.SnapshotStats
		var err error
		// The snapshot's claim scans the pins watched in module segments
		// (see Step's publish).
		for e.guard(func() { slot, st, err = e.pub.Snapshot(e.frame, mask, holders) }) {
		}
		if errors.Is(err, fsync.ErrNoFreeSlot) && e.dropOverduePins(time.Now()) > 0 {
			// Pins of fast ticks past their limit held the slots: retry.
			for e.guard(func() { slot, st, err = e.pub.Snapshot(e.frame, mask, holders) }) {
			}
		}
		if err != nil {
			// Still due (or owed): they are dispatched on a later frame.
			for j := members.Next(0); j >= 0; j = members.Next(j + 1) {
				e.mods[j].Stats.Skipped++
			}
			e.snapshotRefused(m.Group, members.Count(), err, now)
			if refused < 0 {
				refused = i
			}
			continue
		}
		served = i
		e.Snapshots++
		e.SnapBytes += uint64(st.BytesCopied)
		for j := members.Next(0); j >= 0; j = members.Next(j + 1) {
			x := e.mods[j]
			if x.State == StateDead {
				continue // faulted since: its lease was released
			}
			x.available(now) // an open breaker's probe tick is this one
			x.snapMask = mask
			x.Stats.Snapshots++
			if regular.Has(j) {
				x.next = x.nextDue(e.frame)
			} else if x.owed {
				x.Stats.CatchUps++
			}
			if x.woken {
				x.Stats.Wakes++
			}
			x.owed, x.woken = false, false
			if e.ring(x, slot) {
				n++
			}
		}
		if regular.Empty() {
			continue
		}
		// The group was dispatched: its due members that were not keep its
		// phase, and those still busy are owed a catch-up tick.
		for j := i; j < len(e.mods); j++ {
			x := e.mods[j]
			if x.Tier != ipc.TierSlow || x.Group != m.Group || members.Has(j) || x.State == StateDead || !x.due(e.frame) {
				continue
			}
			x.next = x.nextDue(e.frame)
			x.owed = x.owed || x.busy
		}
	}
	switch {
	case refused >= 0 && served >= 0:
		e.slowFirst = (served + 1) % len(e.mods)
	case refused >= 0:
		e.slowFirst = refused
	}
	return n
}

// checkDone completes a module's tick if its done frame has caught up. A
// module whose segment faulted is dead, and its tick done.
func (e *Engine) checkDone(m *Module) (done bool) {
	if e.guard(func() { done = e.checkTick(m) }) {
		return true
	}
	return done
}

func (e *Engine) checkTick(m *Module) bool {
	// ORDER(done): seq-cst load; pairs with the module's store of its done
	// frame, which it makes after its batch's commit (the tail store) and
	// its wake statistics.
	d := layout.Load64(m.seg.Data, layout.OffMDoneFrame)
	if d&^layout.DoneFailed < m.lastRun {
		return false
	}
	if d&^layout.DoneFailed > m.lastRun {
		// No module finishes a tick it was not given: a done frame beyond
		// the tick's is not the module's own (another process of the
		// engine's uid wrote into its segment; a module under another uid
		// cannot). It may have overwritten the module's real done, so
		// waiting for one could wait forever: the word is repaired to the
		// tick's frame (the module's next tick is then pending for it as
		// usual), the forgery counted, and the tick taken as done.
		// ORDER(done): compare-and-swap, so that a done the module stores
		// meanwhile is not overwritten.
		layout.CAS64(m.seg.Data, layout.OffMDoneFrame, d, m.lastRun)
		m.Stats.BadDone++
		d = m.lastRun
	}
	m.busy = false
	e.pub.UnwatchPin(m.Slot) // the tick is over: its pin holds nothing
	now := time.Now()
	m.tickLast = now.Sub(m.tickStart)
	m.tickHist.Record(m.tickLast)
	m.Stats.LagFrames = e.frame - m.lastRun
	m.Stats.LagMax = max(m.Stats.LagMax, m.Stats.LagFrames)
	m.statsDirty = true
	if m.Tier == ipc.TierFast {
		// The module stored its wake latency for this tick before running
		// it (0: it found the tick pending and did not wait). It is the
		// module's word: an implausible value (above MaxWakeReport) is
		// counted and ignored.
		// ORDER(done): seq-cst load after the done frame's; the module
		// stored it before running the tick.
		switch w := layout.Load64(m.seg.Data, layout.OffMWakeNanos); {
		case w == 0:
		case w > uint64(MaxWakeReport):
			e.BadWakeReports++
		default:
			e.WakeHist.Record(time.Duration(w))
		}
	}
	switch {
	case m.overran:
		// Counted as a failure when the engine revoked its lease.
		m.overran = false
	case d&layout.DoneFailed != 0:
		e.countFailure(m, now)
	default:
		m.failStreak = 0
		if m.State == StateBroken {
			e.log.Info("circuit breaker closed", "module", m.Name)
		}
		m.State = StateRunning
	}
	m.probing = false
	if m.holdSlot >= 0 {
		// The tick is done: the engine ends the module's lease (a module's
		// release writes nothing).
		_ = e.pub.ReleaseHolder(m.holdSlot, m.Slot)
		m.holdSlot = -1
	}
	return true
}

// MaxWakeReport bounds the tick wake latency a module may report (its own
// word in its segment); a larger one is counted in BadWakeReports and
// ignored.
const MaxWakeReport = time.Second

// reclaimSlots runs when a publish found no free slot: it drops slot state
// that no live reader holds. Lease holders in the engine's memory are kept
// only for modules in a tick on that slot; a fast module's pin is unwatched
// when its tick has lasted more than the pin limit (dropOverduePins; it may
// read torn frames then, which its Release detects); external reader entries of dead
// processes, and pins in entries nobody owns, are cleared. Called with mu
// held.
func (e *Engine) reclaimSlots(cause error) int {
	n := e.pub.RetainHolders(func(s int) layout.ModuleSet {
		var live layout.ModuleSet
		for _, m := range e.mods {
			if m.State != StateDead && m.busy && m.holdSlot == s {
				live.Set(m.Slot)
			}
		}
		return live
	})
	n += e.dropOverduePins(time.Now())
	n += fsync.ReclaimDeadReaders(e.segs.Leases.Data, e.pub.LeasesLayout())
	e.ReclaimedReaders += uint64(n)
	// Visible, at most once per second: what held the slots.
	if now := time.Now(); now.Sub(e.noSlotWarned) >= time.Second {
		e.log.Warn("publish found no free frame slot", "err", cause, "frame", e.frame, "skipped_total", e.pub.Skipped,
			"suppressed", e.noSlotHeld, "reclaimed", n, "leased_slots", e.pub.LeasedSlots(),
			"watched_pins", e.pub.WatchedPins().Count())
		e.noSlotWarned, e.noSlotHeld = now, 0
	} else {
		e.noSlotHeld++
	}
	return n
}

// StuckTick was how long a fast module's tick kept its pin honoured while no
// slot was free. Pins are now honoured for at most the engine's pin limit
// (max(4×FastDeadline, 3 frame periods), see Engine.dropOverduePins); the
// constant is kept for callers and bounds nothing.
const StuckTick = time.Second

// waitFast waits for the fast modules dispatched this frame until the
// deadline. It returns how many were late.
func (e *Engine) waitFast(deadline time.Time) int {
	late := 0
	for _, m := range e.mods {
		if m.Tier != ipc.TierFast || !m.busy || m.lastRun != e.frame {
			continue
		}
		e.guard(func() {
			for !e.checkTick(m) {
				last := m.done.Load()
				if e.checkTick(m) || e.closing[m.Slot].Load() == int64(m.PID) {
					return // done, or dead: its death is handled after the wait
				}
				left := time.Until(deadline)
				if left <= 0 {
					m.Stats.Late++
					m.statsDirty = true
					late++
					return
				}
				if _, err := m.done.Wait(last, 64, left); err != nil && !errors.Is(err, ipc.ErrTimeout) {
					return
				}
			}
		})
	}
	return late
}
