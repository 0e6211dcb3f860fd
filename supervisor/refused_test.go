package supervisor

import (
	"strconv"
	"strings"
	"testing"

	"github.com/fdp-engine/fdp/layout"
)

// exiter is a module whose process exits with code after two stderr lines.
func exiter(name string, code int) ModuleConfig {
	m := mod(name, "exiter")
	m.Env["FDP_TEST_EXIT"] = strconv.Itoa(code)
	return m
}

// TestRefusedModuleNotRestarted: a module exiting with layout.ExitRefused
// is not restarted (state refused, one death, no breaker trip), logged once
// with its last stderr line, shown in Status and Summary; the same program
// exiting 1 is restarted as before, and the other modules keep running.
func TestRefusedModuleNotRestarted(t *testing.T) {
	rec := newRecorder()
	cfg := baseConfig(t.TempDir())
	cfg.Modules = []ModuleConfig{exiter("refused", layout.ExitRefused), exiter("crashing", 1), mod("good", "sleeper")}
	r := startSup(t, cfg, rec, nil)
	good := rec.wait(t, "start", "good").pid
	first := rec.wait(t, "start", "refused").pid
	ref := rec.wait(t, "refused", "refused")
	const line = "exiter refused: exit 78"
	if ref.pid != first || ref.status != line {
		t.Fatalf("refusal %+v, want pid %d and last stderr line %q", ref, first, line)
	}
	// The module exiting 1 is restarted, again and again, meanwhile.
	for range 3 {
		rec.wait(t, "start", "crashing")
	}
	st := statusOf(t, r.s, "refused")
	if st.State != StateRefused || st.State.String() != "refused" || st.PID != 0 || st.Deaths != 1 || st.Restarts != 0 ||
		st.BreakerTrips != 0 || st.LastExit != "exit status 78" || st.Refusal != line {
		t.Fatalf("refused status %+v", st)
	}
	if c := statusOf(t, r.s, "crashing"); c.State == StateRefused || c.Restarts < 2 || c.Refusal != "" {
		t.Fatalf("crashing status %+v", c)
	}
	if g := statusOf(t, r.s, "good"); g.State != StateRunning || g.PID != good || gone(good) {
		t.Fatalf("good status %+v (pid %d)", g, good)
	}
	sum := r.s.Summary()
	var row string
	for _, l := range strings.Split(sum, "\n") {
		if strings.HasPrefix(l, "refused ") && !strings.HasPrefix(l, "refused refused:") {
			row = strings.Join(strings.Fields(l), " ")
		}
	}
	if !strings.HasPrefix(row, "refused refused 0 1 0 0 ") || !strings.HasSuffix(row, " exit status 78") ||
		!strings.Contains(sum, "\nrefused refused: "+line+"\n") {
		t.Fatalf("summary row %q in:\n%s", row, sum)
	}
	r.stop()
	if err := r.result(t); err != nil {
		t.Fatal(err)
	}
	starts := 0
	for _, e := range rec.events() {
		if e.name == "refused" && (e.kind == "start" || e.kind == "backoff") {
			starts++
		}
	}
	if starts != 1 {
		t.Fatalf("refused module started or scheduled %d times, want 1 start", starts)
	}
	if st := statusOf(t, r.s, "refused"); st.State != StateRefused {
		t.Fatalf("after shutdown the refused module is %s", st.State)
	}
	logs := rec.logBuf.all()
	if n := strings.Count(logs, `msg="module refused by the engine: not restarting" child=refused`); n != 1 ||
		!strings.Contains(logs, "last_stderr="+line) {
		t.Fatalf("refusal logged %d times (want 1, with its last stderr line):\n%s", n, logs)
	}
	if strings.Contains(logs, `msg="child died" child=refused`) {
		t.Fatalf("the refusal is logged as a death too:\n%s", logs)
	}
}

// TestEngineExitRefusedIsACrash: only modules are refused; an engine
// exiting with layout.ExitRefused is restarted like any dead engine.
func TestEngineExitRefusedIsACrash(t *testing.T) {
	rec := newRecorder()
	cfg := baseConfig(t.TempDir())
	cmd, env := childCmd("exiter")
	env["FDP_TEST_EXIT"] = strconv.Itoa(layout.ExitRefused)
	cfg.Engine = EngineConfig{Command: cmd, Env: env, Restart: true}
	r := startSup(t, cfg, rec, nil)
	for range 3 {
		rec.wait(t, "start", EngineName)
	}
	if st := statusOf(t, r.s, EngineName); st.State == StateRefused || st.Restarts < 2 {
		t.Fatalf("engine status %+v", st)
	}
	for _, e := range rec.events() {
		if e.kind == "refused" {
			t.Fatalf("refusal hook called: %+v", e)
		}
	}
}
