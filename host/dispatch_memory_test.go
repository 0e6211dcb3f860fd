package host

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestMemoryRefusalsRoundRobin: four solo slow groups under a limit with
// room for about one snapshot, one of which (every component) never fits
// once another is held: the three that fit all keep ticking, in turn.
// Before, the dispatch started with the first group refused, the one that
// never fits, and the group right behind it took every slot that came free
// (52 ticks against 0 and 0 from outside).
func TestMemoryRefusalsRoundRobin(t *testing.T) {
	s := newRSchema()
	// Chunks of 1024: a column spans pages, so masks differ in memory.
	w, err := world.New(s.reg, world.Config{ChunkCapacity: 1024, MaxChunks: 24})
	require.NoError(t, err)
	for i := 0; i < 1024*20; i++ {
		e, _ := w.Create()
		require.NoError(t, world.Set(w, e, s.pos, rPos{X: float32(i)}))
		require.NoError(t, world.Set(w, e, s.hp, rHP{V: 1}))
		require.NoError(t, world.Set(w, e, s.tag, rTag{A: 1}))
	}
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog()}, w, nil)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	p := e.pub
	one := int64(p.Layout().SlotSpanBytes(0, world.MaskOf(s.pos), w.NumChunks()))
	p.SetShmLimit(p.MinShmLimit() + one + one/10) // one snapshot at a time; every component never fits
	r := &schedRig{t: t, e: e}
	r.step()
	// Joined in the outside test's slot order: the group that never fits
	// first.
	f3 := r.joinMask("f3", ipc.TierSlow, 6, "solo", world.Mask{})
	p2 := r.joinMask("p2", ipc.TierSlow, 6, "solo", world.MaskOf(s.pos))
	v4 := r.joinMask("v4", ipc.TierSlow, 6, "solo", world.MaskOf(s.hp))
	p1 := r.joinMask("p1", ipc.TierSlow, 6, "solo", world.MaskOf(s.pos))
	runs := r.runTicks(600, map[*Module]uint64{p1: 24, p2: 24, f3: 18, v4: 12})
	t.Logf("runs p1 %d p2 %d f3 %d v4 %d; refused for memory %d", runs[p1], runs[p2], runs[f3], runs[v4], p.SnapNoSpace)
	require.NotZero(t, p.SnapNoSpace, "the limit refused snapshots")
	require.Zero(t, runs[f3], "every component never fits under this limit")
	for _, m := range []*Module{p1, p2, v4} {
		require.GreaterOrEqual(t, runs[m], 5, "%s ticks in turn", m.Name)
	}
}

// TestMemoryRefusalsTakenInTurn: with a shared-memory limit that leaves room
// for one snapshot of Pos, two solo slow modules reading Pos whose ticks
// outlast their period both keep ticking: a group refused for memory is
// first in line at the next dispatch, and takes the slot the other released
// (the same mask: no memory needed). Found from outside: one group ran 141
// ticks in a minute, the other 1.
func TestMemoryRefusalsTakenInTurn(t *testing.T) {
	s := newRSchema()
	w := newRWorld(t, s)
	for i := 0; i < 64*20; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, s.pos, rPos{X: float32(i)}))
	}
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog()}, w, nil)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	p := e.pub
	one := int64(p.Layout().SlotSpanBytes(0, world.MaskOf(s.pos), w.NumChunks()))
	p.SetShmLimit(p.MinShmLimit() + one + one/2)
	r := &schedRig{t: t, e: e}
	r.step()
	a := r.joinMask("a", ipc.TierSlow, 2, "solo", world.MaskOf(s.pos))
	b := r.joinMask("b", ipc.TierSlow, 2, "solo", world.MaskOf(s.pos))
	runs := r.runTicks(240, map[*Module]uint64{a: 3, b: 3})
	require.NotZero(t, p.SnapNoSpace, "the limit refused snapshots")
	require.LessOrEqual(t, p.Backed(), p.MinShmLimit()+one+one/2)
	require.Greater(t, runs[a], 20, "a's ticks")
	require.Greater(t, runs[b], 20, "b's ticks")
	require.InDelta(t, runs[a], runs[b], 2, "a %d ticks, b %d: in turn", runs[a], runs[b])
}

// TestGrowingWorldKeepsPublishingOnSmallDir: in a directory with little
// room left, modules' segments and snapshots leave the room the publish's
// two copies need at the world's largest, so a world that grows to its
// capacity after modules joined keeps publishing every frame. Found from
// outside: modules took that room, the world grew, and the engine published
// nothing from then on (1657 of 1798 publishes skipped for memory).
func TestGrowingWorldKeepsPublishingOnSmallDir(t *testing.T) {
	dir := testutil.MountTmpfs(t, 48<<20)
	testutil.UseShmDir(t, dir)
	s := newRSchema()
	w, err := world.New(s.reg, world.Config{ChunkCapacity: 1024, MaxChunks: 16})
	require.NoError(t, err)
	for i := 0; i < 1024; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, s.pos, rPos{X: float32(i)}))
	}
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog(), RingBytes: 64 << 10}, w, nil)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	r := &schedRig{t: t, e: e}
	r.step()
	// Leave room for the reserve and about three module segments.
	free, err := e.segs.World.Free()
	require.NoError(t, err)
	modSeg := int64(64<<10 + 8<<10)
	filler := free - e.pub.PublishReserve() - 3*modSeg - modSeg/2
	require.Positive(t, filler)
	f, err := os.Create(filepath.Join(dir, "filler"))
	require.NoError(t, err)
	require.NoError(t, unix.Fallocate(int(f.Fd()), 0, 0, filler))
	require.NoError(t, f.Close())
	joined := 0
	for i := 0; i < 10; i++ {
		_, err := r.e.admit(ipc.Hello{Name: fmt.Sprintf("m%d", i), Tier: ipc.TierFast, Every: 1}, ipc.PeerCred{PID: os.Getpid()})
		if err != nil {
			require.ErrorIs(t, err, shm.ErrNoSpace, "module %d", i)
			break
		}
		joined++
	}
	require.Equal(t, 3, joined, "modules join while they leave the publish's reserve")
	// The world grows to its capacity: every frame is still published.
	for w.Count() < w.MaxEntities() {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, s.pos, rPos{X: 1}))
	}
	for i := 0; i < 10; i++ {
		require.NoError(t, r.e.Step().PublishErr, "frame %d after the growth", i)
	}
	require.Zero(t, e.pub.PubNoSpace)
}
