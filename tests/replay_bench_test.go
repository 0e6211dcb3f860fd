package tests

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"
	"github.com/stretchr/testify/require"
)

// BenchmarkReplay100K replays a recording of the 100K-entity demo world
// (keyframes every 60 frames) as fast as the engine publishes it: the
// frame records read and decompressed ahead on other goroutines, the world
// restored from each, the frame published (no module attached).
// x_realtime is the replay's frames per second over the recorded rate
// (60): the goal is at least 10. Two recordings: the demo as it runs
// (every entity moving every frame, 600 spawned and killed per second: 1.2
// MB of positions per frame), and 30% of the world's positions written
// per frame, no churn. x_live is the replay's rate over the live engine's
// own (its frames of the same world stepped back to back, in the same run).
func BenchmarkReplay100K(b *testing.B) {
	b.Run("demo-all-moving", func(b *testing.B) { benchReplay(b, 0) })
	b.Run("dirty-30pct", func(b *testing.B) { benchReplay(b, 0.3) })
}

func benchReplay(b *testing.B, dirty float64) {
	const frames = 180
	path, _, live := demoRecordingDirty(b, 100_000, frames, 60, dirty)
	s, err := demo.NewSchema()
	require.NoError(b, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var total time.Duration
	var n int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		rec, err := host.OpenRecording(path)
		require.NoError(b, err)
		w, err := rec.NewWorld(s.Reg)
		require.NoError(b, err)
		eng, err := host.New(host.Config{Instance: uniqueInstance(b, "rb"), FrameRate: 60, Logger: log}, w, nil)
		require.NoError(b, err)
		require.NoError(b, eng.SetReplay(rec))
		b.StartTimer()
		start := time.Now()
		for {
			st := eng.Step()
			if st.End {
				break
			}
			require.NoError(b, st.PublishErr)
			n++
		}
		total += time.Since(start)
		b.StopTimer()
		require.NoError(b, eng.ReplayErr())
		eng.Close()
		rec.Close()
		b.StartTimer()
	}
	fps := float64(n) / total.Seconds()
	b.ReportMetric(fps, "frames/s")
	b.ReportMetric(fps/60, "x_realtime")
	b.ReportMetric(float64(total.Microseconds())/float64(n), "us/frame")
	// The same run's baseline: the live engine's frames of that world
	// (simulation and publish), stepped as fast as they go.
	b.ReportMetric(fps*live.Seconds()/frames, "x_live")
}
