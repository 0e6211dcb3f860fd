package host

// Per-module statistics in the module's segment (layout/modstats.go): the
// engine writes the block at the module's admission, and at the end of every
// frame in which any of the module's figures changed. A write is one pass of
// plain stores under the block's seqlock.
//
// What changed is decided by comparing, not by flags set where the counters
// move: the block's figures are computed (modStats) and compared with what
// the segment holds. A flag per counter site is what let skipped (counted in
// the dispatch while a module is busy or its group is refused a snapshot)
// go stale in the block while it grew in the engine's own summary. The
// comparison reads the module's own segment: a module that overwrites its
// block only makes the engine write it again, the engine never acts on what
// it reads there.

import (
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// modStats returns the content of m's statistics block as of now (Frame:
// the current frame). Called with mu held.
func (e *Engine) modStats(m *Module) layout.ModStats {
	s := layout.ModStats{
		Frame: e.frame, State: m.shownState(), FailStreak: uint32(min(m.failStreak, 1<<32-1)),
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
	return s
}

// writeModStats writes m's statistics block into its segment. Called with
// mu held, inside guard (the segment is the module's).
func (e *Engine) writeModStats(m *Module) {
	s := e.modStats(m)
	e.encodeModStats(m, &s)
}

func (e *Engine) encodeModStats(m *Module, s *layout.ModStats) {
	layout.EncodeModStats(m.seg.Data, s)
	m.statsDirty = false
	m.statsWritten = *s
}

// modStatsCurrent reports whether the block last written for m holds s, the
// frame of the write aside (a block differing only in it is current: the
// frame is when it was written, not a figure). It compares with the
// engine's own copy, not with the segment: the module can write its
// segment, and what it writes there must not cost the engine a read of
// shared memory per frame.
func modStatsCurrent(m *Module, s *layout.ModStats) bool {
	held := m.statsWritten
	held.Frame = s.Frame
	return held == *s
}

// flushModStats writes the statistics block of every module whose figures
// differ from those its block holds: every figure of the block, whichever
// code path moved it. Called with mu held at the end of a frame.
func (e *Engine) flushModStats() {
	for _, m := range e.mods {
		if m.seg == nil {
			continue
		}
		e.guard(func() {
			s := e.modStats(m)
			if !m.statsDirty && modStatsCurrent(m, &s) {
				return
			}
			e.encodeModStats(m, &s)
		})
	}
}
