package tests

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/stretchr/testify/require"
)

// deathLog is a slog handler that timestamps the engine's "module died"
// records (the moment the engine has reclaimed the module).
type deathLog struct{ ch chan time.Time }

func (d deathLog) Enabled(context.Context, slog.Level) bool { return true }
func (d deathLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "module died; leases and ring reclaimed" {
		select {
		case d.ch <- time.Now():
		default:
		}
	}
	return nil
}
func (d deathLog) WithAttrs([]slog.Attr) slog.Handler { return d }
func (d deathLog) WithGroup(string) slog.Handler      { return d }

// firstWriter reports the Unix ns a module printed after its first tick
// ("first <ns>").
type firstWriter struct {
	mu   sync.Mutex
	part []byte
	ch   chan int64
}

func (w *firstWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		if ns, ok := bytes.CutPrefix(w.part[:i], []byte("first ")); ok {
			if v, err := strconv.ParseInt(string(ns), 10, 64); err == nil {
				w.ch <- v
			}
		}
		w.part = w.part[i+1:]
	}
	return len(p), nil
}

func latPct(d []time.Duration, p float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return float64(s[i]) / float64(time.Millisecond)
}

// BenchmarkModuleRestartLatency measures, per SIGKILL of a fast module
// (engine at 1 kHz in this process): detection = SIGKILL -> the engine has
// reclaimed the module (state dead); restart-to-reading = SIGKILL -> a new
// process (started as soon as the death is seen, as a supervisor does) has
// attached and completed its first tick. Goals: detection <= 5 ms,
// restart-to-reading <= 50 ms (p99). Run with -benchtime=100x.
func BenchmarkModuleRestartLatency(b *testing.B) {
	s := newSoakSchema()
	w, sim := newSoakWorld(b, s, 1)
	inst := uniqueInstance(b, "l")
	deaths := make(chan time.Time, 1)
	eng, err := host.New(host.Config{Instance: inst, FrameRate: 1000, Logger: slog.New(deathLog{deaths})}, w, sim)
	require.NoError(b, err)
	defer eng.Close()
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = eng.Run(ctx, nil) }()
	defer func() { cancel(); <-runDone }()
	leases, err := shm.Open(shm.SegmentName(inst, fsync.LeasesSegment), true)
	require.NoError(b, err)
	defer leases.Close()
	ll, err := layout.DecodeLeases(leases.Data)
	require.NoError(b, err)

	firsts := make(chan int64, 4)
	spec := soakSpec{"lat", module.Fast, 1}
	spawn := func() *exec.Cmd {
		return startSoakModule(b, "TestSoak", "latmod", inst, 0, spec, &firstWriter{ch: firsts})
	}
	waitFirst := func() int64 {
		select {
		case v := <-firsts:
			return v
		case <-time.After(30 * time.Second):
			b.Fatal("module did not tick")
			return 0
		}
	}
	p := spawn()
	defer func() { _ = p.Process.Kill(); _ = p.Wait() }()
	waitFirst()
	var detect, restart []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		require.NoError(b, syscall.Kill(p.Process.Pid, syscall.SIGKILL))
		var seen time.Time
		select {
		case seen = <-deaths:
		case <-time.After(10 * time.Second):
			b.Fatal("death not seen")
		}
		detect = append(detect, seen.Sub(t0))
		_ = p.Wait()
		fsync.ReleaseReadersOf(leases.Data, ll, p.Process.Pid) // the supervisor's reclaim hook
		p = spawn()
		restart = append(restart, time.Duration(waitFirst()-t0.UnixNano()))
	}
	b.StopTimer()
	b.ReportMetric(latPct(detect, 50), "detect-p50-ms")
	b.ReportMetric(latPct(detect, 99), "detect-p99-ms")
	b.ReportMetric(latPct(restart, 50), "restart-p50-ms")
	b.ReportMetric(latPct(restart, 99), "restart-p99-ms")
	b.ReportMetric(0, "ns/op")
}
