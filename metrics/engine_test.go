package metrics

import (
	"fmt"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// TestEngineCollectorEqualsEngine: after a known sequence (a module
// process whose ticks succeed, then fail until its breaker opens; its
// SIGKILL; a second process of the module), every exported figure equals
// the engine's own (its fields, Publisher, Bounds, Modules, the module's
// statistics block), the histograms equal the test's record of every
// frame and publish, the event count equals the events a reader of the
// log finds, and the figures the sequence fixes are what it fixed: 5
// failures, one breaker trip, one death, two joins, one applied create and
// one rejection of each kind per successful tick.
func TestEngineCollectorEqualsEngine(t *testing.T) {
	testutil.RunChild(rigEnv, rigChild)
	r := newEngineRig(t)
	r.run("TestEngineCollectorEqualsEngine")

	reg := prometheus.NewRegistry()
	reg.MustRegister(NewEngineCollector(r.eng))
	fams := gather(t, reg) // no frame runs: the copy of the last one is served
	eng := r.eng
	p := eng.Publisher()
	v := func(name string, labels ...string) float64 { return value(t, fams, name, labels...) }

	require.Equal(t, float64(eng.Frames), v("fdp_engine_frames_total"))
	require.Equal(t, float64(len(r.frames)), v("fdp_engine_frames_total"))
	require.Equal(t, float64(eng.Frame()), v("fdp_engine_frame"))
	require.Equal(t, 1.0, v("fdp_engine_info", "fdp_instance", r.inst))
	require.GreaterOrEqual(t, v("fdp_engine_stats_age_seconds"), 0.0)
	requireHistogram(t, metric(t, fams, "fdp_engine_frame_duration_seconds"), r.frames, "frame time")
	requireHistogram(t, metric(t, fams, "fdp_engine_publish_duration_seconds"), r.pubs, "publish time")
	require.Equal(t, float64(p.Publishes), v("fdp_engine_frames_published_total"))
	require.Equal(t, float64(len(r.pubs)), v("fdp_engine_frames_published_total"))
	require.Equal(t, float64(p.Skipped-p.PubNoSpace), v("fdp_engine_frames_skipped_total", "reason", "no_free_slot"))
	require.Equal(t, float64(p.PubNoSpace), v("fdp_engine_frames_skipped_total", "reason", "no_memory"))
	require.Equal(t, float64(p.Bytes), v("fdp_engine_publish_bytes_total"))
	require.Equal(t, float64(eng.Snapshots), v("fdp_engine_snapshots_total"))
	require.Positive(t, eng.Snapshots)
	require.Equal(t, float64(eng.SnapBytes), v("fdp_engine_snapshot_bytes_total"))
	require.Equal(t, float64(eng.Bounds().SnapshotsRefused), v("fdp_engine_snapshots_refused_total"))
	require.Equal(t, float64(p.Backed()), v("fdp_engine_shm_bytes"))
	require.Equal(t, eng.WakeHist.Count(), metric(t, fams, "fdp_engine_tick_wake_latency_seconds").GetHistogram().GetSampleCount())

	// The event log, read from outside: every event committed (the log
	// did not wrap in so short a run).
	f, err := testutil.FollowEvents(r.inst)
	require.NoError(t, err)
	defer f.Close()
	events := 0
	require.NoError(t, f.Read(func(uint64, uint64, uint16, []byte) { events++ }))
	require.Positive(t, events, "the module's creates were announced")
	require.Equal(t, float64(events), v("fdp_engine_events_total"))
	require.Zero(t, v("fdp_engine_events_overwritten_total"))
	require.Zero(t, v("fdp_engine_events_rejected_total"))

	// The module, against the engine's table.
	mi, ok := r.module()
	require.True(t, ok)
	n := rigModule
	m := func(name string, labels ...string) float64 {
		return v(name, append([]string{"module", n}, labels...)...)
	}
	require.Equal(t, 1.0, m("fdp_module_info", "tier", mi.Tier, "group", mi.Group, "every", fmt.Sprint(mi.Every)))
	for _, st := range moduleStates {
		require.Equal(t, b2f(st == mi.State), m("fdp_module_state", "state", st.String()), "state %s", st)
	}
	require.Equal(t, b2f(mi.State == host.StateBroken), m("fdp_module_breaker_open"))
	s := mi.Stats
	for name, want := range map[string]uint64{
		"fdp_module_runs_total": s.Runs, "fdp_module_late_ticks_total": s.Late, "fdp_module_failures_total": s.Failures,
		"fdp_module_skipped_ticks_total": s.Skipped, "fdp_module_breaker_trips_total": s.BreakerTrips,
		"fdp_module_deaths_total": s.Deaths, "fdp_module_joins_total": s.Joins, "fdp_module_snapshots_total": s.Snapshots,
		"fdp_module_catch_ups_total": s.CatchUps, "fdp_module_wakes_total": s.Wakes, "fdp_module_overruns_total": s.Overruns,
		"fdp_module_commands_applied_total": s.Applied, "fdp_module_events_delivered_total": s.EventsDelivered,
		"fdp_module_events_lost_total": s.EventsLost, "fdp_module_lag_frames": s.LagFrames, "fdp_module_lag_max_frames": s.LagMax,
	} {
		require.Equal(t, float64(want), m(name), name)
	}
	var rejected float64
	for r := world.RejectReason(0); r < world.NumRejectReasons; r++ {
		got := m("fdp_module_commands_rejected_total", "reason", r.String())
		require.Equal(t, float64(mi.PlaybackRejectReasons[r.String()]), got, "reason %s", r)
		rejected += got
	}
	require.Equal(t, float64(s.Rejected), rejected)
	// What the sequence fixed.
	require.Equal(t, 5.0, m("fdp_module_failures_total"))
	require.Equal(t, 1.0, m("fdp_module_breaker_trips_total"))
	require.Equal(t, 1.0, m("fdp_module_deaths_total"))
	require.Equal(t, 2.0, m("fdp_module_joins_total"))
	require.GreaterOrEqual(t, m("fdp_module_commands_applied_total"), float64(rigGood+3))
	require.Equal(t, m("fdp_module_commands_applied_total"), m("fdp_module_commands_rejected_total", "reason", "stale_entity"))
	require.Equal(t, m("fdp_module_commands_applied_total"), m("fdp_module_commands_rejected_total", "reason", "reserved_event_type"))

	// Tick durations: the count is the engine's, and at the powers of two
	// the buckets are the statistics block's, read from the module's
	// segment.
	th := metric(t, fams, "fdp_module_tick_duration_seconds", "module", n).GetHistogram()
	require.Equal(t, mi.Ticks, th.GetSampleCount())
	require.Positive(t, mi.Ticks)
	seg, err := shm.Open(shm.SegmentName(r.inst, fmt.Sprintf("mod.%d", mi.Slot)), false)
	require.NoError(t, err)
	defer seg.Close()
	block, stable, err := layout.DecodeModStats(seg.Data)
	require.NoError(t, err)
	require.True(t, stable)
	require.Equal(t, mi.Ticks, block.Ticks)
	checked := 0
	for _, b := range th.GetBucket() {
		ns := uint64(b.GetUpperBound()*1e9 + 0.5)
		if ns&(ns-1) != 0 {
			continue // not a power of two
		}
		var want uint64
		for i := 0; i < layout.TickBuckets && uint64(1)<<i <= ns; i++ {
			want += block.TickHist[i] // bucket i: durations below 2^i ns
		}
		require.Equal(t, want, b.GetCumulativeCount(), "tick bucket %v", time.Duration(ns))
		checked++
	}
	require.Equal(t, len(tickBounds)/2, checked)
}
