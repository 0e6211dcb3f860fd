package tests

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/audit"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// The 20-module stress run: an engine at 60 Hz with 20 module processes
// (6 fast, two convoys of 6 slow modules each, 2 solo slow modules) for
// FDP_STRESS_DURATION (default 60 s; 10 s with -short), while a killer
// SIGKILLs a random attached module every 50-250 ms and starts it again.
//
// What must hold (each is checked):
//   - Every frame a module reads is the world's at that frame: the soak
//     module's checks (every data entity from one simulation step, each
//     checksum right), the step is the view's frame number, and the slot
//     holding it passes every frame invariant (package audit) in the module.
//     The only frames that may change under a module are those the engine
//     took back as documented (a slow tick past its runtime loses its
//     snapshot, a fast tick past the pin limit its pin; the SDK fails such a
//     tick): per module, at most as many as the engine counted.
//   - Every frame the engine publishes is the world it was published from:
//     before each frame's simulation, the latest slot is compared with the
//     live world byte for byte (audit.Compare); the only differences allowed
//     are the ledger columns that the previous frame's playback changed.
//   - Each module's committed batches are applied exactly once: every batch
//     also publishes an event (module, pid, seq, frame), and the event log,
//     read by the test, holds each logged batch of a process once, in order,
//     with no gap; a killed process may lose its last two (the one its tick
//     had not committed yet and one the engine had not played back when it
//     saw the death: both are documented), a process alive at the end none.
//     No batch is ever applied in part (the soak ledger).
//   - No module is stuck: each one's runs go up at least every 5 s.
//   - Every killed module comes back: its new process attaches and ticks.
//   - The engine's counters add up: deaths == kills, joins == processes
//     started, per module.

const (
	stressEnv   = "FDP_STRESS_CHILD"
	stressEvent = 0x5354 // "ST"
	stressQuiet = 0      // shared word: modules stop committing when set
)

// stressSpecs are the 20 modules: k is the module's ledger index.
var stressSpecs = func() []soakSpecG {
	var out []soakSpecG
	for i := 0; i < 6; i++ {
		out = append(out, soakSpecG{soakSpec{"f" + strconv.Itoa(i), module.Fast, 1 + i/4}, ""})
	}
	for i := 0; i < 6; i++ {
		out = append(out, soakSpecG{soakSpec{"a" + strconv.Itoa(i), module.Slow, 2}, "convoy-a"})
	}
	for i := 0; i < 6; i++ {
		out = append(out, soakSpecG{soakSpec{"b" + strconv.Itoa(i), module.Slow, 5}, "convoy-b"})
	}
	out = append(out, soakSpecG{soakSpec{"s0", module.Slow, 3}, "solo"}, soakSpecG{soakSpec{"s1", module.Slow, 10}, "solo"})
	return out
}()

// soakSpecG is a soak module's spec with its convoy group.
type soakSpecG struct {
	soakSpec
	group string
}

// stressModule is the soak module (frame checks, slot audit, ledger batch)
// plus an event per batch and the check that the view shows the world of
// its frame. It prints the soak module's lines ("c", "a", "TORN ...",
// "AUDIT ...") and "B <seq> <frame>" per committed batch (before Tick
// returns), "Q" when it goes quiet, "STALE ..." on a wrong frame.
type stressModule struct {
	*soakModule
	words *testutil.Words
	pid   uint32
	seq   uint64
	quiet bool
}

func (m *stressModule) Tick(v *module.View, c *module.Commands, dt time.Duration) error {
	if m.words.Load(stressQuiet) != 0 {
		if !m.quiet {
			m.quiet = true
			_, _ = os.Stdout.WriteString("Q\n")
		}
		return nil
	}
	if err := m.soakModule.Tick(v, c, dt); err != nil {
		return err
	}
	// The engine's simulation writes step*soakStride+index into every
	// data entity at step = frame number.
	if val, ok := module.Get[SoakVal](v, world.MakeEntity(0, 1), m.s.val); !ok || val.V/soakStride != v.Frame() {
		_, _ = fmt.Fprintf(os.Stdout, "STALE frame %d shows step %d (%v)\n", v.Frame(), val.V/soakStride, ok)
	}
	m.seq++
	var p [24]byte
	binary.LittleEndian.PutUint32(p[0:], uint32(m.k))
	binary.LittleEndian.PutUint32(p[4:], m.pid)
	binary.LittleEndian.PutUint64(p[8:], m.seq)
	binary.LittleEndian.PutUint64(p[16:], v.Frame())
	c.Publish(stressEvent, p[:])
	if err := c.Err(); err != nil {
		return err
	}
	_, _ = fmt.Fprintf(os.Stdout, "B %d %d\n", m.seq, v.Frame())
	return nil
}

func runStressModule(string) int {
	inst := os.Getenv("FDP_INSTANCE")
	s := newSoakSchema()
	k, _ := strconv.Atoi(os.Getenv("FDP_STRESS_K"))
	sp := stressSpecs[k]
	words, err := testutil.OpenWords(os.Getenv("FDP_STRESS_WORDS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "stress module:", err)
		return 1
	}
	m := &stressModule{words: words, pid: uint32(os.Getpid()), soakModule: &soakModule{s: s, k: k,
		audit: (&soakAuditor{inst: inst}).audit,
		spec: module.Spec{Name: sp.name, Tier: sp.tier, Every: sp.every, Group: sp.group,
			Reads: world.MaskOf(s.val, s.chk, s.ledger)}}}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err = module.Run(context.Background(), m, module.Options{Instance: inst, Registry: s.reg, Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "stress module:", err)
		return 1
	}
	return 0
}

// stressSim compares the latest published slot with the world before each
// frame's simulation (audit.Compare), then runs the soak simulation.
type stressSim struct {
	*soakSim
	seg         *shm.Segment
	lw          *layout.World
	firstLedger int // first chunk holding ledger entities
	lastFrame   uint64
	compared    atomic.Uint64
	mu          sync.Mutex
	problems    []string
}

func (s *stressSim) Step(dt float32) {
	s.compare()
	s.soakSim.Step(dt)
}

// compare runs on the engine's goroutine, inside Step: nothing writes a slot
// meanwhile, and the world is the one published at the latest frame plus
// the previous frame's playback (ledger Sets only).
func (s *stressSim) compare() {
	frame, slot, ok := layout.UnpackLatest(layout.Load64(s.seg.Data, layout.OffWLatest))
	if !ok || frame == s.lastFrame {
		return // nothing published (yet, or by the last frame)
	}
	s.lastFrame = frame
	diffs, err := audit.Compare(s.seg.Data, s.lw, slot, s.w, 16)
	var bad []string
	if err != nil {
		bad = append(bad, err.Error())
	}
	for _, d := range diffs {
		if d.Field == "column" && d.Component == int(s.s.ledger) && d.Chunk >= s.firstLedger {
			continue // changed by the previous frame's playback
		}
		bad = append(bad, d.String())
	}
	s.compared.Add(1)
	if len(bad) > 0 {
		s.mu.Lock()
		if len(s.problems) < 10 {
			s.problems = append(s.problems, fmt.Sprintf("frame %d slot %d: %s", frame, slot, strings.Join(bad, "; ")))
		}
		s.mu.Unlock()
	}
}

// evKey names a module process: module index and pid.
type evKey struct {
	k   int
	pid uint32
}

// stressProc is what the test knows of one module process.
type stressProc struct {
	k     int
	child *testutil.Child
	pid   uint32

	mu      sync.Mutex
	checks  int // "c": frames checked
	audits  int // "a": slots audited
	batches []cxBatch
	quiet   bool
	bad     []string
	killed  bool
	// anomalies: frames the module found torn, stale or failing an audit
	// ("TORN frame N", "STALE frame N", "AUDIT frame N" lines), with the
	// first line of each.
	anomalies map[uint64]string
}

func (p *stressProc) line(l string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b cxBatch
	switch {
	case l == "c":
		p.checks++
	case l == "a":
		p.audits++
	case l == "r":
		// The engine took the frame back during the tick (the SDK fails
		// the tick): not a frame the module was given.
	case l == "Q":
		p.quiet = true
	case strings.HasPrefix(l, "B "):
		if n, err := fmt.Sscanf(l, "B %d %d", &b.seq, &b.frame); err == nil && n == 2 {
			p.batches = append(p.batches, b)
			return
		}
		p.other(l)
	case strings.HasPrefix(l, "TORN frame "), strings.HasPrefix(l, "STALE frame "), strings.HasPrefix(l, "AUDIT frame "):
		var f uint64
		_, rest, _ := strings.Cut(l, "frame ")
		if _, err := fmt.Sscanf(rest, "%d", &f); err != nil {
			p.other(l)
			return
		}
		if p.anomalies == nil {
			p.anomalies = map[uint64]string{}
		}
		if _, ok := p.anomalies[f]; !ok {
			p.anomalies[f] = l
		}
	default:
		p.other(l)
	}
}

// other keeps a line the module should not have printed. Called with mu
// held.
func (p *stressProc) other(l string) {
	if len(p.bad) < 10 {
		p.bad = append(p.bad, l)
	}
}

func (p *stressProc) ticked() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checks > 0 || p.quiet
}

func stressDuration(t *testing.T) time.Duration {
	if v := os.Getenv("FDP_STRESS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "FDP_STRESS_DURATION")
		return d
	}
	if testing.Short() {
		return 10 * time.Second
	}
	return time.Minute
}

func TestStress20Modules(t *testing.T) {
	testutil.RunChild(stressEnv, runStressModule)
	dur := stressDuration(t)
	seed := time.Now().UnixNano()
	if v, err := strconv.ParseInt(os.Getenv("FDP_STRESS_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("stress: 20 modules for %v, seed %d (FDP_STRESS_SEED to replay the kill schedule)", dur, seed)
	rng := rand.New(rand.NewSource(seed))

	s := newSoakSchema()
	w, soak := newSoakWorld(t, s, len(stressSpecs))
	sim := &stressSim{soakSim: soak, firstLedger: soakData / w.ChunkCapacity()}
	inst := uniqueInstance(t, "st")
	eng, err := host.New(host.Config{Instance: inst,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}, w, nil)
	require.NoError(t, err)
	t.Cleanup(func() { eng.Close() })
	sim.seg, err = shm.Open(shm.SegmentName(inst, fsync.WorldSegment), false)
	require.NoError(t, err)
	defer sim.seg.Close()
	sim.lw, err = layout.DecodeWorld(sim.seg.Data)
	require.NoError(t, err)
	eng.SetSimulation(sim)
	events, err := testutil.FollowEvents(inst)
	require.NoError(t, err)
	defer events.Close()
	words := testutil.CreateWords(t, 1)

	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- eng.Run(ctx, nil) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			require.NoError(t, <-runDone)
		}
	}
	defer stop()

	// The witness: every event, read every 10 ms (the log holds seconds).
	var evMu sync.Mutex
	evSeqs := map[evKey][]cxBatch{} // per process: (seq, frame) in log order
	evLate := []string{}            // events published no later than their tick's frame
	readEvents := func() error {
		evMu.Lock()
		defer evMu.Unlock()
		return events.Read(func(_, frame uint64, typ uint16, p []byte) {
			if typ != stressEvent || len(p) != 24 {
				evLate = append(evLate, fmt.Sprintf("unexpected event type %#x, %d bytes", typ, len(p)))
				return
			}
			key := evKey{int(binary.LittleEndian.Uint32(p)), binary.LittleEndian.Uint32(p[4:])}
			b := cxBatch{binary.LittleEndian.Uint64(p[8:]), binary.LittleEndian.Uint64(p[16:])}
			if frame <= b.frame && len(evLate) < 10 {
				evLate = append(evLate, fmt.Sprintf("module %d pid %d batch %d of frame %d published in frame %d", key.k, key.pid, b.seq, b.frame, frame))
			}
			evSeqs[key] = append(evSeqs[key], b)
		})
	}
	readerDone := make(chan error, 1)
	readerCtx, stopReader := context.WithCancel(context.Background())
	go func() {
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-readerCtx.Done():
				readerDone <- nil
				return
			case <-tk.C:
				if err := readEvents(); err != nil {
					readerDone <- err
					return
				}
			}
		}
	}()
	defer stopReader()

	var procs []*stressProc // every process started, in order
	current := make([]*stressProc, len(stressSpecs))
	spawns := make([]uint64, len(stressSpecs))
	spawn := func(k int) {
		p := &stressProc{k: k}
		p.child = testutil.StartChild(t, testutil.ChildOptions{Test: "TestStress20Modules", Drop: true, OnLine: p.line, Env: []string{
			stressEnv + "=module", "FDP_INSTANCE=" + inst, "FDP_STRESS_K=" + strconv.Itoa(k),
			"FDP_STRESS_WORDS=" + words.Path,
		}})
		p.pid = uint32(p.child.Pid())
		procs = append(procs, p)
		current[k] = p
		spawns[k]++
	}
	for k := range stressSpecs {
		spawn(k)
	}

	// Runs of each module and when they last went up (stuck detection).
	lastRuns := make([]uint64, len(stressSpecs))
	lastProgress := make([]time.Time, len(stressSpecs))
	for k := range lastProgress {
		lastProgress[k] = time.Now()
	}
	const stuckAfter = 5 * time.Second
	checkProgress := func(mods map[string]host.ModuleInfo) {
		now := time.Now()
		for k, sp := range stressSpecs {
			if m, ok := mods[sp.name]; ok && m.Stats.Runs != lastRuns[k] {
				lastRuns[k], lastProgress[k] = m.Stats.Runs, now
			}
			require.Less(t, now.Sub(lastProgress[k]), stuckAfter, "module %s stuck: no tick for %v (%+v)", sp.name, now.Sub(lastProgress[k]), mods[sp.name])
		}
	}
	moduleMap := func() map[string]host.ModuleInfo {
		out := map[string]host.ModuleInfo{}
		for _, m := range eng.Modules() {
			out[m.Name] = m
		}
		return out
	}

	kills, wedged := 0, 0
	killsOf := make([]uint64, len(stressSpecs))
	start := time.Now()
	for time.Since(start) < dur {
		time.Sleep(time.Duration(50+rng.Intn(200)) * time.Millisecond) // the kill schedule, not a synchronisation
		mods := moduleMap()
		checkProgress(mods)
		// Kill an attached process (one the engine admitted): only its
		// death is an engine death to count.
		var attached []int
		for k, sp := range stressSpecs {
			if m, ok := mods[sp.name]; ok && m.PID == int(current[k].pid) && m.State != host.StateDead {
				attached = append(attached, k)
			}
		}
		if len(attached) == 0 {
			continue
		}
		k := attached[rng.Intn(len(attached))]
		p := current[k]
		require.True(t, p.child.Kill(), "module %s (pid %d) had exited by itself", stressSpecs[k].name, p.pid)
		p.mu.Lock()
		p.killed = true
		p.mu.Unlock()
		kills++
		killsOf[k]++
		if !waitDeathSeen(eng, stressSpecs[k].name, int(p.pid), 5*time.Second) {
			wedged++
			eng.ModuleDied(int(p.pid))
		}
		spawn(k)
	}
	elapsed := time.Since(start)

	// Every killed module is back: its latest process attached and ticks.
	deadline := time.Now().Add(60 * time.Second)
	for {
		back := 0
		mods := moduleMap()
		for k, sp := range stressSpecs {
			if m, ok := mods[sp.name]; ok && m.PID == int(current[k].pid) && m.State != host.StateDead && current[k].ticked() {
				back++
			}
		}
		if back == len(stressSpecs) {
			break
		}
		require.True(t, time.Now().Before(deadline), "only %d of %d modules came back", back, len(stressSpecs))
		time.Sleep(10 * time.Millisecond) // polling, bounded
	}
	// Quiesce: modules stop committing; once every one has said so, all
	// its batches are committed, and two frames later played back.
	words.Store(stressQuiet, 1)
	deadline = time.Now().Add(30 * time.Second)
	for {
		quiet := 0
		for _, p := range current {
			p.mu.Lock()
			if p.quiet {
				quiet++
			}
			p.mu.Unlock()
		}
		if quiet == len(current) {
			break
		}
		require.True(t, time.Now().Before(deadline), "only %d of %d modules went quiet", quiet, len(current))
		time.Sleep(10 * time.Millisecond) // polling, bounded
	}
	for f := soak.step.Load(); soak.step.Load() < f+3; { // the engine's frame count, safe while Run runs
		time.Sleep(5 * time.Millisecond) // waiting for frames, bounded by the engine's rate
	}
	stop()
	mods := moduleMap()
	stopReader()
	require.NoError(t, <-readerDone, "event witness")
	require.NoError(t, readEvents())

	// Frames: read by modules, published by the engine. A module reads a
	// frame that changes under it only where the engine took it back, as
	// documented: a slow tick past its runtime has its snapshot revoked, a
	// fast tick past the pin limit its pin dropped (on a loaded machine);
	// the SDK then fails the tick. Any other torn, stale or unaudited frame
	// is a bug.
	checks, audits := 0, 0
	anomalies := make([]int, len(stressSpecs))
	anomalyLines := make([][]string, len(stressSpecs))
	for _, p := range procs {
		p.mu.Lock()
		checks += p.checks
		audits += p.audits
		require.Empty(t, p.bad, "module %s pid %d: unexpected output", stressSpecs[p.k].name, p.pid)
		anomalies[p.k] += len(p.anomalies)
		for _, l := range p.anomalies {
			anomalyLines[p.k] = append(anomalyLines[p.k], fmt.Sprintf("pid %d: %s", p.pid, l))
		}
		p.mu.Unlock()
	}
	taken := uint64(0)
	for k, sp := range stressSpecs {
		m := mods[sp.name]
		taken += m.Stats.Revoked + m.Stats.PinsDropped
		require.LessOrEqual(t, uint64(anomalies[k]), m.Stats.Revoked+m.Stats.PinsDropped,
			"module %s read frames that changed under it (revoked %d, pins dropped %d): %v", sp.name, m.Stats.Revoked, m.Stats.PinsDropped, anomalyLines[k])
	}
	sim.mu.Lock()
	require.Empty(t, sim.problems, "published frames that differ from the world")
	sim.mu.Unlock()
	require.Zero(t, soak.partial.Load(), "partial batch applied: %v", soak.partialMsg.Load())
	require.Greater(t, audits, checks/2, "modules must have audited the frames they read")
	require.Greater(t, sim.compared.Load(), eng.Frame()/2, "published frames compared with the world")
	gap := time.Duration(soak.maxGap.Load())
	require.Less(t, gap, 2*time.Second, "engine frames must keep coming")

	// Batches: exactly once per process, in order. A batch may be missing
	// only where the SDK dropped it: at the end of a killed process (at most
	// two: see the test's doc), or for a failed tick (a tick whose frame
	// turned out torn after Tick returned is failed and its batch aborted:
	// its module printed the batch, so each failure can leave one gap).
	evMu.Lock()
	defer evMu.Unlock()
	require.Empty(t, evLate)
	logged, applied, lost := 0, 0, 0
	gaps := make([]uint64, len(stressSpecs))
	for _, p := range procs {
		p.mu.Lock()
		got := evSeqs[evKey{p.k, p.pid}]
		name := fmt.Sprintf("module %s pid %d", stressSpecs[p.k].name, p.pid)
		for i, b := range p.batches {
			require.Equal(t, uint64(i+1), b.seq, "%s: log", name)
		}
		last := uint64(0)
		for _, b := range got {
			require.Greater(t, b.seq, last, "%s: batch %d applied after batch %d (duplicated or out of order)", name, b.seq, last)
			require.LessOrEqual(t, b.seq, uint64(len(p.batches)), "%s: applied batch %d, which it did not log", name, b.seq)
			require.Equal(t, p.batches[b.seq-1].frame, b.frame, "%s: batch %d", name, b.seq)
			last = b.seq
		}
		tail := len(p.batches) - int(last)
		middle := int(last) - len(got)
		if p.killed {
			tail = max(tail-2, 0)
		}
		gaps[p.k] += uint64(middle + tail)
		logged += len(p.batches)
		applied += len(got)
		lost += len(p.batches) - len(got)
		p.mu.Unlock()
	}
	started := map[evKey]bool{}
	for _, p := range procs {
		started[evKey{p.k, p.pid}] = true
	}
	for key := range evSeqs {
		require.True(t, started[key], "events of a process never started: %+v", key)
	}

	// The engine's counters.
	deaths, failures, late, gapsTotal := uint64(0), uint64(0), uint64(0), uint64(0)
	for k, sp := range stressSpecs {
		m, ok := mods[sp.name]
		require.True(t, ok, sp.name)
		require.Equal(t, killsOf[k], m.Stats.Deaths, "%s: deaths", sp.name)
		require.LessOrEqual(t, gaps[k], m.Stats.Failures, "%s: batches lost beyond what killed processes and failed ticks explain", sp.name)
		require.Equal(t, spawns[k], m.Stats.Joins, "%s: joins", sp.name)
		require.Zero(t, m.Stats.Rejected, "%s: %v", sp.name, m.PlaybackRejectReasons)
		deaths += m.Stats.Deaths
		failures += m.Stats.Failures
		late += m.Stats.Late
		gapsTotal += gaps[k]
		if sp.group == "convoy-a" || sp.group == "convoy-b" {
			require.Equal(t, "group:"+sp.group, m.Group, sp.name)
		}
	}
	require.Equal(t, uint64(kills), deaths)
	require.Zero(t, wedged, "deaths the engine did not see within 5 s")
	t.Logf("stress: %v, %d frames (%d compared with the world), %d kills, %d processes; %d frames checked and %d audited by modules; "+
		"%d batches logged, %d applied exactly once, %d not applied (%d of them explained by failed ticks, the others lost with a killed process); "+
		"%d snapshots; failed ticks %d, late fast ticks %d, frames taken back (revoked snapshots, dropped pins) %d; max frame gap %v",
		elapsed.Round(time.Millisecond), eng.Frame(), sim.compared.Load(), kills, len(procs), checks, audits,
		logged, applied, lost, gapsTotal, eng.Snapshots, failures, late, taken, gap.Round(time.Millisecond))
}
