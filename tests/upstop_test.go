package tests

import (
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

// TestSecondSupervisorRefused: a second `engine up` of an instance that one
// supervises exits at once with a one-line error, and stopping it does not
// touch the live instance (it used to restart-loop against the live engine
// and, on its own SIGTERM, remove the live instance's segments).
func TestSecondSupervisorRefused(t *testing.T) {
	bin := shippedBinaries(t)
	inst := uniqueInstance(t, "two")
	hang := "{heartbeat_timeout: 2s, engine_timeout: 2s, engine_start_timeout: 10s}"
	cfg := upConfig(t, inst, 500, hang)
	up1 := recStart(t, filepath.Join(bin, "engine"), "up", "--config", cfg)
	waitFor(t, "frames", 20*time.Second, func() bool { return latestFrameOf(inst) >= 10 })
	_, _, engPID := worldState(inst)

	out, err := exec.Command(filepath.Join(bin, "engine"), "up", "--config", cfg).CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "a second supervisor must fail: %s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 1, "one line: %s", out)
	require.Contains(t, lines[0], "another `engine up` supervises instance")

	// An engine started by hand next to the supervisor is refused too, and
	// the supervised instance goes on.
	out, err = exec.Command(filepath.Join(bin, "engine"), "run", "--instance", inst).CombinedOutput()
	require.Error(t, err, "%s", out)
	f := latestFrameOf(inst)
	waitFor(t, "the first supervisor's engine goes on", 10*time.Second, func() bool { return latestFrameOf(inst) > f+10 })
	st, _, pid := worldState(inst)
	require.Equal(t, shm.StateLive, st)
	require.Equal(t, engPID, pid, "the same engine")

	require.NoError(t, up1.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up1.cmd.Wait())
	requireNoSegments(t, inst)
	// The lock is free again: a new supervisor starts.
	up2 := recStart(t, filepath.Join(bin, "engine"), "up", "--config", cfg)
	waitFor(t, "frames of a new supervisor", 20*time.Second, func() bool { return latestFrameOf(inst) >= 1 })
	require.NoError(t, up2.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up2.cmd.Wait())
	requireNoSegments(t, inst)
}

// TestEngineBreakerKeepsWorld: when the engine's circuit breaker trips the
// supervisor gives up, but it keeps the world for the next start to recover
// (it used to remove every segment of the instance, losing the world exactly
// when it mattered most).
func TestEngineBreakerKeepsWorld(t *testing.T) {
	bin := shippedBinaries(t)
	inst := uniqueInstance(t, "brk")
	hang := "{heartbeat_timeout: 2s, engine_timeout: 2s, engine_start_timeout: 10s}"
	base, err := os.ReadFile(upConfig(t, inst, 5000, hang))
	require.NoError(t, err)
	cfg := strings.Replace(string(base), "breaker: {max_failures: 20, window: 30s}", "breaker: {max_failures: 1, window: 30s}", 1)
	require.Contains(t, cfg, "max_failures: 1,")
	path := filepath.Join(t.TempDir(), "brk.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	up := recStart(t, filepath.Join(bin, "engine"), "up", "--config", path)
	for kill := 1; kill <= 2; kill++ {
		waitFor(t, "an engine publishing", 20*time.Second, func() bool {
			st, f, pid := worldState(inst)
			return st == shm.StateLive && f >= 30 && !gone(int(pid))
		})
		_, _, pid := worldState(inst)
		require.NoError(t, syscall.Kill(int(pid), syscall.SIGKILL))
		waitFor(t, "the engine gone", 10*time.Second, func() bool { return gone(int(pid)) })
	}
	err = up.cmd.Wait()
	require.Error(t, err, "the supervisor gives up when the engine's breaker trips")
	st, oldFrame, _ := worldState(inst)
	require.Equal(t, shm.StateStale, st, "the dead engine's world is kept")
	oldAlive := latestAlive(t, inst)

	up2 := recStart(t, filepath.Join(bin, "engine"), "up", "--config", upConfig(t, inst, 0, hang))
	up2.waitLine(t, "recovered the world from the last complete frame")
	waitFor(t, "the new engine publishing", 20*time.Second, func() bool {
		st, f, _ := worldState(inst)
		return st == shm.StateLive && f > oldFrame
	})
	// The recovered frame is published at once under its number, with the
	// dead engine's entities (no churn in the new engine).
	require.Equal(t, oldAlive, latestAlive(t, inst))
	require.NoError(t, up2.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up2.cmd.Wait())
	requireNoSegments(t, inst)
}

// latestAlive returns the alive count in the header of the latest frame of
// the instance's world segment, read from the segment alone (no reader
// entry: a dead engine's leases segment may be gone).
func latestAlive(t *testing.T, inst string) uint32 {
	t.Helper()
	seg, err := shm.Open(shm.SegmentName(inst, "world"), false)
	require.NoError(t, err)
	defer seg.Close()
	lw, err := layout.DecodeWorld(seg.Data)
	require.NoError(t, err)
	_, s, ok := layout.UnpackLatest(layout.Load64(seg.Data, layout.OffWLatest))
	require.True(t, ok, "nothing published")
	return lw.ReadSlotInfo(s).Alive
}
