package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/shm"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// instanceFiles maps every file of inst in shm.Dir (segments, socket) to
// its inode: a file removed, or replaced by another under the same name,
// changes the map.
func instanceFiles(t *testing.T, inst string) map[string]uint64 {
	t.Helper()
	ents, err := os.ReadDir(shm.Dir)
	require.NoError(t, err)
	out := map[string]uint64{}
	for _, de := range ents {
		if !strings.HasPrefix(de.Name(), "fdp."+inst+".") {
			continue
		}
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(filepath.Join(shm.Dir, de.Name()), &st))
		out[de.Name()] = st.Ino
	}
	return out
}

// refused runs the engine binary with args and returns its output, which
// must be a refusal: a non-zero exit and one line.
func refused(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "engine"), args...).CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "must be refused: %s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 1, "one line: %s", out)
	return lines[0]
}

// liveModule reports whether a live module segment of inst exists (a
// module attached to its engine).
func liveModule(inst string) bool {
	infos, _ := shm.List()
	for _, in := range infos {
		if in.Instance == inst && strings.HasPrefix(in.Kind, "mod.") && in.State == shm.StateLive {
			return true
		}
	}
	return false
}

// requireIntact checks that the instance still has exactly the files of
// before (same inodes), that its engine (the same pid) still publishes, and
// that a module can attach to it.
func requireIntact(t *testing.T, inst string, files map[string]uint64, engPID uint32) {
	t.Helper()
	require.Equal(t, files, instanceFiles(t, inst), "the live instance's segments and socket are untouched")
	f := latestFrameOf(inst)
	waitFor(t, "the live engine goes on publishing", 10*time.Second, func() bool { return latestFrameOf(inst) > f+5 })
	st, _, pid := worldState(inst)
	require.Equal(t, shm.StateLive, st)
	require.Equal(t, engPID, pid, "the same engine")
}

// TestInstancesAreOwned: `engine up` and `engine run` refuse an instance
// that a live `engine run` or `engine up` owns, with one line naming the
// owner and its pid, before they create or remove anything: the live
// instance keeps its segments and socket (same files), goes on publishing
// and a module can still attach to it. An `engine run` is refused next to
// an `engine up` even while the supervised engine is being restarted. (An
// `engine up` next to a live `engine run` used to start modules that
// attached to the other engine and, on its exit, removed the live engine's
// segments and socket.)
func TestInstancesAreOwned(t *testing.T) {
	bin := shippedBinaries(t)
	dir := t.TempDir()
	testutil.UseShmDir(t, dir)
	t.Setenv("FDP_SHM_DIR", dir)
	inst := uniqueInstance(t, "own")
	hang := "{heartbeat_timeout: 2s, engine_timeout: 2s, engine_start_timeout: 10s}"
	cfg := upConfig(t, inst, 0, hang)

	run := recStart(t, filepath.Join(bin, "engine"), "run", "--instance", inst, "--entities", "1000", "--rate", "100", "--status", "0")
	waitFor(t, "frames of the run", 20*time.Second, func() bool { return latestFrameOf(inst) >= 10 })
	files := instanceFiles(t, inst)
	require.Contains(t, files, "fdp."+inst+".sock")
	_, _, runPID := worldState(inst)
	require.Equal(t, run.cmd.Process.Pid, int(runPID))

	line := refused(t, bin, "up", "--config", cfg)
	require.Contains(t, line, fmt.Sprintf("an `engine run` of instance %q is running (pid %d)", inst, runPID))
	requireIntact(t, inst, files, runPID)
	line = refused(t, bin, "run", "--instance", inst, "--status", "0")
	require.Contains(t, line, fmt.Sprintf("an `engine run` of instance %q is running (pid %d)", inst, runPID))
	requireIntact(t, inst, files, runPID)

	mod := exec.Command(filepath.Join(bin, "modrunner"), "telemetry")
	mod.Env = append(os.Environ(), "FDP_INSTANCE="+inst, "FDP_MODULE=telemetry")
	require.NoError(t, mod.Start())
	t.Cleanup(func() { _ = mod.Process.Kill(); _ = mod.Wait() })
	waitFor(t, "a module attached to the live run", 20*time.Second, func() bool { return liveModule(inst) })
	require.NoError(t, mod.Process.Signal(syscall.SIGTERM))
	require.NoError(t, mod.Wait())

	require.NoError(t, run.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, run.cmd.Wait())
	requireNoSegments(t, inst)

	up := recStart(t, filepath.Join(bin, "engine"), "up", "--config", cfg)
	waitFor(t, "frames of the up", 20*time.Second, func() bool { return latestFrameOf(inst) >= 10 && liveModule(inst) })
	_, _, engPID := worldState(inst)
	files = instanceFiles(t, inst)
	upOwner := fmt.Sprintf("another `engine up` supervises instance %q (pid %d)", inst, up.cmd.Process.Pid)
	require.Contains(t, refused(t, bin, "run", "--instance", inst, "--status", "0"), upOwner)
	require.Contains(t, refused(t, bin, "up", "--config", cfg), upOwner)
	requireIntact(t, inst, files, engPID)

	// While the supervised engine is dead (SIGKILL, restarted after a
	// backoff) the instance is still the supervisor's.
	require.NoError(t, syscall.Kill(int(engPID), syscall.SIGKILL))
	waitFor(t, "the engine gone", 10*time.Second, func() bool { return gone(int(engPID)) })
	require.Contains(t, refused(t, bin, "run", "--instance", inst, "--status", "0"), upOwner)
	waitFor(t, "the supervisor's new engine", 20*time.Second, func() bool {
		st, _, pid := worldState(inst)
		return st == shm.StateLive && pid != engPID && !gone(int(pid))
	})
	_, _, newPID := worldState(inst)
	out, err := exec.Command("ps", "-o", "ppid=", "-p", fmt.Sprint(newPID)).Output()
	require.NoError(t, err)
	require.Equal(t, fmt.Sprint(up.cmd.Process.Pid), strings.TrimSpace(string(out)), "the running engine is the supervisor's")

	require.NoError(t, up.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up.cmd.Wait())
	requireNoSegments(t, inst)
	_, err = os.Lstat(filepath.Join(dir, ".fdp."+inst+".lock"))
	require.ErrorIs(t, err, os.ErrNotExist, "the lock file goes with its owner")
}
