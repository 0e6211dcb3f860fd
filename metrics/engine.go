package metrics

import (
	"context"
	"strconv"
	gosync "sync"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/world"
	"github.com/prometheus/client_golang/prometheus"
)

// Histogram bounds: the ends of host.Histogram's parts (host.PartBounds),
// where its counts are exact. The engine's histograms keep all 8 parts
// of each power of two (a bucket is at most 12.5% wide); a module's tick
// histogram every fourth part (two buckets per power of two: 1.5×2^k and
// 2^(k+1)), since there is one per module.
var (
	frameBounds   = host.PartBounds(13, 31, 8) // 144 bounds: 9.22 µs .. 2.15 s
	publishBounds = host.PartBounds(10, 30, 8) // 160 bounds: 1.15 µs .. 1.07 s
	wakeBounds    = host.PartBounds(7, 24, 8)  // 136 bounds: 144 ns .. 16.8 ms
	tickBounds    = host.PartBounds(10, 36, 2) // 52 bounds: 1.54 µs .. 68.7 s
)

// moduleStates are the values of fdp_module_state's state label.
var moduleStates = []host.State{host.StateJoined, host.StateRunning, host.StateBroken, host.StateDead, host.StateLeft}

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The engine's metrics (docs/METRICS.md).
var (
	dEngineInfo   = newDesc("fdp_engine_info", "The engine process: 1, labelled with its FDP instance.", "fdp_instance")
	dStatsAge     = newDesc("fdp_engine_stats_age_seconds", "Age of the statistics copy the engine's figures come from (about a frame period; a paused engine still copies it at every turn of its loop; growing while the engine is hung or stopped).")
	dFrame        = newDesc("fdp_engine_frame", "Number of the last completed frame (resumes after a recovered engine's).")
	dFrames       = newDesc("fdp_engine_frames_total", "Frames this engine process ran.")
	dFrameTime    = newDesc("fdp_engine_frame_duration_seconds", "Engine time of a frame: simulate, events, publish, dispatch, wait for the fast tier, playback.")
	dPublished    = newDesc("fdp_engine_frames_published_total", "Frames published into a frame slot.")
	dSkipped      = newDesc("fdp_engine_frames_skipped_total", "Publishes skipped, by reason: every slot pinned or leased (no_free_slot), or no memory for a slot (no_memory).", "reason")
	dPublishTime  = newDesc("fdp_engine_publish_duration_seconds", "Time of a successful publish (copy of the changed chunks into a slot).")
	dPublishBytes = newDesc("fdp_engine_publish_bytes_total", "Bytes the publishes copied.")
	dSnapshots    = newDesc("fdp_engine_snapshots_total", "Snapshots leased to slow modules (one per convoy group dispatch or catch-up).")
	dSnapBytes    = newDesc("fdp_engine_snapshot_bytes_total", "Bytes the snapshots copied.")
	dSnapRefused  = newDesc("fdp_engine_snapshots_refused_total", "Snapshots a due convoy group did not get (no free slot, or no memory for one).")
	dEvents       = newDesc("fdp_engine_events_total", "Events committed to the shared event log.")
	dEventsOver   = newDesc("fdp_engine_events_overwritten_total", "Events overwritten in the bounded event log (a module that had not read them loses them: fdp_module_events_lost_total).")
	dEventsRej    = newDesc("fdp_engine_events_rejected_total", "Event appends the log refused (payload too large).")
	dWake         = newDesc("fdp_engine_tick_wake_latency_seconds", "Fast-tier tick wake latency as the modules measured it (the engine's tick stamp to the module's wake).")
	dShm          = newDesc("fdp_engine_shm_bytes", "Shared memory the world segment holds.")
	dRecOn        = newDesc("fdp_engine_recorder_on", "1 while the flight recorder records (engine run --record), else 0.")
	dRecFrames    = newDesc("fdp_engine_recorder_frames_total", "Frame records the flight recorder wrote to its file.")
	dRecKeyframes = newDesc("fdp_engine_recorder_keyframes_total", "Keyframes among fdp_engine_recorder_frames_total.")
	dRecDropped   = newDesc("fdp_engine_recorder_dropped_total", "Frames published while recording and not recorded, by reason: the previous capture still running (busy), the writer's queue full (queue_full), the frame's events and batches over the bound (overflow), a failed capture (error).", "reason")
	dRecFileBytes = newDesc("fdp_engine_recorder_file_bytes_total", "Bytes of the recording file (compressed frame records, header and index).")
	dRecRawBytes  = newDesc("fdp_engine_recorder_raw_bytes_total", "Frame payload bytes the recorder wrote, before compression.")
	dPaused       = newDesc("fdp_engine_paused", "1 while the engine is paused (engine ctl INSTANCE pause): no frame runs but the steps asked.")
	dSpeed        = newDesc("fdp_engine_speed", "The engine's speed (engine ctl INSTANCE speed X): live, the step is the frame period times it; a replay's frame rate is the recorded one times it.")
	dCtl          = newDesc("fdp_engine_ctl_requests_total", "Time-control requests on the control socket, by result: served, refused (the engine's state or the peer's uid), malformed.", "result")

	dModInfo      = newDesc("fdp_module_info", "A module of the engine's table: 1, labelled with its tier, convoy group and period in frames.", "module", "tier", "group", "every")
	dModState     = newDesc("fdp_module_state", "1 for the module's current state (joined, running, breaker-open, dead, left), 0 for the others.", "module", "state")
	dModBreaker   = newDesc("fdp_module_breaker_open", "1 while the module's circuit breaker is open.", "module")
	dModRuns      = newDesc("fdp_module_runs_total", "Ticks the module completed successfully.", "module")
	dModLate      = newDesc("fdp_module_late_ticks_total", "Fast ticks not done by the frame's deadline.", "module")
	dModFailures  = newDesc("fdp_module_failures_total", "Failed ticks (errors, panics, faults, overruns).", "module")
	dModSkipped   = newDesc("fdp_module_skipped_ticks_total", "Frames at which the module was due but busy or refused a snapshot (its tick is delayed, not dropped).", "module")
	dModTrips     = newDesc("fdp_module_breaker_trips_total", "Times the module's circuit breaker opened.", "module")
	dModDeaths    = newDesc("fdp_module_deaths_total", "Deaths of the module's process the engine saw (connection closed or segment fault).", "module")
	dModJoins     = newDesc("fdp_module_joins_total", "Admissions of the module (its first join and each rejoin).", "module")
	dModSnaps     = newDesc("fdp_module_snapshots_total", "Snapshots leased to the module.", "module")
	dModCatchUps  = newDesc("fdp_module_catch_ups_total", "Snapshots the module got apart from its convoy group.", "module")
	dModWakes     = newDesc("fdp_module_wakes_total", "Ticks dispatched to a reactive module with a wake pending (Spec.WakeOn).", "module")
	dModOverruns  = newDesc("fdp_module_overruns_total", "Slow ticks that ran past their runtime (snapshot revoked).", "module")
	dModApplied   = newDesc("fdp_module_commands_applied_total", "Commands of the module the engine applied.", "module")
	dModRejected  = newDesc("fdp_module_commands_rejected_total", "Commands of the module the engine rejected, by reason.", "module", "reason")
	dModDelivered = newDesc("fdp_module_events_delivered_total", "Events the module's ticks were given (its acknowledgements).", "module")
	dModLost      = newDesc("fdp_module_events_lost_total", "Events the module lost to overruns of the event log.", "module")
	dModTick      = newDesc("fdp_module_tick_duration_seconds", "Tick durations the engine saw, from its ring to the done it saw.", "module")
	dModLag       = newDesc("fdp_module_lag_frames", "Frames the engine advanced between the frame of the module's last completed tick and the frame it saw it done.", "module")
	dModLagMax    = newDesc("fdp_module_lag_max_frames", "Largest fdp_module_lag_frames so far.", "module")
)

var engineDescs = []*prometheus.Desc{
	dEngineInfo, dStatsAge, dFrame, dFrames, dFrameTime, dPublished, dSkipped, dPublishTime, dPublishBytes,
	dSnapshots, dSnapBytes, dSnapRefused, dEvents, dEventsOver, dEventsRej, dWake, dShm, dPaused, dSpeed, dCtl,
	dRecOn, dRecFrames, dRecKeyframes, dRecDropped, dRecFileBytes, dRecRawBytes,
	dModInfo, dModState, dModBreaker, dModRuns, dModLate, dModFailures, dModSkipped, dModTrips, dModDeaths,
	dModJoins, dModSnaps, dModCatchUps, dModWakes, dModOverruns, dModApplied, dModRejected, dModDelivered, dModLost,
	dModTick, dModLag, dModLagMax,
}

// EngineCollector is a prometheus.Collector of an engine's statistics.
// Each scrape takes a copy made by the frame thread (host.Engine.CopyStats)
// and turns it into const metrics: nothing is counted twice and nothing
// runs on the frame thread but the copy.
type EngineCollector struct {
	eng      *host.Engine
	instance string
	// wait bounds how long a scrape waits for the next frame's copy
	// (several frame periods); past it the last copy is served, and
	// fdp_engine_stats_age_seconds shows how old it is.
	wait time.Duration

	mu    gosync.Mutex // one scrape at a time uses s and below
	s     host.Stats
	below []uint64
}

// NewEngineCollector returns a collector of eng's statistics.
func NewEngineCollector(eng *host.Engine) *EngineCollector {
	n := max(len(frameBounds), len(publishBounds), len(wakeBounds), len(tickBounds))
	return &EngineCollector{eng: eng, instance: eng.Config().Instance,
		wait:  min(max(4*eng.Period(), 250*time.Millisecond), 5*time.Second),
		below: make([]uint64, n)}
}

// Describe implements prometheus.Collector.
func (c *EngineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range engineDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *EngineCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.wait)
	_ = c.eng.CopyStats(ctx, &c.s) // on timeout: the last copy, aged
	cancel()
	s := &c.s
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(dEngineInfo, 1, c.instance)
	if s.Seq == 0 {
		return // no frame has run since the first scrape asked
	}
	gauge(dStatsAge, time.Since(s.Taken).Seconds())
	gauge(dFrame, float64(s.Frame))
	counter(dFrames, s.Frames)
	ch <- c.histogram(dFrameTime, &s.FrameTime, frameBounds)
	counter(dPublished, s.Published)
	counter(dSkipped, s.Skipped-s.SkippedNoMemory, "no_free_slot")
	counter(dSkipped, s.SkippedNoMemory, "no_memory")
	ch <- c.histogram(dPublishTime, &s.PublishTime, publishBounds)
	counter(dPublishBytes, s.PublishBytes)
	counter(dSnapshots, s.Snapshots)
	counter(dSnapBytes, s.SnapshotBytes)
	counter(dSnapRefused, s.Bounds.SnapshotsRefused)
	counter(dEvents, s.Events.Events)
	counter(dEventsOver, s.Events.Dropped)
	counter(dEventsRej, s.Events.Rejected)
	ch <- c.histogram(dWake, &s.WakeLatency, wakeBounds)
	gauge(dShm, float64(s.ShmBytes))
	r := &s.Recorder
	gauge(dRecOn, b2f(r.On && r.Err == ""))
	counter(dRecFrames, r.Written)
	counter(dRecKeyframes, r.Keyframes)
	counter(dRecDropped, r.DroppedBusy, "busy")
	counter(dRecDropped, r.DroppedQueue, "queue_full")
	counter(dRecDropped, r.DroppedOverflow, "overflow")
	counter(dRecDropped, r.DroppedError, "error")
	counter(dRecFileBytes, r.FileBytes)
	counter(dRecRawBytes, r.RawBytes)
	gauge(dPaused, b2f(s.Paused))
	gauge(dSpeed, s.Speed)
	counter(dCtl, s.Control.CtlServed, "served")
	counter(dCtl, s.Control.CtlRefused-s.Control.BadCtl, "refused")
	counter(dCtl, s.Control.BadCtl, "malformed")

	seen := make(map[string]bool, len(s.Modules))
	for i := range s.Modules {
		m := &s.Modules[i]
		if m.Name == "" || seen[m.Name] {
			continue // a slot left empty by a failed reuse; names are unique otherwise
		}
		seen[m.Name] = true
		n := m.Name
		gauge(dModInfo, 1, n, m.Tier, m.Group, strconv.Itoa(m.Every))
		for _, st := range moduleStates {
			gauge(dModState, b2f(m.State == st), n, st.String())
		}
		gauge(dModBreaker, b2f(m.State == host.StateBroken), n)
		ms := &m.Stats
		counter(dModRuns, ms.Runs, n)
		counter(dModLate, ms.Late, n)
		counter(dModFailures, ms.Failures, n)
		counter(dModSkipped, ms.Skipped, n)
		counter(dModTrips, ms.BreakerTrips, n)
		counter(dModDeaths, ms.Deaths, n)
		counter(dModJoins, ms.Joins, n)
		counter(dModSnaps, ms.Snapshots, n)
		counter(dModCatchUps, ms.CatchUps, n)
		counter(dModWakes, ms.Wakes, n)
		counter(dModOverruns, ms.Overruns, n)
		counter(dModApplied, ms.Applied, n)
		for r := range m.Rejected {
			counter(dModRejected, m.Rejected[r], n, world.RejectReason(r).String())
		}
		counter(dModDelivered, ms.EventsDelivered, n)
		counter(dModLost, ms.EventsLost, n)
		ch <- c.histogram(dModTick, &m.Ticks, tickBounds, n)
		gauge(dModLag, float64(ms.LagFrames), n)
		gauge(dModLagMax, float64(ms.LagMax), n)
	}
}

// histogram returns h as a const histogram with the given bounds: the
// count of durations below each bound (an exporter's le is "at most"; a
// duration of exactly a bound, at 1 ns resolution, is in the next bucket).
func (c *EngineCollector) histogram(d *prometheus.Desc, h *host.Histogram, bounds []time.Duration, labels ...string) prometheus.Metric {
	below := c.below[:len(bounds)]
	h.Cumulative(bounds, below)
	buckets := make(map[float64]uint64, len(bounds))
	for i, b := range bounds {
		buckets[b.Seconds()] = below[i]
	}
	return prometheus.MustNewConstHistogram(d, h.Count(), h.Sum().Seconds(), buckets, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
