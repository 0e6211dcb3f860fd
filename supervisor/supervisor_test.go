package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/internal/logs"
	"github.com/fdp-engine/fdp/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestRestartAfterSIGKILLReclaimsOnce(t *testing.T) {
	rec := newRecorder()
	cfg := baseConfig(t.TempDir())
	cfg.Modules = []ModuleConfig{mod("m1", "sleeper"), mod("m2", "sleeper")}
	r := startSup(t, cfg, rec, nil)

	pid := rec.wait(t, "start", "m1").pid
	m2 := rec.wait(t, "start", "m2").pid
	const kills = 3
	var dead []int
	for i := 0; i < kills; i++ {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		d := rec.wait(t, "death", "m1")
		if d.pid != pid || d.status != "signal: killed" {
			t.Fatalf("death %d: got pid %d status %q, want pid %d signal: killed", i, d.pid, d.status, pid)
		}
		dead = append(dead, pid)
		next := rec.wait(t, "start", "m1").pid
		if next == pid {
			t.Fatalf("restart reused pid %d", pid)
		}
		pid = next
	}
	st := statusOf(t, r.s, "m1")
	if st.Deaths != kills || st.Restarts != kills || st.State != StateRunning || st.PID != pid || st.LastExit != "signal: killed" {
		t.Fatalf("m1 status %+v", st)
	}
	if st.DetectLatency != 0 || st.Detect.Count != 0 {
		t.Fatalf("external deaths have no detection latency: %v, %d samples", st.DetectLatency, st.Detect.Count)
	}
	if s2 := statusOf(t, r.s, "m2"); s2.PID != m2 || s2.Deaths != 0 {
		t.Fatalf("m2 disturbed: %+v (pid was %d)", s2, m2)
	}

	// Reclaim exactly once per death, with the dead pid, after its death
	// and before the next process of the module started.
	evs := rec.events()
	for _, p := range dead {
		var reclaimAt, deathAt, nextStart = -1, -1, -1
		n := 0
		for i, e := range evs {
			if e.name != "m1" {
				continue
			}
			switch {
			case e.kind == "death" && e.pid == p:
				deathAt = i
			case e.kind == "reclaim" && e.pid == p:
				reclaimAt = i
				n++
			case e.kind == "start" && deathAt >= 0 && nextStart < 0:
				nextStart = i
			}
		}
		if n != 1 || !(deathAt < reclaimAt && reclaimAt < nextStart) {
			t.Fatalf("pid %d: %d reclaims; death at %d, reclaim at %d, next start at %d; events %+v", p, n, deathAt, reclaimAt, nextStart, evs)
		}
	}
	for _, e := range evs {
		if e.kind == "reclaim" && e.name != "m1" {
			t.Fatalf("unexpected reclaim %+v", e)
		}
	}
}

func TestBackoffDelaysGrowAndCap(t *testing.T) {
	rec := newRecorder()
	cfg := baseConfig(t.TempDir())
	cfg.Restart = RestartConfig{InitialBackoff: Duration(time.Millisecond), MaxBackoff: Duration(8 * time.Millisecond), Multiplier: 2, ResetAfter: Duration(time.Minute)}
	cfg.Modules = []ModuleConfig{mod("bad", "crasher")}
	startSup(t, cfg, rec, nil)
	var got []time.Duration
	for len(got) < 6 {
		got = append(got, rec.wait(t, "backoff", "bad").delay)
	}
	ms := time.Millisecond
	want := []time.Duration{1 * ms, 2 * ms, 4 * ms, 8 * ms, 8 * ms, 8 * ms}
	if !slices.Equal(got, want) {
		t.Fatalf("scheduled delays %v, want %v", got, want)
	}
}

func TestNextBackoff(t *testing.T) {
	r := RestartConfig{InitialBackoff: Duration(50 * time.Millisecond), MaxBackoff: Duration(300 * time.Millisecond), Multiplier: 3, ResetAfter: Duration(10 * time.Second)}
	ms := time.Millisecond
	for _, c := range []struct {
		prev, uptime, want time.Duration
	}{
		{0, 0, 50 * ms},
		{50 * ms, time.Second, 150 * ms},
		{150 * ms, time.Second, 300 * ms},
		{300 * ms, time.Second, 300 * ms},
		{300 * ms, 10 * time.Second, 50 * ms}, // ran long enough: reset
		{300 * ms, 20 * time.Second, 50 * ms},
	} {
		if got := nextBackoff(c.prev, c.uptime, r); got != c.want {
			t.Errorf("nextBackoff(%v, %v) = %v, want %v", c.prev, c.uptime, got, c.want)
		}
	}
}

func TestBreakerTripsOthersKeepRunning(t *testing.T) {
	rec := newRecorder()
	cfg := baseConfig(t.TempDir())
	cfg.Breaker = BreakerConfig{MaxFailures: 3, Window: Duration(time.Minute)}
	cfg.Modules = []ModuleConfig{mod("bad", "crasher"), mod("good", "sleeper")}
	r := startSup(t, cfg, rec, nil)
	good := rec.wait(t, "start", "good").pid
	b := rec.wait(t, "broken", "bad")
	if b.pid != 4 {
		t.Fatalf("breaker tripped after %d deaths, want 4 (max_failures 3)", b.pid)
	}
	st := statusOf(t, r.s, "bad")
	if st.State != StateBroken || st.Deaths != 4 || st.Restarts != 3 || st.BreakerTrips != 1 || st.PID != 0 || st.LastExit != "exit status 3" {
		t.Fatalf("bad status %+v", st)
	}
	if g := statusOf(t, r.s, "good"); g.State != StateRunning || g.PID != good || gone(good) {
		t.Fatalf("good status %+v (pid %d)", g, good)
	}
	sum := r.s.Summary()
	var badLine string
	for _, l := range strings.Split(sum, "\n") {
		if strings.HasPrefix(l, "bad ") {
			badLine = strings.Join(strings.Fields(l), " ")
		}
	}
	if !strings.HasPrefix(badLine, "bad broken 3 4 0 1 ") || !strings.HasSuffix(badLine, " exit status 3") {
		t.Fatalf("summary line of the broken module %q in:\n%s", badLine, sum)
	}
	t.Logf("summary:\n%s", sum)
	if over := testutil.OverPreciseDurations(sum); len(over) > 0 {
		t.Fatalf("durations with more than three significant digits %q in:\n%s", over, sum)
	}
	checkLogSummary(t, r.s, map[string]string{"bad": "broken 3 4 0 1 exit status 3", "good": "running 0 0 0 0 "})
	r.stop()
	if err := r.result(t); err != nil {
		t.Fatal(err)
	}
	// The module stayed down: exactly 4 processes were ever started.
	n := 0
	for _, e := range rec.events() {
		if e.kind == "start" && e.name == "bad" {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("bad started %d times, want 4", n)
	}
	if st := statusOf(t, r.s, "bad"); st.State != StateBroken {
		t.Fatalf("after shutdown bad is %s, want broken", st.State)
	}
	out := rec.logBuf.all()
	if !strings.Contains(out, `ERROR msg="circuit breaker tripped: not restarting" child=bad`) {
		t.Fatalf("no error log for the breaker:\n%s", out)
	}
	// Crashes are external deaths: no detection latency (only the
	// supervisor's own kills have one).
	if strings.Contains(out, " detect=") || len(testutil.OverPreciseDurations(out)) > 0 {
		t.Fatalf("detection latencies of more than three significant digits %q:\n%s", testutil.OverPreciseDurations(out), out)
	}
}

// checkLogSummary: LogSummary writes one JSON record per child with the
// figures of its Summary row (want: "state restarts deaths hangs trips
// last_exit"), its detection latencies when it died, and one record of the
// totals.
func checkLogSummary(t *testing.T, s *Supervisor, want map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	s.LogSummary(logs.New(&buf, logs.JSON))
	seen := map[string]bool{}
	totals := 0
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec struct {
			Msg, Child, State       string
			LastExit                string `json:"last_exit"`
			Restarts, Deaths, Hangs int
			BreakerTrips            int    `json:"breaker_trips"`
			DetectP50               string `json:"detect_p50"`
			DetectP99               string `json:"detect_p99"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if rec.Msg == "supervisor summary" {
			totals++
			continue
		}
		if rec.Msg != "child summary" {
			t.Fatalf("record %s", l)
		}
		seen[rec.Child] = true
		w, ok := want[rec.Child]
		if !ok {
			continue
		}
		if got := fmt.Sprintf("%s %d %d %d %d %s", rec.State, rec.Restarts, rec.Deaths, rec.Hangs, rec.BreakerTrips, rec.LastExit); got != w {
			t.Fatalf("%s: %q, want %q", rec.Child, got, w)
		}
		// Only the supervisor's own kills (hangs) have a latency.
		if (rec.Hangs > 0) != (rec.DetectP50 != "") || (rec.DetectP50 == "") != (rec.DetectP99 == "") {
			t.Fatalf("%s: detection latencies %q %q after %d hang kills", rec.Child, rec.DetectP50, rec.DetectP99, rec.Hangs)
		}
		for _, d := range []string{rec.DetectP50, rec.DetectP99} {
			if _, err := time.ParseDuration(d); d != "" && (err != nil || len(testutil.OverPreciseDurations(d)) > 0) {
				t.Fatalf("%s: detection latency %q", rec.Child, d)
			}
		}
	}
	for c := range want {
		if !seen[c] {
			t.Fatalf("no summary record of %s:\n%s", c, buf.String())
		}
	}
	if totals != 1 {
		t.Fatalf("%d records of the totals:\n%s", totals, buf.String())
	}
}

func TestEngineRestartLeavesModulesRunning(t *testing.T) {
	rec := newRecorder()
	cfg := baseConfig(t.TempDir())
	cfg.Modules = []ModuleConfig{mod("m1", "sleeper")}
	r := startSup(t, cfg, rec, nil)
	eng := rec.wait(t, "start", EngineName).pid
	m1 := rec.wait(t, "start", "m1").pid
	if err := syscall.Kill(eng, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d := rec.wait(t, "death", EngineName)
	if d.pid != eng || d.status != "signal: killed" {
		t.Fatalf("engine death %+v", d)
	}
	eng2 := rec.wait(t, "start", EngineName).pid
	if eng2 == eng || gone(eng2) {
		t.Fatalf("engine not restarted: %d -> %d", eng, eng2)
	}
	if st := statusOf(t, r.s, "m1"); st.PID != m1 || st.Deaths != 0 || gone(m1) {
		t.Fatalf("module disturbed by the engine restart: %+v", st)
	}
	if st := statusOf(t, r.s, EngineName); st.Restarts != 1 || st.Deaths != 1 || st.PID != eng2 {
		t.Fatalf("engine status %+v", st)
	}
	for _, e := range rec.events() {
		if e.kind == "reclaim" {
			t.Fatalf("reclaim called on engine death: %+v", e)
		}
	}
}

func TestEngineFailureStopsEverything(t *testing.T) {
	for _, tc := range []struct {
		name    string
		restart bool
		want    string
	}{
		{"breaker", true, "engine circuit breaker tripped: 3 deaths"},
		{"no-restart", false, "engine exited (exit status 3) and restart is disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			cfg := baseConfig(t.TempDir())
			cmd, env := childCmd("crasher")
			cfg.Engine = EngineConfig{Command: cmd, Env: env, Restart: tc.restart}
			cfg.Breaker = BreakerConfig{MaxFailures: 2, Window: Duration(time.Minute)}
			cfg.Modules = []ModuleConfig{mod("m1", "sleeper")}
			r := startSup(t, cfg, rec, nil)
			err := r.result(t)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run error %v, want %q", err, tc.want)
			}
			for _, e := range rec.events() {
				if e.kind == "start" && !gone(e.pid) {
					t.Fatalf("%s pid %d still alive after Run", e.name, e.pid)
				}
			}
			if rec.stops != 1 {
				t.Fatalf("AfterStop called %d times", rec.stops)
			}
		})
	}
}

func TestHangIsKilledAndRestarted(t *testing.T) {
	rec := newRecorder()
	dir := t.TempDir()
	cfg := baseConfig(dir)
	cfg.Hang.HeartbeatTimeout = Duration(100 * time.Millisecond)
	m := mod("h", "hanger")
	m.Env["FDP_TEST_DIR"] = dir
	cfg.Modules = []ModuleConfig{m}
	hb := func(name string) (time.Time, bool) {
		if name == EngineName {
			return time.Time{}, false
		}
		st, err := os.Stat(filepath.Join(dir, name+".hb"))
		if err != nil {
			return time.Time{}, false
		}
		return st.ModTime(), true
	}
	r := startSup(t, cfg, rec, func(o *Options) { o.Hooks.Heartbeat = hb })
	pid := rec.wait(t, "start", "h").pid
	d := rec.wait(t, "death", "h")
	if d.pid != pid || d.status != "signal: killed" {
		t.Fatalf("hang death %+v, want pid %d killed", d, pid)
	}
	if rec.wait(t, "reclaim", "h").pid != pid {
		t.Fatal("reclaim of the wrong pid")
	}
	pid2 := rec.wait(t, "start", "h").pid
	st := statusOf(t, r.s, "h")
	if st.Hangs != 1 || st.Deaths != 1 || pid2 == pid {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(rec.logBuf.all(), `msg="child hung: killing it" child=h`) {
		t.Fatalf("no hang log:\n%s", rec.logBuf.all())
	}
}

func TestGracefulShutdownKillsEverything(t *testing.T) {
	rec := newRecorder()
	cfg := baseConfig(t.TempDir())
	cfg.Shutdown.Grace = Duration(300 * time.Millisecond)
	cfg.Modules = []ModuleConfig{mod("m1", "sleeper"), mod("stub", "stubborn")}
	var pids []int
	var aliveAtStop []int
	r := startSup(t, cfg, rec, func(o *Options) {
		o.Hooks.AfterStop = func() error {
			for _, p := range pids {
				if !gone(p) {
					aliveAtStop = append(aliveAtStop, p)
				}
			}
			rec.mu.Lock()
			rec.stops++
			rec.mu.Unlock()
			return nil
		}
	})
	for range 3 {
		pids = append(pids, rec.wait(t, "start", "").pid)
	}
	// The stubborn child ignores SIGTERM only once it ran its first line.
	waitLog(t, rec, `msg="sleeper stub started`)
	r.stop()
	if err := r.result(t); err != nil {
		t.Fatal(err)
	}
	for _, p := range pids {
		if !gone(p) {
			t.Fatalf("pid %d alive after Run returned", p)
		}
	}
	if rec.stops != 1 || len(aliveAtStop) != 0 {
		t.Fatalf("AfterStop calls %d, alive at AfterStop %v", rec.stops, aliveAtStop)
	}
	want := map[string]string{EngineName: "signal: terminated", "m1": "signal: terminated", "stub": "signal: killed"}
	for _, st := range r.s.Status() {
		if st.State != StateStopped || st.PID != 0 || st.LastExit != want[st.Name] || st.Deaths != 0 {
			t.Fatalf("%s after shutdown: %+v", st.Name, st)
		}
	}
	for _, e := range rec.events() {
		if e.kind == "death" || e.kind == "reclaim" {
			t.Fatalf("shutdown reported as a death: %+v", e)
		}
	}
	if !strings.Contains(rec.logBuf.all(), `msg="child ignored SIGTERM: killing it" child=stub`) {
		t.Fatal("no log of the SIGKILL escalation")
	}
}

// waitLog waits for a log line containing sub (already logged or coming).
func waitLog(t *testing.T, rec *recorder, sub string) string {
	t.Helper()
	sink := rec.logBuf
	sink.mu.Lock()
	if sink.ch == nil {
		sink.ch = make(chan string, 100000)
	}
	for _, l := range sink.lines {
		if strings.Contains(l, sub) {
			sink.mu.Unlock()
			return l
		}
	}
	ch := sink.ch
	sink.mu.Unlock()
	guard := time.NewTimer(20 * time.Second)
	defer guard.Stop()
	for {
		select {
		case l := <-ch:
			if strings.Contains(l, sub) {
				return l
			}
		case <-guard.C:
			t.Fatalf("no log line with %q:\n%s", sub, sink.all())
		}
	}
}

func TestChildOutputLoggedWithNameAndEnv(t *testing.T) {
	rec := newRecorder()
	cfg := baseConfig(t.TempDir())
	m := mod("ai-7", "sleeper")
	m.Tier, m.Every, m.Group = TierSlow, 6, "ai"
	cfg.Modules = []ModuleConfig{m}
	startSup(t, cfg, rec, nil)
	l := waitLog(t, rec, `msg="sleeper ai-7 started`)
	want := fmt.Sprintf(`INFO msg="sleeper ai-7 started instance=%s tier=slow every=6 group=ai role=module" child=ai-7 stream=stdout`, cfg.Instance)
	if l != want {
		t.Fatalf("log line\n%s\nwant\n%s", l, want)
	}
	waitLog(t, rec, `INFO msg="stderr line from ai-7" child=ai-7 stream=stderr`)
	waitLog(t, rec, `INFO msg="part-a part-b" child=ai-7 stream=stdout`)
	waitLog(t, rec, `msg="sleeper engine started instance=`+cfg.Instance+` tier= every= group= role=engine" child=engine`)
}

// TestPdeathsig: a supervisor process is SIGKILLed; its children die too.
func TestPdeathsig(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "FDP_TEST_CHILD=super", "FDP_TEST_DIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan []int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "READY" {
				var pids []int
				for _, s := range f[1:] {
					p, _ := strconv.Atoi(s)
					pids = append(pids, p)
				}
				ready <- pids
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	var pids []int
	select {
	case pids = <-ready:
	case <-time.After(20 * time.Second): // failure guard only
		t.Fatal("supervisor child never got ready")
	}
	fds := make([]int, len(pids))
	for i, p := range pids {
		fd, err := unix.PidfdOpen(p, 0)
		if err != nil {
			t.Fatalf("pidfd_open(%d): %v", p, err)
		}
		defer unix.Close(fd)
		fds[i] = fd
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for i, fd := range fds {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 10000) // readable once the process exited
		for err == syscall.EINTR {
			n, err = unix.Poll(pfd, 10000)
		}
		if err != nil || n != 1 {
			t.Fatalf("grandchild %d still alive 10 s after its supervisor was killed (n=%d err=%v)", pids[i], n, err)
		}
	}
}

func TestRunFailsOnMissingCommand(t *testing.T) {
	cfg := baseConfig(t.TempDir())
	cfg.Modules = []ModuleConfig{{Name: "x", Command: []string{"fdp-no-such-binary-xyz"}, Tier: TierFast, Every: 1}}
	s, err := New(cfg, Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background())
	// Refused by the config check before anything starts; one prefix, the
	// command named once (it read `fdp/supervisor: x: fdp/supervisor:
	// "..." not found ...: exec: "...": executable file not found in
	// $PATH`).
	if err == nil || !strings.HasPrefix(err.Error(), `fdp/supervisor: config: modules[0].command: "fdp-no-such-binary-xyz" not found next to `) ||
		strings.Count(err.Error(), "fdp/supervisor") != 1 || strings.Count(err.Error(), "fdp-no-such-binary-xyz") != 1 {
		t.Fatalf("Run error %v", err)
	}
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("second Run: %v", err)
	}
}

func TestBeforeStartErrorAborts(t *testing.T) {
	cfg := baseConfig(t.TempDir())
	started := false
	s, err := New(cfg, Options{Logger: discardLogger(), Hooks: Hooks{
		BeforeStart: func() error { return fmt.Errorf("gc failed") },
		OnStart:     func(string, int) { started = true },
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "before start: gc failed") || started {
		t.Fatalf("Run error %v, started %v", err, started)
	}
}

func TestOnStatusPeriodic(t *testing.T) {
	rec := newRecorder()
	cfg := baseConfig(t.TempDir())
	cfg.Modules = []ModuleConfig{mod("m1", "sleeper")}
	got := make(chan []ChildStatus, 100)
	startSup(t, cfg, rec, func(o *Options) {
		o.StatusEvery = 10 * time.Millisecond
		o.OnStatus = func(s []ChildStatus) {
			select {
			case got <- s:
			default:
			}
		}
	})
	m1 := rec.wait(t, "start", "m1").pid
	guard := time.After(20 * time.Second)
	for {
		select {
		case s := <-got:
			if len(s) != 2 || s[0].Name != EngineName || s[1].Name != "m1" {
				t.Fatalf("status %+v", s)
			}
			if s[1].PID == m1 && s[1].State == StateRunning && s[1].Uptime > 0 {
				return
			}
		case <-guard:
			t.Fatal("no status with m1 running")
		}
	}
}

// TestEngineFirstRestartImmediate: the engine's first restart after a
// healthy run has no backoff (every module waits on it); a crash loop (a
// death soon after a restart) backs off as configured.
func TestEngineFirstRestartImmediate(t *testing.T) {
	rec := newRecorder()
	cfg := baseConfig(t.TempDir())
	cfg.Restart.InitialBackoff = Duration(300 * time.Millisecond)
	cfg.Restart.MaxBackoff = Duration(time.Second)
	cfg.Restart.ResetAfter = Duration(time.Hour) // every later death is "soon"
	_ = startSup(t, cfg, rec, nil)
	eng := rec.wait(t, "start", EngineName).pid
	if err := syscall.Kill(eng, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if d := rec.wait(t, "backoff", EngineName).delay; d != 0 {
		t.Fatalf("first restart after %v, want immediate", d)
	}
	eng2 := rec.wait(t, "start", EngineName).pid
	if err := syscall.Kill(eng2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	want := time.Duration(float64(cfg.Restart.InitialBackoff.D()) * cfg.Restart.Multiplier)
	if d := rec.wait(t, "backoff", EngineName).delay; d != want {
		t.Fatalf("crash loop: backoff %v, want %v (initial x multiplier)", d, want)
	}
}
