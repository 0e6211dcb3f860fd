package host_test

import (
	"context"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/stretchr/testify/require"
)

// canceled is a context that has ended: CopyStats then returns the last
// copy without waiting.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestCopyStatsEqualsEngine: a copy asked for before a frame holds, after
// that frame, exactly the figures the engine's own fields and accessors
// hold then (nothing ran in between), and the copy after frames that were
// not asked for is not made: Seq counts the frames that copied.
func TestCopyStatsEqualsEngine(t *testing.T) {
	eng, _ := newAllocEngine(t, 4000)
	var s host.Stats
	require.ErrorIs(t, eng.CopyStats(canceled(), &s), context.Canceled)
	require.Zero(t, s.Seq, "no copy before a frame asked for one")

	for round := 1; round <= 3; round++ {
		for i := 0; i < 17*round; i++ { // frames nobody asked a copy of
			eng.Step()
		}
		eng.RequestStats()
		st := eng.Step()
		require.ErrorIs(t, eng.CopyStats(canceled(), &s), context.Canceled) // the copy is made: no wait
		require.Equal(t, uint64(round), s.Seq)
		require.Equal(t, st.Frame, s.Frame)
		require.Equal(t, eng.Frame(), s.Frame)
		require.Equal(t, eng.Frames, s.Frames)
		require.Equal(t, *eng.Hist, s.FrameTime)
		require.Equal(t, *eng.PubHist, s.PublishTime)
		require.Equal(t, *eng.WakeHist, s.WakeLatency)
		require.Equal(t, s.Frames, s.FrameTime.Count(), "every frame's time is recorded")
		p := eng.Publisher()
		require.Equal(t, p.Publishes, s.Published)
		require.Equal(t, s.Published, s.PublishTime.Count())
		require.Equal(t, p.Skipped, s.Skipped)
		require.Equal(t, p.PubNoSpace, s.SkippedNoMemory)
		require.Equal(t, p.Bytes, s.PublishBytes)
		require.Positive(t, s.PublishBytes)
		require.Equal(t, p.Backed(), s.ShmBytes)
		require.Equal(t, eng.Snapshots, s.Snapshots)
		require.Equal(t, eng.SnapBytes, s.SnapshotBytes)
		require.Equal(t, eng.Bounds(), s.Bounds)
		require.Positive(t, s.Events.Events, "the simulation emits events")
		require.Empty(t, s.Modules)
		require.WithinDuration(t, time.Now(), s.Taken, time.Minute)
	}
}

// TestCopyStatsWaitsForAFrame: CopyStats waits for the next frame of a
// running engine and returns its copy; concurrent readers each get one.
func TestCopyStatsWaitsForAFrame(t *testing.T) {
	eng, _ := newAllocEngine(t, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- eng.Run(ctx, nil) }()
	errs := make(chan error, 4)
	frames := make(chan uint64, 4)
	for r := 0; r < 4; r++ {
		go func() {
			var s host.Stats
			wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer wcancel()
			err := eng.CopyStats(wctx, &s)
			errs <- err
			frames <- s.Frame
		}()
	}
	for r := 0; r < 4; r++ {
		require.NoError(t, <-errs)
		require.Positive(t, <-frames)
	}
	cancel()
	require.NoError(t, <-ran)
	// Stopped: a reader gets the last copy when its context ends.
	var s host.Stats
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer wcancel()
	require.ErrorIs(t, eng.CopyStats(wctx, &s), context.DeadlineExceeded)
	require.Positive(t, s.Seq)
	require.Equal(t, s.Frames, s.FrameTime.Count())
}

// TestEngineFrameZeroAllocsWithStats: a frame that copies the statistics
// for a reader (asked before every frame) allocates nothing, and every
// frame made a copy.
func TestEngineFrameZeroAllocsWithStats(t *testing.T) {
	eng, _ := newAllocEngine(t, 4000)
	for i := 0; i < 50; i++ {
		eng.Step()
	}
	allocs := testing.AllocsPerRun(200, func() {
		eng.RequestStats()
		eng.Step()
	})
	var s host.Stats
	_ = eng.CopyStats(canceled(), &s)
	require.Equal(t, uint64(201), s.Seq, "a copy at every frame")
	require.Equal(t, eng.Frame(), s.Frame)
	require.Zero(t, allocs, "allocations per engine frame copying its statistics")
}
