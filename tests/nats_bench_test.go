package tests

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/record"
	"github.com/fdp-engine/fdp/remote"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// natsMover writes the positions of a rotating 30% of the world's chunks
// every frame (the benchmark's "30% dirty"), nothing else.
type natsMover struct {
	s     *demo.Schema
	w     *world.World
	dirty float64
	frame int
}

func (m *natsMover) Step(dt float32) {
	m.frame++
	q := m.w.Query(world.MaskOf(m.s.Pos))
	var chunks int
	for q.Next() {
		chunks++
	}
	n := int(float64(chunks)*m.dirty + 0.5)
	q = m.w.Query(world.MaskOf(m.s.Pos))
	for c := 0; q.Next(); c++ {
		if (c-m.frame*n%max(chunks, 1)+chunks)%chunks >= n {
			continue
		}
		pos := world.ColumnMut[demo.Position](&q, m.s.Pos)
		for i := range pos {
			pos[i].X += dt
		}
	}
}

func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// BenchmarkMirror100K: the 100K-entity demo world with 30% of its chunks'
// positions written per frame at 60 fps, an in-process bridge publishing
// every frame to an embedded NATS server on loopback, and a mirror
// rebuilding it into shared memory, all on this machine. Reported, each a
// ratio measured in the run: wire bytes per frame over the dirty bytes the
// capture copied (wire/dirty), the mirror's lag in frames (p50, p99: now
// minus the engine's publish time of the frame it shows, over the frame
// period), the frames it skipped, and the round trip of a command batch
// (stored in JetStream, played by the engine through the bridge, answered
// back) p50/p99 in frame periods and ms.
func BenchmarkMirror100K(b *testing.B) {
	for i := 0; i < b.N; i++ {
		benchMirror(b)
	}
}

func benchMirror(b *testing.B) {
	b.StopTimer()
	s, err := demo.NewSchema()
	require.NoError(b, err)
	cfg := demo.DefaultConfig()
	cfg.ChurnPerSec = 0
	sim, err := demo.NewSim(s, cfg)
	require.NoError(b, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ns := startNATS(b)
	inst := uniqueInstance(b, "nb")
	eng, err := host.New(host.Config{Instance: inst, FrameRate: 60, Logger: log}, sim.W, &natsMover{s: s, w: sim.W, dirty: 0.3})
	require.NoError(b, err)
	defer eng.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(3)
	go func() { defer wg.Done(); _ = eng.Run(ctx, nil) }()

	var mu sync.Mutex
	var wire, dirty, frames int
	var lags []float64
	br, err := remote.NewBridge(ctx, remote.BridgeOptions{Instance: inst, NATS: remote.NATS{URL: ns.url()}, Rate: 60, Log: log,
		OnFrame: func(f remote.BridgeFrame) {
			mu.Lock()
			if !f.Key {
				wire, dirty, frames = wire+f.Wire, dirty+f.Dirty, frames+1
			}
			mu.Unlock()
		}})
	require.NoError(b, err)
	defer br.Close()
	go func() { defer wg.Done(); _ = br.Run(ctx) }()
	mirrored := make(chan struct{}, 1)
	var mir *remote.Mirror
	var skipped0 uint64
	go func() {
		defer wg.Done()
		_ = remote.RunMirror(ctx, remote.MirrorOptions{Source: inst, Instance: inst + "m", NATS: remote.NATS{URL: ns.url()}, Registry: s.Reg, Log: log,
			OnMirror: func(m *remote.Mirror) { mu.Lock(); mir = m; mu.Unlock() },
			OnFrame: func(f remote.MirrorFrame) {
				mu.Lock()
				lags = append(lags, float64(f.Lag)/float64(time.Second/60))
				mu.Unlock()
				select {
				case mirrored <- struct{}{}:
				default:
				}
			}})
	}()
	select {
	case <-mirrored:
	case <-time.After(60 * time.Second):
		b.Fatal("the mirror published nothing within 60 s")
	}
	mu.Lock()
	lags, wire, dirty, frames = lags[:0], 0, 0, 0
	skipped0 = mir.Stats.Skipped.Load()
	mu.Unlock()
	b.StartTimer()
	// Command round trips while the frames flow: one batch at a time,
	// published as a mirror does, answered by the bridge.
	nc, err := nats.Connect(ns.url())
	require.NoError(b, err)
	defer nc.Close()
	res := make(chan struct{}, 1)
	sub, err := nc.Subscribe("fdp."+inst+".result.bench", func(*nats.Msg) { res <- struct{}{} })
	require.NoError(b, err)
	defer func() { _ = sub.Unsubscribe() }()
	var rtts []float64
	cmds := host.AppendRemoteCommand(nil, world.CmdCreate, make([]byte, world.CmdCreateSize))
	end := time.Now().Add(6 * time.Second)
	for seq := uint64(1); time.Now().Before(end); seq++ {
		j, _ := json.Marshal(ipc.RemoteBatch{Module: "bench", Mirror: "bench", Incarnation: 0xbe7c, Seq: seq, Commands: cmds})
		start := time.Now()
		_, err := nc.Request("fdp."+inst+".cmd", j, 5*time.Second) // the JetStream publish ack
		require.NoError(b, err)
		select {
		case <-res:
			rtts = append(rtts, float64(time.Since(start))/float64(time.Millisecond))
		case <-time.After(10 * time.Second):
			b.Fatal("no answer to a command batch within 10 s")
		}
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	period := 1000.0 / 60
	b.ReportMetric(float64(wire)/float64(max(dirty, 1)), "wire/dirty")
	b.ReportMetric(float64(wire)/float64(max(frames, 1))/1e3, "wire_kB/frame")
	b.ReportMetric(float64(dirty)/float64(max(frames, 1))/1e3, "dirty_kB/frame")
	b.ReportMetric(quantile(lags, 0.5), "lag_p50_frames")
	b.ReportMetric(quantile(lags, 0.99), "lag_p99_frames")
	b.ReportMetric(float64(mir.Stats.Skipped.Load()-skipped0), "skipped")
	b.ReportMetric(quantile(rtts, 0.5)/period, "rtt_p50_frames")
	b.ReportMetric(quantile(rtts, 0.99)/period, "rtt_p99_frames")
	b.ReportMetric(quantile(rtts, 0.5), "rtt_p50_ms")
	b.ReportMetric(quantile(rtts, 0.99), "rtt_p99_ms")
	b.ReportMetric(float64(len(lags)), "mirrored_frames")
	b.ReportMetric(float64(frames), "bridged_deltas")
	b.ReportMetric(float64(eng.Frames), "engine_frames")
}

// BenchmarkBridgeEncode100K: the bridge's work per frame without the
// network, on the benchmark world of BenchmarkMirror100K (100K entities,
// 30% of the chunks' positions written per frame): the capture of the
// latest frame as a delta and its zstd compression. x_period is its time
// over the frame period at 60 fps (the share of a core the bridge needs to
// keep up); the engine's own frame (simulate and publish) in the same run
// is the baseline (x_engine_frame).
func BenchmarkBridgeEncode100K(b *testing.B) {
	s, err := demo.NewSchema()
	require.NoError(b, err)
	cfg := demo.DefaultConfig()
	cfg.ChurnPerSec = 0
	sim, err := demo.NewSim(s, cfg)
	require.NoError(b, err)
	inst := uniqueInstance(b, "ne")
	eng, err := host.New(host.Config{Instance: inst, FrameRate: 60, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, sim.W, &natsMover{s: s, w: sim.W, dirty: 0.3})
	require.NoError(b, err)
	defer eng.Close()
	eng.Step()
	r, err := fsync.Attach(inst, fsync.AttachOptions{Name: "bench"})
	require.NoError(b, err)
	defer r.Close()
	cp := record.NewCapturer(r.Layout(), 0)
	enc := remote.NewEncoder()
	var raw, unit []byte
	var engT, bridgeT, bridgeCPU time.Duration
	var wire, dirty int
	// CPU time of this thread (the machine is shared: wall time includes
	// waiting for a CPU).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := func() time.Duration {
		var ru unix.Rusage
		_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		eng.Step()
		t1 := time.Now()
		c1 := cpu()
		f, err := r.Pin()
		require.NoError(b, err)
		var info record.CaptureInfo
		raw, info, err = cp.Capture(raw[:0], f.Slot(), nil, nil)
		require.NoError(b, err)
		require.NoError(b, f.Release())
		unit = enc.AppendRecord(unit[:0], info.Kind, info.Frame, raw)
		bridgeT += time.Since(t1)
		bridgeCPU += cpu() - c1
		engT += t1.Sub(t0)
		wire += len(unit)
		dirty += info.Dirty
	}
	b.ReportMetric(float64(bridgeT.Microseconds())/float64(b.N)/1e3, "bridge_ms/frame")
	b.ReportMetric(float64(bridgeT)/float64(b.N)/float64(time.Second/60), "x_period")
	b.ReportMetric(float64(bridgeCPU.Microseconds())/float64(b.N)/1e3, "bridge_cpu_ms/frame")
	b.ReportMetric(float64(bridgeCPU)/float64(b.N)/float64(time.Second/60), "cpu_x_period")
	b.ReportMetric(float64(bridgeT)/float64(max(engT, 1)), "x_engine_frame")
	b.ReportMetric(float64(wire)/float64(max(dirty, 1)), "wire/dirty")
}
