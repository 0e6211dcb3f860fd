package host_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"runtime"
	"testing"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

type aPos struct{ X, Y float32 }
type aVel struct{ X, Y float32 }
type aHP struct{ V int32 }

// allocSim is a simulation touching every path of a frame that may
// allocate: it moves every entity (all chunks dirty), damages a few through
// world.Set, destroys and re-creates one entity (structural change, free
// list) and emits events with payloads.
type allocSim struct {
	w             *world.World
	pos, vel, hp  world.ComponentID
	victim        world.Entity
	frame         uint32
	payload       [16]byte
	emitted, sets int
}

func (s *allocSim) Step(float32) {
	s.frame++
	q := s.w.Query(world.MaskOf(s.pos, s.vel))
	for q.Next() {
		pos := world.ColumnMut[aPos](&q, s.pos)
		vel := world.Column[aVel](&q, s.vel)
		for i := range pos {
			pos[i].X += vel[i].X
			pos[i].Y += vel[i].Y
		}
	}
	for k := 0; k < 8; k++ {
		e := world.MakeEntity(uint32(k*97)%1000+1, 1)
		if world.Set(s.w, e, s.hp, aHP{V: int32(s.frame)}) == nil {
			s.sets++
		}
	}
	// One structural change per frame: destroy an entity, create another.
	if s.w.Destroy(s.victim) == nil {
		if e, err := s.w.Create(); err == nil {
			_ = world.Set(s.w, e, s.pos, aPos{X: 1})
			_ = world.Set(s.w, e, s.vel, aVel{X: 1})
			s.victim = e
		}
	}
	for k := 0; k < 4; k++ {
		binary.LittleEndian.PutUint32(s.payload[:], s.frame)
		binary.LittleEndian.PutUint32(s.payload[4:], uint32(k))
		s.w.Emit(world.EventType(1+k), s.payload[:4+4*k])
		s.emitted++
	}
}

func newAllocEngine(t *testing.T, entities int) (*host.Engine, *allocSim) {
	t.Helper()
	reg := world.NewRegistry()
	pos, err := world.Register[aPos](reg, "Pos")
	require.NoError(t, err)
	vel, err := world.Register[aVel](reg, "Vel")
	require.NoError(t, err)
	hp, err := world.Register[aHP](reg, "HP")
	require.NoError(t, err)
	w, err := world.New(reg, world.Config{ChunkCapacity: 256, MaxChunks: 64})
	require.NoError(t, err)
	sim := &allocSim{w: w, pos: pos, vel: vel, hp: hp}
	for i := 0; i < entities; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, pos, aPos{X: float32(i)}))
		require.NoError(t, world.Set(w, e, vel, aVel{X: 1, Y: 0.5}))
		if i%3 == 0 {
			require.NoError(t, world.Set(w, e, hp, aHP{V: 100}))
		}
		sim.victim = e
	}
	inst := fmt.Sprintf("a%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	eng, err := host.New(host.Config{Instance: inst, FrameRate: 500, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, w, sim)
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	return eng, sim
}

// TestEngineFrameZeroAllocs: in steady state (after warm-up frames that
// size every reusable buffer) an engine frame — simulate, capture events,
// publish, dispatch, playback — allocates nothing. Frames with module
// processes attached are covered in tests/frame_bench_test.go.
func TestEngineFrameZeroAllocs(t *testing.T) {
	eng, sim := newAllocEngine(t, 4000)
	for i := 0; i < 50; i++ { // warm up: every slot written, buffers grown
		st := eng.Step()
		require.NoError(t, st.PublishErr)
	}
	frame0, emitted0, sets0 := eng.Frame(), sim.emitted, sim.sets
	var bad error
	allocs := testing.AllocsPerRun(200, func() {
		st := eng.Step()
		if st.PublishErr != nil && bad == nil {
			bad = st.PublishErr
		}
	})
	require.NoError(t, bad)
	// The frames really ran and did work: 201 frames (AllocsPerRun warms up
	// once), all chunks dirty, events emitted and components set.
	require.Equal(t, frame0+201, eng.Frame())
	require.Equal(t, emitted0+4*201, sim.emitted)
	require.Greater(t, sim.sets, sets0)
	require.Equal(t, 4000, eng.World().Count())
	require.Zero(t, allocs, "allocations per engine frame in steady state")
}

// runAllocs runs frames through Engine.Run (paced by its timer) and returns
// the mallocs of this process during the run.
func runAllocs(t *testing.T, eng *host.Engine, frames int) uint64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, paced := 0, 0
	onFrame := func(st host.FrameStats) {
		n++
		if st.Total < eng.Period() {
			paced++ // Run waits on its timer after this frame
		}
		if n == frames {
			cancel()
		}
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	require.NoError(t, eng.Run(ctx, onFrame))
	runtime.ReadMemStats(&m1)
	require.Equal(t, frames, n)
	require.Greater(t, paced, frames/2, "the frame timer was not exercised")
	return m1.Mallocs - m0.Mallocs
}

// TestEngineRunZeroAllocsPerFrame: the paced frame loop (Run: Step, the
// frame callback, the frame timer) allocates nothing per frame: a run of
// 400 frames allocates no more than a run of 100 frames (a constant setup
// cost aside), averaged like testing.AllocsPerRun.
func TestEngineRunZeroAllocsPerFrame(t *testing.T) {
	eng, _ := newAllocEngine(t, 4000)
	for i := 0; i < 50; i++ {
		eng.Step()
	}
	short := runAllocs(t, eng, 100)
	long := runAllocs(t, eng, 400)
	var perFrame uint64
	if long > short {
		perFrame = (long - short) / 300
	}
	require.Zero(t, perFrame, "allocations per frame of Engine.Run (%d in 100 frames, %d in 400)", short, long)
}

// TestHistogramRecordZeroAllocs: recording a frame time never allocates.
func TestHistogramRecordZeroAllocs(t *testing.T) {
	h := host.NewHistogram()
	allocs := testing.AllocsPerRun(1000, func() { h.Record(12345) })
	require.Zero(t, allocs)
	require.Equal(t, uint64(1001), h.Count())
}
