package tests

// Scheduling across processes (issue 12, point 3): Every means the same for
// both tiers, a slow tick that outlasts its period delays the next one
// instead of dropping a period, and a long slow tick is not taken for a
// hang by the supervisor while a real hang is.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// schedEnv selects the part a child of these tests plays.
const schedEnv = "FDP_SCHED_CHILD"

// schedModule is the module of the scheduling tests' children; see
// schedChild for the roles.
type schedModule struct {
	spec  module.Spec
	role  string
	long  time.Duration
	ticks int
}

func (m *schedModule) Spec() module.Spec { return m.spec }

func (m *schedModule) Tick(v *module.View, _ *module.Commands, _ time.Duration) error {
	m.ticks++
	switch m.role {
	case "slow":
		// Every third tick lasts m.long (twice the module's period): the
		// work of a busy tick, not a synchronisation.
		long := m.ticks%3 == 0 && m.long > 0
		if long {
			time.Sleep(m.long)
		}
		fmt.Printf("tick n=%d frame=%d long=%t end=%d\n", m.ticks, v.Frame(), long, latestFrame())
	case "fast3":
		fmt.Printf("tick n=%d frame=%d\n", m.ticks, v.Frame())
	case "long":
		if m.ticks == 1 {
			fmt.Println("long tick began")
			time.Sleep(m.long) // a legitimately long tick, not a synchronisation
			fmt.Println("long tick done")
		} else {
			fmt.Printf("tick n=%d\n", m.ticks)
		}
	case "hang":
		fmt.Println("hanging")
		time.Sleep(time.Hour) // the hang itself
	}
	return nil
}

// schedChild runs a module of role: "slow" (tests schema, slow, Every 4,
// every third tick lasts $FDP_LONG), "member" (the same in convoy group
// "convoy"; no long tick without $FDP_LONG), "fast3" (tests schema, fast,
// Every 3),
// "long" (demo schema, slow, its first tick lasts 3 s, runtime 5 s) or
// "hang" (demo schema, slow, its first tick never ends, runtime 1 s).
func schedChild(role string) int {
	m := &schedModule{role: role}
	var reg *world.Registry
	switch role {
	case "slow", "fast3", "member":
		reg = newSchema().reg
		worldSegPath = os.Getenv("FDP_WORLD_PATH")
		m.spec = module.Spec{Tier: module.Slow, Every: 4, Group: "solo"}
		m.long, _ = time.ParseDuration(os.Getenv("FDP_LONG"))
		switch role {
		case "fast3":
			m.spec = module.Spec{Tier: module.Fast, Every: 3}
		case "member":
			m.spec.Group, m.role = "convoy", "slow" // a tick of "slow"; long ones only with $FDP_LONG
		}
	case "long", "hang":
		s, err := demo.NewSchema()
		if err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		reg = s.Reg
		m.spec = module.Spec{Tier: module.Slow, Every: 6, Group: "solo", MaxRuntime: 5 * time.Second}
		m.long = 3 * time.Second
		if role == "hang" {
			m.spec.MaxRuntime = time.Second
		}
	default:
		fmt.Println("ERROR unknown role", role)
		return 1
	}
	m.spec.Name = os.Getenv("FDP_MODULE")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := module.Run(context.Background(), m, module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: reg, Logger: log})
	fmt.Println("EXIT", err)
	return 0
}

// schedTick is one line of a scheduling child.
type schedTick struct {
	n, frame, end uint64
	long          bool
}

// schedTicks parses the "tick" lines of a "slow" or "fast3" child.
func schedTicks(t *testing.T, lines []string) []schedTick {
	var out []schedTick
	for _, l := range lines {
		if !strings.HasPrefix(l, "tick ") {
			continue
		}
		var k schedTick
		if strings.Contains(l, " long=") {
			_, err := fmt.Sscanf(l, "tick n=%d frame=%d long=%t end=%d", &k.n, &k.frame, &k.long, &k.end)
			require.NoError(t, err, l)
		} else {
			_, err := fmt.Sscanf(l, "tick n=%d frame=%d", &k.n, &k.frame)
			require.NoError(t, err, l)
		}
		require.Equal(t, uint64(len(out)+1), k.n, "ticks in order: %s", l)
		out = append(out, k)
	}
	return out
}

// countLines matches once the child printed n lines starting with prefix.
func countLines(c *testutil.Child, prefix string, n int) func(string) bool {
	return func(string) bool {
		k := 0
		for _, l := range c.Lines() {
			if strings.HasPrefix(l, prefix) {
				k++
			}
		}
		return k >= n
	}
}

// dispatchFrames returns the frames (up to last) in which the engine
// dispatched a tick, from its frame stats; the rig's engine has one module.
func dispatchFrames(frames <-chan host.FrameStats, last uint64) []uint64 {
	var out []uint64
	for st := range frames {
		if st.Dispatched > 0 && st.Frame <= last {
			out = append(out, st.Frame)
		}
		if st.Frame >= last {
			return out
		}
	}
	return out
}

// TestSlowBusyLosesNoPeriod: a slow module of Every 4 at 50 frames per
// second whose every third tick lasts 160 ms, twice its period. Every tick
// starts as soon as the module is idle and at least Every frames have
// passed since the previous one: the tick after a long one starts in the
// frame in which the engine sees it done (the module's last latest frame,
// or the one after), not at the next multiple of Every (the rule before
// dropped that period), and never earlier than Every frames. The engine
// dispatched exactly the ticks the module ran.
func TestSlowBusyLosesNoPeriod(t *testing.T) {
	testutil.RunChild(schedEnv, schedChild)
	const every = 4
	r := newRigConfig(t, 50, func(c *host.Config) { c.FrameRate = 50 })
	frames := r.runEngine()
	c := testutil.StartChild(t, testutil.ChildOptions{Test: "TestSlowBusyLosesNoPeriod", Env: []string{
		schedEnv + "=slow", "FDP_MODULE=busy", "FDP_INSTANCE=" + r.inst, "FDP_WORLD_PATH=" + r.eng.WorldPath(),
		"FDP_LONG=" + (2 * every * r.eng.Period()).String()}})
	_, ok := c.WaitLine(countLines(c, "tick ", 18), 60*time.Second)
	require.True(t, ok, "18 ticks; lines %q", c.Lines())
	ticks := schedTicks(t, c.Lines())
	delayed := 0
	for i := 0; i+1 < len(ticks); i++ {
		a, b := ticks[i], ticks[i+1]
		require.GreaterOrEqual(t, b.frame, a.frame+every, "tick %d at frame %d, the next at %d: fewer than Every frames", a.n, a.frame, b.frame)
		// The engine sees the done at the dispatch of the first frame after
		// it: the module's last latest frame, or the next one, or one more
		// when a frame starts between the module's read of the latest
		// frame and its done word (the rule before waited for the next
		// multiple of Every: 4 frames after a.end at the worst).
		due := max(a.frame+every, a.end+3)
		require.LessOrEqual(t, b.frame, due, "tick %d at frame %d ended at frame %d; the next at %d: a period was dropped", a.n, a.frame, a.end, b.frame)
		if a.long {
			require.Greater(t, a.end, a.frame+every, "a long tick outlasts its period: %+v", a)
			if b.frame > a.frame+every {
				delayed++
			}
		}
	}
	require.GreaterOrEqual(t, delayed, 5, "long ticks delayed the next one")
	// The engine dispatched exactly the ticks the module ran (it was due
	// nowhere else, and nothing was dropped), and counted the frames it
	// was due but busy.
	var want []uint64
	for _, k := range ticks {
		want = append(want, k.frame)
	}
	got := dispatchFrames(frames, ticks[len(ticks)-1].frame)
	require.Equal(t, want, got[len(got)-len(want):], "dispatch frames")
	require.Len(t, got, len(want), "no dispatch before the first tick the module ran")
	m := r.module("busy")
	require.Positive(t, m.Stats.Skipped, "due while busy")
	require.Zero(t, m.Stats.Failures)
	require.GreaterOrEqual(t, m.TickMax, 2*every*r.eng.Period(), "the engine measured the long ticks")
}

// TestConvoyStragglerCatchesUp: two slow modules of Every 4 in one convoy
// group at 50 frames per second; "steady" ticks at once, every third tick of
// "straggler" lasts 160 ms (twice the period). The group goes on without
// its busy member: steady ticks every 4 frames. The straggler loses no
// period: the tick after a long one starts within 3 frames of its end (a
// catch-up with a snapshot of its own, counted), and the one after that is
// with its group again, in a frame in which steady ticks.
func TestConvoyStragglerCatchesUp(t *testing.T) {
	testutil.RunChild(schedEnv, schedChild)
	const every = 4
	r := newRigConfig(t, 50, func(c *host.Config) { c.FrameRate = 50 })
	r.runEngine()
	env := []string{schedEnv + "=member", "FDP_INSTANCE=" + r.inst, "FDP_WORLD_PATH=" + r.eng.WorldPath()}
	steady := testutil.StartChild(t, testutil.ChildOptions{Test: "TestConvoyStragglerCatchesUp", Env: append(env, "FDP_MODULE=steady")})
	r.framesUntilJoined(1)
	strag := testutil.StartChild(t, testutil.ChildOptions{Test: "TestConvoyStragglerCatchesUp", Env: append(env, "FDP_MODULE=straggler",
		"FDP_LONG="+(2*every*r.eng.Period()).String())})
	_, ok := strag.WaitLine(countLines(strag, "tick ", 15), 60*time.Second)
	require.True(t, ok, "15 straggler ticks; lines %q", strag.Lines())
	ticks := schedTicks(t, strag.Lines())
	group := map[uint64]bool{}
	var sf []uint64
	for _, k := range schedTicks(t, steady.Lines()) {
		group[k.frame] = true
		sf = append(sf, k.frame)
	}
	for i := 1; i < len(sf); i++ {
		require.GreaterOrEqual(t, sf[i], sf[i-1]+every, "steady %v", sf)
	}
	catchUps := 0
	for i := 0; i+2 < len(ticks); i++ {
		a, b, c := ticks[i], ticks[i+1], ticks[i+2]
		if !a.long || !group[a.frame] {
			continue
		}
		require.LessOrEqual(t, b.frame, max(a.frame+every, a.end+3), "after the long tick %+v the next at %d: a period was dropped", a, b.frame)
		if group[b.frame] {
			continue // it came free just in time for its group
		}
		catchUps++
		require.True(t, group[c.frame], "after the catch-up at %d the straggler ticks at %d, not with its group (%v)", b.frame, c.frame, sf)
	}
	require.GreaterOrEqual(t, catchUps, 2, "straggler ticks %+v; steady %v", ticks, sf)
	m := r.module("straggler")
	require.GreaterOrEqual(t, m.Stats.CatchUps, uint64(catchUps))
	require.Zero(t, m.Stats.Failures)
	require.Zero(t, r.module("steady").Stats.CatchUps, "the steady member never straggles")
	require.Equal(t, r.module("steady").Group, m.Group)
}

// framesUntilJoined waits (the engine runs) until n modules joined.
func (r *rig) framesUntilJoined(n int) {
	r.t.Helper()
	waitFor(r.t, "joins", 30*time.Second, r.joined(n))
}

// TestFastEveryThree: a fast module with Every 3 ticks on exactly every
// third frame, on the latest frame (before, fast modules ignored Every and
// ticked every frame). At 50 frames per second three frames (60 ms) are
// more than the fast deadline (50 ms): a tick that was not late is done
// before the module's next due frame, so that one ticks exactly 3 frames
// later; after a late tick (a loaded machine) the next one may be delayed,
// never earlier.
func TestFastEveryThree(t *testing.T) {
	testutil.RunChild(schedEnv, schedChild)
	r := newRigConfig(t, 50, func(c *host.Config) { c.FrameRate = 50 })
	frames := r.runEngine()
	c := testutil.StartChild(t, testutil.ChildOptions{Test: "TestFastEveryThree", Env: []string{
		schedEnv + "=fast3", "FDP_MODULE=fast3", "FDP_INSTANCE=" + r.inst, "FDP_WORLD_PATH=" + r.eng.WorldPath()}})
	_, ok := c.WaitLine(countLines(c, "tick ", 60), 60*time.Second)
	require.True(t, ok, "60 ticks; lines %q", c.Lines())
	ticks := schedTicks(t, c.Lines())
	last := ticks[len(ticks)-1].frame
	var got []uint64
	late := map[uint64]bool{}
	for st := range frames {
		if st.Dispatched > 0 && st.Frame <= last {
			got = append(got, st.Frame)
			late[st.Frame] = st.Late > 0
		}
		if st.Frame >= last {
			break
		}
	}
	require.GreaterOrEqual(t, len(got), 60)
	exact := 0
	for i := 1; i < len(got); i++ {
		if late[got[i-1]] {
			require.GreaterOrEqual(t, got[i], got[i-1]+3, "dispatches %v", got)
			continue
		}
		require.Equal(t, got[i-1]+3, got[i], "dispatches %v (late %v)", got, late)
		exact++
	}
	require.Greater(t, exact, len(got)/2, "dispatches %v", got)
	// Each tick read the latest frame: the one it was dispatched in, or a
	// later one if the engine published again before the module pinned.
	require.GreaterOrEqual(t, len(ticks), len(got)-1)
	off := len(got) - len(ticks)
	for i, k := range ticks {
		if i+off < 0 {
			continue
		}
		require.GreaterOrEqual(t, k.frame, got[i+off], "tick %d", k.n)
		if !late[got[i+off]] {
			require.Less(t, k.frame, got[i+off]+3, "tick %d read a frame before its next dispatch", k.n)
		}
	}
	require.Zero(t, r.module("fast3").Stats.Failures)
}

// TestLongSlowTickNotKilled runs `engine up` with two slow modules under the
// supervisor's default hang rule (no heartbeat for 2 s: hung): "long",
// whose first tick lasts 3 s within its 5 s runtime, and "hang", whose
// first tick never ends (runtime 1 s). The SDK keeps the heartbeat fresh
// during a tick up to its runtime: the long tick ends and the module goes
// on ticking, never killed; the hung one is killed once its runtime and
// the heartbeat timeout have passed.
func TestLongSlowTickNotKilled(t *testing.T) {
	testutil.RunChild(schedEnv, schedChild)
	if testing.Short() {
		t.Skip("runs the shipped binaries for several seconds")
	}
	bin := shippedBinaries(t)
	self, err := filepath.Abs(os.Args[0])
	require.NoError(t, err)
	inst := uniqueInstance(t, "lt")
	child := func(name string) string {
		return fmt.Sprintf(`  - {name: %s, command: [%q, "-test.run=^TestLongSlowTickNotKilled$", "-test.count=1"], tier: slow, every: 6, group: solo, env: {%s: %s}}`,
			name, self, schedEnv, name)
	}
	cfg := fmt.Sprintf(`instance: %s
engine: {command: [engine, run, --entities, "1000", --churn, "0", --rate, "60", --status, "0"], restart: true}
modules:
%s
%s
restart: {initial_backoff: 10ms, max_backoff: 200ms, multiplier: 2, reset_after: 5s}
breaker: {max_failures: 20, window: 30s}
hang: {heartbeat_timeout: 2s, attach_timeout: 10s, engine_timeout: 2s, engine_start_timeout: 10s}
shutdown: {grace: 2s}
`, inst, child("long"), child("hang"))
	path := filepath.Join(t.TempDir(), "up.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	up := recStart(t, filepath.Join(bin, "engine"), "up", "--config", path)

	var seen []string
	has := func(subs ...string) bool {
		for _, l := range seen {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(l, s)
			}
			if ok {
				return true
			}
		}
		return false
	}
	guard := time.NewTimer(60 * time.Second) // failure guard only
	defer guard.Stop()
	var began, ended time.Time
	for !(has(`msg="tick n=2"`, "child=long") && has(`msg="child hung: killing it"`, "child=hang")) {
		select {
		case l, ok := <-up.lines:
			require.True(t, ok, "engine up ended; lines:\n%s", strings.Join(seen, "\n"))
			seen = append(seen, l)
			if strings.Contains(l, `msg="long tick began"`) && began.IsZero() {
				began = time.Now()
			}
			if strings.Contains(l, `msg="long tick done"`) && ended.IsZero() {
				ended = time.Now()
			}
		case <-guard.C:
			t.Fatalf("no long tick and hang kill; lines:\n%s", strings.Join(seen, "\n"))
		}
	}
	require.False(t, has(`msg="child hung: killing it"`, "child=long"), "the long tick was taken for a hang:\n%s", strings.Join(seen, "\n"))
	require.True(t, has("hanging", "child=hang"), "the hang module's tick began")
	require.False(t, began.IsZero() || ended.IsZero())
	require.GreaterOrEqual(t, ended.Sub(began), 2*time.Second, "the long tick outlasted the heartbeat timeout")
	require.True(t, has(`reason=`, "child=hang", "heartbeat"), "the hang kill gives the heartbeat as the reason:\n%s", strings.Join(seen, "\n"))
}
