package shm

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

func useTempDir(t *testing.T) string {
	old := Dir
	Dir = t.TempDir()
	t.Cleanup(func() { Dir = old })
	return Dir
}

func writeHeader(t *testing.T, s *Segment, pid uint32, start uint64) {
	require.NoError(t, layout.EncodeHeader(s.Data, &layout.Header{Kind: layout.KindLeases, TotalSize: uint64(len(s.Data)), Instance: "t", CreatorPID: pid, CreatorTime: start}))
	layout.MarkReady(s.Data)
}

func TestCreateOpenModeAndExists(t *testing.T) {
	dir := useTempDir(t)
	s, err := Create("fdp.t.x", layout.HeaderSize)
	require.NoError(t, err)
	defer s.Close()
	st, err := os.Stat(filepath.Join(dir, "fdp.t.x"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	_, err = Create("fdp.t.x", layout.HeaderSize)
	require.True(t, errors.Is(err, os.ErrExist), "got %v", err)
	s.Data[100] = 7
	r, err := Open("fdp.t.x", false)
	require.NoError(t, err)
	require.Equal(t, byte(7), r.Data[100])
	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "Close is idempotent")
	_, err = Create("bad/name", 4096)
	require.Error(t, err)
}

func TestSymlinkRefused(t *testing.T) {
	dir := useTempDir(t)
	target := filepath.Join(t.TempDir(), "target")
	require.NoError(t, os.WriteFile(target, make([]byte, layout.HeaderSize), 0o600))
	require.NoError(t, os.Symlink(target, filepath.Join(dir, "fdp.t.link")))
	_, err := Open("fdp.t.link", false)
	require.Error(t, err)
	_, err = Create("fdp.t.link", layout.HeaderSize)
	require.Error(t, err)
}

func TestListAndGCStaleNeverLive(t *testing.T) {
	useTempDir(t)
	live, err := Create("fdp.t.live", layout.HeaderSize)
	require.NoError(t, err)
	defer live.Close()
	writeHeader(t, live, uint32(os.Getpid()), SelfStartTime())

	// A real process that is killed: its segment becomes stale.
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	start, err := ProcStartTime(cmd.Process.Pid)
	require.NoError(t, err)
	stale, err := Create("fdp.t.stale", layout.HeaderSize)
	require.NoError(t, err)
	writeHeader(t, stale, uint32(cmd.Process.Pid), start)
	stale.Close()
	require.True(t, ProcessAlive(uint32(cmd.Process.Pid), start))
	require.False(t, ProcessAlive(uint32(cmd.Process.Pid), start+1), "a pid with another start time is another process")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	require.False(t, ProcessAlive(uint32(cmd.Process.Pid), start))

	require.NoError(t, os.WriteFile(filepath.Join(Dir, "fdp.t.junk"), []byte("garbage garbage"), 0o600))

	infos, err := List()
	require.NoError(t, err)
	states := map[string]string{}
	for _, in := range infos {
		states[in.Name] = in.State
	}
	require.Equal(t, map[string]string{"fdp.t.live": StateLive, "fdp.t.stale": StateStale, "fdp.t.junk": StateCorrupt}, states)

	removed, err := GC("t")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"fdp.t.stale", "fdp.t.junk"}, removed)
	_, err = os.Stat(live.Path)
	require.NoError(t, err, "a live segment is never removed")
}
