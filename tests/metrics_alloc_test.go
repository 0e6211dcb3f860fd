package tests

import (
	"context"
	"testing"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/module"
	"github.com/stretchr/testify/require"
)

// TestEngineFrameZeroAllocsWithStatsAndModules: with fast and slow
// (convoy) module processes attached, a frame that copies the engine's
// statistics for a metrics scrape (asked before every frame: the most a
// scrape can ask) allocates nothing, and each copy holds every module.
func TestEngineFrameZeroAllocsWithStatsAndModules(t *testing.T) {
	privateShm(t)
	r := newFBRig(t, 4000, 60)
	r.spawn("fast0", module.Fast, 1, 0, "Pos,Vel", "")
	r.spawn("fast1", module.Fast, 1, 1, "Pos,Vel", "")
	r.spawn("ai0", module.Slow, 2, 0, "Pos,Health", "ai")
	r.spawn("ai1", module.Slow, 2, 0, "Stamp", "ai")
	r.stepUntil("modules running", r.everyModuleRan(4, 5))
	for i := 0; i < 30; i++ { // warm up
		r.eng.RequestStats()
		r.eng.Step()
	}
	runs0, _, _, _ := r.totals()
	var before host.Stats
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the last copy, without asking for another
	_ = r.eng.CopyStats(ctx, &before)
	allocs := testing.AllocsPerRun(100, func() {
		r.eng.RequestStats()
		r.eng.Step()
	})
	var s host.Stats
	_ = r.eng.CopyStats(ctx, &s)
	runs, _, rejected, failures := r.totals()
	require.Equal(t, before.Seq+101, s.Seq, "a copy at every frame")
	require.Equal(t, r.eng.Frame(), s.Frame)
	require.Len(t, s.Modules, 4)
	var copied uint64
	for _, m := range s.Modules {
		copied += m.Stats.Runs
	}
	require.Equal(t, runs, copied, "the copy holds the modules' runs as of its frame")
	require.Greater(t, runs, runs0+100)
	require.Zero(t, rejected)
	require.Zero(t, failures)
	require.Zero(t, allocs, "allocations per engine frame copying its statistics, with modules attached")
}
