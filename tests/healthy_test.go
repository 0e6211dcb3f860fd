package tests

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/stretchr/testify/require"
)

// The healthy-run test is black-box: the shipped binaries under `engine up`
// with the demo's modules (a fast one, a convoy of three slow ones holding
// snapshots, a slow one alone), slots trimmed after 300 ms unused, one
// module SIGKILLed and restarted again and again. A healthy run has no
// spurious failures: the modules nobody touched count 0 failures and 0
// deaths, the restarted one only its deaths, no module logs a tick without
// its frame, and the clean stop at the end is no death in either summary.
//
// FDP_HEALTHY_DURATION sets the run's length (default 40s; `make soak` runs
// 10 minutes).

// childOf returns the pid of the child of parent whose environment has
// FDP_MODULE=name (0 if none): the supervisor's process of that module.
func childOf(parent int, name string) int {
	ents, _ := os.ReadDir("/proc")
	for _, de := range ents {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", de.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at ')'.
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", de.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if kv == "FDP_MODULE="+name {
				return pid
			}
		}
	}
	return 0
}

var (
	reEngineModule = regexp.MustCompile(`module (\S+)\s+(fast|slow) every \d+\s+(\S+)\s+runs (\d+)\s+late \d+\s+failures (\d+)\s.*deaths (\d+) joins (\d+)`)
	reSupModule    = regexp.MustCompile(`^(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+\d+\s+\d+\s`)
)

func TestHealthyRun(t *testing.T) {
	bin := shippedBinaries(t)
	dur := 40 * time.Second
	if v, err := time.ParseDuration(os.Getenv("FDP_HEALTHY_DURATION")); err == nil && v > 0 {
		dur = v
	}
	if testing.Short() {
		dur = 15 * time.Second
	}
	dir := t.TempDir()
	testutil.UseShmDir(t, dir)
	inst := uniqueInstance(t, "hl")
	cfg := filepath.Join(t.TempDir(), "healthy.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`instance: `+inst+`
engine: {command: [engine, run, --entities, "20000", --churn, "500", --slot-idle, 300ms, --status, 1s], restart: true}
modules:
  - {name: telemetry, command: [modrunner, telemetry], tier: fast, every: 1}
  - {name: ai-1, command: [modrunner, ai], tier: slow, every: 6, group: ai}
  - {name: ai-2, command: [modrunner, ai], tier: slow, every: 6, group: ai}
  - {name: ai-3, command: [modrunner, ai], tier: slow, every: 6, group: ai}
  - {name: alert, command: [modrunner, alert], tier: slow, every: 30, group: solo}
restart: {initial_backoff: 50ms, max_backoff: 1s, multiplier: 2, reset_after: 2s}
breaker: {max_failures: 1000, window: 30s}
hang: {heartbeat_timeout: 5s, attach_timeout: 10s, engine_timeout: 5s, engine_start_timeout: 10s}
shutdown: {grace: 5s}
`), 0o600))

	up := exec.Command(filepath.Join(bin, "engine"), "up", "--config", cfg, "--duration", dur.String())
	up.Env = append(os.Environ(), "FDP_SHM_DIR="+dir)
	out, err := up.StdoutPipe()
	require.NoError(t, err)
	up.Stderr = up.Stdout
	require.NoError(t, up.Start())
	t.Cleanup(func() { _ = up.Process.Kill(); _ = up.Wait() })
	var mu sync.Mutex
	var lines []string
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
	}()

	// SIGKILL ai-2 (a convoy member holding snapshots) every 3 s, after it
	// is back, until 5 s before the end.
	const victim = "ai-2"
	kills := 0
	end := time.Now().Add(dur - 5*time.Second)
	for time.Now().Add(3 * time.Second).Before(end) {
		time.Sleep(3 * time.Second) // the period between kills, not a synchronisation
		var pid int
		waitFor(t, victim+" running", 10*time.Second, func() bool { pid = childOf(up.Process.Pid, victim); return pid > 0 })
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		kills++
	}
	require.NoError(t, up.Wait(), "a clean stop")
	<-read
	mu.Lock()
	defer mu.Unlock()
	log := strings.Join(lines, "\n")
	require.Positive(t, kills)

	for _, l := range lines {
		require.NotContains(t, l, "not leased", "a spurious lease failure")
		require.NotContains(t, l, "no frame for tick", "a tick without its frame")
	}
	engine := map[string][]string{}
	for _, m := range reEngineModule.FindAllStringSubmatch(log, -1) {
		engine[m[1]] = m
	}
	sup := map[string][]string{}
	i := strings.LastIndex(log, "== supervisor summary ==")
	require.Positive(t, i, "no supervisor summary:\n%s", tail(lines))
	for _, l := range strings.Split(log[i:], "\n") {
		if m := reSupModule.FindStringSubmatch(l); m != nil {
			sup[m[1]] = m
		}
	}
	for _, name := range []string{"telemetry", "ai-1", "ai-2", "ai-3", "alert"} {
		e, ok := engine[name]
		require.True(t, ok, "no engine summary line of %s:\n%s", name, tail(lines))
		s, ok := sup[name]
		require.True(t, ok, "no supervisor summary line of %s:\n%s", name, tail(lines))
		runs, _ := strconv.Atoi(e[4])
		require.Positive(t, runs, "%s ticked", name)
		require.Equal(t, "left", e[3], "%s: a clean stop leaves, it does not die: %s", name, e[0])
		require.Equal(t, "0", e[5], "%s: failures: %s", name, e[0])
		require.Equal(t, "stopped", s[2], "%s: %s", name, s[0])
		want := "0"
		if name == victim {
			want = strconv.Itoa(kills)
			require.Equal(t, strconv.Itoa(kills+1), e[7], "%s: joins: %s", name, e[0])
		}
		require.Equal(t, want, e[6], "%s: engine deaths: %s", name, e[0])
		require.Equal(t, want, s[4], "%s: supervisor deaths: %s", name, s[0])
	}
	t.Logf("healthy run of %v: %d SIGKILLs of %s; engine: %s", dur, kills, victim, engine["ai-1"][0])
}

func tail(lines []string) string {
	return strings.Join(lines[max(0, len(lines)-40):], "\n") + fmt.Sprintf("\n(%d lines)", len(lines))
}
