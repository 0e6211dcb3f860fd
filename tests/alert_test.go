package tests

// The demo's alert is reactive (issue 19): the shipped binaries only, and
// what README.md documents of them.

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/stretchr/testify/require"
)

// alertRun starts `engine run` with churn and `modrunner alert` on a new
// instance; alert's stderr lines "msg=alert ..." are kept.
type alertRun struct {
	t    *testing.T
	bin  string
	inst string
	mu   sync.Mutex
	logs []string
}

func startAlertRun(t *testing.T, churn int) *alertRun {
	bin := shippedBinaries(t)
	a := &alertRun{t: t, bin: bin, inst: uniqueInstance(t, "al")}
	eng := exec.Command(filepath.Join(bin, "engine"), "run", "--instance", a.inst, "--entities", "2000",
		"--churn", strconv.Itoa(churn), "--rate", "100", "--status", "0")
	require.NoError(t, eng.Start())
	t.Cleanup(func() {
		_ = eng.Process.Kill()
		_ = eng.Wait()
	})
	waitFor(t, "the engine's first frame", 20*time.Second, func() bool { return latestFrameOf(a.inst) >= 1 })
	mod := exec.Command(filepath.Join(bin, "modrunner"), "alert")
	mod.Env = append(cleanEnv(), "FDP_INSTANCE="+a.inst, "FDP_MODULE=alert")
	stderr, err := mod.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, mod.Start())
	t.Cleanup(func() {
		_ = mod.Process.Kill()
		_ = mod.Wait()
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			a.mu.Lock()
			a.logs = append(a.logs, sc.Text())
			a.mu.Unlock()
		}
	}()
	return a
}

// alertStats is the alert's statistics block, as `engine stat --json` shows
// it (nil until it joined).
func (a *alertRun) stats() *inspect.ModuleStatsReport {
	for _, m := range statModules(a.t, a.bin, a.inst) {
		if m.Name == "alert" && m.Stats != nil {
			return m.Stats
		}
	}
	return nil
}

var alertLine = regexp.MustCompile(`msg=alert .*deaths_seen=(\d+) destroyed_seen=(\d+)`)

// TestAlertWakesOnDeaths: the demo's alert (slow, every 0, woken by the
// simulation's "died" events) runs once at its join and never again in a
// world without churn, however many frames pass; with churn it runs about
// every frame, and its lifecycle observer sees exactly as many entities
// destroyed as it read "died" events (only the simulation destroys here:
// one of each per death).
func TestAlertWakesOnDeaths(t *testing.T) {
	quiet := startAlertRun(t, 0)
	waitFor(t, "the alert's first tick", 20*time.Second, func() bool { s := quiet.stats(); return s != nil && s.Runs >= 1 })
	from := latestFrameOf(quiet.inst)
	waitFor(t, "200 frames", 20*time.Second, func() bool { return latestFrameOf(quiet.inst) >= from+200 })
	require.Equal(t, uint64(1), quiet.stats().Runs, "no death: the alert ran only at its join")

	busy := startAlertRun(t, 600)
	// The alert logs every 10 runs: two lines, and 250 frames so that a
	// module woken by about every frame has run more than 100 times.
	waitFor(t, "two alert log lines and 250 frames", 30*time.Second, func() bool {
		if latestFrameOf(busy.inst) < 250 {
			return false
		}
		busy.mu.Lock()
		defer busy.mu.Unlock()
		n := 0
		for _, l := range busy.logs {
			if alertLine.MatchString(l) {
				n++
			}
		}
		return n >= 2
	})
	st := busy.stats()
	frames := latestFrameOf(busy.inst)
	require.Greater(t, st.Runs, uint64(100), "woken by the deaths of about every frame (%d frames)", frames)
	busy.mu.Lock()
	defer busy.mu.Unlock()
	for _, l := range busy.logs {
		if m := alertLine.FindStringSubmatch(l); m != nil {
			require.Equal(t, m[1], m[2], "died events and destroyed entities seen: %s", l)
			require.NotEqual(t, "0", m[1], l)
		}
	}
	t.Logf("with churn: %d runs in %d frames; quiet: 1 run in %d frames", st.Runs, frames, latestFrameOf(quiet.inst))
}
