package tests

// `engine top` on a real terminal (issue 14, "Live view"): the shipped
// binaries only. A real engine and two modules (bin/modrunner) run in a
// private shm directory; `engine top` runs in a detached tmux session of
// 120x40, and the test reads the screen with `tmux capture-pane` and checks
// every figure the docs describe against the segments, read independently
// through their documented layout: the frame counter and the frame rate,
// the publish and frame times, the memory held, and per module its state,
// pid, runs, runs per second, lag, tick times, failures, late ticks and
// rejects. A module SIGKILLed shows dead; the engine SIGKILLed shows dead,
// and a new engine of the instance is re-attached to; q quits, leaves the
// alternate screen and gives the terminal back in its cooked mode.

import (
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
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/stretchr/testify/require"
)

// segSample is one independent read of the instance's segments.
type segSample struct {
	at        time.Time
	enginePID uint32
	frame     uint64
	publishes uint64
	skipped   uint64
	held      uint64
	pubHist   layout.DurHist
	frameHist layout.DurHist
	modules   map[string]layout.ModStats
	pids      map[string]uint32
	slots     map[string]int
}

// segHistory samples the segments every 20 ms from the start of the test
// until it is stopped: screen figures, which are up to one refresh old, are
// checked against the samples around the time they were read.
type segHistory struct {
	mu      sync.Mutex
	samples []segSample
	stop    chan struct{}
	done    chan struct{}
}

func readSegments(inst string) (segSample, bool) {
	s := segSample{at: time.Now(), modules: map[string]layout.ModStats{}, pids: map[string]uint32{}, slots: map[string]int{}}
	ws, err := shm.Open(shm.SegmentName(inst, "world"), false)
	if err != nil {
		return s, false
	}
	defer ws.Close()
	h, err := layout.DecodeHeader(ws.Data)
	if err != nil {
		return s, false
	}
	s.enginePID = h.CreatorPID
	s.frame, _, _ = layout.UnpackLatest(layout.Load64(ws.Data, layout.OffWLatest))
	s.publishes = layout.Load64(ws.Data, layout.OffWStatPublishes)
	s.skipped = layout.Load64(ws.Data, layout.OffWStatSkipped)
	s.held = layout.Load64(ws.Data, layout.OffWStatBacked)
	s.pubHist = layout.ReadDurHist(ws.Data, layout.OffWPubHist)
	s.frameHist = layout.ReadDurHist(ws.Data, layout.OffWFrameHist)
	for slot := 0; slot < 8; slot++ {
		ms, err := shm.Open(layout.ModuleSegmentName(inst, slot), false)
		if err != nil {
			continue
		}
		m, err := layout.DecodeModule(ms.Data)
		if err == nil && m.Header.CreatorPID == h.CreatorPID && m.Header.CreatorTime == h.CreatorTime {
			if st, _, err := layout.DecodeModStats(ms.Data); err == nil {
				s.modules[m.Info.Name] = st
				s.pids[m.Info.Name] = layout.Load32(ms.Data, layout.OffMPID)
				s.slots[m.Info.Name] = int(m.Info.Slot)
			}
		}
		ms.Close()
	}
	return s, true
}

func startHistory(inst string) *segHistory {
	h := &segHistory{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if s, ok := readSegments(inst); ok {
				h.mu.Lock()
				h.samples = append(h.samples, s)
				h.mu.Unlock()
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *segHistory) close() { close(h.stop); <-h.done }

// around returns the last sample of engine pid taken at or before t and the
// first taken after it (nil when there is none).
func (h *segHistory) around(t time.Time, pid uint32) (before, after *segSample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.samples {
		s := &h.samples[i]
		if s.enginePID != pid {
			continue
		}
		if !s.at.After(t) {
			before = s
		} else if after == nil {
			after = s
		}
	}
	return before, after
}

// heldBetween returns the least and the most memory held that the samples
// of engine pid taken from a to b show.
func (h *segHistory) heldBetween(a, b time.Time, pid uint32) (lo, hi uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	lo = ^uint64(0)
	for _, s := range h.samples {
		if s.enginePID == pid && !s.at.Before(a) && !s.at.After(b) {
			lo, hi = min(lo, s.held), max(hi, s.held)
		}
	}
	return lo, hi
}

func startTopEngine(t *testing.T, bin, inst string, env []string) *exec.Cmd {
	eng := exec.Command(filepath.Join(bin, "engine"), "run", "--instance", inst, "--entities", "2000", "--rate", "30", "--status", "0")
	eng.Env = env
	require.NoError(t, eng.Start())
	t.Cleanup(func() {
		if eng.ProcessState == nil {
			_ = eng.Process.Kill()
			_, _ = eng.Process.Wait()
		}
	})
	return eng
}

func within(t *testing.T, what string, got, want, rel, abs float64) {
	t.Helper()
	require.InDelta(t, want, got, rel*want+abs, "%s: shown %v, measured %v", what, got, want)
}

func TestTopTerminal(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tmux is missing: .ci/run installs it for this test")
		}
		t.Skip("tmux is not installed: the terminal test of engine top needs it (apt-get install tmux)")
	}
	bin := shippedBinaries(t)
	dir := t.TempDir()
	testutil.UseShmDir(t, dir)
	inst := "top"
	env := append(os.Environ(), "FDP_SHM_DIR="+dir, "FDP_INSTANCE="+inst)
	engStart := time.Now()
	eng := startTopEngine(t, bin, inst, env)
	waitFor(t, "the engine's first frame", 20*time.Second, func() bool { return latestFrameOf(inst) >= 1 })
	hist := startHistory(inst)
	defer hist.close()
	mods := map[string]*exec.Cmd{}
	for name, kind := range map[string]string{"telemetry": "telemetry", "ai-1": "ai"} {
		c := exec.Command(filepath.Join(bin, "modrunner"), kind)
		c.Env = append(env, "FDP_MODULE="+name)
		require.NoError(t, c.Start())
		t.Cleanup(func() {
			if c.ProcessState == nil {
				_ = c.Process.Kill()
				_, _ = c.Process.Wait()
			}
		})
		mods[name] = c
	}

	sockDir, err := os.MkdirTemp("", "fdptop")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	term := &tmuxTerm{t: t, bin: tmux, sock: filepath.Join(sockDir, "s")}
	engine := filepath.Join(bin, "engine")
	after := "; echo TOP-EXIT=$?; stty -a"
	// Three views: "top" is checked and quits on q, "ctrlc" quits on
	// Ctrl-C, "sigterm" on a SIGTERM to its pid.
	term.start("top", fmt.Sprintf("env FDP_SHM_DIR=%s %s top %s", dir, engine, inst)+after)
	t.Cleanup(func() { _ = exec.Command(tmux, "-S", term.sock, "kill-server").Run() })
	term.start("ctrlc", fmt.Sprintf("env FDP_SHM_DIR=%s %s top %s", dir, engine, inst)+after)
	pidFile := filepath.Join(sockDir, "pid")
	term.start("sigterm", fmt.Sprintf("sh -c 'echo $$ > %s; exec env FDP_SHM_DIR=%s %s top %s'", pidFile, dir, engine, inst)+after)
	require.Equal(t, "120x40", term.pane("top", "#{pane_width}x#{pane_height}"))

	// Both modules running and figures over a full interval (the default
	// refresh, 1 s).
	running := func(s screen) bool {
		return s.hasFPS && s.rows["telemetry"] != nil && s.rows["telemetry"][2] == "running" &&
			s.rows["ai-1"] != nil && s.rows["ai-1"][2] == "running" && s.times[0] > 0 && s.rows["ai-1"][7] != "-"
	}
	term.waitScreen("top", "both modules running", 30*time.Second, running)
	require.Equal(t, "1", term.pane("top", "#{alternate_on}"), "the view is on the alternate screen")
	// Two refreshes later, check every figure.
	first := term.waitScreen("top", "a later refresh", 10*time.Second, running)
	s := term.waitScreen("top", "the frame counter to grow", 10*time.Second, func(s screen) bool { return running(s) && s.frame > first.frame })
	require.Contains(t, s.text, "refresh 1s")
	require.Equal(t, uint32(eng.Process.Pid), s.pid, s.text)
	// The screen shows a read at most one refresh old: every counter on it
	// lies between the segments' some time before the capture (a refresh,
	// and room for a slow machine) and the segments' after it.
	early, _ := hist.around(s.at.Add(-2500*time.Millisecond), s.pid)
	if early == nil { // the engine is younger: its first sample
		_, early = hist.around(time.Time{}, s.pid)
	}
	require.NotNil(t, early, "samples from before the capture")
	var late *segSample
	waitFor(t, "a sample after the capture", 5*time.Second, func() bool { _, late = hist.around(s.end, s.pid); return late != nil })
	require.GreaterOrEqual(t, s.frame, early.frame, "frame counter shown is the segment's, at most one refresh old\n%s", s.text)
	require.LessOrEqual(t, s.frame, late.frame, "frame counter shown is not ahead of the segment's\n%s", s.text)
	// Frame rate: publishes per second over the last two seconds.
	back, _ := hist.around(late.at.Add(-2*time.Second), s.pid)
	if back == nil {
		_, back = hist.around(time.Time{}, s.pid)
	}
	require.NotNil(t, back)
	require.Greater(t, late.at.Sub(back.at), time.Second, "a rate over more than a second")
	rate := float64(late.publishes-back.publishes) / late.at.Sub(back.at).Seconds()
	within(t, "fps", s.fps, rate, 0.35, 2)
	// Publish and frame times: within the range of the durations counted.
	for i, h := range []layout.DurHist{late.pubHist, late.pubHist, late.frameHist, late.frameHist} {
		lo, hi := uint64(1)<<62, uint64(0)
		for b, c := range h {
			if c > 0 {
				l, u := layout.DurHistBounds(b)
				lo, hi = min(lo, l), max(hi, u)
			}
		}
		require.Positive(t, s.times[i], "time %d\n%s", i, s.text)
		require.GreaterOrEqual(t, uint64(s.times[i]), lo, "time %d\n%s", i, s.text)
		require.LessOrEqual(t, uint64(s.times[i]), hi+hi/200, "time %d (3 significant digits)\n%s", i, s.text)
	}
	require.LessOrEqual(t, s.times[0], s.times[1], "publish p50 <= p99")
	require.LessOrEqual(t, s.times[2], s.times[3], "frame p50 <= p99")
	// Memory held moves as slots are backed and trimmed: the figure shown
	// is one the segment held between the two samples (to 3 digits).
	lo, hi := hist.heldBetween(early.at, late.at, s.pid)
	require.GreaterOrEqual(t, s.held, float64(lo)*0.994, "memory held\n%s", s.text)
	require.LessOrEqual(t, s.held, float64(hi)*1.006, "memory held\n%s", s.text)
	require.Contains(t, s.text, "(limit none)", "engine run without --shm-limit")
	require.GreaterOrEqual(t, s.skip[0], early.skipped)
	require.LessOrEqual(t, s.skip[0], late.skipped)
	require.LessOrEqual(t, s.skip[1], s.skip[0])
	require.Positive(t, s.age, s.text)
	require.Less(t, s.age, 2*time.Second, "last publish age at the read\n%s", s.text)
	require.Positive(t, s.up, s.text)
	require.LessOrEqual(t, s.up, time.Since(engStart)+time.Second, "engine uptime\n%s", s.text)
	for i, h := range []layout.DurHist{late.pubHist, late.frameHist} {
		b := layout.DurHistBucket(uint64(s.last[i]))
		require.Positive(t, s.last[i], s.text)
		require.Positive(t, h[b]+h[max(b-1, 0)]+h[min(b+1, layout.DurHistBuckets-1)], "the last duration %v was counted\n%s", s.last[i], s.text)
	}
	// The module rows.
	require.Contains(t, s.text, "modules 2: 2 running")
	for name, c := range mods {
		row := s.rows[name]
		require.NotNil(t, row, "row of %s\n%s", name, s.text)
		st, ok := late.modules[name]
		require.True(t, ok, name)
		old := early.modules[name]
		require.Equal(t, strconv.Itoa(late.slots[name]), row[0], "%s slot", name)
		require.Equal(t, "running", row[2], name)
		require.Equal(t, strconv.Itoa(c.Process.Pid), row[3], "%s pid", name)
		require.Equal(t, fmt.Sprint(late.pids[name]), row[3], "%s pid in its segment", name)
		num := func(i int) uint64 {
			v, err := strconv.ParseUint(row[i], 10, 64)
			require.NoError(t, err, "%s column %d: %q", name, i, row[i])
			return v
		}
		for i, pair := range map[int][2]uint64{4: {old.Runs, st.Runs}, 9: {old.Failures, st.Failures},
			10: {old.Late, st.Late}, 11: {old.Rejected, st.Rejected}} {
			require.GreaterOrEqual(t, num(i), pair[0], "%s column %d\n%s", name, i, s.text)
			require.LessOrEqual(t, num(i), pair[1], "%s column %d\n%s", name, i, s.text)
		}
		require.LessOrEqual(t, num(6), st.LagMax, "%s lag", name)
		runs := back.modules[name]
		runRate := float64(st.Runs-runs.Runs) / late.at.Sub(back.at).Seconds()
		shownRate, err := strconv.ParseFloat(row[5], 64)
		require.NoError(t, err, row[5])
		within(t, name+" runs/s", shownRate, runRate, 0.35, 2)
		for _, i := range []int{7, 8} {
			d, err := time.ParseDuration(row[i])
			require.NoError(t, err, "%s column %d: %q", name, i, row[i])
			require.Positive(t, d, name)
			require.LessOrEqual(t, uint64(d), st.TickMax+st.TickMax/200, "%s tick column %d at most the longest tick", name, i)
		}
	}

	// SIGKILL a module: its row shows it dead, as its statistics block does.
	require.NoError(t, mods["ai-1"].Process.Kill())
	_, _ = mods["ai-1"].Process.Wait()
	s = term.waitScreen("top", "ai-1 dead", 10*time.Second, func(s screen) bool { return s.rows["ai-1"] != nil && s.rows["ai-1"][2] == "dead" })
	require.Contains(t, s.text, "modules 2: 1 running, 1 dead")
	st, _ := readSegments(inst)
	require.Equal(t, layout.ModuleDead, st.modules["ai-1"].State)

	// SIGKILL the engine: the view says so; a new engine is re-attached to.
	old := eng.Process.Pid
	require.NoError(t, eng.Process.Kill())
	_, _ = eng.Process.Wait()
	term.waitScreen("top", "the engine dead", 10*time.Second, func(s screen) bool {
		return strings.Contains(s.text, fmt.Sprintf("engine pid %d DEAD", old))
	})
	eng = startTopEngine(t, bin, inst, env)
	s = term.waitScreen("top", "the new engine", 30*time.Second, func(s screen) bool {
		return s.pid == uint32(eng.Process.Pid) && s.rows["telemetry"] != nil && s.rows["telemetry"][2] == "running" && s.hasFPS
	})
	require.Contains(t, s.text, fmt.Sprintf("to a new engine, pid %d (was pid %d)", eng.Process.Pid, old))
	require.Nil(t, s.rows["ai-1"], "the dead module is not the new engine's")
	next := term.waitScreen("top", "the new engine's frames", 10*time.Second, func(n screen) bool { return n.frame > s.frame })
	require.Equal(t, uint32(eng.Process.Pid), next.pid)

	// q, Ctrl-C and SIGTERM quit: top exits 0 and gives the terminal back.
	for _, sess := range []string{"ctrlc", "sigterm"} {
		term.waitScreen(sess, "the view in "+sess, 10*time.Second, func(s screen) bool { return s.pid == uint32(eng.Process.Pid) })
		require.Equal(t, "1", term.pane(sess, "#{alternate_on}"), sess)
	}
	term.run("send-keys", "-t", target("top"), "q")
	term.exited("top", false)
	term.run("send-keys", "-t", target("ctrlc"), "C-c")
	term.exited("ctrlc", false)
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	topPID, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(topPID, syscall.SIGTERM))
	term.exited("sigterm", false)

	// --once on a terminal prints one plain frame (rates over one
	// interval) on the normal screen and exits; so does top whose output
	// is not a terminal, without --once.
	start := time.Now()
	term.start("once", fmt.Sprintf("env FDP_SHM_DIR=%s %s top %s --once --interval 300ms", dir, engine, inst)+after)
	out := term.exited("once", true)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	require.Contains(t, out, "FDP top  instance "+inst+"  refresh 300ms")
	require.Regexp(t, `frame \d+  fps \d+\.\d`, out)
	require.Regexp(t, `\n +0 telemetry +running `, out)
	cmd := exec.Command(engine, "top", inst, "--interval", "300ms")
	cmd.Env = env
	b, err = cmd.Output()
	require.NoError(t, err, "%s", b)
	require.NotContains(t, string(b), "\x1b", "plain text")
	require.Regexp(t, `frame \d+  fps \d+\.\d`, string(b))
	require.Regexp(t, `\n +0 telemetry +running `, string(b))

	require.NoError(t, eng.Process.Signal(syscall.SIGTERM))
	_, _ = eng.Process.Wait()
}

// TestTopOnceLive: `engine top --once` of a live engine (30 fps) with a
// module whose name has the 31 characters a name may have: the name is
// shown whole, and even with --interval 1ms the frame rate is measured
// over a window that holds publishes (it showed fps 0.0). Of an instance
// with no engine, top --once exits 1 with one line, like stat.
func TestTopOnceLive(t *testing.T) {
	bin := shippedBinaries(t)
	dir := t.TempDir()
	testutil.UseShmDir(t, dir)
	inst := "toponce"
	env := append(os.Environ(), "FDP_SHM_DIR="+dir, "FDP_INSTANCE="+inst)
	startTopEngine(t, bin, inst, env)
	waitFor(t, "the engine's first frame", 20*time.Second, func() bool { return latestFrameOf(inst) >= 1 })
	name := "a-module-name-of-31-characters-"[:31]
	c := exec.Command(filepath.Join(bin, "modrunner"), "telemetry")
	c.Env = append(env, "FDP_MODULE="+name)
	require.NoError(t, c.Start())
	t.Cleanup(func() { _ = c.Process.Kill(); _, _ = c.Process.Wait() })
	engine := filepath.Join(bin, "engine")
	var out []byte
	waitFor(t, "the module's row", 20*time.Second, func() bool {
		cmd := exec.Command(engine, "top", "--once", "--interval", "1ms", inst)
		cmd.Env = env
		var err error
		out, err = cmd.Output()
		return err == nil && strings.Contains(string(out), " running ")
	})
	require.Regexp(t, `(?m)^\s*\d+ `+name+` +running `, string(out), "the whole name")
	m := regexp.MustCompile(`fps (\d+\.\d)`).FindStringSubmatch(string(out))
	require.NotNil(t, m, "%s", out)
	fps, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	require.Greater(t, fps, 5.0, "%s", out)

	cmd := exec.Command(engine, "top", "--once", "nosuchinstance")
	cmd.Env = env
	all, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "%s", all)
	require.Equal(t, 1, ee.ExitCode())
	require.Equal(t, "Error: top: no engine: fdp.nosuchinstance.world does not exist (live: toponce)\n", string(all))
}
