package tests

// Time control (`engine ctl`), black-box: the shipped `engine run` and
// `engine ctl` binaries, a real fast module process (this test binary run
// again with the demo schema) that prints the time singleton of every frame
// it is ticked on, the world segment read as a user reads it, and raw
// requests written to the control socket.

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"net"
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

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

const timeCtlEnv = "FDP_TIMECTL_CHILD"

// timeModule is a fast module that prints, for every tick, the frame its
// view shows and the time singleton of that frame.
type timeModule struct{}

func (timeModule) Spec() module.Spec {
	return module.Spec{Name: "clock", Tier: module.Fast, Every: 1}
}

func (timeModule) Tick(v *module.View, _ *module.Commands, _ time.Duration) error {
	tm, ok := module.Singleton[world.Time](v)
	if !ok {
		return errors.New("no time singleton")
	}
	fmt.Printf("tick view=%d frame=%d nanos=%d dt=%d scale=%v paused=%d\n", v.Frame(), tm.Frame, tm.Nanos, tm.Dt, tm.Scale, tm.Paused)
	return nil
}

func runTimeModule(string) int {
	s, err := demo.NewSchema()
	if err != nil {
		fmt.Fprintln(os.Stderr, "module:", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err = module.Run(context.Background(), timeModule{}, module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.Reg, Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "module:", err)
		return 1
	}
	return 0
}

// tick is one line of the time module.
type tick struct {
	view, frame uint64
	nanos, dt   int64
	scale       float64
	paused      uint32
	raw         string
}

var tickLine = regexp.MustCompile(`^tick view=(\d+) frame=(\d+) nanos=(-?\d+) dt=(-?\d+) scale=(\S+) paused=(\d+)$`)

// ticks collects the module's lines.
type ticks struct {
	mu  sync.Mutex
	all []tick
	bad []string
}

func (k *ticks) line(l string) {
	m := tickLine.FindStringSubmatch(l)
	k.mu.Lock()
	defer k.mu.Unlock()
	if m == nil {
		k.bad = append(k.bad, l)
		return
	}
	var t tick
	t.view, _ = strconv.ParseUint(m[1], 10, 64)
	t.frame, _ = strconv.ParseUint(m[2], 10, 64)
	t.nanos, _ = strconv.ParseInt(m[3], 10, 64)
	t.dt, _ = strconv.ParseInt(m[4], 10, 64)
	t.scale, _ = strconv.ParseFloat(m[5], 64)
	p, _ := strconv.ParseUint(m[6], 10, 32)
	t.paused, t.raw = uint32(p), l
	k.all = append(k.all, t)
}

func (k *ticks) snapshot() []tick {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]tick(nil), k.all...)
}

// ctlRun runs `engine ctl` with args and returns its stdout, stderr and
// exit status.
func ctlRun(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "engine"), append([]string{"ctl"}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return out.String(), errb.String(), code
}

// ctlOK runs `engine ctl ... --json` and returns the state it printed.
func ctlOK(t *testing.T, bin string, args ...string) ipc.CtlState {
	t.Helper()
	out, errs, code := ctlRun(t, bin, append(args, "--json")...)
	require.Equal(t, 0, code, "engine ctl %v: %s%s", args, out, errs)
	var st ipc.CtlState
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	return st
}

// worldWords maps an instance's world segment read-only.
func worldWords(t *testing.T, inst string) []byte {
	seg, err := shm.Open(shm.SegmentName(inst, fsync.WorldSegment), false)
	require.NoError(t, err)
	t.Cleanup(func() { seg.Close() })
	return seg.Data
}

// waitPausedFor waits until the paused engine's loop has turned for d
// (its paused heartbeat word, stamped at every turn, passes the time of
// the call + d): long enough for d × the frame rate frames, had any run.
func waitPausedFor(t *testing.T, w []byte, d time.Duration) {
	t.Helper()
	until := uint64(time.Now().Add(d).UnixNano())
	waitFor(t, "the paused engine's loop to turn for "+d.String(), d+20*time.Second, func() bool {
		return layout.Load64(w, layout.OffWTimeBeat) >= until
	})
}

// TestTimeControl: pause holds the frame number and ticks nothing; step 5
// runs exactly 5 frames and 5 ticks, then holds again; speed 0.5 halves dt
// in the published time singleton (the frame rate stays) and simulation time
// runs at half rate; resume; a seek is refused live; `engine stat` and
// `engine dump` show the state; malformed requests on the socket are
// refused with their code and counted in the summary.
func TestTimeControl(t *testing.T) {
	testutil.RunChild(timeCtlEnv, runTimeModule)
	bin := shippedBinaries(t)
	inst := fmt.Sprintf("tc%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	t.Cleanup(func() { _, _ = shm.RemoveInstance(inst) })
	eng := startMemEngine(t, bin, inst, nil, "--entities", "2000")
	w := worldWords(t, inst)
	period := int64(time.Second / 60)

	startModule := func(k *ticks) *testutil.Child {
		return testutil.StartChild(t, testutil.ChildOptions{Test: "TestTimeControl", Env: []string{timeCtlEnv + "=module", "FDP_INSTANCE=" + inst},
			OnLine: k.line, Drop: true})
	}
	var k ticks
	mod := startModule(&k)
	waitFor(t, "the module's ticks", 30*time.Second, func() bool { return len(k.snapshot()) >= 20 })

	// Running: speed 1, a tick per frame with dt = the period.
	for _, tk := range k.snapshot()[5:] {
		require.Equal(t, tk.view, tk.frame, "the time singleton is of the frame the view shows: %s", tk.raw)
		require.Equal(t, period, tk.dt, tk.raw)
		require.Equal(t, 1.0, tk.scale, tk.raw)
		require.Zero(t, tk.paused, tk.raw)
	}

	// Pause: the frame number holds, no tick for a later frame.
	st := ctlOK(t, bin, inst, "pause")
	require.True(t, st.Paused)
	require.Equal(t, ipc.CtlPause, st.Op)
	held := latestFrameOf(inst)
	require.Equal(t, st.Frame, held, "the reply's frame is the latest published")
	waitPausedFor(t, w, 1500*time.Millisecond) // ~90 frame periods
	require.Equal(t, held, latestFrameOf(inst), "paused: the latest word did not move")
	nPaused := 0
	for _, tk := range k.snapshot() {
		require.LessOrEqual(t, tk.frame, held, "a tick of a frame after the pause: %s", tk.raw)
		if tk.frame == held {
			nPaused++
		}
	}
	require.LessOrEqual(t, nPaused, 1, "the held frame ticked once at most")

	// Paused, the control plane is served: a module's death is seen and a
	// new module joins (its hello answered), though no frame runs.
	clock := func() *inspect.ModuleStatsReport {
		out, errs, code := runEngine(t, bin, "stat", "--json", "--count", "1", "--interval", "100ms", inst)
		require.Equal(t, 0, code, errs)
		var sl inspect.StatLine
		require.NoError(t, json.Unmarshal([]byte(out), &sl), out)
		for _, m := range sl.Modules {
			if m.Name == "clock" && m.Stats != nil {
				return m.Stats
			}
		}
		return nil
	}
	require.True(t, mod.Kill())
	waitFor(t, "the module's death, seen while paused", 30*time.Second, func() bool {
		s := clock()
		return s != nil && s.State == "dead" && s.Deaths == 1
	})
	k = ticks{}
	startModule(&k)
	waitFor(t, "the new module's join, while paused", 30*time.Second, func() bool {
		s := clock()
		return s != nil && s.State == "joined" && s.Joins == 2
	})
	require.Equal(t, held, latestFrameOf(inst), "still paused")
	require.Empty(t, k.snapshot(), "the new module is not ticked while paused")

	// What the tools show.
	out, errs, code := runEngine(t, bin, "stat", "--json", "--count", "1", "--interval", "300ms", inst)
	require.Equal(t, 0, code, errs)
	var sl inspect.StatLine
	require.NoError(t, json.Unmarshal([]byte(out), &sl), out)
	require.True(t, sl.TimeControl.Paused, out)
	require.Equal(t, "paused", sl.TimeControl.State)
	require.Equal(t, 0.0, sl.FrameRate, "paused: nothing published in the interval")
	out, _, code = runEngine(t, bin, "stat", "--count", "1", "--interval", "300ms", inst)
	require.Equal(t, 0, code)
	require.Contains(t, out, "time PAUSED, speed 1")

	// Step 5: exactly 5 frames and 5 ticks, then paused again. (A tick the
	// module has not finished when the next frame comes is skipped, and
	// counted: on a loaded machine the 5 frames are ticks + skips.)
	s0 := clock()
	st = ctlOK(t, bin, inst, "step", "5")
	require.True(t, st.Paused)
	require.Zero(t, st.Steps, "ctl step waits until its frames ran")
	require.Equal(t, held+5, st.Frame)
	require.Equal(t, held+5, latestFrameOf(inst))
	simAt5 := st.SimNanos
	waitPausedFor(t, w, time.Second)
	require.Equal(t, held+5, latestFrameOf(inst), "after the steps the engine holds again")
	s1 := clock()
	runs, skipped := s1.Runs-s0.Runs, s1.Skipped-s0.Skipped
	require.Equal(t, uint64(5), runs+skipped, "each of the 5 frames ticked the module or counted it busy")
	if skipped > 0 {
		t.Logf("loaded machine: %d of the 5 step frames found the module busy", skipped)
	}
	waitFor(t, "the ticks of the 5 steps", 20*time.Second, func() bool { return uint64(len(k.snapshot())) >= runs })
	stepped := k.snapshot()
	require.Len(t, stepped, int(runs), "a tick per frame run (and none after)")
	for i, tk := range stepped {
		require.Greater(t, tk.frame, held, tk.raw)
		require.LessOrEqual(t, tk.frame, held+5, tk.raw)
		if i > 0 {
			require.Greater(t, tk.frame, stepped[i-1].frame, tk.raw)
		}
		require.Equal(t, uint32(1), tk.paused, "a step's frame says paused: %s", tk.raw)
		require.Equal(t, period, tk.dt, tk.raw)
		require.Equal(t, simAt5-int64(held+5-tk.frame)*period, tk.nanos, tk.raw)
	}

	// Speed 0.5 (while paused), one step, then resume: dt = period / 2 in
	// every frame, the frame rate unchanged, simulation time at half rate.
	st = ctlOK(t, bin, inst, "speed", "0.5")
	require.Equal(t, 0.5, st.Speed)
	require.True(t, st.Paused, "speed does not resume")
	half := int64(math.Round(float64(period) * 0.5))
	st = ctlOK(t, bin, inst, "step")
	require.Equal(t, held+6, st.Frame)
	require.Equal(t, simAt5+half, st.SimNanos, "the step at speed 0.5 is half a period")
	want := world.Time{Frame: held + 6, Nanos: simAt5 + half, Dt: half, Scale: 0.5, Paused: 1}
	layoutTimePython(t, inst, want)
	waitPausedFor(t, w, 300*time.Millisecond)
	for _, tk := range k.snapshot() {
		if tk.frame == held+6 {
			require.Equal(t, want, world.Time{Frame: tk.frame, Nanos: tk.nanos, Dt: tk.dt, Scale: tk.scale, Paused: tk.paused}, tk.raw)
		}
	}

	simAtResume := st.SimNanos
	before := len(k.snapshot())
	resumed := time.Now()
	st = ctlOK(t, bin, inst, "resume")
	require.False(t, st.Paused)
	waitFor(t, "60 ticks at speed 0.5", 30*time.Second, func() bool { return len(k.snapshot()) >= before+60 })
	slow := k.snapshot()[before:]
	for i, tk := range slow {
		require.Greater(t, tk.frame, held+6, tk.raw)
		if i > 0 {
			require.Greater(t, tk.frame, slow[i-1].frame, tk.raw)
		}
		require.Equal(t, half, tk.dt, tk.raw)
		require.Equal(t, 0.5, tk.scale, tk.raw)
		require.Zero(t, tk.paused, tk.raw)
		require.Equal(t, simAtResume+int64(tk.frame-(held+6))*half, tk.nanos, "simulation time: half a period per frame: %s", tk.raw)
	}
	// The frame rate stays: frames over wall time (loose bounds, a loaded
	// machine only runs fewer frames).
	n := latestFrameOf(inst) - (held + 6)
	el := time.Since(resumed)
	require.LessOrEqual(t, float64(n), el.Seconds()*60*1.25+2, "frames %d in %v", n, el)

	// The published singleton, as `engine dump` reads it: Dt and Scale.
	out, errs, code = runEngine(t, bin, "dump", "--json", inst, "world")
	require.Equal(t, 0, code, errs)
	var r inspect.Report
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	v, err := hex.DecodeString(r.World.Singletons[0].Value)
	require.NoError(t, err)
	require.Equal(t, half, int64(binary.LittleEndian.Uint64(v[16:])), "dt")
	require.Equal(t, 0.5, math.Float64frombits(binary.LittleEndian.Uint64(v[24:])), "scale")
	require.Equal(t, 0.5, r.World.Stats.Time.Speed)
	require.False(t, r.World.Stats.Time.Paused)

	// Seek is refused live: one line, exit status 1.
	out, errs, code = ctlRun(t, bin, inst, "seek", "3")
	require.Equal(t, 1, code, out)
	require.Contains(t, errs, "seek is only for a replay")
	require.Equal(t, 1, strings.Count(strings.TrimSpace(errs), "\n")+1, "one line: %q", errs)

	// Malformed and hostile requests on the socket: refused with their code.
	path, err := ipc.SocketPath(inst)
	require.NoError(t, err)
	raw := func(body []byte, announce uint32) map[string]any {
		c, err := net.Dial("unix", path)
		require.NoError(t, err)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var hdr [4]byte
		binary.LittleEndian.PutUint32(hdr[:], announce)
		_, _ = c.Write(append(hdr[:], body...))
		var rh [4]byte
		_, err = io.ReadFull(c, rh[:])
		require.NoError(t, err)
		rb := make([]byte, binary.LittleEndian.Uint32(rh[:]))
		_, err = io.ReadFull(c, rb)
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(rb, &m), "%s", rb)
		return m
	}
	hostile := []struct {
		body, code string
	}{
		{`{"ctl": {"op": "jump"}}`, "bad_ctl"},
		{`{"ctl": {}}`, "bad_ctl"},
		{`{"ctl": null}`, "bad_ctl"},
		{`{"ctl": {"op": "pause", "frames": 3}}`, "bad_ctl"},
		{`{"ctl": {"op": "step", "frames": 0}}`, "bad_ctl"},
		{`{"ctl": {"op": "step", "frames": 2000000}}`, "bad_ctl"},
		{`{"ctl": {"op": "speed", "speed": -1}}`, "bad_ctl"},
		{`{"ctl": {"op": "speed", "speed": 65}}`, "bad_ctl"},
		{`{"ctl": {"op": "speed", "speed": "fast"}}`, "bad_ctl"},
		{`{"ctl": {"op": "pause", "evil": 1}}`, "bad_ctl"},
		{`{"ctl": {"op": "pause"}, "name": "x"}`, "bad_ctl"},
		{`{"ctl": "pause"}`, "bad_ctl"},
		{`{"ctl": {"op": "seek", "frame": 1}}`, "ctl_refused"},
	}
	for _, h := range hostile {
		m := raw([]byte(h.body), uint32(len(h.body)))
		require.Equal(t, h.code, m["code"], "%s -> %v", h.body, m)
		require.NotEmpty(t, m["error"], h.body)
		require.NotContains(t, m["error"], "\n", h.body)
	}
	// The engine is unharmed: still running at speed 0.5, frames go on.
	st = ctlOK(t, bin, inst, "status")
	require.False(t, st.Paused)
	require.Equal(t, 0.5, st.Speed)
	f := latestFrameOf(inst)
	waitFor(t, "frames after the hostile requests", 20*time.Second, func() bool { return latestFrameOf(inst) > f+3 })

	// The summary counts them: refused = the CLI's seek and every hostile
	// request, malformed = all of those but the raw seek.
	sum := eng.stop(t)
	re := regexp.MustCompile(`time control: (\d+) requests served, (\d+) refused \((\d+) malformed\); ended running at speed 0.5`)
	m := re.FindStringSubmatch(sum)
	require.NotNil(t, m, sum)
	refused, _ := strconv.Atoi(m[2])
	malformed, _ := strconv.Atoi(m[3])
	require.Equal(t, len(hostile)-1, malformed, "every malformed request counted")
	require.Equal(t, len(hostile)+1, refused, "the malformed ones, the raw seek and the CLI's seek")
	nServed, _ := strconv.Atoi(m[1])
	require.GreaterOrEqual(t, nServed, 6, "pause, step (and its status polls), speed, resume, status")
}

// runEngine runs the engine binary with args.
func runEngine(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "engine"), args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	}
	require.NoError(t, err)
	return out.String(), errb.String(), 0
}

// TestTimeControlNoEngine: `engine ctl` on an instance that does not exist
// and on one whose engine was SIGKILLed says so in one line, exit status 1.
func TestTimeControlNoEngine(t *testing.T) {
	bin := shippedBinaries(t)
	inst := fmt.Sprintf("tn%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	t.Cleanup(func() { _, _ = shm.RemoveInstance(inst) })

	out, errs, code := ctlRun(t, bin, inst, "pause")
	require.Equal(t, 1, code, out)
	require.Regexp(t, `^Error: ctl: no instance "`+inst+`" in \S+; `, errs)
	require.Equal(t, 1, strings.Count(errs, "\n"), "one line: %q", errs)

	eng := startMemEngine(t, bin, inst, nil, "--entities", "1000")
	ctlOK(t, bin, inst, "status")
	require.NoError(t, eng.cmd.Process.Signal(syscall.SIGKILL))
	<-eng.done
	out, errs, code = ctlRun(t, bin, inst, "status")
	require.Equal(t, 1, code, out)
	require.Contains(t, errs, `ctl: instance "`+inst+`" has no live engine`)
	require.Equal(t, 1, strings.Count(errs, "\n"), "one line: %q", errs)

	// Arguments are checked before anything is sent.
	for _, a := range [][]string{{"step", "0"}, {"step", "x"}, {"speed", "0"}, {"speed", "65"}, {"speed"}, {"seek"}, {"pause", "3"}, {"fly"}} {
		out, errs, code = ctlRun(t, bin, append([]string{inst}, a...)...)
		require.Equal(t, 1, code, "%v: %s", a, out)
		require.Equal(t, 1, strings.Count(errs, "\n"), "%v: one line: %q", a, errs)
		require.Contains(t, errs, "ctl", a)
	}
}

// layoutTimePython runs docs/LAYOUT.md's Python reader of the time
// singleton ("Singletons") with /usr/bin/python3 on the latest slot of the
// paused instance's world segment and checks that it reads want.
func layoutTimePython(t *testing.T, inst string, want world.Time) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Log("no python3: the LAYOUT.md reader is not run")
		return
	}
	doc, err := os.ReadFile("../docs/LAYOUT.md")
	require.NoError(t, err)
	s := string(doc)
	i := strings.Index(s, "engine's time singleton (Go `world.Time`")
	require.GreaterOrEqual(t, i, 0)
	s = s[i:]
	i = strings.Index(s, "```python\n")
	require.GreaterOrEqual(t, i, 0)
	s = s[i+len("```python\n"):]
	snippet := s[:strings.Index(s, "```")]

	seg, err := shm.Open(shm.SegmentName(inst, fsync.WorldSegment), false)
	require.NoError(t, err)
	defer seg.Close()
	lw, err := layout.DecodeWorld(seg.Data)
	require.NoError(t, err)
	frame, slot, ok := layout.UnpackLatest(layout.Load64(seg.Data, layout.OffWLatest))
	require.True(t, ok)
	require.Equal(t, want.Frame, frame, "paused at the frame the module saw last")
	id := -1
	for j, d := range lw.Singletons {
		if d.Name == world.TimeName {
			id = j
		}
	}
	require.GreaterOrEqual(t, id, 0)
	table := 4096 + 64*64*lw.MaskWords // LAYOUT.md "Geometry"
	require.Equal(t, lw.SingletonsOff, table)
	prog := "import mmap, struct, sys\n" +
		"f = open(sys.argv[1], 'rb'); mem = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n" +
		"def u32(o): return struct.unpack_from('<I', mem, o)[0]\n" +
		"def u64(o): return struct.unpack_from('<Q', mem, o)[0]\n" +
		snippet +
		"slot, i = int(sys.argv[2]), int(sys.argv[3])\n" +
		"print(*time_of(slot, i, u32(" + strconv.Itoa(table) + " + 64 * i + 48)))\n"
	out, err := exec.Command(py, "-c", prog, seg.Path, strconv.Itoa(lw.SlotsOff+slot*lw.SlotStride), strconv.Itoa(id)).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, fmt.Sprintf("%d %d %d %v %d", want.Frame, want.Nanos, want.Dt, want.Scale, want.Paused), strings.TrimSpace(string(out)),
		"the LAYOUT.md reader of the time singleton")
}

// TestTimeControlUnderUp: under `engine up` with hang timeouts of 1 s, an
// engine paused for 4 s is not killed as stalled, nor is its module (whose
// heartbeat the SDK keeps while it waits for a tick); resumed, it publishes
// again.
func TestTimeControlUnderUp(t *testing.T) {
	bin := shippedBinaries(t)
	inst := uniqueInstance(t, "tu")
	cfg := fmt.Sprintf(`instance: %s
engine: {command: [engine, run, --entities, "2000", --status, "0"], restart: true}
modules:
  - {name: telemetry, command: [modrunner, telemetry], tier: fast, every: 1}
hang: {heartbeat_timeout: 1s, engine_timeout: 1s, engine_start_timeout: 10s}
shutdown: {grace: 2s}
`, inst)
	p := filepath.Join(t.TempDir(), "up.yaml")
	require.NoError(t, os.WriteFile(p, []byte(cfg), 0o600))
	up := recStart(t, filepath.Join(bin, "engine"), "up", "--config", p)
	up.waitLine(t, `msg="child started" child=telemetry`)
	waitFor(t, "frames", 30*time.Second, func() bool { return latestFrameOf(inst) >= 30 })
	_, _, engPID := worldState(inst)

	st := ctlOK(t, bin, inst, "pause")
	require.True(t, st.Paused)
	waitPausedFor(t, worldWords(t, inst), 4*time.Second)
	state, frame, pid := worldState(inst)
	require.Equal(t, engPID, pid, "the paused engine was not replaced")
	require.Equal(t, shm.StateLive, state)
	require.Equal(t, st.Frame, frame, "and published nothing")

	st = ctlOK(t, bin, inst, "resume")
	require.False(t, st.Paused)
	waitFor(t, "frames after resume", 20*time.Second, func() bool { return latestFrameOf(inst) > frame+30 })
	var started, hangs []string
	for {
		select {
		case l := <-up.lines:
			if strings.Contains(l, `msg="child started"`) {
				started = append(started, l)
			}
			if strings.Contains(l, "hung") || strings.Contains(l, "heartbeat") {
				hangs = append(hangs, l)
			}
			continue
		default:
		}
		break
	}
	require.Empty(t, started, "no child restarted")
	require.Empty(t, hangs, "no hang detected")
}
