package tests

import (
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// lcBenchEngine is an engine of the demo world (100K entities, churn 500
// per second at 60 fps: about 8 spawns and 8 deaths a frame, each spawn
// adding 4 components) without modules.
func lcBenchEngine(b *testing.B, prefix string) (*host.Engine, *demo.Schema) {
	s, err := demo.NewSchema()
	require.NoError(b, err)
	sim, err := demo.NewSim(s, demo.DefaultConfig())
	require.NoError(b, err)
	eng, err := host.New(host.Config{Instance: uniqueInstance(b, prefix), FrameRate: 60,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, sim.W, sim)
	require.NoError(b, err)
	b.Cleanup(func() { eng.Close() })
	return eng, s
}

// BenchmarkLifecycleFrame: the engine's frame (Step: simulate with the
// demo's churn, capture events, publish, dispatch, playback) of a world
// whose lifecycle events one module subscribed to, against the same frame
// of an identical world nobody subscribed to, stepped alternately in the
// same run (x-unsubscribed: the ratio of their frame times; -p50: the
// median of the ratios of the frame pairs). "none"
// subscribes neither (the noise floor of the ratio); "destroyed" is what
// the demo's alert subscribes to; "all" is every kind of every component.
// The subscription is set on the world as the engine sets it for an
// attached module (World.SetLifecycle): a module's own tick is not the
// frame thread's work, and the events reach it through the log the frame
// wrote.
func BenchmarkLifecycleFrame(b *testing.B) {
	for _, c := range []struct {
		name string
		sub  func(all world.Mask) world.Lifecycle
	}{
		{"none", func(world.Mask) world.Lifecycle { return world.Lifecycle{} }},
		{"destroyed", func(world.Mask) world.Lifecycle { return world.Lifecycle{Destroyed: true} }},
		{"all", func(all world.Mask) world.Lifecycle {
			return world.Lifecycle{Created: true, Destroyed: true, Added: all, Removed: all}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			base, _ := lcBenchEngine(b, "lb")
			subd, s := lcBenchEngine(b, "ls")
			subd.World().SetLifecycle(c.sub(s.Reg.Mask()))
			ev, err := shm.Open(shm.SegmentName(subd.Config().Instance, "events"), false)
			require.NoError(b, err)
			defer ev.Close()
			for range 60 { // every slot written, buffers grown
				base.Step()
				subd.Step()
			}
			events0 := layout.Load64(ev.Data, layout.OffEStatEvents)
			var tBase, tSub time.Duration
			ratios := make([]float64, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Alternate which goes first: neither always runs on the
				// other's warm caches.
				var db, ds time.Duration
				if i%2 == 0 {
					db = base.Step().Total
					ds = subd.Step().Total
				} else {
					ds = subd.Step().Total
					db = base.Step().Total
				}
				tBase, tSub, ratios[i] = tBase+db, tSub+ds, float64(ds)/float64(db)
			}
			b.StopTimer()
			slices.Sort(ratios)
			events := layout.Load64(ev.Data, layout.OffEStatEvents) - events0
			b.ReportMetric(float64(tSub)/float64(tBase), "x-unsubscribed")
			// The median of the frame pairs' ratios: a burst of the shared
			// VM's noise moves it less than the ratio of the sums.
			b.ReportMetric(ratios[len(ratios)/2], "x-unsubscribed-p50")
			b.ReportMetric(float64(tSub.Nanoseconds())/float64(b.N), "frame-ns")
			b.ReportMetric(float64(tBase.Nanoseconds())/float64(b.N), "unsubscribed-frame-ns")
			b.ReportMetric(float64(events)/float64(b.N), "events/frame")
		})
	}
}

// BenchmarkLifecycleRecord: the world's cost of recording one structural
// change (a create, four sets that add, a destroy that removes four, as
// the demo's churn does) with every lifecycle event subscribed, against
// the same changes with none, in the same run (x-unrecorded).
func BenchmarkLifecycleRecord(b *testing.B) {
	s, err := demo.NewSchema()
	require.NoError(b, err)
	mk := func() *world.World {
		w, err := demo.NewWorld(s, demo.Config{Entities: 0, ChunkCapacity: 1024})
		require.NoError(b, err)
		return w
	}
	off, on := mk(), mk()
	on.SetLifecycle(world.Lifecycle{Created: true, Destroyed: true, Added: s.Reg.Mask(), Removed: s.Reg.Mask()})
	churn := func(w *world.World) {
		e, _ := w.Create()
		_ = world.Set(w, e, s.Pos, demo.Position{X: 1})
		_ = world.Set(w, e, s.Vel, demo.Velocity{X: 1})
		_ = world.Set(w, e, s.Health, demo.Health{HP: 1})
		_ = world.Set(w, e, s.Tm, demo.Team{ID: 1})
		_ = w.Destroy(e)
		w.ClearEvents()
	}
	for range 100 {
		churn(off)
		churn(on)
	}
	var tOff, tOn time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		for range 64 {
			churn(off)
		}
		t1 := time.Now()
		for range 64 {
			churn(on)
		}
		t2 := time.Now()
		tOff += t1.Sub(t0)
		tOn += t2.Sub(t1)
	}
	b.ReportMetric(float64(tOn)/float64(tOff), "x-unrecorded")
	b.ReportMetric(float64(tOn.Nanoseconds()-tOff.Nanoseconds())/float64(b.N*64*10), "ns/event")
}
