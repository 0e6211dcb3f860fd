package tests

// Caps (issue 13): more modules than the old 64-slot table, as real
// processes, all ticking; and the refusal at the cap, at once and for good.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/stretchr/testify/require"
)

// capsModules is how many module processes TestManyModulesTick runs: the
// full table (layout.MaxModules, 256: about 3 s on this 2-vCPU machine);
// 128 under the race detector (`make test`), whose 256 processes of about
// 20 MB each did not all tick within a minute ($FDP_CAPS_MODULES overrides
// it, up to layout.MaxModules).
func capsModules(t *testing.T) int {
	n := layout.MaxModules
	if raceBuild {
		n = 128
	}
	if v := os.Getenv("FDP_CAPS_MODULES"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(t, err)
	}
	require.LessOrEqual(t, n, layout.MaxModules)
	return n
}

// TestManyModulesTick: more real module processes than the old 64-entry
// tables held (module slots, lease holder bits, the dispatch's member bits)
// join one engine running at its frame rate, and every one of them ticks,
// again and again: fast ones on the latest frame, slow ones in four convoy
// groups (each convoy's snapshot leased to all its members at once).
// Before, the 65th module was refused (and, earlier, waited 10 s for the
// reader table and was restarted forever).
func TestManyModulesTick(t *testing.T) {
	n := capsModules(t)
	r := newRigConfig(t, 1000, func(c *host.Config) { c.FrameRate = 30 })
	frames := r.runEngine()
	start := time.Now()
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			r.spawn(fmt.Sprintf("fast-%d", i), "idle", module.Fast, 3, "Pos", "")
		} else {
			r.spawn(fmt.Sprintf("slow-%d", i), "idle", module.Slow, 3, "Pos,HP", fmt.Sprintf("convoy-%d", i%8/2))
		}
	}
	// Each module runs at most one tick per 3 frames (100 ms): 5 done
	// ticks each is at least half a second of steady ticking.
	const ticks = 5
	r.framesUntil(frames, "every module joined and ticked", 30*60, func() bool {
		ms := r.eng.Modules()
		if len(ms) < n {
			return false
		}
		for _, m := range ms {
			if m.State == host.StateDead || m.Ticks < ticks {
				return false
			}
		}
		return true
	})
	took := time.Since(start)
	ms := r.eng.Modules()
	require.Len(t, ms, n)
	maxSlot, fails := 0, uint64(0)
	for _, m := range ms {
		maxSlot = max(maxSlot, m.Slot)
		fails += m.Stats.Failures + m.Stats.Deaths
	}
	require.Equal(t, n-1, maxSlot)
	require.Zero(t, fails, "no module failed or died")
	require.Zero(t, r.eng.Bounds().ModulesRefused)
	t.Logf("%d module processes joined and ticked %d times each in %v; convoy snapshots %d", n, ticks, took, r.eng.Snapshots)
}

// TestModuleCapRefusedAtOnce: with the engine's module limit at 4
// (host.Config.MaxModules) and 4 live modules, a fifth module process run
// by module.MainOptions is refused at its hello and exits at once with
// layout.ExitRefused and one line naming the cap (not after a 10-second
// wait, and not with a status a supervisor restarts). An external reader
// beyond the reader table (host.Config.Readers) fails at once with
// fsync.ErrNoReaderSlot.
func TestModuleCapRefusedAtOnce(t *testing.T) {
	const limit = 4
	r := newRigConfig(t, 100, func(c *host.Config) { c.MaxModules = limit; c.Readers = 2 })
	frames := r.runEngine()
	for i := 0; i < limit; i++ {
		r.spawn(fmt.Sprintf("m%d", i), "idle", module.Fast, 1, "Pos", "")
	}
	r.framesUntil(frames, "the modules ticking", 600, func() bool {
		ms := r.eng.Modules()
		for _, m := range ms {
			if m.Ticks == 0 {
				return false
			}
		}
		return len(ms) == limit
	})

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FDP_TEST_MODULE=mainopts", "FDP_MODULE=one-too-many", "FDP_TIER=fast", "FDP_EVERY=1",
		"FDP_READS=Pos", "FDP_INSTANCE="+r.inst, "FDP_WORLD_PATH="+r.eng.WorldPath())
	stderr := &syncBuf{}
	cmd.Stderr = stderr
	t0 := time.Now()
	err := cmd.Run()
	took := time.Since(t0)
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v: %s", err, stderr)
	require.Equal(t, layout.ExitRefused, ee.ExitCode(), "%s", stderr)
	require.Less(t, took, 3*time.Second, "refused at once (the process start included)")
	out := stderr.String()
	require.Equal(t, 1, strings.Count(out, "module refused by the engine"), out)
	require.Contains(t, out, fmt.Sprintf("too many modules (%d)", limit))
	require.Contains(t, out, ipc.ErrModulesFull.Error())
	require.Equal(t, uint64(1), r.eng.Bounds().ModulesRefused)
	require.Len(t, r.eng.Modules(), limit, "the others keep their slots")
	t.Logf("refused in %v: %s", took, strings.TrimSpace(out))

	// The external reader table: two entries, the third claim fails at once.
	var readers []*fsync.Reader
	for i := 0; i < 2; i++ {
		rd, err := fsync.Attach(r.inst, fsync.AttachOptions{Name: fmt.Sprintf("tool-%d", i)})
		require.NoError(t, err)
		readers = append(readers, rd)
	}
	t0 = time.Now()
	_, err = fsync.Attach(r.inst, fsync.AttachOptions{Name: "tool-2"})
	require.ErrorIs(t, err, fsync.ErrNoReaderSlot)
	require.Contains(t, err.Error(), "all 2 entries")
	require.Less(t, time.Since(t0), time.Second)
	for _, rd := range readers {
		f, err := rd.Pin()
		require.NoError(t, err, "the readers that got an entry read")
		require.NoError(t, f.Release())
		rd.Close()
	}
}

// TestUpModuleCapNotRestarted: `engine up` with three modules and an
// engine whose module limit is two (engine run --max-modules 2). The module
// that joins third is refused with the cap's code, exits with
// layout.ExitRefused at once, and the supervisor never restarts it (a
// transient exit would be restarted with backoff, below the breaker's
// threshold here, forever) while the engine and the two others run on.
func TestUpModuleCapNotRestarted(t *testing.T) {
	bin := shippedBinaries(t)
	inst := uniqueInstance(t, "cap")
	cfg := fmt.Sprintf(`instance: %s
engine: {command: [engine, run, --entities, "1000", --churn, "0", --rate, "100", --status, "0", --max-modules, "2"], restart: true}
modules:
  - {name: tel-a, command: [modrunner, telemetry], tier: fast, every: 1, env: {FDP_MODULE: tel-a}}
  - {name: tel-b, command: [modrunner, telemetry], tier: fast, every: 1, env: {FDP_MODULE: tel-b}}
  - {name: tel-c, command: [modrunner, telemetry], tier: fast, every: 1, env: {FDP_MODULE: tel-c}}
restart: {initial_backoff: 10ms, max_backoff: 200ms, multiplier: 2, reset_after: 5s}
breaker: {max_failures: 1000, window: 30s}
hang: {heartbeat_timeout: 2s, attach_timeout: 10s, engine_timeout: 2s, engine_start_timeout: 10s}
shutdown: {grace: 2s}
`, inst)
	path := filepath.Join(t.TempDir(), "up.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	up := startUp(t, bin, path)

	refused := up.waitLine(t, `msg="module refused by the engine: not restarting"`)
	require.Contains(t, refused, fmt.Sprintf(`status="exit status %d"`, layout.ExitRefused))
	require.Contains(t, refused, "too many modules (2)", "the module's own line says why")
	var who string
	for _, name := range []string{"tel-a", "tel-b", "tel-c"} {
		if strings.Contains(refused, "child="+name+" ") {
			who = name
		}
	}
	require.NotEmpty(t, who, refused)
	var started string
	for _, l := range strings.Split(up.stderr.String(), "\n") {
		if strings.Contains(l, `msg="child started" child=`+who+" ") {
			started = l
		}
	}
	require.NotEmpty(t, started)
	took := logTime(t, refused).Sub(logTime(t, started))
	require.Less(t, took, 5*time.Second, "the refusal took %v", took)
	t.Logf("%s refused %v after it started", who, took)

	// Long enough for several restarts at the configured backoff.
	f := latestFrameOf(inst)
	waitFor(t, "frames after the refusal", 20*time.Second, func() bool { return latestFrameOf(inst) >= f+150 })
	require.NoError(t, up.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up.cmd.Wait(), "the refusal does not fail the run")
	for range up.lines { // the rest, until EOF
	}
	logs := up.stderr.String()
	require.Equal(t, 1, strings.Count(logs, `msg="child started" child=`+who+" "), "never restarted")
	require.Equal(t, 1, strings.Count(logs, `msg="module refused by the engine: not restarting"`))
	for _, name := range []string{"tel-a", "tel-b", "tel-c"} {
		require.Equal(t, 1, strings.Count(logs, `msg="child started" child=`+name+" "), "%s started once", name)
	}
	require.Contains(t, up.stdout.String(), "refused "+who+": ")
	requireNoSegments(t, inst)
}
