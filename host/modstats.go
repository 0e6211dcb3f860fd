package host

// Per-module statistics in the module's segment (layout/modstats.go): the
// engine writes the block at the module's admission, and at the end of every
// frame in which the module's figures changed (a tick dispatched or seen
// done, a failure, a state change, commands played back, events
// acknowledged). A write is one pass of plain stores under the block's
// seqlock; nothing is read back.

import (
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// writeModStats writes m's statistics block into its segment. Called with
// mu held, inside guard (the segment is the module's).
func (e *Engine) writeModStats(m *Module) {
	s := layout.ModStats{
		Frame: e.frame, State: m.State, FailStreak: uint32(min(m.failStreak, 1<<32-1)),
		Runs: m.Stats.Runs, Late: m.Stats.Late, Failures: m.Stats.Failures, Skipped: m.Stats.Skipped,
		Overruns: m.Stats.Overruns, Revoked: m.Stats.Revoked, BreakerTrips: m.Stats.BreakerTrips,
		Applied: m.Stats.Applied, Rejected: m.Stats.Rejected,
		Snapshots: m.Stats.Snapshots, CatchUps: m.Stats.CatchUps,
		EventsDelivered: m.Stats.EventsDelivered, EventsLost: m.Stats.EventsLost,
		LagFrames: m.Stats.LagFrames, LagMax: m.Stats.LagMax, LastTickFrame: m.lastRun,
		Joins: m.Stats.Joins, Deaths: m.Stats.Deaths,
		Ticks: m.tickHist.Count(), TickLast: uint64(max(m.tickLast, 0)), TickMax: uint64(max(m.tickHist.Max(), 0)),
		TickSum: uint64(max(m.tickHist.Sum(), 0)), TickHist: m.tickHist.Buckets(),
	}
	if m.State == StateBroken {
		s.BreakerUntil = uint64(max(m.breakerUntil.UnixNano(), 0))
	}
	if m.play != nil {
		for r := 0; r < int(world.NumRejectReasons) && r < layout.ModStatsReasons; r++ {
			s.RejectedByReason[r] = m.play.Stats.Rejected[r]
		}
	}
	layout.EncodeModStats(m.seg.Data, &s)
	m.statsDirty = false
	m.writtenApplied, m.writtenRejected = m.Stats.Applied, m.Stats.Rejected
	m.writtenEvDelivered, m.writtenEvLost = m.Stats.EventsDelivered, m.Stats.EventsLost
}

// flushModStats writes the statistics block of every module whose figures
// changed since its last write. Called with mu held at the end of a frame.
func (e *Engine) flushModStats() {
	for _, m := range e.mods {
		if m.seg == nil {
			continue
		}
		if !m.statsDirty && m.Stats.Applied == m.writtenApplied && m.Stats.Rejected == m.writtenRejected &&
			m.Stats.EventsDelivered == m.writtenEvDelivered && m.Stats.EventsLost == m.writtenEvLost {
			continue
		}
		e.guard(func() { e.writeModStats(m) })
	}
}
