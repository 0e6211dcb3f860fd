package tests

// The Python client (clients/python) against real engines: Python modules run
// by /usr/bin/python3 (clients/python/tests/scenarios.py), with numpy when it
// is installed and always once without it (FDP_NO_NUMPY=1). The scenarios
// run concurrently (one engine each) to keep the suite short: a 30 s reader
// under a 60 fps engine, commands and events exactly once, a conformance
// run against a Go module, a schema mismatch, and a SIGKILL under engine up.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// pythonInterp is the interpreter of the Python tests: the distribution's,
// as under engine up (pyclient.DefaultPython).
const pythonInterp = "/usr/bin/python3"

// simEvent is the invariant simulation's event (payload u64 step); pyEvent
// the one the Python commands module publishes (payload u64 tag).
const (
	simEvent = 7
	pyEvent  = 9
)

// invSim keeps a content invariant a reader checks independently of the
// seqlock: after every step, every entity has a Position {X: step, Y: -step,
// Z: its index}, and only entities with a Position are its own. A frame
// that mixes two steps (a torn read) breaks it. It churns entities each
// step and emits one event per step.
type invSim struct {
	w     *world.World
	s     *demo.Schema
	step  uint32
	own   []world.Entity
	churn int
	rng   *rand.Rand
}

func (m *invSim) Step(float32) {
	m.step++
	for i := 0; i < m.churn && len(m.own) > 0; i++ {
		j := m.rng.Intn(len(m.own))
		_ = m.w.Destroy(m.own[j])
		m.own[j] = m.own[len(m.own)-1]
		m.own = m.own[:len(m.own)-1]
	}
	for i := 0; i < m.churn; i++ {
		m.spawn()
	}
	x := float32(m.step)
	q := m.w.Query(world.MaskOf(m.s.Pos))
	for q.Next() {
		col := world.ColumnMut[demo.Position](&q, m.s.Pos)
		for i, n := 0, q.Rows(); i < n; i++ {
			if q.Match(i) {
				col[i] = demo.Position{X: x, Y: -x, Z: float32(q.Entity(i).Index())}
			}
		}
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(m.step))
	m.w.Emit(world.EventType(simEvent), b[:])
}

func (m *invSim) spawn() {
	e, err := m.w.Create()
	if err == nil && world.Set(m.w, e, m.s.Pos, demo.Position{}) == nil {
		m.own = append(m.own, e)
	}
}

// pyEngine runs, in this process at 60 fps, an engine of the demo schema
// with sim (nil: the invariant simulation of entities, churning churn per
// frame) until the test ends or stop is called; stop returns once Run
// returned, after which the world may be read.
func pyEngine(t *testing.T, prefix string, entities, churn int, demoSim bool) (eng *host.Engine, inst string, stop func()) {
	t.Helper()
	s, err := demo.NewSchema()
	require.NoError(t, err)
	var w *world.World
	var sim host.Simulation
	if demoSim {
		d, err := demo.NewSim(s, demo.Config{Entities: entities, ChurnPerSec: churn * 60, ChunkCapacity: 256, Seed: 1})
		require.NoError(t, err)
		w, sim = d.W, d
	} else {
		w, err = world.New(s.Reg, world.Config{ChunkCapacity: 256, MaxChunks: 64})
		require.NoError(t, err)
		m := &invSim{w: w, s: s, churn: churn, rng: rand.New(rand.NewSource(1))}
		for range entities {
			m.spawn()
		}
		sim = m
	}
	inst = uniqueInstance(t, prefix)
	eng, err = host.New(host.Config{Instance: inst,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}, w, sim)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = eng.Run(ctx, nil) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(func() { stop(); eng.Close() })
	return eng, inst, stop
}

// pyScenario runs scenarios.py MODE INST ARGS... (numpy off when noNumpy)
// and returns its stdout, stderr and exit status.
func pyScenario(t *testing.T, timeout time.Duration, noNumpy bool, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, pythonInterp, append([]string{filepath.Join(root, "clients/python/tests/scenarios.py")}, args...)...)
	cmd.Env = append(os.Environ(), "FDP_LOG_FORMAT=text", "PYTHONDONTWRITEBYTECODE=1")
	if noNumpy {
		cmd.Env = append(cmd.Env, "FDP_NO_NUMPY=1")
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err, "run %v", args)
	}
	return out.String(), errb.String(), code
}

// pyJSON runs a scenario that must succeed and decodes its JSON line.
func pyJSON(t *testing.T, timeout time.Duration, noNumpy bool, v any, args ...string) {
	t.Helper()
	out, stderr, code := pyScenario(t, timeout, noNumpy, args...)
	require.Equal(t, 0, code, "scenario %v: stderr:\n%s", args, stderr)
	require.NoError(t, json.Unmarshal([]byte(out), v), "scenario %v: stdout %q stderr:\n%s", args, out, stderr)
}

func requirePython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(pythonInterp); err != nil {
		t.Fatalf("the Python client's tests need %s (Debian: apt-get install python3 python3-numpy): %v", pythonInterp, err)
	}
}

// readerSeconds is the reader test's duration: 30 s, or $FDP_PY_READER_SECONDS.
func readerSeconds() string {
	if v := os.Getenv("FDP_PY_READER_SECONDS"); v != "" {
		if _, err := strconv.Atoi(v); err == nil {
			return v
		}
	}
	return "30"
}

// TestPython runs the Python client's scenarios side by side.
func TestPython(t *testing.T) {
	requirePython(t)
	t.Run("Reader", testPythonReader)
	t.Run("CommandsEvents", testPythonCommandsEvents)
	t.Run("Conformance", testPythonConformance)
	t.Run("SchemaMismatch", testPythonSchemaMismatch)
	t.Run("KillRestart", testPythonKillRestart)
	t.Run("Readme", testPythonReadme)
	t.Run("EventsAcrossKill", testPythonEventsAcrossKill)
}

type readerResult struct {
	Numpy      bool
	Accepted   int
	Violations int
	Torn       int
	First      string
}

// testPythonReader: Python modules read every frame of a 60 fps engine for
// 30 s, pinned; no frame they accept breaks the content invariant. Beside
// them an unpinned standalone reader reads the latest frame as fast as it
// can: every read the invariant finds mixed is one the seqlock re-check
// refuses (the check a reader relies on is sound), counted to show how
// often the bytes did change under a reader.
func testPythonReader(t *testing.T) {
	t.Parallel()
	_, inst, _ := pyEngine(t, "pyrd", 4000, 20, false)
	secs := readerSeconds()
	var wg sync.WaitGroup
	var res [2]readerResult
	var unpinned struct{ Reads, Caught, Flagged, Unsound int }
	for i, pure := range []bool{false, true} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pyJSON(t, 120*time.Second, pure, &res[i], "reader", inst, secs)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(time.Second) // the modules' attach first: the world segment is there by then
		pyJSON(t, 120*time.Second, false, &unpinned, "unpinned", inst, secs)
	}()
	wg.Wait()
	n, _ := strconv.Atoi(secs)
	for _, r := range res {
		t.Logf("reader numpy=%v: %d frames accepted, %d torn (refused), %d violations", r.Numpy, r.Accepted, r.Torn, r.Violations)
		require.Zero(t, r.Violations, "numpy=%v: a frame accepted by the reader breaks the invariant: %s", r.Numpy, r.First)
		// At least 5 frames a second of the 60: the readers keep reading, on a loaded machine too.
		require.Greater(t, r.Accepted, n*5, "numpy=%v: too few frames read", r.Numpy)
	}
	t.Logf("unpinned reader: %d reads, %d mixed by the invariant, %d refused by the seqlock re-check", unpinned.Reads, unpinned.Caught, unpinned.Flagged)
	require.Zero(t, unpinned.Unsound, "a read the invariant found mixed passed the seqlock re-check")
	require.Greater(t, unpinned.Reads, n*5)
}

// testPythonCommandsEvents: a Python module's commands are applied exactly
// once (each tag of a committed tick is one entity, with its Name and its
// Health as sent, none other), its events are in the log exactly once, and
// it is given each of the simulation's events exactly once, in order.
func testPythonCommandsEvents(t *testing.T) {
	t.Parallel()
	eng, inst, stop := pyEngine(t, "pycm", 1000, 5, false)
	var res struct {
		Ticks     int
		Tags      []uint32
		Published []uint64
		Events    []uint64
		Lost      int
	}
	pyJSON(t, 60*time.Second, false, &res, "commands", inst, "90")
	require.Equal(t, 90, res.Ticks)
	require.NotEmpty(t, res.Tags)
	require.Zero(t, res.Lost)
	// The simulation's events, each once, one per step, in order.
	require.NotEmpty(t, res.Events)
	for i := 1; i < len(res.Events); i++ {
		require.Equal(t, res.Events[i-1]+1, res.Events[i], "event %d after %d", res.Events[i], res.Events[i-1])
	}
	// The module's events in the log: each published tag once.
	fol, err := testutil.FollowEvents(inst)
	require.NoError(t, err)
	seen := map[uint64]int{}
	require.NoError(t, fol.Read(func(_, _ uint64, typ uint16, p []byte) {
		if typ == pyEvent {
			seen[binary.LittleEndian.Uint64(p)]++
		}
	}))
	fol.Close()
	require.Len(t, seen, len(res.Published))
	for _, tag := range res.Published {
		require.Equal(t, 1, seen[tag], "event of tag %d", tag)
	}
	stop()
	s, err := demo.NewSchema()
	require.NoError(t, err)
	w := eng.World()
	got := map[uint32]int{}
	q := w.Query(world.MaskOf(s.Tm))
	for q.Next() {
		for i := 0; i < q.Rows(); i++ {
			if !q.Match(i) {
				continue
			}
			e := q.Entity(i)
			tm, _ := world.Get[demo.Team](w, e, s.Tm)
			got[tm.ID]++
			name, _ := w.GetString(e, s.Name)
			require.Equal(t, fmt.Sprintf("py%d", tm.ID), name)
			_, health := world.Get[demo.Health](w, e, s.Health)
			require.Equal(t, tm.ID%2 == 0, health, "tag %d: Health added, removed on odd tags", tm.ID)
		}
	}
	require.Len(t, got, len(res.Tags), "entities with a Team: exactly the committed tags")
	for _, tag := range res.Tags {
		require.Equal(t, 1, got[tag], "tag %d", tag)
	}
}

// goDigest is the Go side of the conformance scenario: per frame, what
// scenarios.py's Conformance computes.
type goDigest struct {
	s      *demo.Schema
	mu     sync.Mutex
	frames map[uint64]string
	events []string
}

func (g *goDigest) Spec() module.Spec {
	return module.Spec{Name: "goconf", Tier: module.Fast, Every: 1}
}

func (g *goDigest) Tick(v *module.View, _ *module.Commands, _ time.Duration) error {
	h := sha256.New()
	n := 0
	var b [8]byte
	q := v.Query(world.MaskOf(g.s.Pos))
	for q.Next() {
		pos := module.Column[demo.Position](v, &q, g.s.Pos)
		for i := 0; i < q.Rows(); i++ {
			if !q.Match(i) {
				continue
			}
			e := q.Entity(i)
			binary.LittleEndian.PutUint64(b[:], uint64(e))
			h.Write(b[:])
			for _, f := range []float32{pos[i].X, pos[i].Y, pos[i].Z} {
				binary.LittleEndian.PutUint32(b[:4], math.Float32bits(f))
				h.Write(b[:4])
			}
			if name, ok := module.GetString(v, e, g.s.Name); ok {
				h.Write([]byte(name))
			} else {
				h.Write([]byte("-"))
			}
			n++
		}
	}
	if tm, ok := module.Singleton[world.Time](v); ok {
		// Its bytes as the frame holds them (the Python side hashes the
		// singleton's raw bytes): every field, whatever world.Time holds.
		h.Write(unsafe.Slice((*byte)(unsafe.Pointer(&tm)), unsafe.Sizeof(tm)))
	}
	var evs []string
	if _, err := v.Events(func(seq, frame uint64, typ uint16, p []byte) {
		if typ < 0xFF00 {
			evs = append(evs, fmt.Sprintf("%d:%d:%d:%s", seq, frame, typ, hex.EncodeToString(p)))
		}
	}); err != nil {
		return err
	}
	g.mu.Lock()
	g.frames[v.Frame()] = fmt.Sprintf("%d:%s", n, hex.EncodeToString(h.Sum(nil)))
	g.events = append(g.events, evs...)
	g.mu.Unlock()
	return nil
}

type confResult struct {
	Numpy  bool
	Frames map[string]string
	Events []string
}

// testPythonConformance: a Go module and two Python modules (with numpy and
// without) read the same demo engine (churn, names, the time singleton)
// every frame; for every frame two of them both read, their digests of
// every entity's handle, Position and Name and of the time singleton are
// equal, and so are the events each was given.
func testPythonConformance(t *testing.T) {
	t.Parallel()
	_, inst, _ := pyEngine(t, "pycf", 3000, 3, true)
	s, err := demo.NewSchema()
	require.NoError(t, err)
	g := &goDigest{s: s, frames: map[uint64]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	goDone := make(chan error, 1)
	go func() {
		goDone <- module.Run(ctx, g, module.Options{Instance: inst, Registry: s.Reg, MaxTicks: 400,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	}()
	var res [2]confResult
	var wg sync.WaitGroup
	for i, pure := range []bool{false, true} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pyJSON(t, 90*time.Second, pure, &res[i], "conformance", inst, fmt.Sprintf("pyconf%d", i), "120")
		}()
	}
	wg.Wait()
	cancel()
	<-goDone
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range res {
		common := 0
		for k, d := range r.Frames {
			f, err := strconv.ParseUint(k, 10, 64)
			require.NoError(t, err)
			if gd, ok := g.frames[f]; ok {
				common++
				require.Equal(t, gd, d, "numpy=%v: frame %d read differently by Go and Python", r.Numpy, f)
			}
		}
		t.Logf("numpy=%v: %d frames read by both, equal", r.Numpy, common)
		require.Greater(t, common, 30, "numpy=%v: frames read by both", r.Numpy)
		requireSameEvents(t, g.events, r.Events, r.Numpy)
	}
}

// requireSameEvents: over the sequence numbers both were given, the same
// events (each once).
func requireSameEvents(t *testing.T, goEv, pyEv []string, numpy bool) {
	t.Helper()
	index := func(evs []string) map[uint64]string {
		m := map[uint64]string{}
		for _, e := range evs {
			var seq uint64
			_, err := fmt.Sscanf(e, "%d:", &seq)
			require.NoError(t, err)
			_, dup := m[seq]
			require.False(t, dup, "event %d given twice", seq)
			m[seq] = e
		}
		return m
	}
	gm, pm := index(goEv), index(pyEv)
	common := 0
	for seq, e := range pm {
		if ge, ok := gm[seq]; ok {
			common++
			require.Equal(t, ge, e, "numpy=%v: event %d", numpy, seq)
		}
	}
	require.Greater(t, common, 10, "numpy=%v: events given to both", numpy)
}

// testPythonSchemaMismatch: a Python module written for other field types is
// refused before it joins, and one with another schema hash is refused by
// the engine: one clear line each, exit 78 (engine up does not restart it).
func testPythonSchemaMismatch(t *testing.T) {
	t.Parallel()
	_, inst, _ := pyEngine(t, "pysc", 100, 0, false)
	_, stderr, code := pyScenario(t, 30*time.Second, false, "schema", inst, "fields")
	require.Equal(t, 78, code, stderr)
	require.Contains(t, stderr, "schema mismatch: Position")
	require.Equal(t, 1, bytes.Count([]byte(stderr), []byte("\n")), "one line: %q", stderr)
	_, stderr, code = pyScenario(t, 30*time.Second, false, "schema", inst, "hash")
	require.Equal(t, 78, code, stderr)
	require.Contains(t, stderr, "engine refused module 'pyschema' (schema_mismatch)")
	require.Contains(t, stderr, "module 0x0000000000001234")
	require.Equal(t, 1, bytes.Count([]byte(stderr), []byte("\n")), "one line: %q", stderr)

	// The client's reading of the field table equals the Go registry's
	// description of the demo's types, and it refuses a table changed in
	// any of four ways, naming what is wrong.
	var tab struct {
		Clean, Fingerprint string
		FieldType          string `json:"field_type"`
		FieldReserved      string `json:"field_reserved"`
		FieldName          string `json:"field_name"`
		Fields             map[string][][]any
	}
	out, stderr, code := pyScenario(t, 30*time.Second, false, "tables", inst)
	require.Equal(t, 0, code, stderr)
	require.NoError(t, json.Unmarshal([]byte(out), &tab), out)
	require.Equal(t, "accepted", tab.Clean)
	require.Contains(t, tab.Fingerprint, "Position: fingerprint")
	require.Contains(t, tab.FieldType, "Position: fields 'X' and 'Y' overlap")
	require.Contains(t, tab.FieldReserved, "reserved bytes not zero")
	require.Contains(t, tab.FieldName, "Position: fingerprint")
	for name, typ := range map[string]reflect.Type{"Position": reflect.TypeOf(demo.Position{}), "Velocity": reflect.TypeOf(demo.Velocity{}),
		"Health": reflect.TypeOf(demo.Health{}), "Team": reflect.TypeOf(demo.Team{}), "Time": reflect.TypeOf(world.Time{})} {
		want, err := world.Fields(typ)
		require.NoError(t, err)
		var got []string
		for _, f := range tab.Fields[name] {
			got = append(got, fmt.Sprintf("%v %v %v %v", f...))
		}
		var exp []string
		for _, f := range want {
			exp = append(exp, fmt.Sprintf("%v %v %v %v", f.Name, f.Type, f.Offset, f.Count))
		}
		require.Equal(t, exp, got, name)
	}
	require.Equal(t, [][]any{{"", "string", 0.0, 0.0}}, tab.Fields["Name"])

	// Misuse: one exception of the client each, saying what is wrong.
	var errs map[string]string
	pyJSON(t, 30*time.Second, false, &errs, "errors", inst)
	for key, want := range map[string]string{
		"bad_instance":      "Refused: instance 'no/such': set $FDP_INSTANCE",
		"no_engine":         "NotReady: no world segment",
		"open_missing":      "NotReady: no world segment",
		"unknown_component": "KeyError: \"no component 'Nope' in this world (it has Position, Velocity, Health, Team, Name)\"",
		"variable_column":   "TypeError: Name is variable-size",
		"reserved_event":    "ValueError: event type 0xff00: types 0xFF00 and above are the engine's",
		"event_too_large":   "ValueError: event payload of 4097 bytes, at most 4096",
		"wrong_size":        "ValueError: Position: 3 bytes, its size is 12",
		"too_long_string":   "ValueError: Name: 25 bytes, at most 24",
	} {
		require.Contains(t, errs[key], want, key)
	}
}

// moduleSegment finds the module segment of inst whose module is name and
// returns its pid and heartbeat words (0, 0 when there is none yet).
func moduleSegment(inst, name string) (pid uint32, beat uint64) {
	for n := 0; n < 16; n++ {
		f, err := os.Open(filepath.Join(shmDir(), fmt.Sprintf("fdp.%s.mod.%d", inst, n)))
		if err != nil {
			continue
		}
		b := make([]byte, 4096)
		_, err = f.ReadAt(b, 0)
		f.Close()
		if err != nil || string(bytes.TrimRight(b[1056:1088], "\x00")) != name {
			continue
		}
		return binary.LittleEndian.Uint32(b[2312:]), binary.LittleEndian.Uint64(b[2304:])
	}
	return 0, 0
}

// testPythonKillRestart: under engine up, the demo's Python module
// (modrunner python fdp.analysis, as in supervisor/default.yaml) is
// SIGKILLed; the supervisor restarts it like any other module: a new
// process joins and publishes its statistic again, and engine up stops
// cleanly afterwards.
func testPythonKillRestart(t *testing.T) {
	t.Parallel()
	bin := shippedBinaries(t)
	inst := uniqueInstance(t, "pyup")
	cfg := filepath.Join(t.TempDir(), "up.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`instance: `+inst+`
engine:
  command: [engine, run, --entities, "2000", --churn, "60", --status, "0"]
  restart: true
modules:
  - {name: analysis, command: [modrunner, python, fdp.analysis], tier: slow, every: 6, group: solo}
restart: {initial_backoff: 50ms, max_backoff: 1s, multiplier: 2, reset_after: 10s}
hang: {heartbeat_timeout: 2s, attach_timeout: 10s, engine_timeout: 2s, engine_start_timeout: 10s}
`), 0o600))
	var out testutil.SyncBuffer
	up := exec.Command(filepath.Join(bin, "engine"), "up", "--config", cfg, "--duration", "60s")
	up.Stdout, up.Stderr = &out, &out
	require.NoError(t, up.Start())
	upDone := make(chan error, 1)
	go func() { upDone <- up.Wait() }()
	t.Cleanup(func() {
		if up.ProcessState == nil {
			_ = up.Process.Kill()
			<-upDone
		}
	})
	// means counts the analysis module's events in the log (type 4).
	var fol *testutil.EventFollower
	means := 0
	poll := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if fol != nil {
				require.NoError(t, fol.Read(func(_, _ uint64, typ uint16, p []byte) {
					if typ == 4 && len(p) == 24 {
						means++
					}
				}))
			}
			require.True(t, time.Now().Before(deadline), "%s; engine up said:\n%s", what, out.String())
			time.Sleep(20 * time.Millisecond)
		}
	}
	poll("the analysis module joined", func() bool { pid, _ := moduleSegment(inst, "analysis"); return pid != 0 })
	poll("the event log", func() bool {
		f, err := testutil.FollowEvents(inst)
		fol = f
		return err == nil
	})
	defer fol.Close()
	poll("the analysis module published", func() bool { return means >= 2 })
	pid, _ := moduleSegment(inst, "analysis")
	require.NoError(t, syscall.Kill(int(pid), syscall.SIGKILL))
	before := means
	poll("a new analysis process joined", func() bool { p, _ := moduleSegment(inst, "analysis"); return p != 0 && p != pid })
	poll("the restarted module published", func() bool { return means >= before+2 })
	require.NoError(t, up.Process.Signal(os.Interrupt))
	select {
	case err := <-upDone:
		require.NoError(t, err, "engine up:\n%s", out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("engine up did not stop:\n%s", out.String())
	}
	require.Contains(t, out.String(), "analysis")
}

// BenchmarkPythonMeanX: a Python reader computes the mean X of the 100K
// Positions of the demo's world (chunks of 1024) with numpy from the mapped
// frame, and from the same arrays copied into private memory (the ratio: the
// cost of reading shared memory in place, goal ≤ 1.5×), and without numpy in
// pure Python (clients/python/tests/bench.py). The engine is stepped once
// and then idle, so the frame stays put. Reported as metrics; b.N is not
// used (each figure is the best of 200 runs inside the script).
func BenchmarkPythonMeanX(b *testing.B) {
	if _, err := os.Stat(pythonInterp); err != nil {
		b.Skipf("no %s", pythonInterp)
	}
	s, err := demo.NewSchema()
	require.NoError(b, err)
	sim, err := demo.NewSim(s, demo.DefaultConfig())
	require.NoError(b, err)
	inst := uniqueInstance(b, "pybn")
	eng, err := host.New(host.Config{Instance: inst,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}, sim.W, sim)
	require.NoError(b, err)
	defer eng.Close()
	eng.Step()
	root, err := filepath.Abs("..")
	require.NoError(b, err)
	for _, pure := range []bool{false, true} {
		cmd := exec.Command(pythonInterp, filepath.Join(root, "clients/python/tests/bench.py"), inst, "200")
		if pure {
			cmd.Env = append(os.Environ(), "FDP_NO_NUMPY=1")
		}
		out, err := cmd.Output()
		require.NoError(b, err, "bench.py: %s", out)
		var r struct {
			Numpy     bool
			Entities  int
			MappedNs  float64 `json:"mapped_ns"`
			PrivateNs float64 `json:"private_ns"`
			PureNs    float64 `json:"pure_ns"`
			Ratio     float64
		}
		require.NoError(b, json.Unmarshal(out, &r))
		if r.Numpy {
			b.ReportMetric(r.MappedNs/1e3, "mapped-µs")
			b.ReportMetric(r.PrivateNs/1e3, "private-µs")
			b.ReportMetric(r.Ratio, "mapped/private")
		}
		name := "pure-numpy-installed-ms"
		if pure {
			name = "pure-ms"
		}
		b.ReportMetric(r.PureNs/1e6, name)
	}
}

// readmePython returns the first python block after the README's heading.
func readmePython(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	require.True(t, ok, "README has no %q", heading)
	_, rest, ok = strings.Cut(rest, "```python\n")
	require.True(t, ok)
	code, _, ok := strings.Cut(rest, "```\n")
	require.True(t, ok)
	return code
}

// testPythonReadme runs the README's Python module against a demo engine:
// it creates one entity named py-N per tick and publishes N (each once);
// after SIGTERM it exits 0, and every N published is an entity py-N of
// the world.
func testPythonReadme(t *testing.T) {
	t.Parallel()
	eng, inst, stop := pyEngine(t, "pyrm", 3000, 3, true)
	file := filepath.Join(t.TempDir(), "janitor.py")
	require.NoError(t, os.WriteFile(file, []byte(readmePython(t, "### Writing a module in Python")), 0o600))
	root, err := filepath.Abs("../clients/python")
	require.NoError(t, err)
	cmd := exec.Command(pythonInterp, file)
	cmd.Env = append(os.Environ(), "FDP_INSTANCE="+inst, "PYTHONPATH="+root, "PYTHONDONTWRITEBYTECODE=1")
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	var fol *testutil.EventFollower
	deadline := time.Now().Add(30 * time.Second)
	for fol == nil {
		fol, _ = testutil.FollowEvents(inst)
		require.True(t, time.Now().Before(deadline))
		time.Sleep(10 * time.Millisecond)
	}
	defer fol.Close()
	got := map[uint64]int{}
	for len(got) < 12 {
		require.NoError(t, fol.Read(func(_, _ uint64, typ uint16, p []byte) {
			if typ == 100 {
				got[binary.LittleEndian.Uint64(p)]++
			}
		}))
		require.True(t, time.Now().Before(deadline), "the README's module published %d events:\n%s", len(got), out.String())
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, out.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("the README's module did not exit after SIGTERM:\n%s", out.String())
	}
	require.Contains(t, out.String(), "msg=janitor")
	stop()
	s, err := demo.NewSchema()
	require.NoError(t, err)
	names := map[string]int{}
	q := eng.World().Query(world.MaskOf(s.Name))
	for q.Next() {
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) {
				n, _ := eng.World().GetString(q.Entity(i), s.Name)
				names[n]++
			}
		}
	}
	for n, c := range got {
		require.Equal(t, 1, c, "event %d", n)
		require.Equal(t, 1, names[fmt.Sprintf("py-%d", n)], "entity py-%d", n)
	}
}

// testPythonEventsAcrossKill: a Python module relays, with each tick's
// batch, the simulation's events it was given (scenarios.py Relay); it is
// SIGKILLed mid-run and started again under the same name. The relayed
// steps, read from the log, are each there exactly once and without a gap:
// the successor resumed at the first event no committed tick of its
// predecessor had acknowledged.
func testPythonEventsAcrossKill(t *testing.T) {
	t.Parallel()
	_, inst, _ := pyEngine(t, "pyek", 500, 2, false)
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	start := func() (*exec.Cmd, chan error, *testutil.SyncBuffer) {
		var out testutil.SyncBuffer
		cmd := exec.Command(pythonInterp, filepath.Join(root, "clients/python/tests/scenarios.py"), "relay", inst)
		cmd.Env = append(os.Environ(), "FDP_INSTANCE="+inst, "PYTHONDONTWRITEBYTECODE=1")
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				<-done
			}
		})
		return cmd, done, &out
	}
	var fol *testutil.EventFollower
	var steps []uint64
	relays := 0
	read := func() {
		require.NoError(t, fol.Read(func(_, _ uint64, typ uint16, p []byte) {
			if typ == 10 {
				relays++
				for i := 0; i+8 <= len(p); i += 8 {
					steps = append(steps, binary.LittleEndian.Uint64(p[i:]))
				}
			}
		}))
	}
	waitRelays := func(n int, out *testutil.SyncBuffer) {
		deadline := time.Now().Add(30 * time.Second)
		for relays < n {
			if fol == nil {
				fol, _ = testutil.FollowEvents(inst)
			} else {
				read()
			}
			require.True(t, time.Now().Before(deadline), "%d relays of %d:\n%s", relays, n, out.String())
			time.Sleep(10 * time.Millisecond)
		}
	}
	first, done1, out1 := start()
	waitRelays(30, out1)
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	<-done1
	second, done2, out2 := start()
	waitRelays(relays+30, out2)
	require.NoError(t, second.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-done2, out2.String())
	read()
	defer fol.Close()
	for i := 1; i < len(steps); i++ {
		require.Equal(t, steps[i-1]+1, steps[i], "step %d relayed after %d (a duplicate or a gap across the kill)", steps[i], steps[i-1])
	}
	t.Logf("%d steps relayed in %d batches, each once, across a SIGKILL", len(steps), relays)
}

// TestPythonBenchScript: clients/python/tests/bench.py runs with its
// repetitions defaulted (the instance alone) on a world where some alive
// entities have no Position, and its numpy means count the entities with a
// Position (its own assertion), not every alive one.
func TestPythonBenchScript(t *testing.T) {
	if _, err := os.Stat(pythonInterp); err != nil {
		t.Skipf("no %s", pythonInterp)
	}
	s, err := demo.NewSchema()
	require.NoError(t, err)
	w, err := world.New(s.Reg, world.Config{ChunkCapacity: 256, MaxChunks: 8})
	require.NoError(t, err)
	withPos := 0
	for i := range 600 {
		e, err := w.Create()
		require.NoError(t, err)
		if i%3 != 0 { // a third of the entities have no Position
			require.NoError(t, world.Set(w, e, s.Pos, demo.Position{X: float32(i)}))
			withPos++
		}
	}
	inst := uniqueInstance(t, "pybs")
	eng, err := host.New(host.Config{Instance: inst,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}, w, benchIdleSim{})
	require.NoError(t, err)
	defer eng.Close()
	eng.Step()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	out, err := exec.Command(pythonInterp, filepath.Join(root, "clients/python/tests/bench.py"), inst).Output()
	require.NoError(t, err, "bench.py: %s", out)
	var r struct {
		Numpy    bool
		Entities int
		MeanX    float64 `json:"mean_x"`
	}
	require.NoError(t, json.Unmarshal(out, &r), "%s", out)
	require.Equal(t, 600, r.Entities)
	if r.Numpy {
		sum := 0.0
		for i := range 600 {
			if i%3 != 0 {
				sum += float64(i)
			}
		}
		require.InDelta(t, sum/float64(withPos), r.MeanX, 1e-6)
	}
}

// benchIdleSim changes nothing: the values the test set stay.
type benchIdleSim struct{}

func (benchIdleSim) Step(float32) {}
