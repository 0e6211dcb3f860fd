package shm

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// worldFile creates a world-kind segment name of instance inst whose latest
// word names frame (0: nothing published). alive keeps it open (creator lock
// held, our own pid and start time); otherwise its creator is dead (our pid
// with another start time) and the file is closed.
func worldFile(t *testing.T, name, inst string, frame uint64, alive bool) *Segment {
	t.Helper()
	s, err := Create(name, 2*layout.HeaderSize)
	require.NoError(t, err)
	start := SelfStartTime()
	if !alive {
		start++
	}
	writeReadyHeader(t, s, inst, uint32(os.Getpid()), start)
	if frame > 0 {
		layout.Store64(s.Data, layout.OffWLatest, layout.PackLatest(frame, 0))
	}
	if !alive {
		require.NoError(t, s.Close())
		return nil
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAsideKinds(t *testing.T) {
	require.Equal(t, "world.prev", AsidePrev.Kind())
	require.Equal(t, "world.prev2", AsidePrev2.String())
	require.Equal(t, "none", NoAside.String())
	require.Equal(t, "", NoAside.Kind())
	for _, a := range Asides {
		require.Equal(t, a, AsideOf(a.Kind()))
		inst, kind, ok := ParseName(SegmentName("demo", a.Kind()))
		require.True(t, ok)
		require.Equal(t, "demo", inst)
		require.Equal(t, a.Kind(), kind)
	}
	require.Equal(t, NoAside, AsideOf(WorldKind))
	require.Equal(t, NoAside, AsideOf("world.prev3"))
	require.True(t, RecoveryMaterial(Info{Kind: WorldKind}))
	require.True(t, RecoveryMaterial(Info{Kind: "world.prev", Aside: AsidePrev}))
	require.False(t, RecoveryMaterial(Info{Kind: "leases"}))
}

// TestRename: rename(2) in Dir keeps the file (and a mapping of it) and
// never replaces an existing segment.
func TestRename(t *testing.T) {
	useTempDir(t)
	s, err := Create("fdp.t.world", 2*layout.HeaderSize)
	require.NoError(t, err)
	defer s.Close()
	s.Data[layout.HeaderSize] = 42
	require.NoError(t, Rename("fdp.t.world", "fdp.t.world.prev"))
	_, err = os.Stat(filepath.Join(Dir, "fdp.t.world"))
	require.ErrorIs(t, err, os.ErrNotExist)
	o, err := Open("fdp.t.world.prev", false)
	require.NoError(t, err)
	require.Equal(t, byte(42), o.Data[layout.HeaderSize], "the same file")
	require.NoError(t, o.Close())
	s.Data[layout.HeaderSize] = 43 // the mapping is still valid

	other, err := Create("fdp.t.world", 2*layout.HeaderSize)
	require.NoError(t, err)
	defer other.Close()
	err = Rename("fdp.t.world", "fdp.t.world.prev")
	require.ErrorIs(t, err, os.ErrExist, "never replaces")
	_, err = os.Stat(filepath.Join(Dir, "fdp.t.world"))
	require.NoError(t, err, "both files stay")
	require.Error(t, Rename("fdp.t.world", "../x"))
	require.Error(t, Rename("fdp.t.missing", "fdp.t.world.prev2"))
}

// TestGCKeepsAsideForRecovery: an aside copy is kept by GC (and `engine
// gc`) while its instance may still recover from it: until a live world
// segment of the instance has published a frame at or beyond the copy's.
// GCKeep(RecoveryMaterial) also keeps the stale world segment.
func TestGCKeepsAsideForRecovery(t *testing.T) {
	useTempDir(t)
	worldFile(t, "fdp.t.world", "t", 10, false)
	worldFile(t, "fdp.t.world.prev", "t", 9, false)
	worldFile(t, "fdp.t.leases", "t", 0, false) // any stale segment
	worldFile(t, "fdp.u.world.prev", "u", 0, false)

	st := states(t)
	require.Equal(t, uint64(10), st["fdp.t.world"].Frame)
	require.Equal(t, uint64(9), st["fdp.t.world.prev"].Frame)
	require.Equal(t, AsidePrev, st["fdp.t.world.prev"].Aside)
	require.Equal(t, NoAside, st["fdp.t.world"].Aside)
	require.False(t, st["fdp.t.world.prev"].KeptForRecovery, "the stale world (frame 10) supersedes the copy (9)")
	require.Equal(t, StateStale, st["fdp.t.world.prev"].State)
	require.True(t, Removable(st["fdp.t.world.prev"]))
	require.True(t, Removable(st["fdp.t.world"]))

	removed, err := GCKeep("t", RecoveryMaterial)
	require.NoError(t, err)
	require.Equal(t, []string{"fdp.t.leases"}, removed, "the world and its aside copy are kept")
	// gc of the dead instance removes the world and the older copy together:
	// keeping only the copy would make the next engine resume from frame 9
	// after frame 10 was published.
	removed, err = GC("t")
	require.NoError(t, err)
	require.Equal(t, []string{"fdp.t.world", "fdp.t.world.prev"}, removed)

	// An engine killed after it renamed the world aside and before its own
	// world exists: the copy is the only recovery material, kept.
	worldFile(t, "fdp.t.world.prev", "t", 9, false)
	st = states(t)
	require.True(t, st["fdp.t.world.prev"].KeptForRecovery, "no world segment")
	removed, err = GC("t")
	require.NoError(t, err)
	require.Empty(t, removed)

	// A live engine that has not published beyond the copy: still kept.
	live := worldFile(t, "fdp.t.world", "t", 8, true)
	st = states(t)
	require.Equal(t, StateLive, st["fdp.t.world"].State)
	require.True(t, st["fdp.t.world.prev"].KeptForRecovery)
	removed, err = GC("")
	require.NoError(t, err)
	require.Empty(t, removed)
	// Published beyond it: superseded, gc removes it.
	layout.Store64(live.Data, layout.OffWLatest, layout.PackLatest(9, 1))
	st = states(t)
	require.False(t, st["fdp.t.world.prev"].KeptForRecovery)
	require.True(t, st["fdp.u.world.prev"].KeptForRecovery, "another instance's copy")
	removed, err = GC("")
	require.NoError(t, err)
	require.Equal(t, []string{"fdp.t.world.prev"}, removed)

	// A corrupt aside copy is removed.
	require.NoError(t, os.WriteFile(filepath.Join(Dir, "fdp.v.world.prev"), []byte("garbage"), 0o600))
	removed, err = GC("v")
	require.NoError(t, err)
	require.Equal(t, []string{"fdp.v.world.prev"}, removed)
}

// TestProcessStopped: a real SIGSTOP shows as state 'T'.
func TestProcessStopped(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	require.False(t, ProcessStopped(pid))
	poll := func(want bool) {
		deadline := time.Now().Add(5 * time.Second)
		for ProcessStopped(pid) != want {
			require.True(t, time.Now().Before(deadline), "stopped never became %v", want)
			time.Sleep(time.Millisecond) // polling a condition, bounded
		}
	}
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	poll(true)
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	poll(false)
	require.False(t, ProcessStopped(1<<30), "no such process")
}
