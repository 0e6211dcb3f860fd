package host

import (
	"fmt"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
)

// MaxSlowTickLimit bounds a slow tick's runtime (Config.MaxSlowTick and a
// module's requested Spec.MaxRuntime alike).
const MaxSlowTickLimit = time.Minute

// minSlowTick is the least default runtime of a slow tick.
const minSlowTick = time.Second

// slowTickLimit returns how long a slow tick of m (its lease included) may
// run: the module's own MaxRuntime from its hello, else
// Config.MaxSlowTick, else 10 periods of the module (at least 1 s); never
// more than MaxSlowTickLimit.
func (e *Engine) slowTickLimit(h ipc.Hello) time.Duration {
	d := time.Duration(h.MaxRuntime)
	if d <= 0 {
		d = e.cfg.MaxSlowTick
	}
	if d <= 0 {
		d = max(10*time.Duration(max(h.Every, 1))*e.period, minSlowTick)
	}
	return min(d, MaxSlowTickLimit)
}

// pinLimit is how long a fast tick's pin is honoured when a publish or a
// snapshot needs its slot: the fast deadline plus a margin, i.e.
// max(FastDeadline×4, 3 frame periods).
func (e *Engine) pinLimit() time.Duration {
	return max(4*e.cfg.FastDeadline, 3*e.period)
}

// revokeOverruns ends the lease of every slow tick that has run longer
// than its limit: the slot goes back to the pool (the module's Release then
// finds the frame rewritten and its tick fails with "tick exceeded its
// runtime"), the overrun is counted (ModuleStats.Overruns) as a failure
// toward the module's breaker, and logged at most once per second. The
// module stays busy (it gets no new tick) until it reports its tick done.
// Called with mu held.
func (e *Engine) revokeOverruns(now time.Time) {
	for _, m := range e.mods {
		if m.Tier != ipc.TierSlow || !m.busy || m.overran || m.State == StateDead {
			continue
		}
		if now.Sub(m.tickStart) <= m.maxRuntime {
			continue
		}
		m.overran = true
		m.Stats.Overruns++
		e.Overruns++
		if m.holdSlot >= 0 {
			_ = e.pub.ReleaseHolder(m.holdSlot, m.Slot)
			m.holdSlot = -1
			m.Stats.Revoked++
			e.Revoked++
		}
		e.countFailure(m, now)
		if now.Sub(e.overrunWarned) >= time.Second {
			e.log.Warn("slow tick exceeded its runtime: snapshot revoked", "module", m.Name, "slot", m.Slot,
				"pid", m.PID, "runtime_ms", m.maxRuntime.Milliseconds(), "overruns", m.Stats.Overruns,
				"suppressed", e.overrunHeld)
			e.overrunWarned, e.overrunHeld = now, 0
		} else {
			e.overrunHeld++
		}
	}
}

// countFailure counts a failed tick of m toward its circuit breaker.
func (e *Engine) countFailure(m *Module, now time.Time) {
	m.statsDirty = true
	m.Stats.Failures++
	m.failStreak++
	if m.failStreak >= e.cfg.MaxFailures || m.probing {
		// A failed probe tick opens the breaker again: a trip like the
		// first (at most one per BreakerReset).
		if m.State != StateBroken || m.probing {
			m.Stats.BreakerTrips++
			e.log.Warn("circuit breaker open", "module", m.Name, "failures", m.failStreak, "probe", m.probing)
		}
		m.State = StateBroken
		m.breakerUntil = now.Add(e.cfg.BreakerReset)
	}
	m.probing = false
}

// dropOverduePins stops honouring the pins of fast ticks that have lasted
// longer than pinLimit (or of modules not in a tick): a publish or snapshot
// found no free slot. Each drop is counted (ModuleStats.PinsDropped).
// Called with mu held.
func (e *Engine) dropOverduePins(now time.Time) int {
	n := 0
	limit := e.pinLimit()
	for _, m := range e.mods {
		if !e.pub.WatchedPins().Has(m.Slot) {
			continue
		}
		if m.State == StateDead || !m.busy || now.Sub(m.tickStart) > limit {
			e.pub.UnwatchPin(m.Slot)
			if m.State != StateDead && m.busy {
				m.Stats.PinsDropped++
				e.PinsDropped++
			}
			n++
		}
	}
	return n
}

// snapshotRefused counts and logs (at most once per second) a snapshot
// refused for a due convoy group. The count is also stored in the world
// segment (layout.OffWStatSnapRefused), where engine stat and engine dump
// show it. This is the one place a refusal is counted: once per group and
// dispatch, however many times the dispatch tried (Publisher.SnapshotsNoSlot
// counts the tries).
func (e *Engine) snapshotRefused(group string, members int, err error, now time.Time) {
	e.SnapshotsRefused++
	// A statistic for inspection: nothing pairs with it.
	layout.Store64(e.segs.World.Data, layout.OffWStatSnapRefused, e.SnapshotsRefused)
	if now.Sub(e.snapRefusedWarned) >= time.Second {
		e.log.Warn("snapshot refused for a due group", "group", group, "modules", members, "err", err,
			"leased_slots", e.pub.LeasedSlots(), "refused_total", e.SnapshotsRefused, "suppressed", e.snapRefusedHeld)
		e.snapRefusedWarned, e.snapRefusedHeld = now, 0
	} else {
		e.snapRefusedHeld++
	}
}

// reuseDeadSlot finds the slot of the module that died first among the dead
// ones (its connection closed or its process gone) and gives it to a new
// name: the table is full. It returns nil when every slot is held by a live
// module. Called with mu held.
func (e *Engine) reuseDeadSlot() *Module {
	var oldest *Module
	for _, x := range e.mods {
		if x.State != StateDead && e.incarnationGone(x) {
			e.reclaim(x)
		}
		if x.State == StateDead && (oldest == nil || x.diedAt.Before(oldest.diedAt)) {
			oldest = x
		}
	}
	if oldest == nil {
		return nil
	}
	e.dropSegment(oldest)
	e.SlotsReused++
	e.log.Info("module slot reused for a new name", "slot", oldest.Slot, "old", oldest.Name)
	m := &Module{Slot: oldest.Slot, holdSlot: -1}
	e.mods[oldest.Slot] = m
	return m
}

// errTooManyModules is the refusal at the real cap: n modules (the
// configured limit) hold every slot. It wraps ipc.ErrModulesFull, whose
// wire code ("modules_full") the module reads as a permanent refusal.
func errTooManyModules(n int) error {
	return fmt.Errorf("too many modules (%d): %w; the limit is host.Config.MaxModules (engine --max-modules), at most %d",
		n, ipc.ErrModulesFull, layout.MaxModules)
}

// maxNameOwners bounds the name ownership table (Engine.nameOwners).
const maxNameOwners = 1 << 16

// BoundStats are the engine's counters of the bounds it enforces on
// modules (see Engine's fields of the same names), copied under its lock.
type BoundStats struct {
	Overruns, Revoked, PinsDropped, SnapshotsRefused, SlotsReused, ModulesRefused uint64
}

// Bounds returns a copy of the bound counters; safe while Run runs.
func (e *Engine) Bounds() BoundStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return BoundStats{Overruns: e.Overruns, Revoked: e.Revoked, PinsDropped: e.PinsDropped,
		SnapshotsRefused: e.SnapshotsRefused, SlotsReused: e.SlotsReused, ModulesRefused: e.ModulesRefused}
}
