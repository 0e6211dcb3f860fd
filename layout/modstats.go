package layout

import (
	"errors"
	"fmt"
	"math/bits"
)

// Statistics block of a module segment (OffMStats .. ModuleStatsEnd): the
// engine's per-module counters, written by the engine after every tick it
// saw done and at every state change, so that `engine dump` and
// `engine stat` (or any reader in any language) show them without asking
// the engine. The module can overwrite its own block: the figures are for
// display, the engine never reads them back.
//
// Counters are cumulative for the module's name since the engine first
// admitted it, across the module's restarts (each restart gets a new
// segment; the engine writes the whole block into it at the join).
//
// Offsets are from OffMStats (absolute offset = 2688 + offset). All words
// are little-endian u64 unless marked u32.
//
//	off  size  field
//	  0    4   version (ModStatsVersion); 0: the engine never wrote the block
//	  4    4   length: bytes of the block this version defines (ModStatsLen)
//	  8    8   seq (atomic): odd while the engine writes the block
//	 16    8   engine frame of the last write
//	 24    4   state (ModuleState): 1 joined, 2 running, 3 breaker-open, 4 dead
//	 28    4   consecutive failures (the breaker's streak)
//	 32    8   runs: ticks dispatched
//	 40    8   late: fast ticks not done by the frame's deadline
//	 48    8   failures: failed ticks (error, panic, fault, overrun)
//	 56    8   skipped: frames the module was due or owed a catch-up but still busy (or refused a snapshot)
//	 64    8   overruns: slow ticks past their runtime
//	 72    8   revoked: snapshot leases the engine ended for overruns
//	 80    8   breaker trips: times the circuit breaker opened (a failed probe reopens it)
//	 88    8   breaker open until: Unix ns of the next probe tick (0: closed)
//	 96    8   commands applied
//	104    8   commands rejected (all reasons)
//	112    8   snapshots received (slow tier: leased snapshots, shared or not)
//	120    8   catch-up snapshots: convoy ticks dispatched apart from the group
//	128    8   events delivered (the module's acknowledgements)
//	136    8   events lost to event log overruns
//	144    8   lag frames: frames from the last done tick's frame to the frame the engine saw it done
//	152    8   largest lag frames
//	160    8   frame of the last tick dispatched
//	168    8   joins
//	176    8   deaths
//	184    8   tick durations recorded (ticks seen done)
//	192    8   last tick duration, ns
//	200    8   longest tick duration, ns
//	208    8   sum of the tick durations, ns
//	216   40   reserved, 0
//	256  256   commands rejected by reason: 32 u64, index = reason code (ModStatsRejectNames)
//	512  320   tick duration histogram: 40 u64, bucket i counts durations d (ns, d >= 1) with
//	           bits.Len64(d) = i, i.e. 2^(i-1) <= d < 2^i (the last bucket also holds longer ones)
//	832        end (ModStatsLen)
//
// Tick durations are measured by the engine from its ring of the tick to the
// moment it sees the tick done: for the fast tier as it waits for the done
// bell, for the slow tier at the start of the next frame's dispatch (to a
// frame period). Percentiles are read from the histogram (TickPercentile).
const (
	ModStatsVersion = 1
	ModStatsLen     = 832

	// ModStatsReasons is the number of reject reason counters.
	ModStatsReasons = 32
	// TickBuckets is the number of tick duration histogram buckets.
	TickBuckets = 40

	OffMSVersion      = OffMStats + 0   // u32
	OffMSLength       = OffMStats + 4   // u32
	OffMSSeq          = OffMStats + 8   // u64 seqlock word
	OffMSFrame        = OffMStats + 16  // u64
	OffMSState        = OffMStats + 24  // u32 ModuleState
	OffMSStreak       = OffMStats + 28  // u32
	OffMSRuns         = OffMStats + 32  // u64
	OffMSLate         = OffMStats + 40  // u64
	OffMSFailures     = OffMStats + 48  // u64
	OffMSSkipped      = OffMStats + 56  // u64
	OffMSOverruns     = OffMStats + 64  // u64
	OffMSRevoked      = OffMStats + 72  // u64
	OffMSTrips        = OffMStats + 80  // u64
	OffMSBreakerUntil = OffMStats + 88  // u64 Unix ns
	OffMSApplied      = OffMStats + 96  // u64
	OffMSRejected     = OffMStats + 104 // u64
	OffMSSnapshots    = OffMStats + 112 // u64
	OffMSCatchUps     = OffMStats + 120 // u64
	OffMSEvDelivered  = OffMStats + 128 // u64
	OffMSEvLost       = OffMStats + 136 // u64
	OffMSLag          = OffMStats + 144 // u64
	OffMSLagMax       = OffMStats + 152 // u64
	OffMSLastTick     = OffMStats + 160 // u64
	OffMSJoins        = OffMStats + 168 // u64
	OffMSDeaths       = OffMStats + 176 // u64
	OffMSTicks        = OffMStats + 184 // u64
	OffMSTickLast     = OffMStats + 192 // u64 ns
	OffMSTickMax      = OffMStats + 200 // u64 ns
	OffMSTickSum      = OffMStats + 208 // u64 ns
	OffMSRejectBy     = OffMStats + 256 // [ModStatsReasons]u64
	OffMSTickHist     = OffMStats + 512 // [TickBuckets]u64
)

// ModuleState is a module's state as the engine sees it: the statistics
// block's state word, and the engine's own type for it (host.State).
type ModuleState uint32

// Module states.
const (
	// ModuleNone: the block was never written.
	ModuleNone ModuleState = iota
	// ModuleJoined: admitted, no tick completed yet.
	ModuleJoined
	// ModuleRunning: its last tick succeeded.
	ModuleRunning
	// ModuleBreakerOpen: its circuit breaker is open (no ticks until the
	// probe at the breaker-open-until time).
	ModuleBreakerOpen
	// ModuleDead: its process or connection ended, or its segment faulted.
	ModuleDead
	// ModuleLeft: its process ended after saying it was leaving (the
	// module's OffMLeaving word: a stop it was asked for, SIGTERM or its
	// last tick): a clean stop, not a death. Its slot is kept for a
	// restart as a dead module's.
	ModuleLeft
	numModuleStates
)

var moduleStateNames = [numModuleStates]string{"none", "joined", "running", "breaker-open", "dead", "left"}

func (s ModuleState) String() string {
	if s < numModuleStates {
		return moduleStateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint32(s))
}

// ModStatsRejectNames names the reject reason counters of the block by
// index (the reason code: world.RejectReason, whose String must match).
// Indices beyond the table are counters of reasons this build does not
// know.
var ModStatsRejectNames = []string{
	"unknown_type", "bad_length", "unknown_component", "wrong_size", "stale_entity",
	"unknown_temp", "duplicate_temp", "exists", "absent", "world_full", "reserved_bits",
	"reserved_event_type", "corrupt_ring", "event_quota", "entity_quota", "bad_event_ack",
	"engine_owned", "too_large", "bad_utf8", "arena_full",
}

// RejectReasonName returns the name of reject reason code i.
func RejectReasonName(i int) string {
	if i >= 0 && i < len(ModStatsRejectNames) {
		return ModStatsRejectNames[i]
	}
	return fmt.Sprintf("reason(%d)", i)
}

// ModStats is the content of a module segment's statistics block.
type ModStats struct {
	Frame        uint64
	State        ModuleState
	FailStreak   uint32
	Runs, Late   uint64
	Failures     uint64
	Skipped      uint64
	Overruns     uint64
	Revoked      uint64
	BreakerTrips uint64
	// BreakerUntil is the Unix ns of the breaker's next probe, 0 closed.
	BreakerUntil     uint64
	Applied          uint64
	Rejected         uint64
	Snapshots        uint64
	CatchUps         uint64
	EventsDelivered  uint64
	EventsLost       uint64
	LagFrames        uint64
	LagMax           uint64
	LastTickFrame    uint64
	Joins, Deaths    uint64
	Ticks            uint64
	TickLast         uint64 // ns
	TickMax          uint64 // ns
	TickSum          uint64 // ns
	RejectedByReason [ModStatsReasons]uint64
	TickHist         [TickBuckets]uint64
}

// TickBucket returns the histogram bucket of a duration of ns nanoseconds
// (bits.Len64 of it, at least 1, the last bucket for anything longer).
func TickBucket(ns uint64) int {
	b := bits.Len64(max(ns, 1))
	return min(b, TickBuckets-1)
}

// TickPercentile returns an upper bound (within 2x) of the p-th percentile
// (0 < p <= 100) of the durations counted in hist, capped at maxNs: the
// upper end 2^i ns of the first bucket i at which the running count reaches
// p% of the total (rounded to nearest, at least 1). 0 for an empty
// histogram.
func TickPercentile(hist *[TickBuckets]uint64, maxNs uint64, p float64) uint64 {
	var n uint64
	for _, c := range hist {
		n += c
	}
	if n == 0 {
		return 0
	}
	want := uint64(float64(n)*p/100 + 0.5)
	want = max(want, 1)
	var acc uint64
	for b, c := range hist {
		acc += c
		if acc >= want {
			return min(uint64(1)<<uint(b), maxNs)
		}
	}
	return maxNs
}

// EncodeModStats writes s into the statistics block of module segment b
// (at least HeaderSize bytes), with the version and length words, under
// the block's seqlock. Only the engine writes the block.
func EncodeModStats(b []byte, s *ModStats) {
	q := Load64(b, OffMSSeq) | 1
	// ORDER(mstats): seq-cst store of the odd seq before the fields; pairs
	// with the reader's second load of seq (DecodeModStats).
	Store64(b, OffMSSeq, q)
	blk := b[OffMStats : OffMStats+ModStatsLen]
	le.PutUint32(blk[OffMSVersion-OffMStats:], ModStatsVersion)
	le.PutUint32(blk[OffMSLength-OffMStats:], ModStatsLen)
	le.PutUint64(blk[OffMSFrame-OffMStats:], s.Frame)
	le.PutUint32(blk[OffMSState-OffMStats:], uint32(s.State))
	le.PutUint32(blk[OffMSStreak-OffMStats:], s.FailStreak)
	w := blk[OffMSRuns-OffMStats : OffMSTickSum-OffMStats+8]
	for i, v := range [...]uint64{
		s.Runs, s.Late, s.Failures, s.Skipped, s.Overruns, s.Revoked, s.BreakerTrips, s.BreakerUntil,
		s.Applied, s.Rejected, s.Snapshots, s.CatchUps, s.EventsDelivered, s.EventsLost, s.LagFrames, s.LagMax,
		s.LastTickFrame, s.Joins, s.Deaths, s.Ticks, s.TickLast, s.TickMax, s.TickSum,
	} {
		le.PutUint64(w[8*i:], v)
	}
	w = blk[OffMSRejectBy-OffMStats : OffMSRejectBy-OffMStats+8*ModStatsReasons]
	for i, v := range s.RejectedByReason {
		le.PutUint64(w[8*i:], v)
	}
	w = blk[OffMSTickHist-OffMStats : OffMSTickHist-OffMStats+8*TickBuckets]
	for i, v := range s.TickHist {
		le.PutUint64(w[8*i:], v)
	}
	// ORDER(mstats): seq-cst store of the even seq after the fields; pairs
	// with the reader's first load of seq.
	Store64(b, OffMSSeq, q+1)
}

// ErrNoModStats is returned by DecodeModStats for a block the engine never
// wrote (version 0).
var ErrNoModStats = errors.New("statistics block not written by the engine")

// DecodeModStats reads the statistics block of module segment b (at least
// HeaderSize bytes, 8-aligned) under its seqlock: stable is false when the
// engine rewrote the block during each of a few attempts (the last read is
// returned). A block of another version, or shorter than this version's
// length, is an error (ErrCorrupt); version 0 is ErrNoModStats. A block
// longer than ModStatsLen (a later version that only appends) is read up to
// ModStatsLen. It never panics.
func DecodeModStats(b []byte) (s ModStats, stable bool, err error) {
	if len(b) < HeaderSize {
		return s, false, fmt.Errorf("%w: module segment of %d bytes", ErrCorrupt, len(b))
	}
	for try := 0; try < 4; try++ {
		// ORDER(mstats): seq-cst loads of seq around the copy; pair with
		// EncodeModStats' stores.
		q := Load64(b, OffMSSeq)
		v, n := Load32(b, OffMSVersion), Load32(b, OffMSLength)
		switch {
		case v == 0:
			return s, true, ErrNoModStats
		case v != ModStatsVersion:
			return s, false, corrupt("statistics block version %d, this build reads %d", v, ModStatsVersion)
		case n < ModStatsLen || OffMStats+int(n) > ModuleStatsEnd:
			return s, false, corrupt("statistics block length %d, version %d has %d (at most %d)", n, v, ModStatsLen, ModuleStatsEnd-OffMStats)
		}
		s = ModStats{
			Frame: Load64(b, OffMSFrame), State: ModuleState(Load32(b, OffMSState)), FailStreak: Load32(b, OffMSStreak),
			Runs: Load64(b, OffMSRuns), Late: Load64(b, OffMSLate), Failures: Load64(b, OffMSFailures),
			Skipped: Load64(b, OffMSSkipped), Overruns: Load64(b, OffMSOverruns), Revoked: Load64(b, OffMSRevoked),
			BreakerTrips: Load64(b, OffMSTrips), BreakerUntil: Load64(b, OffMSBreakerUntil),
			Applied: Load64(b, OffMSApplied), Rejected: Load64(b, OffMSRejected),
			Snapshots: Load64(b, OffMSSnapshots), CatchUps: Load64(b, OffMSCatchUps),
			EventsDelivered: Load64(b, OffMSEvDelivered), EventsLost: Load64(b, OffMSEvLost),
			LagFrames: Load64(b, OffMSLag), LagMax: Load64(b, OffMSLagMax), LastTickFrame: Load64(b, OffMSLastTick),
			Joins: Load64(b, OffMSJoins), Deaths: Load64(b, OffMSDeaths),
			Ticks: Load64(b, OffMSTicks), TickLast: Load64(b, OffMSTickLast), TickMax: Load64(b, OffMSTickMax),
			TickSum: Load64(b, OffMSTickSum),
		}
		for i := range s.RejectedByReason {
			s.RejectedByReason[i] = Load64(b, OffMSRejectBy+8*i)
		}
		for i := range s.TickHist {
			s.TickHist[i] = Load64(b, OffMSTickHist+8*i)
		}
		if q&1 == 0 && Load64(b, OffMSSeq) == q {
			return s, true, nil
		}
	}
	return s, false, nil
}
