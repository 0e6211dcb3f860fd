package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/stretchr/testify/require"
)

// TestGCRemovesKilledEngineSocket (issue 11, finding 8): after `engine run`
// is SIGKILLed, its control socket fdp.<i>.sock stays with its segments;
// `engine gc --dry-run` names it and `engine gc` removes it with them, while
// the socket of a running engine is kept.
func TestGCRemovesKilledEngineSocket(t *testing.T) {
	bin := shippedBinaries(t)
	dir := t.TempDir()
	env := append(os.Environ(), "FDP_SHM_DIR="+dir)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := func(inst string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "engine"), "run", "--instance", inst, "--entities", "1000", "--status", "0", "--duration", "14s")
		cmd.Env = env
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		world := filepath.Join(dir, shm.SegmentName(inst, "world"))
		waitFor(t, inst+" publishing", 10*time.Second, func() bool {
			b, err := os.ReadFile(world)
			if err != nil || len(b) < layout.OffWLatest+8 {
				return false
			}
			_, _, ok := layout.UnpackLatest(le64(b[layout.OffWLatest:]))
			_, serr := os.Stat(filepath.Join(dir, "fdp."+inst+".sock"))
			return ok && serr == nil
		})
		return cmd
	}
	dead := start("gcdead")
	start("gclive")
	require.NoError(t, dead.Process.Signal(syscall.SIGKILL))
	_ = dead.Wait()
	deadSock := filepath.Join(dir, "fdp.gcdead.sock")
	require.FileExists(t, deadSock, "a killed engine leaves its socket")

	gc := func(args ...string) string {
		cmd := exec.Command(filepath.Join(bin, "engine"), append([]string{"gc"}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	out := gc("--dry-run")
	require.Contains(t, out, "would remove fdp.gcdead.sock")
	require.NotContains(t, out, "gclive")
	require.FileExists(t, deadSock, "a dry run removes nothing")

	out = gc()
	require.Contains(t, out, "removed fdp.gcdead.sock")
	require.Contains(t, out, "removed fdp.gcdead.world")
	require.NotContains(t, out, "gclive")
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		require.False(t, strings.Contains(e.Name(), "gcdead"), "left behind: %s", e.Name())
	}
	require.FileExists(t, filepath.Join(dir, "fdp.gclive.sock"), "a live engine's socket is kept")
}
