package top

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/inspect/fixture"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/stretchr/testify/require"
)

// putSeg writes a segment file of the private shm directory, read-only
// (0400: a Source that tried to map it writable would fail), replacing any
// file of that name by a rename, as an engine's new segment replaces a dead
// one's.
func putSeg(t testing.TB, name string, b []byte) {
	t.Helper()
	tmp := filepath.Join(shm.Dir, ".tmp-"+name)
	require.NoError(t, os.WriteFile(tmp, b, 0o400))
	require.NoError(t, os.Rename(tmp, filepath.Join(shm.Dir, name)))
}

// poke stores v at off of a segment file through the file (not a mapping):
// the Source's shared mapping sees it.
func poke(t *testing.T, name string, off int, v uint64) {
	t.Helper()
	p := filepath.Join(shm.Dir, name)
	require.NoError(t, os.Chmod(p, 0o600))
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	require.NoError(t, err)
	var w [8]byte
	binary.LittleEndian.PutUint64(w[:], v)
	_, err = f.WriteAt(w[:], int64(off))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.Chmod(p, 0o400))
}

// TestSourceSegments: a Source over segment files of a private directory
// reports no engine, then the world's figures and the module segments of
// the same creator (not another creator's, nor files that only look like
// module segments), follows counters changed under its mapping, calls the
// engine dead when its creator is, re-attaches when a new world replaces the
// file, and reports a world that is not ready or not a world.
func TestSourceSegments(t *testing.T) {
	testutil.UseShmDir(t, t.TempDir())
	live := map[uint32]bool{}
	src := NewSource("demo")
	src.Alive = func(pid uint32, _ uint64) bool { return live[pid] }
	t.Cleanup(src.Close)
	now := time.Unix(1_800_000_000, 0)

	require.Equal(t, EngineAbsent, src.Sample(now).Engine)

	c := fixture.Default
	world := fixture.World(c)
	layout.AddDurHist(world, layout.OffWPubHist, 50_000)
	layout.AddDurHist(world, layout.OffWFrameHist, 2_000_000)
	layout.AddDurHist(world, layout.OffWFrameHist, 2_000_000)
	putSeg(t, "fdp.demo.world", world)
	putSeg(t, "fdp.demo.mod.2", fixture.Module(c))
	other := c
	other.Start++
	putSeg(t, "fdp.demo.mod.3", fixture.Module(other)) // another engine's
	putSeg(t, "fdp.demo.mod.02", fixture.Module(c))    // not a slot's name
	putSeg(t, "fdp.demo.mod.x", make([]byte, 4096))    // not a slot's name
	putSeg(t, "fdp.demo2.mod.2", fixture.Module(c))    // another instance
	live[c.PID], live[fixture.ReaderAIPID] = true, true

	s := src.Sample(now)
	require.Equal(t, EngineLive, s.Engine, s.Err)
	require.Equal(t, Identity{PID: c.PID, Start: c.Start, Created: c.Created}, s.Creator)
	wl, err := layout.DecodeWorld(world)
	require.NoError(t, err)
	require.True(t, s.Published)
	require.Equal(t, uint64(fixture.LatestFrame), s.Frame)
	require.Equal(t, layout.Load64(world, layout.OffWStatPublishes), s.Publishes)
	require.Equal(t, layout.Load64(world, layout.OffWStatSkipped), s.Skipped)
	require.Equal(t, uint64(fixture.ShmHeld), s.ShmHeld)
	require.Equal(t, uint64(fixture.ShmLimit), s.ShmLimit)
	require.Equal(t, layout.ReadDurHist(wl.B, layout.OffWPubHist), s.PubHist)
	require.Equal(t, uint64(1), s.PubHist.Count())
	require.Equal(t, uint64(2), s.FrameHist[layout.DurHistBucket(2_000_000)])
	require.Len(t, s.Modules, 1, "%+v", s.Modules)
	m := s.Modules[0]
	require.Equal(t, fixture.ModuleSlot, m.Slot)
	require.Equal(t, "ai", m.Name)
	require.Equal(t, uint32(fixture.ReaderAIPID), m.PID)
	require.True(t, m.Alive)
	require.NotNil(t, m.Stats)
	require.Equal(t, uint64(40), m.Stats.Runs)
	require.Equal(t, layout.ModuleBreakerOpen, m.Stats.State)

	// Counters written under the mapping are read on the next sample.
	poke(t, "fdp.demo.world", layout.OffWStatPublishes, 9000)
	poke(t, "fdp.demo.world", layout.OffWPubHist+8*layout.DurHistBucket(50_000), 7)
	s = src.Sample(now.Add(time.Second))
	require.Equal(t, uint64(9000), s.Publishes)
	require.Equal(t, uint64(7), s.PubHist.Count())

	// The module's process and then the engine die.
	live[fixture.ReaderAIPID] = false
	s = src.Sample(now.Add(2 * time.Second))
	require.False(t, s.Modules[0].Alive)
	live[c.PID] = false
	s = src.Sample(now.Add(3 * time.Second))
	require.Equal(t, EngineDead, s.Engine)
	require.Equal(t, uint64(9000), s.Publishes, "the dead engine's last figures")

	// A new engine's world replaces the file: the source re-attaches, and
	// the old engine's module segment is not the new one's.
	n := fixture.Creator{Instance: "demo", PID: c.PID + 1, Start: 900, Created: c.Created + 5}
	putSeg(t, "fdp.demo.world", fixture.World(n))
	live[n.PID] = true
	s = src.Sample(now.Add(4 * time.Second))
	require.Equal(t, EngineLive, s.Engine)
	require.Equal(t, n.PID, s.Creator.PID)
	require.Zero(t, s.PubHist.Count(), "the new segment's histogram")
	require.Empty(t, s.Modules)
	putSeg(t, "fdp.demo.mod.0", fixture.Module(n))
	require.Len(t, src.Sample(now.Add(5*time.Second)).Modules, 1)

	// Not ready yet (the ready word unset), then not a world segment.
	nr := fixture.World(n)
	binary.LittleEndian.PutUint32(nr[60:], 0)
	putSeg(t, "fdp.demo.world", nr)
	require.Equal(t, EngineStarting, src.Sample(now).Engine)
	putSeg(t, "fdp.demo.world", make([]byte, 8192))
	s = src.Sample(now)
	require.Equal(t, EngineUnreadable, s.Engine)
	require.Contains(t, s.Err, "fdp.demo.world")

	// Gone.
	require.NoError(t, os.Remove(filepath.Join(shm.Dir, "fdp.demo.world")))
	require.Equal(t, EngineAbsent, src.Sample(now).Engine)
}
