package tests

// Every figure of a module's statistics block follows the engine's count
// (outside tester, F2): slow modules that hold their snapshots and groups
// refused one count skipped frames every frame and nothing else; the block
// in their segments, read as `engine dump` reads it, showed skipped 0 while
// the engine's summary said 975, because only some counter sites marked the
// block for a write.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

const skipStatsEnv = "FDP_SKIPSTATS_CHILD"

// holdForever is a slow solo module whose first tick keeps its snapshot
// until the test kills the process (its runtime limit is far beyond the
// test).
type holdForever struct{ s *schema }

func (h *holdForever) Spec() module.Spec {
	return module.Spec{Tier: module.Slow, Every: 1, Group: "solo", Reads: world.MaskOf(h.s.pos), MaxRuntime: time.Hour}
}

func (h *holdForever) Tick(v *module.View, _ *module.Commands, _ time.Duration) error {
	fmt.Printf("holding frame=%d\n", v.Frame())
	time.Sleep(time.Hour) // holds the snapshot until the test ends
	return nil
}

func runHoldForever(string) int {
	s := newSchema()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	err := module.Run(context.Background(), &holdForever{s: s}, module.Options{Instance: os.Getenv("FDP_INSTANCE"),
		Name: os.Getenv("FDP_MODULE"), Registry: s.reg, Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "module:", err)
		return 1
	}
	return 0
}

// moduleBlock reads the statistics block of the module in slot as
// `engine dump` does (inspect of its segment).
func moduleBlock(t *testing.T, inst string, slot int) *inspect.ModuleStatsReport {
	t.Helper()
	seg, err := shm.Open(layout.ModuleSegmentName(inst, slot), false)
	require.NoError(t, err)
	defer seg.Close()
	r, err := inspect.Inspect(seg.Data)
	require.NoError(t, err)
	require.NotNil(t, r.Module)
	require.NotNil(t, r.Module.Stats, "the engine wrote no block into slot %d", slot)
	return r.Module.Stats
}

// TestModuleStatsSkippedFlushed: five slow solo modules on 4 frame slots,
// each holding the snapshot of its first tick: the ones that got one are
// busy every frame after, the others are refused one every frame; both
// only count skipped frames. After every frame (the engine stepped by the
// test, so it stands still between frames) each module's block shows the
// engine's own figures, skipped among them, and the skipped count of a
// refused module grows in its block frame after frame.
func TestModuleStatsSkippedFlushed(t *testing.T) {
	testutil.RunChild(skipStatsEnv, runHoldForever)
	const holders = 5
	r := newRigConfig(t, 100, func(c *host.Config) { c.Slots = 4 })
	for i := 0; i < holders; i++ {
		testutil.StartChild(t, testutil.ChildOptions{Test: "TestModuleStatsSkippedFlushed", Env: []string{
			skipStatsEnv + "=hold", fmt.Sprintf("FDP_MODULE=hold-%d", i), "FDP_INSTANCE=" + r.inst}})
	}
	r.stepUntil("every holder joined", r.joined(holders))
	r.stepUntil("a snapshot refused", func() bool { return r.eng.Bounds().SnapshotsRefused > 0 })

	// checkBlocks compares every module's block with the engine's figures
	// (the engine is between frames) and returns the refused module's
	// block: one that never ran.
	checkBlocks := func() (refused *inspect.ModuleStatsReport) {
		t.Helper()
		for _, m := range r.eng.Modules() {
			b := moduleBlock(t, r.inst, m.Slot)
			require.Equal(t, m.Stats.Skipped, b.Skipped, "%s: skipped in its block", m.Name)
			require.Equal(t, m.Stats.Runs, b.Runs, "%s: runs", m.Name)
			require.Equal(t, m.Stats.Snapshots, b.Snapshots, "%s: snapshots", m.Name)
			require.Equal(t, m.Stats.Failures, b.Failures, "%s: failures", m.Name)
			require.Equal(t, m.Stats.Joins, b.Joins, "%s: joins", m.Name)
			require.Equal(t, r.eng.Frame(), b.Frame, "%s: written at the last frame (its skipped grew)", m.Name)
			if m.Stats.Runs == 0 {
				refused = b
			}
		}
		require.NotNil(t, refused, "a module never got a snapshot: %+v", r.eng.Modules())
		return refused
	}
	first := checkBlocks()
	for i := 0; i < 10; i++ {
		r.eng.Step()
	}
	later := checkBlocks()
	require.GreaterOrEqual(t, later.Skipped, first.Skipped+10, "a refused module's skipped grows in its block")
	require.Zero(t, later.Runs)
}
