package host

import (
	"encoding/binary"
	"math"
	"os"
	"testing"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// touchSim changes chunk 0 in the simulation of frame 2 only (before that
// frame's publish): Pos of entity 0 and a structural change (entity 1
// destroyed). The slot published in frame 2 then holds chunk 0 at frame 2's
// version, and is reused two frames later.
type touchSim struct {
	w     *world.World
	pos   world.ComponentID
	frame int
}

func (s *touchSim) Step(float32) {
	s.frame++
	if s.frame == 2 {
		_ = world.Set(s.w, world.MakeEntity(0, 1), s.pos, rPos{X: -1})
		_ = s.w.Destroy(world.MakeEntity(1, 1))
	}
}

// TestStepPublishesPlayback is the outside chaos run's reproduction at the
// engine's level: a module's commands are played back after the frame's
// publish, in a chunk that the simulation also writes every frame. The next
// frames must show them (before the fix, a reused slot kept the chunk from
// before the playback: the destroyed entity came back, the Set reverted
// every other frame, and the chunk alive counts disagreed with the header).
func TestStepPublishesPlayback(t *testing.T) {
	s := newRSchema()
	w, err := world.New(s.reg, world.Config{ChunkCapacity: 16, MaxChunks: 4})
	require.NoError(t, err)
	for i := 0; i < 20; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, s.pos, rPos{X: float32(i)}))
	}
	inst := testInstance(t)
	e, err := New(Config{Instance: inst, Logger: quietLog()}, w, &touchSim{w: w, pos: s.pos})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })

	// A slow module that is never due: its ring is played back every frame.
	_, err = e.admit(ipc.Hello{Name: "m", Tier: ipc.TierSlow, Every: math.MaxInt32}, ipc.PeerCred{PID: os.Getpid()})
	require.NoError(t, err)
	lm, err := layout.DecodeModule(e.mods[0].seg.Data)
	require.NoError(t, err)
	prod, err := ipc.NewProducer(lm.Ring())
	require.NoError(t, err)
	r, err := fsync.Attach(inst, fsync.AttachOptions{Name: "check"})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })

	check := func(frame uint64, x5 float32, count uint32, alive map[int]bool) {
		t.Helper()
		f, err := r.Pin()
		require.NoError(t, err)
		defer func() { require.NoError(t, f.Release()) }()
		require.Equal(t, frame, f.Number())
		sum := uint32(0)
		for c := 0; c < f.Chunks(); c++ {
			for _, rec := range f.Records(c) {
				if rec.Flags&layout.FlagAlive != 0 {
					sum++
				}
			}
		}
		require.Equal(t, f.Info().Alive, sum, "frame %d: header alive vs records", frame)
		require.Equal(t, count, sum, "frame %d: alive entities", frame)
		for i, want := range alive {
			require.Equal(t, want, f.IsAlive(world.MakeEntity(uint32(i), 1)), "frame %d: entity %d alive", frame, i)
		}
		p, ok := fsync.Get[rPos](f, world.MakeEntity(5, 1), s.pos)
		require.True(t, ok)
		require.Equal(t, x5, p.X, "frame %d: entity 5's Pos.X", frame)
	}
	cmd := func(typ uint16, n int, enc func([]byte)) {
		b, err := prod.Reserve(typ, n)
		require.NoError(t, err)
		enc(b)
	}

	e.Step()
	check(1, 5, 20, map[int]bool{2: true, 3: true})
	// Commands of the module, played back at the end of frame 2.
	cmd(world.CmdDestroy, world.CmdRefSize, func(b []byte) { world.EncodeRef(b, world.MakeEntity(2, 1)) })
	cmd(world.CmdSet, world.CmdCompHdr+8, func(b []byte) {
		world.EncodeComp(b, world.MakeEntity(5, 1), s.pos)
		binary.LittleEndian.PutUint32(b[world.CmdCompHdr:], math.Float32bits(999))
	})
	prod.Commit()
	e.Step() // simulation, publish (before playback), playback
	check(2, 5, 19, map[int]bool{2: true, 3: true})
	for frame := uint64(3); frame <= 12; frame++ {
		e.Step()
		check(frame, 999, 18, map[int]bool{2: false, 3: true})
	}
}
