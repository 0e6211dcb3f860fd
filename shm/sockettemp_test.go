package shm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGCRemovesDeadSocketTemps: an engine killed between binding its control
// socket under ".fdp.<instance>.<pid>.tmp" and renaming it into place leaves
// that file. GC of the instance removes it when its process is dead (and
// keeps a live process's); RemoveInstance removes every one.
func TestGCRemovesDeadSocketTemps(t *testing.T) {
	dir := useTempDir(t)
	inst := uniqueInstance()
	dead := exec.Command("true")
	require.NoError(t, dead.Run()) // exited and reaped: its pid names no process
	deadTmp := fmt.Sprintf(".fdp.%s.%d.tmp", inst, dead.Process.Pid)
	liveTmp := fmt.Sprintf(".fdp.%s.%d.tmp", inst, os.Getpid())
	other := fmt.Sprintf(".fdp.%sx.%d.tmp", inst, dead.Process.Pid) // another instance
	for _, n := range []string{deadTmp, liveTmp, other} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), nil, 0o600))
	}
	removed, err := GC(inst)
	require.NoError(t, err)
	require.Equal(t, []string{deadTmp}, removed)
	require.NoFileExists(t, filepath.Join(dir, deadTmp))
	require.FileExists(t, filepath.Join(dir, liveTmp))

	_, err = RemoveInstance(inst)
	require.NoError(t, err)
	require.NoFileExists(t, filepath.Join(dir, liveTmp))
	require.FileExists(t, filepath.Join(dir, other), "another instance's file is not touched")
}
