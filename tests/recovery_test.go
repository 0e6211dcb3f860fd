package tests

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// Recovery tests with the shipped binaries (`engine run`, `engine up`,
// modrunner), real SIGKILLs and SIGSTOPs: what an engine crash, a crash
// during the next engine's start-up, a failed recovery, a killed supervisor
// and a stopped engine or module can lose.

// recProc is a running binary whose stderr lines are collected.
type recProc struct {
	cmd   *exec.Cmd
	lines chan string
}

// recStart starts bin with args; stderr lines go to the channel (and are
// kept for the failure message).
func recStart(t *testing.T, bin string, args ...string) *recProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdout = nil
	errp, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &recProc{cmd: cmd, lines: make(chan string, 1<<14)}
	go func() {
		sc := bufio.NewScanner(errp)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody reads any more: drop
			}
		}
		close(p.lines)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *recProc) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// waitLine returns the first line containing sub (bounded wait).
func (p *recProc) waitLine(t *testing.T, sub string) string {
	t.Helper()
	guard := time.NewTimer(20 * time.Second) // failure guard only
	defer guard.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			require.True(t, ok, "process ended before logging %q", sub)
			if strings.Contains(l, sub) {
				return l
			}
		case <-guard.C:
			t.Fatalf("no line containing %q", sub)
		}
	}
}

// recWorld is what a reader sees in the latest frame of a world segment.
type recWorld struct {
	frame, count uint64
	creator      uint32
	// teams of sampled entities that were respawned by the churn
	// (generation > 1): a clean world has none of them.
	teams map[world.Entity]uint32
}

// readLatest pins the latest frame of the instance's world segment and
// samples it. It fails the test when nothing is published.
func readLatest(t *testing.T, inst string, s *demo.Schema) recWorld {
	t.Helper()
	r, err := fsync.Attach(inst, fsync.AttachOptions{Name: "recovery-check", Registry: s.Reg})
	require.NoError(t, err)
	defer r.Close()
	f, err := r.Pin()
	require.NoError(t, err)
	defer f.Release()
	out := recWorld{frame: f.Number(), count: uint64(f.Info().Alive), creator: r.Layout().Header.CreatorPID, teams: map[world.Entity]uint32{}}
	for c := 0; c < f.Chunks() && len(out.teams) < 50; c++ {
		for i, rec := range f.Records(c) {
			if rec.Flags&layout.FlagAlive == 0 || rec.Gen < 2 || len(out.teams) == 50 {
				continue
			}
			e := fsync.EntityAt(c*r.Layout().ChunkCapacity+i, rec)
			tm, ok := fsync.Get[demo.Team](f, e, s.Tm)
			require.True(t, ok)
			out.teams[e] = tm.ID
		}
	}
	require.True(t, f.Valid(), "frame rewritten while sampled")
	return out
}

// requireSameWorld checks that got holds want's entities: the same alive
// count and every sampled respawned entity alive with the same team.
func requireRecovered(t *testing.T, want, got recWorld) {
	t.Helper()
	require.Greater(t, got.frame, want.frame, "frame numbers go on after the dead engine's")
	require.Equal(t, want.count, got.count, "alive entities")
	require.NotEmpty(t, want.teams, "the churn respawned entities")
	for e, tm := range want.teams {
		g, ok := got.teams[e]
		require.True(t, ok, "entity %v (respawned, team %d) is not in the recovered world", e, tm)
		require.Equal(t, tm, g, "team of %v", e)
	}
}

// worldState returns the list state and latest frame of the instance's
// world segment ("" when there is none).
func worldState(inst string) (string, uint64, uint32) {
	infos, _ := shm.List()
	for _, in := range infos {
		if in.Instance == inst && in.Kind == shm.WorldKind {
			return in.State, in.Frame, in.PID
		}
	}
	return "", 0, 0
}

func asideCopies(inst string) []string {
	infos, _ := shm.List()
	var out []string
	for _, in := range infos {
		if in.Instance == inst && in.Aside != shm.NoAside {
			out = append(out, in.Name)
		}
	}
	return out
}

// runArgs is `engine run` on a small demo world at 100 Hz.
func runArgs(inst string, churn int) []string {
	return []string{"run", "--instance", inst, "--entities", "100000", "--churn", strconv.Itoa(churn), "--rate", "100", "--status", "0"}
}

// killedEngine runs an engine until it published frames, SIGKILLs it and
// returns what its last published frame holds.
func killedEngine(t *testing.T, bin, inst string, s *demo.Schema) recWorld {
	t.Helper()
	e1 := recStart(t, filepath.Join(bin, "engine"), runArgs(inst, 5000)...)
	waitFor(t, "frames of the first engine", 20*time.Second, func() bool { return latestFrameOf(inst) >= 40 })
	require.NoError(t, syscall.Kill(e1.cmd.Process.Pid, syscall.SIGKILL))
	_ = e1.cmd.Wait()
	waitFor(t, "the killed engine's world reported stale", 10*time.Second, func() bool {
		st, _, _ := worldState(inst)
		return st == shm.StateStale
	})
	return readLatest(t, inst, s)
}

// TestEngineKilledBeforeFirstPublish reproduces the lost world of an engine
// killed between its recovery and its first publish: engine 1 is SIGKILLed;
// engine 2 recovers, keeps the old world aside and is SIGKILLed as soon as it
// logs that (before its first publish); engine 3 must recover the world of
// engine 1 (entity count, respawned entities with their component values)
// and go on after its frame number. A kill that lands after engine 2's first
// publish must lose nothing either; at least one of the attempts must land
// in the window.
func TestEngineKilledBeforeFirstPublish(t *testing.T) {
	bin := shippedBinaries(t)
	s, err := demo.NewSchema()
	require.NoError(t, err)
	hits := 0
	for attempt := 0; attempt < 4 && hits == 0; attempt++ {
		inst := uniqueInstance(t, "w")
		old := killedEngine(t, bin, inst, s)

		e2 := recStart(t, filepath.Join(bin, "engine"), runArgs(inst, 5000)...)
		e2.waitLine(t, "kept the dead engine's world aside until the first publish")
		require.NoError(t, syscall.Kill(e2.cmd.Process.Pid, syscall.SIGKILL))
		_ = e2.cmd.Wait()
		st, frame, _ := worldState(inst)
		if frame == 0 {
			hits++
			require.NotEmpty(t, asideCopies(inst), "killed before its first publish: the old world is aside (world: %q)", st)
		} else {
			// Engine 2 published before the kill: engine 3 must recover its
			// last frame instead.
			waitFor(t, "engine 2's world reported stale", 10*time.Second, func() bool {
				st, _, _ := worldState(inst)
				return st == shm.StateStale
			})
			old = readLatest(t, inst, s)
			t.Logf("attempt %d: engine 2 published (frame %d) before the kill", attempt, frame)
		}

		e3 := recStart(t, filepath.Join(bin, "engine"), runArgs(inst, 0)...)
		e3.waitLine(t, "recovered the world from the last complete frame")
		waitFor(t, "engine 3 publishing", 20*time.Second, func() bool {
			st, f, pid := worldState(inst)
			return st == shm.StateLive && pid == uint32(e3.cmd.Process.Pid) && f > old.frame
		})
		requireRecovered(t, old, readLatest(t, inst, s))
		waitFor(t, "the aside copy removed after the first publish", 10*time.Second, func() bool { return len(asideCopies(inst)) == 0 })
		require.NoError(t, e3.cmd.Process.Signal(syscall.SIGTERM))
		require.NoError(t, e3.cmd.Wait())
		requireNoSegments(t, inst)
	}
	require.Positive(t, hits, "no kill landed between the recovery and the first publish")
}

// TestFailedRecoveryFrameNumbersGoOn: the stale world's payload is corrupt
// but its latest word readable; the next `engine run` starts clean (a fresh
// demo world) but after the dead engine's frame number, and removes the
// kept-aside copy after its first publish.
func TestFailedRecoveryFrameNumbersGoOn(t *testing.T) {
	bin := shippedBinaries(t)
	s, err := demo.NewSchema()
	require.NoError(t, err)
	inst := uniqueInstance(t, "f")
	old := killedEngine(t, bin, inst, s)
	testutil.CorruptLatestPayload(t, shm.SegmentName(inst, fsync.WorldSegment))

	e2 := recStart(t, filepath.Join(bin, "engine"), runArgs(inst, 0)...)
	l := e2.waitLine(t, "starting clean")
	require.Contains(t, l, "unknown flags")
	require.Contains(t, l, fmt.Sprint("resume_after=", old.frame))
	var first uint64
	waitFor(t, "engine 2 publishing", 20*time.Second, func() bool {
		st, f, pid := worldState(inst)
		first = f
		return st == shm.StateLive && pid == uint32(e2.cmd.Process.Pid) && f > 0
	})
	require.Greater(t, first, old.frame, "frame numbers never go backwards")
	got := readLatest(t, inst, s)
	require.Greater(t, got.frame, old.frame)
	require.Empty(t, got.teams, "a clean world: nothing respawned")
	waitFor(t, "the aside copy removed after the first publish", 10*time.Second, func() bool { return len(asideCopies(inst)) == 0 })
	require.NoError(t, e2.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, e2.cmd.Wait())
}

// upConfig writes a supervisor config running `engine run` with churn and
// one fast module, and returns its path.
func upConfig(t *testing.T, inst string, churn int, hang string) string {
	cfg := fmt.Sprintf(`instance: %s
engine: {command: [engine, run, --entities, "100000", --churn, "%d", --rate, "100", --status, "0"], restart: true}
modules:
  - {name: telemetry, command: [modrunner, telemetry], tier: fast, every: 1}
restart: {initial_backoff: 10ms, max_backoff: 200ms, multiplier: 2, reset_after: 5s}
breaker: {max_failures: 20, window: 30s}
hang: %s
shutdown: {grace: 2s}
`, inst, churn, hang)
	p := filepath.Join(t.TempDir(), "up.yaml")
	require.NoError(t, os.WriteFile(p, []byte(cfg), 0o600))
	return p
}

// childPID returns the pid of the last "child started" line of child name.
func childPID(t *testing.T, line string) int {
	t.Helper()
	i := strings.Index(line, " pid=")
	require.Positive(t, i, line)
	f := strings.Fields(line[i+5:])
	pid, err := strconv.Atoi(strings.Trim(f[0], `"`))
	require.NoError(t, err, line)
	return pid
}

// TestSupervisorKilledWorldRecovered: `engine up` is SIGKILLed (its
// children die by PDEATHSIG); a new `engine up` of the instance must let
// its engine recover the world (count, respawned entities and their
// component values) and go on after the old frame number.
func TestSupervisorKilledWorldRecovered(t *testing.T) {
	bin := shippedBinaries(t)
	s, err := demo.NewSchema()
	require.NoError(t, err)
	inst := uniqueInstance(t, "u")
	hang := "{heartbeat_timeout: 2s, engine_timeout: 2s, engine_start_timeout: 10s}"
	up1 := recStart(t, filepath.Join(bin, "engine"), "up", "--config", upConfig(t, inst, 5000, hang))
	waitFor(t, "frames", 20*time.Second, func() bool { return latestFrameOf(inst) >= 60 })
	_, _, engPID := worldState(inst)
	require.NoError(t, syscall.Kill(up1.cmd.Process.Pid, syscall.SIGKILL))
	_ = up1.cmd.Wait()
	waitFor(t, "the engine gone (PDEATHSIG) and its world stale", 10*time.Second, func() bool {
		st, _, _ := worldState(inst)
		return gone(int(engPID)) && st == shm.StateStale
	})
	old := readLatest(t, inst, s)

	up2 := recStart(t, filepath.Join(bin, "engine"), "up", "--config", upConfig(t, inst, 0, hang))
	up2.waitLine(t, "recovered the world from the last complete frame")
	waitFor(t, "the new engine publishing", 20*time.Second, func() bool {
		st, f, pid := worldState(inst)
		return st == shm.StateLive && pid != engPID && f > old.frame
	})
	requireRecovered(t, old, readLatest(t, inst, s))
	require.NoError(t, up2.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up2.cmd.Wait())
	requireNoSegments(t, inst)
}

func gone(pid int) bool {
	st, err := shm.ProcStartTime(pid)
	return err != nil || !shm.ProcessAlive(uint32(pid), st)
}

// TestStoppedEngineReplaced: `engine up` kills an engine stopped with
// SIGSTOP once its heartbeat (the world's last-publish stat) is older than
// hang.engine_timeout, restarts it, and frames go on from the recovered one.
func TestStoppedEngineReplaced(t *testing.T) {
	bin := shippedBinaries(t)
	inst := uniqueInstance(t, "h")
	up := recStart(t, filepath.Join(bin, "engine"), "up", "--config",
		upConfig(t, inst, 100, "{heartbeat_timeout: 2s, engine_timeout: 500ms, engine_start_timeout: 10s}"))
	waitFor(t, "frames", 20*time.Second, func() bool { return latestFrameOf(inst) >= 30 })
	_, _, engPID := worldState(inst)
	stopped := time.Now()
	require.NoError(t, syscall.Kill(int(engPID), syscall.SIGSTOP))
	_, last, _ := worldState(inst)
	l := up.waitLine(t, `msg="child hung: killing it" child=engine`)
	require.Contains(t, l, `reason="engine stopped publishing"`)
	require.Contains(t, l, "stopped=true")
	require.GreaterOrEqual(t, time.Since(stopped), 500*time.Millisecond)
	waitFor(t, "a new engine publishing after the stopped one's frames", 20*time.Second, func() bool {
		st, f, pid := worldState(inst)
		return st == shm.StateLive && pid != engPID && f > last
	})
	t.Logf("stopped engine replaced, new frames after %v", time.Since(stopped).Round(time.Millisecond))
	require.True(t, gone(int(engPID)))
	require.NoError(t, up.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up.cmd.Wait())
}

// TestStoppedModuleKilledAcrossEngineRestart: a module stopped with SIGSTOP
// while the engine is SIGKILLed never attaches to the new engine; `engine
// up` kills it as hung once the new engine has been publishing for longer
// than hang.heartbeat_timeout, and restarts it.
func TestStoppedModuleKilledAcrossEngineRestart(t *testing.T) {
	bin := shippedBinaries(t)
	inst := uniqueInstance(t, "m")
	up := recStart(t, filepath.Join(bin, "engine"), "up", "--config",
		upConfig(t, inst, 100, "{heartbeat_timeout: 1s, attach_timeout: 1s, engine_timeout: 1s, engine_start_timeout: 10s}"))
	mod := childPID(t, up.waitLine(t, `msg="child started" child=telemetry`))
	waitFor(t, "frames", 20*time.Second, func() bool { return latestFrameOf(inst) >= 30 })
	_, _, engPID := worldState(inst)
	require.NoError(t, syscall.Kill(mod, syscall.SIGSTOP))
	require.NoError(t, syscall.Kill(int(engPID), syscall.SIGKILL))
	var up2 time.Time
	waitFor(t, "the new engine publishing", 20*time.Second, func() bool {
		st, f, pid := worldState(inst)
		up2 = time.Now()
		return st == shm.StateLive && pid != engPID && f > 0
	})
	l := up.waitLine(t, `msg="child hung: killing it" child=telemetry`)
	judged := time.Since(up2)
	require.Contains(t, l, fmt.Sprintf("pid=%d", mod))
	require.Contains(t, l, `reason="not attached to the running engine"`)
	require.Contains(t, l, "stopped=true")
	require.GreaterOrEqual(t, judged, 900*time.Millisecond, "judged before the new engine published for the timeout")
	mod2 := childPID(t, up.waitLine(t, `msg="child started" child=telemetry`))
	require.NotEqual(t, mod, mod2)
	require.NoError(t, up.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up.cmd.Wait())
}
