package shm

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"golang.org/x/sys/unix"

	"github.com/stretchr/testify/require"
)

// dirNames lists the file names of Dir, sorted.
func dirNames(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(Dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// TestRemovalKeepsLiveCreators: the removal paths (RemoveInstance at a
// supervisor's stop, GC) never remove a file whose creator is a live
// process, whether it holds the creator lock or only runs (it closed its
// mapping), nor the control socket a live engine listens on; they remove
// what dead creators (real SIGKILLed processes) and this process made.
func TestRemovalKeepsLiveCreators(t *testing.T) {
	useTempDir(t)
	inst := uniqueInstance()
	world := SegmentName(inst, WorldKind)
	sock := Prefix + inst + SocketSuffix
	engine := startChild(t, "engine", "FDP_CHILD_SEG="+world, "FDP_CHILD_MODE=ready", "FDP_CHILD_SOCK="+filepath.Join(Dir, sock))
	require.Equal(t, "ok", engine.line(t))
	running := startCreator(t, SegmentName(inst, "mod.1"), "closed") // no lock, pid alive
	dead := startCreator(t, SegmentName(inst, "mod.2"), "ready")
	dead.kill(t)
	own, err := Create(SegmentName(inst, "mod.3"), 2*layout.HeaderSize)
	require.NoError(t, err)
	writeReadyHeader(t, own, inst, uint32(os.Getpid()), SelfStartTime())
	require.NoError(t, own.Close())

	removed, err := GC(inst)
	require.NoError(t, err)
	require.Equal(t, []string{SegmentName(inst, "mod.2")}, removed, "gc removes only the dead creator's segment")

	dead = startCreator(t, SegmentName(inst, "mod.2"), "ready")
	dead.kill(t)
	kept, err := RemoveInstance(inst)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{world, SegmentName(inst, "mod.1"), sock}, kept)
	require.ElementsMatch(t, []string{world, SegmentName(inst, "mod.1"), sock}, dirNames(t),
		"the dead creator's and this process's segments are gone, the live ones stay")
	require.NoError(t, connectProbe(filepath.Join(Dir, sock)), "the live engine's socket still accepts")

	// Once the creators are dead (SIGKILL: the socket file stays, nobody
	// listens), everything goes.
	engine.kill(t)
	running.kill(t)
	kept, err = RemoveInstance(inst)
	require.NoError(t, err)
	require.Empty(t, kept)
	require.Empty(t, dirNames(t))
}

// TestSegmentUnlinkOnlyItsFile: a creator's Unlink removes its file, but
// not a file that another (live) process created under the same name after
// ours was removed; after Close it removes nothing.
func TestSegmentUnlinkOnlyItsFile(t *testing.T) {
	useTempDir(t)
	inst := uniqueInstance()
	name := SegmentName(inst, WorldKind)
	s, err := Create(name, 2*layout.HeaderSize)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, os.Remove(s.Path)) // e.g. taken for dead and collected
	other := startCreator(t, name, "ready")
	require.NoError(t, s.Unlink())
	require.FileExists(t, s.Path, "another process's file under our name stays")
	other.kill(t)

	s2, err := Create(SegmentName(inst, "mod.1"), 2*layout.HeaderSize)
	require.NoError(t, err)
	require.NoError(t, s2.Close())
	require.NoError(t, s2.Unlink())
	require.FileExists(t, s2.Path, "after Close the file cannot be told apart: kept")

	s3, err := Create(SegmentName(inst, "mod.2"), 2*layout.HeaderSize)
	require.NoError(t, err)
	require.NoError(t, s3.Unlink())
	require.NoFileExists(t, s3.Path)
	require.NoError(t, s3.Close())
}

// TestGCRemovesDeadInstanceLocks: an instance lock file nobody holds (its
// owner was killed) is removed by GC; a held one is kept.
func TestGCRemovesDeadInstanceLocks(t *testing.T) {
	useTempDir(t)
	dead, live := uniqueInstance(), uniqueInstance()
	require.NoError(t, os.WriteFile(LockPath(dead), []byte("run 1\n"), 0o600))
	f, err := os.OpenFile(LockPath(live), os.O_RDWR|os.O_CREATE, 0o600)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB))
	removed, err := GC("")
	require.NoError(t, err)
	require.Equal(t, []string{filepath.Base(LockPath(dead))}, removed)
	require.FileExists(t, LockPath(live))
	removed, err = GC(live)
	require.NoError(t, err)
	require.Empty(t, removed)
}
