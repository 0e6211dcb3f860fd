package record_test

import (
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/record"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// The benchmark world is the publish benchmark's (sync
// BenchmarkPublish100K*): 4 components of 16 bytes (64 B per entity),
// chunks of 1024, with realistic values (random positions and velocities,
// health, a per-entity stamp hash), plus the engine's time singleton. A
// frame moves every entity of a fixed fraction of the chunks (Pos += Vel,
// the stamp rehashed, health ticks): what a simulation dirties.
type Health struct {
	HP, Max int32
	Regen   float32
	Pad     int32
}
type Stamp struct{ Frame, Check uint64 }

type benchWorld struct {
	w                   *world.World
	pub                 *fsync.Publisher
	lw                  *layout.World
	pos, vel, hp, stamp world.ComponentID
	frame               uint64
}

func newBenchWorld(tb testing.TB, entities int) *benchWorld {
	r := world.NewRegistry()
	bw := &benchWorld{}
	var err error
	bw.pos, _ = world.Register[Pos](r, "Position")
	bw.vel, _ = world.Register[Vel](r, "Velocity")
	bw.hp, _ = world.Register[Health](r, "Health")
	bw.stamp, err = world.Register[Stamp](r, "Stamp")
	require.NoError(tb, err)
	_, err = world.RegisterTime(r)
	require.NoError(tb, err)
	bw.w, err = world.New(r, world.Config{ChunkCapacity: 1024, MaxChunks: entities/1024 + 2})
	require.NoError(tb, err)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < entities; i++ {
		e, err := bw.w.Create()
		require.NoError(tb, err)
		require.NoError(tb, world.Set(bw.w, e, bw.pos, Pos{X: rng.Float32() * 1000, Y: rng.Float32() * 1000}))
		require.NoError(tb, world.Set(bw.w, e, bw.vel, Vel{X: rng.Float32()*2 - 1, Y: rng.Float32()*2 - 1}))
		require.NoError(tb, world.Set(bw.w, e, bw.hp, Health{HP: 100, Max: 100, Regen: 0.5}))
		require.NoError(tb, world.Set(bw.w, e, bw.stamp, Stamp{Check: rng.Uint64()}))
	}
	segs, err := fsync.CreateWorldSegments(fmt.Sprintf("rb%d%06x", os.Getpid()%100000, rand.Intn(1<<24)), bw.w, 0, 0)
	require.NoError(tb, err)
	tb.Cleanup(func() { segs.Unlink(); segs.Close() })
	bw.pub, err = fsync.NewPublisher(bw.w, segs)
	require.NoError(tb, err)
	bw.lw = bw.pub.Layout()
	return bw
}

// step dirties pct% of the chunks (spread evenly) and publishes; it returns
// the slot.
func (bw *benchWorld) step(tb testing.TB, pct int) int {
	bw.w.Advance()
	bw.frame++
	q := bw.w.Query(world.MaskOf(bw.pos, bw.vel, bw.hp, bw.stamp))
	for q.Next() {
		if c := q.Chunk(); (c*pct+99)/100 == ((c+1)*pct+99)/100 { // pct% of the chunks, spread evenly
			continue
		}
		ps, vs := world.ColumnMut[Pos](&q, bw.pos), world.ColumnMut[Vel](&q, bw.vel)
		hs, ss := world.ColumnMut[Health](&q, bw.hp), world.ColumnMut[Stamp](&q, bw.stamp)
		for i := range ps {
			ps[i].X += vs[i].X
			ps[i].Y += vs[i].Y
			if hs[i].HP < hs[i].Max && i%7 == int(bw.frame%7) {
				hs[i].HP++
			}
			ss[i].Frame = bw.frame
			ss[i].Check = ss[i].Check*0x9E3779B97F4A7C15 + bw.frame
		}
	}
	st, err := bw.pub.Publish(bw.frame, layout.SchemaMask(len(bw.lw.Components)))
	require.NoError(tb, err)
	return st.Slot
}

// BenchmarkRecordBytesPerFrame: what a recorder writes per frame of the
// 100K-entity world at 1%, 10%, 30% and 100% dirty chunks, against the
// dirty bytes (the columns and records a delta copies from the slot):
// dirty-B, raw-B (the payload), file-B (zstd, through a Writer, per frame
// in the file), x-dirty = file-B / dirty-B; and the capture's time against a
// same-run memcpy of the same bytes (capture-ns, x-memcpy), the writer's
// compress+write time per frame (write-ns).
func BenchmarkRecordBytesPerFrame(b *testing.B) {
	for _, pct := range []int{1, 10, 30, 100} {
		b.Run(strconv.Itoa(pct)+"pct", func(b *testing.B) {
			bw := newBenchWorld(b, 100_000)
			for i := 0; i < 8; i++ {
				bw.step(b, 100)
			}
			hdr, err := record.NewHeader(bw.lw, time.Now().UnixNano(), 16666666, 0)
			require.NoError(b, err)
			wr, err := record.Create(filepath.Join(b.TempDir(), "b.fdpr"), hdr, record.WriterOptions{QueueFrames: 4})
			require.NoError(b, err)
			cp := record.NewCapturer(bw.lw, 0)
			cp.SetKeyframeBudget(0)                                   // deltas only: what a frame costs
			raw, _, err := cp.Capture(nil, bw.step(b, pct), nil, nil) // the keyframe
			require.NoError(b, err)
			require.True(b, wr.TryEnqueue(record.KindKeyframe, bw.frame, raw))
			waitWritten(wr, 1)
			file0 := wr.Stats().FileBytes
			var capDur time.Duration
			var dirty, rawB int
			buf := make([]byte, 0, 16<<20)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				s := bw.step(b, pct)
				b.StartTimer()
				t0 := time.Now()
				out, info, err := cp.Capture(buf[:0], s, nil, nil)
				capDur += time.Since(t0)
				if err != nil || info.Kind != record.KindDelta {
					b.Fatal(err, info.Kind)
				}
				dirty += info.Dirty
				rawB += info.Bytes
				b.StopTimer()
				for !wr.TryEnqueue(info.Kind, info.Frame, append([]byte(nil), out...)) {
					time.Sleep(100 * time.Microsecond)
				}
				b.StartTimer()
			}
			b.StopTimer()
			t0 := time.Now()
			waitWritten(wr, uint64(b.N)+1)
			st := wr.Stats()
			require.NoError(b, wr.Close())
			_ = t0
			n := float64(b.N)
			fileB := float64(st.FileBytes-file0) / n
			src := make([]byte, dirty/b.N)
			dst := make([]byte, len(src)+4096)[1024:][:len(src)]
			for i := range src {
				src[i] = byte(i)
			}
			c0 := time.Now()
			for i := 0; i < b.N; i++ {
				copy(dst, src)
			}
			cpy := time.Since(c0)
			b.ReportMetric(float64(dirty)/n, "dirty-B")
			b.ReportMetric(float64(rawB)/n, "raw-B")
			b.ReportMetric(fileB, "file-B")
			b.ReportMetric(fileB/(float64(dirty)/n), "x-dirty")
			b.ReportMetric(float64(capDur.Nanoseconds())/n, "capture-ns")
			b.ReportMetric(float64(capDur)/float64(cpy), "x-memcpy")
		})
	}
}

func waitWritten(wr *record.Writer, n uint64) {
	for wr.Stats().Written < n && wr.Err() == nil {
		time.Sleep(100 * time.Microsecond)
	}
}

// benchFiles caches the recordings of recordFile by their parameters: a
// benchmark function runs several times (growing b.N), the recording is
// made once. benchDir holds them; TestMain removes it.
var (
	benchFiles = map[string]string{}
	benchDir   string
)

// recordFile records frames frames of a world of entities entities at pct%
// dirty chunks into a file (keyframe interval kf and the default budget),
// once per parameters, and returns its path.
func recordFile(tb testing.TB, _ string, entities, frames, pct, kf int) string {
	key := fmt.Sprint(entities, frames, pct, kf)
	if p, ok := benchFiles[key]; ok {
		return p
	}
	if benchDir == "" {
		d, err := os.MkdirTemp("", "fdp-record-bench")
		require.NoError(tb, err)
		benchDir = d
	}
	p := recordNew(tb, benchDir, entities, frames, pct, kf)
	benchFiles[key] = p
	return p
}

func recordNew(tb testing.TB, dir string, entities, frames, pct, kf int) string {
	bw := newBenchWorld(tb, entities)
	hdr, err := record.NewHeader(bw.lw, time.Now().UnixNano(), 16666666, uint32(kf))
	require.NoError(tb, err)
	path := filepath.Join(dir, fmt.Sprintf("r%d-%d-%d-%d.fdpr", entities, frames, pct, kf))
	wr, err := record.Create(path, hdr, record.WriterOptions{})
	require.NoError(tb, err)
	cp := record.NewCapturer(bw.lw, kf)
	for i := 0; i < frames; i++ {
		s := bw.step(tb, pct)
		raw, info, err := cp.Capture(wr.Buffer(), s, nil, nil)
		require.NoError(tb, err)
		for !wr.TryEnqueue(info.Kind, info.Frame, raw) {
			time.Sleep(100 * time.Microsecond)
		}
	}
	require.NoError(tb, wr.Close())
	return path
}

// BenchmarkReplayDecode: reading (checksum, zstd), decoding and applying
// every frame of a 100K-entity recording (30% dirty chunks, a keyframe
// every 600 frames at the latest, and by the default keyframe budget) into
// an image, against the recorded real-time rate:
// frames/s and x-realtime (frames/s × the frame period).
func BenchmarkReplayDecode(b *testing.B) {
	path := recordFile(b, b.TempDir(), 100_000, 240, 30, 600)
	rd, err := record.Open(path)
	require.NoError(b, err)
	defer rd.Close()
	im := record.NewImage(rd.Header())
	n := len(rd.Index())
	b.SetBytes(int64(rd.Size() / int64(n)))
	b.ResetTimer()
	cpu0 := cpuTime()
	for done := 0; done < b.N; {
		st := rd.Stream(0, min(n, b.N-done), 0, 0)
		for {
			f, _, err := st.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if err := im.Apply(f); err != nil {
				b.Fatal(err)
			}
			rd.Recycle(f)
			done++
		}
		st.Close()
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	perFrame := b.Elapsed().Seconds() / float64(b.N)
	period := float64(rd.Header().FramePeriod) / 1e9
	b.ReportMetric(1/perFrame, "frames/s")
	b.ReportMetric(period/perFrame, "x-realtime")
	// CPU time of the process per frame (every goroutine): what the decode
	// costs whatever else the shared machine runs; x-realtime-cpu is the
	// real-time multiple one core would give.
	b.ReportMetric(cpu.Seconds()*1000/float64(b.N), "cpu-ms/frame")
	b.ReportMetric(period/(cpu.Seconds()/float64(b.N)), "x-realtime-cpu")
}

// BenchmarkSeek: a Seek to a random frame (a fresh image: the nearest
// keyframe and the deltas after it) of a 10-minute recording at 60 fps
// (36000 frames) of a 10K-entity world, 30% dirty chunks, a keyframe every
// 600 frames at the latest and by the default keyframe budget, after Open
// (index record); and the same on a 100K-entity
// recording of 600 frames (what 10 minutes would need does not fit: see
// docs/PERFORMANCE.md "Recorder"). seek-ms, max-ms (the worst of the
// seeks), open-ms; and on a 1-minute recording of the 10K world (the
// same seeks: their cost does not grow with the recording's length).
// FDP_BENCH_SEEK_FRAMES overrides the 36000.
func BenchmarkSeek(b *testing.B) {
	frames := 36000
	if v, err := strconv.Atoi(os.Getenv("FDP_BENCH_SEEK_FRAMES")); err == nil && v > 0 {
		frames = v
	}
	for _, tc := range []struct {
		name             string
		entities, frames int
	}{{"10K-1min", 10_000, frames / 10}, {"10K-10min", 10_000, frames}, {"100K-10s", 100_000, 600}} {
		b.Run(tc.name, func(b *testing.B) {
			path := recordFile(b, b.TempDir(), tc.entities, tc.frames, 30, 600)
			t0 := time.Now()
			rd, err := record.Open(path)
			require.NoError(b, err)
			open := time.Since(t0)
			require.False(b, rd.Rebuilt())
			defer rd.Close()
			n := len(rd.Index())
			rng := rand.New(rand.NewSource(2))
			var durs []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				im := record.NewImage(rd.Header())
				j := rng.Intn(n)
				t := time.Now()
				if _, err := rd.Seek(im, j); err != nil {
					b.Fatal(err)
				}
				durs = append(durs, time.Since(t))
				if im.Frame != rd.Index()[j].Frame {
					b.Fatal("seek landed elsewhere")
				}
			}
			b.StopTimer()
			sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "seek-ms")
			b.ReportMetric(ms(durs[len(durs)/2]), "p50-ms")
			b.ReportMetric(ms(durs[len(durs)*99/100]), "p99-ms")
			b.ReportMetric(ms(durs[len(durs)-1]), "max-ms")
			b.ReportMetric(float64(open.Microseconds())/1000, "open-ms")
			b.ReportMetric(float64(rd.Size())/float64(n), "file-B/frame")
			b.ReportMetric(float64(n)/float64(len(rd.Keyframes())), "frames/keyframe")
		})
	}
}

// cpuTime returns the CPU time (user + system) of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}
