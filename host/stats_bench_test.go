package host

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// BenchmarkCopyStats: what a metrics scrape costs the frame thread, the
// copy of the statistics at the end of a frame (copyStats), with 0, 16 and
// 256 modules in the table (slow modules admitted in process, each with its
// tick histogram), against a frame of the same engine (x-frame: copy time
// over frame time, same run). A scrape asks one copy, every scrape
// interval (15 s by default in Prometheus).
func BenchmarkCopyStats(b *testing.B) {
	for _, n := range []int{0, 16, layout.MaxModules} {
		b.Run(fmt.Sprintf("modules=%d", n), func(b *testing.B) {
			s := newRSchema()
			e, err := New(Config{Instance: testInstance(b), Logger: quietLog(), RingBytes: layout.MinRingCapacity}, newRWorld(b, s), nil)
			require.NoError(b, err)
			b.Cleanup(func() { e.Close() })
			peer := ipc.PeerCred{PID: os.Getpid(), UID: uint32(os.Getuid())}
			for i := 0; i < n; i++ {
				w, err := e.admit(ipc.Hello{Name: fmt.Sprintf("m%d", i), Tier: ipc.TierSlow, Every: 1, Group: "solo"}, peer)
				require.NoError(b, err)
				for _, f := range w.Files {
					f.Close()
				}
				for k := 0; k < 100; k++ {
					e.mods[i].tickHist.Record(time.Duration(k*k) * time.Microsecond)
				}
			}
			const frames = 200
			start := time.Now()
			for i := 0; i < frames; i++ {
				e.Step()
			}
			frame := time.Since(start) / frames
			e.RequestStats()
			b.ResetTimer()
			e.mu.Lock()
			for i := 0; i < b.N; i++ {
				e.stats.want.Store(true)
				e.copyStats()
			}
			e.mu.Unlock()
			b.StopTimer()
			require.Len(b, e.stats.s.Modules, n)
			perCopy := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(perCopy.Nanoseconds())/1e3, "copy-µs")
			b.ReportMetric(float64(frame.Nanoseconds())/1e3, "frame-µs")
			b.ReportMetric(float64(perCopy)/float64(frame), "x-frame")
		})
	}
}
