package supervisor

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fileHeartbeats is the Heartbeat hook of the hang tests: the engine's
// heartbeat is the modification time of engine.hb (written by the "beater"
// role, zero when absent); a module's is the modification time of
// <name>.hb when that file names the current engine's pid (the module is
// attached to the running engine), else unknown.
func fileHeartbeats(dir string) func(string) (time.Time, bool) {
	return func(name string) (time.Time, bool) {
		ep := filepath.Join(dir, "engine.hb")
		eng, err := os.ReadFile(ep)
		est, serr := os.Stat(ep)
		if name == EngineName {
			if err != nil || serr != nil {
				return time.Time{}, true
			}
			return est.ModTime(), true
		}
		mp := filepath.Join(dir, name+".hb")
		mod, merr := os.ReadFile(mp)
		mst, mserr := os.Stat(mp)
		if err != nil || merr != nil || mserr != nil || string(mod) != string(eng) {
			return time.Time{}, false
		}
		return mst.ModTime(), true
	}
}

// waitFile polls until the file at path holds want (bounded).
func waitFile(t *testing.T, path, want string) time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && string(b) == want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(path)
			t.Fatalf("%s holds %q, want %q", path, b, want)
		}
		time.Sleep(time.Millisecond) // polling a condition, bounded
	}
}

func hangConfig(dir string) *Config {
	cfg := baseConfig(dir)
	cmd, env := childCmd("beater")
	env["FDP_TEST_DIR"] = dir
	cfg.Engine = EngineConfig{Command: cmd, Env: env, Restart: true}
	cfg.Hang = HangConfig{EngineTimeout: Duration(200 * time.Millisecond), EngineStartTimeout: Duration(2 * time.Second)}
	return cfg
}

// TestStoppedEngineIsKilledAndRestarted: an engine stopped with SIGSTOP
// stops publishing; after hang.engine_timeout the supervisor SIGKILLs it
// (reported as stopped), restarts it, and the new engine publishes again.
func TestStoppedEngineIsKilledAndRestarted(t *testing.T) {
	rec := newRecorder()
	dir := t.TempDir()
	cfg := hangConfig(dir)
	r := startSup(t, cfg, rec, func(o *Options) { o.Hooks.Heartbeat = fileHeartbeats(dir) })
	hb := filepath.Join(dir, "engine.hb")
	pid := rec.wait(t, "start", EngineName).pid
	first := waitFile(t, hb, strconv.Itoa(pid))
	// Stop it only once a later heartbeat was written: file times are
	// coarse (the kernel's tick), so the first one may carry a time
	// before the supervisor's record of the start, and the engine would
	// count as never published (it failed so under load).
	deadline := time.Now().Add(10 * time.Second)
	for st, _ := os.Stat(hb); st == nil || !st.ModTime().After(first); st, _ = os.Stat(hb) {
		if time.Now().After(deadline) {
			t.Fatal("the engine wrote no second heartbeat")
		}
		time.Sleep(time.Millisecond) // polling a condition, bounded
	}

	stopped := time.Now()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	d := rec.wait(t, "death", EngineName)
	if d.pid != pid || d.status != "signal: killed" {
		t.Fatalf("hang death %+v, want pid %d killed", d, pid)
	}
	if lat := d.at.Sub(stopped); lat < 200*time.Millisecond || lat > 5*time.Second {
		t.Fatalf("killed %v after the SIGSTOP, want after the 200ms timeout (and soon after)", lat)
	}
	pid2 := rec.wait(t, "start", EngineName).pid
	waitFile(t, hb, strconv.Itoa(pid2)) // the new engine publishes
	st0, err := os.Stat(hb)
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for st, _ := os.Stat(hb); !st.ModTime().After(st0.ModTime()); st, _ = os.Stat(hb) {
		if time.Now().After(deadline) {
			t.Fatal("the restarted engine does not keep publishing")
		}
		time.Sleep(time.Millisecond) // polling a condition, bounded
	}
	st := statusOf(t, r.s, EngineName)
	if st.Hangs != 1 || st.Deaths != 1 {
		t.Fatalf("engine status %+v", st)
	}
	// A hang kill's latency is measured from the supervisor's SIGKILL,
	// which came after the SIGSTOP: it is within the death hook's time
	// since the SIGSTOP, and it is the one sample.
	if lat := st.DetectLatency; lat <= 0 || lat > d.at.Sub(stopped) || st.Detect.Count != 1 || st.Detect.Sum != lat {
		t.Fatalf("hang kill detection latency %v (histogram %d, %v), want in (0, %v]", lat, st.Detect.Count, st.Detect.Sum, d.at.Sub(stopped))
	}
	// The log line may be written after the death was recorded (another
	// goroutine): wait for it, bounded.
	want := `msg="child hung: killing it" child=engine pid=` + strconv.Itoa(pid) + ` reason=engine stopped publishing`
	logDeadline := time.Now().Add(5 * time.Second)
	for log := rec.logBuf.all(); !strings.Contains(log, want) || !strings.Contains(log, "stopped=true"); log = rec.logBuf.all() {
		if time.Now().After(logDeadline) {
			t.Fatalf("no engine hang log:\n%s", log)
		}
		time.Sleep(time.Millisecond) // polling a condition, bounded
	}
}

// TestEngineThatNeverPublishesIsKilled: an engine that never publishes after
// its start is killed after hang.engine_start_timeout.
func TestEngineThatNeverPublishesIsKilled(t *testing.T) {
	rec := newRecorder()
	dir := t.TempDir()
	cfg := baseConfig(dir) // the engine is a sleeper: it never writes engine.hb
	cfg.Hang = HangConfig{EngineTimeout: Duration(100 * time.Millisecond), EngineStartTimeout: Duration(300 * time.Millisecond)}
	startSup(t, cfg, rec, func(o *Options) { o.Hooks.Heartbeat = fileHeartbeats(dir) })
	s := rec.wait(t, "start", EngineName)
	d := rec.wait(t, "death", EngineName)
	if d.pid != s.pid || d.status != "signal: killed" || d.at.Sub(s.at) < 300*time.Millisecond {
		t.Fatalf("death %+v %v after the start, want killed after 300ms", d, d.at.Sub(s.at))
	}
	if !strings.Contains(rec.logBuf.all(), `reason=engine never published after its start`) {
		t.Fatalf("no hang log:\n%s", rec.logBuf.all())
	}
}

// TestStoppedModuleKilledAfterEngineRestart: a module stopped with SIGSTOP
// while the engine is replaced never attaches to the new engine; it is killed
// as hung once the new engine has been publishing for longer than
// hang.heartbeat_timeout (not before), then restarted, and it attaches. A
// module that rejoins the new engine by itself is left alone.
func TestStoppedModuleKilledAfterEngineRestart(t *testing.T) {
	rec := newRecorder()
	dir := t.TempDir()
	cfg := hangConfig(dir)
	const timeout = 400 * time.Millisecond
	cfg.Hang.HeartbeatTimeout = Duration(timeout)
	for _, n := range []string{"stuck", "rejoin"} {
		m := mod(n, "attacher")
		m.Env["FDP_TEST_DIR"] = dir
		cfg.Modules = append(cfg.Modules, m)
	}
	r := startSup(t, cfg, rec, func(o *Options) { o.Hooks.Heartbeat = fileHeartbeats(dir) })
	eng := strconv.Itoa(rec.wait(t, "start", EngineName).pid)
	stuck := rec.wait(t, "start", "stuck").pid
	waitFile(t, filepath.Join(dir, "stuck.hb"), eng)
	waitFile(t, filepath.Join(dir, "rejoin.hb"), eng)

	if err := syscall.Kill(stuck, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(eng)
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eng2 := strconv.Itoa(rec.wait(t, "start", EngineName).pid)
	up := waitFile(t, filepath.Join(dir, "engine.hb"), eng2)
	waitFile(t, filepath.Join(dir, "rejoin.hb"), eng2)

	d := rec.wait(t, "death", "stuck")
	if d.pid != stuck || d.status != "signal: killed" {
		t.Fatalf("death %+v, want pid %d killed", d, stuck)
	}
	if after := d.at.Sub(up); after < timeout-10*time.Millisecond {
		t.Fatalf("killed %v after the new engine came up: a module must get %v to attach", after, timeout)
	}
	stuck2 := rec.wait(t, "start", "stuck").pid
	if stuck2 == stuck {
		t.Fatal("not restarted")
	}
	waitFile(t, filepath.Join(dir, "stuck.hb"), eng2)
	if st := statusOf(t, r.s, "stuck"); st.Hangs != 1 || st.Deaths != 1 {
		t.Fatalf("stuck status %+v", st)
	}
	if st := statusOf(t, r.s, "rejoin"); st.Hangs != 0 || st.Deaths != 0 {
		t.Fatalf("the rejoining module was killed: %+v", st)
	}
	log := rec.logBuf.all()
	if !strings.Contains(log, `child=stuck pid=`+strconv.Itoa(stuck)+` reason=not attached to the running engine`) ||
		!strings.Contains(log, "stopped=true") {
		t.Fatalf("no hang log:\n%s", log)
	}
}

// TestSlowStartingModuleGetsAttachTimeout: a newly started module process
// is given hang.attach_timeout (not only hang.heartbeat_timeout) to attach
// to the publishing engine; one that never attaches is killed after it.
func TestSlowStartingModuleGetsAttachTimeout(t *testing.T) {
	rec := newRecorder()
	dir := t.TempDir()
	cfg := hangConfig(dir)
	const attach = 1500 * time.Millisecond
	cfg.Hang.HeartbeatTimeout = Duration(200 * time.Millisecond)
	cfg.Hang.AttachTimeout = Duration(attach)
	slow := mod("slow", "slowattacher")
	slow.Env["FDP_TEST_DIR"] = dir
	slow.Env["FDP_ATTACH_DELAY"] = "800ms"
	never := mod("never", "sleeper")
	cfg.Modules = []ModuleConfig{slow, never}
	r := startSup(t, cfg, rec, func(o *Options) { o.Hooks.Heartbeat = fileHeartbeats(dir) })
	eng := strconv.Itoa(rec.wait(t, "start", EngineName).pid)
	s := rec.wait(t, "start", "never")
	waitFile(t, filepath.Join(dir, "slow.hb"), eng)
	d := rec.wait(t, "death", "never")
	if d.pid != s.pid || d.status != "signal: killed" || d.at.Sub(s.at) < attach {
		t.Fatalf("death %+v %v after its start, want killed after %v", d, d.at.Sub(s.at), attach)
	}
	if st := statusOf(t, r.s, "slow"); st.Hangs != 0 || st.Deaths != 0 {
		t.Fatalf("the slow module was killed: %+v", st)
	}
	if !strings.Contains(rec.logBuf.all(), `child=never pid=`+strconv.Itoa(s.pid)+` reason=not attached to the running engine`) {
		t.Fatalf("no hang log:\n%s", rec.logBuf.all())
	}
}

func TestHangReasonString(t *testing.T) {
	for r, want := range map[HangReason]string{HangNone: "none", HangNoHeartbeat: "no heartbeat", HangNotAttached: "not attached to the running engine",
		HangEngineStalled: "engine stopped publishing", HangEngineNoStart: "engine never published after its start", HangReason(99): "HangReason(99)"} {
		if r.String() != want {
			t.Errorf("%d: %q, want %q", int(r), r.String(), want)
		}
	}
}
