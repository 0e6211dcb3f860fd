package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/audit"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// Self-checking soak components: the engine writes Val and Chk = mix(Val)
// for every data entity each frame (Val also encodes the frame), so a
// module that reads a frame mixing two publishes sees a mismatch. Modules
// write Ledger batches: one SetComponent per ledger entity of the module,
// all carrying the same batch id, so a partly applied batch is visible.
type SoakVal struct{ V uint64 }
type SoakChk struct{ C uint64 }
type Ledger struct {
	Batch  uint64
	Count  uint32
	Module uint32
}

const (
	soakData   = 256 // data entities
	soakLedger = 16  // ledger entities per module (= commands per batch)
	soakStride = 1 << 20
)

func mix(v uint64) uint64 { return (v*0x9E3779B97F4A7C15 ^ v>>29) + 1 }

type soakSchema struct {
	reg              *world.Registry
	val, chk, ledger world.ComponentID
}

func newSoakSchema() *soakSchema {
	s := &soakSchema{reg: world.NewRegistry()}
	s.val, _ = world.Register[SoakVal](s.reg, "Val")
	s.chk, _ = world.Register[SoakChk](s.reg, "Chk")
	s.ledger, _ = world.Register[Ledger](s.reg, "Ledger")
	return s
}

// ledgerEntity is the j-th ledger entity of module k (created at setup with
// generation 1, never destroyed).
func ledgerEntity(k, j int) world.Entity {
	return world.MakeEntity(uint32(soakData+k*soakLedger+j), 1)
}

// soakSim is the engine's test simulation.
type soakSim struct {
	s       *soakSchema
	w       *world.World
	modules int
	step    atomic.Uint64
	// Ledger verdicts, checked at the start of each frame, i.e. after the
	// previous frame's playback.
	partial, applied atomic.Uint64
	lastSeen         []uint64
	partialMsg       atomic.Value
	lastNano, maxGap atomic.Int64
}

func newSoakWorld(t testing.TB, s *soakSchema, modules int) (*world.World, *soakSim) {
	w, err := world.New(s.reg, world.Config{ChunkCapacity: 64, MaxChunks: 16})
	require.NoError(t, err)
	for i := 0; i < soakData+modules*soakLedger; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		if i < soakData {
			require.NoError(t, world.Set(w, e, s.val, SoakVal{V: uint64(i)}))
			require.NoError(t, world.Set(w, e, s.chk, SoakChk{C: mix(uint64(i))}))
		} else {
			require.NoError(t, world.Set(w, e, s.ledger, Ledger{}))
		}
	}
	return w, &soakSim{s: s, w: w, modules: modules, lastSeen: make([]uint64, modules)}
}

func (sim *soakSim) Step(float32) {
	now := time.Now().UnixNano()
	if last := sim.lastNano.Swap(now); last != 0 && now-last > sim.maxGap.Load() {
		sim.maxGap.Store(now - last)
	}
	for k := 0; k < sim.modules; k++ {
		first, _ := world.Get[Ledger](sim.w, ledgerEntity(k, 0), sim.s.ledger)
		for j := 0; j < soakLedger; j++ {
			l, ok := world.Get[Ledger](sim.w, ledgerEntity(k, j), sim.s.ledger)
			if !ok || l.Batch != first.Batch || (l.Batch != 0 && (l.Count != soakLedger || l.Module != uint32(k))) {
				sim.partial.Add(1)
				sim.partialMsg.Store(fmt.Sprintf("module %d entity %d: %+v, entity 0: %+v", k, j, l, first))
				break
			}
		}
		if first.Batch != sim.lastSeen[k] {
			sim.lastSeen[k] = first.Batch
			sim.applied.Add(1)
		}
	}
	st := sim.step.Add(1)
	q := sim.w.Query(world.MaskOf(sim.s.val, sim.s.chk))
	for q.Next() {
		vals := world.ColumnMut[SoakVal](&q, sim.s.val)
		chks := world.ColumnMut[SoakChk](&q, sim.s.chk)
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) {
				v := st*soakStride + uint64(q.Chunk()*64+i)
				vals[i].V = v
				chks[i].C = mix(v)
			}
		}
	}
}

// soakModule validates every frame it reads and writes one ledger batch per
// tick. It prints "c" per checked tick and "TORN ..." on a torn frame.
type soakModule struct {
	s     *soakSchema
	spec  module.Spec
	k     int
	ticks uint64
	first func()
	audit func(frame uint64) string // soakAuditor.audit, nil: frames are not audited
}

func (m *soakModule) Spec() module.Spec { return m.spec }

func (m *soakModule) Tick(v *module.View, c *module.Commands, dt time.Duration) error {
	m.ticks++
	n, step, why := 0, uint64(0), ""
	q := v.Query(world.MaskOf(m.s.val, m.s.chk))
	for q.Next() {
		vals := module.Column[SoakVal](v, &q, m.s.val)
		chks := module.Column[SoakChk](v, &q, m.s.chk)
		for i := 0; i < q.Rows(); i++ {
			if !q.Match(i) {
				continue
			}
			n++
			if chks[i].C != mix(vals[i].V) {
				why = fmt.Sprintf("entity %d: chk %#x for val %#x", i, chks[i].C, vals[i].V)
			}
			if s := vals[i].V / soakStride; n == 1 {
				step = s
			} else if s != step && why == "" {
				why = fmt.Sprintf("entity %d from step %d, entity 0 from step %d", i, s, step)
			}
		}
	}
	if n != soakData && why == "" {
		why = fmt.Sprintf("%d data entities, want %d", n, soakData)
	}
	switch {
	case why != "" && !v.Valid():
		// The engine took the frame back (a snapshot revoked past its
		// runtime, a pin dropped on a loaded machine): the SDK fails
		// this tick; what it read is not a frame it was given.
		_, _ = os.Stdout.WriteString("r\n")
	case why != "":
		_, _ = os.Stdout.WriteString(fmt.Sprintf("TORN frame %d: %s\n", v.Frame(), why))
	default:
		_, _ = os.Stdout.WriteString("c\n")
	}
	if m.audit != nil {
		if line := m.audit(v.Frame()); line != "" {
			_, _ = os.Stdout.WriteString(line + "\n")
		}
	}
	batch := uint64(os.Getpid())<<24 | m.ticks
	for j := 0; j < soakLedger; j++ {
		module.Set(c, ledgerEntity(m.k, j), m.s.ledger, Ledger{Batch: batch, Count: soakLedger, Module: uint32(m.k)})
	}
	if m.first != nil && m.ticks == 1 {
		m.first()
	}
	return nil
}

// soakAuditor audits the slots holding the frame a module reads (package
// audit) through its own read-only mapping of the world segment, remapped
// when a restarted engine replaced it.
type soakAuditor struct {
	inst string
	seg  *shm.Segment
	lw   *layout.World
}

// audit returns "a" when every complete slot holding frame passed every
// invariant (at least one did: the module's own frame is pinned or leased
// while it runs), an "AUDIT ..." line on a problem, "" when no slot could be
// audited.
func (a *soakAuditor) audit(frame uint64) string {
	if a.seg == nil || !a.seg.Current() {
		if a.seg != nil {
			_ = a.seg.Close()
		}
		a.seg, a.lw = nil, nil
		seg, err := shm.Open(shm.SegmentName(a.inst, fsync.WorldSegment), false)
		if err != nil {
			return ""
		}
		lw, err := layout.DecodeWorld(seg.Data)
		if err != nil {
			_ = seg.Close()
			return ""
		}
		a.seg, a.lw = seg, lw
	}
	line := ""
	for s := 0; s < a.lw.Slots; s++ {
		if a.lw.ReadSlotInfo(s).Frame != frame {
			continue
		}
		rep, err := audit.Slot(a.seg.Data, a.lw, s)
		switch {
		case err != nil: // rewritten meanwhile (not the module's slot)
		case !rep.OK():
			return fmt.Sprintf("AUDIT frame %d: %v", frame, rep.Problems)
		default:
			line = "a"
		}
	}
	return line
}

// maybeChild runs this process's child role (FDP_TEST_CHILD) and exits.
func maybeChild() {
	role := os.Getenv("FDP_TEST_CHILD")
	if role == "" {
		return
	}
	os.Exit(runChild(role))
}

func runChild(role string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	inst := os.Getenv("FDP_INSTANCE")
	switch role {
	case "soakmod", "latmod":
		s := newSoakSchema()
		k, _ := strconv.Atoi(os.Getenv("FDP_SOAK_K"))
		every, _ := strconv.Atoi(os.Getenv("FDP_EVERY"))
		m := &soakModule{s: s, k: k, spec: module.Spec{Name: os.Getenv("FDP_MODULE"), Tier: os.Getenv("FDP_TIER"), Every: every,
			Reads: world.MaskOf(s.val, s.chk, s.ledger)}}
		if role == "latmod" {
			m.first = func() { _, _ = os.Stdout.WriteString(fmt.Sprintf("first %d\n", time.Now().UnixNano())) }
		} else {
			m.audit = (&soakAuditor{inst: inst}).audit
		}
		err := module.Run(context.Background(), m, module.Options{Instance: inst, Registry: s.reg, Logger: log})
		if err != nil && !errors.Is(err, module.ErrEngineGone) {
			fmt.Fprintln(os.Stderr, "module:", err)
			return 1
		}
		return 0
	case "engine":
		return runCrashEngine(inst, log)
	case "tree":
		return runTree(inst)
	}
	fmt.Fprintln(os.Stderr, "unknown child role", role)
	return 2
}

// countWriter counts "c\n" lines (checked ticks) and "a\n" lines (audited
// frames) and keeps any other line.
type countWriter struct {
	mu     sync.Mutex
	checks int
	audits int
	// revoked: "r" lines, ticks whose frame the engine took back while the
	// module read it (the SDK fails them)
	revoked int
	other   bytes.Buffer
	part    []byte
}

func (w *countWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		line := w.part[:i]
		if string(line) == "c" {
			w.checks++
		} else if string(line) == "a" {
			w.audits++
		} else if string(line) == "r" {
			w.revoked++
		} else {
			w.other.Write(line)
			w.other.WriteByte('\n')
		}
		w.part = w.part[i+1:]
	}
	return len(p), nil
}

// revokedTicks returns the number of ticks whose frame was taken back.
func (w *countWriter) revokedTicks() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.revoked
}

// audited returns the number of audited frames.
func (w *countWriter) audited() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.audits
}

func (w *countWriter) result() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.checks, w.other.String()
}

type soakSpec struct {
	name, tier string
	every      int
}

// startSoakModule starts module k (role soakmod or latmod) of inst.
func startSoakModule(t testing.TB, test, role, inst string, k int, sp soakSpec, out io.Writer) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), "FDP_TEST_CHILD="+role, "FDP_INSTANCE="+inst, "FDP_SOAK_K="+strconv.Itoa(k),
		"FDP_MODULE="+sp.name, "FDP_TIER="+sp.tier, "FDP_EVERY="+strconv.Itoa(sp.every))
	cmd.Stdout = out
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	return cmd
}

func moduleInfo(eng *host.Engine, name string) (host.ModuleInfo, bool) {
	for _, m := range eng.Modules() {
		if m.Name == name {
			return m, true
		}
	}
	return host.ModuleInfo{}, false
}

// waitDeathSeen waits until the engine no longer considers pid the live
// incarnation of module name. It returns false if it never happens within
// limit (the engine kept a dead pid as joined).
func waitDeathSeen(eng *host.Engine, name string, pid int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		m, ok := moduleInfo(eng, name)
		if !ok || m.PID != pid || m.State == host.StateDead {
			return true
		}
		time.Sleep(50 * time.Microsecond) // polling the engine's module table, bounded
	}
	return false
}

func uniqueInstance(t testing.TB, p string) string {
	inst := fmt.Sprintf("%s%d%05x", p, os.Getpid()%100000, rand.Intn(1<<20))
	t.Cleanup(func() { _, _ = shm.RemoveInstance(inst) })
	return inst
}

// requireNoSegments asserts that nothing of inst is left in shm.Dir.
func requireNoSegments(t testing.TB, inst string) {
	t.Helper()
	infos, err := shm.List()
	require.NoError(t, err)
	for _, in := range infos {
		require.NotEqual(t, inst, in.Instance, "leaked segment %s (%s)", in.Name, in.State)
	}
	ents, err := os.ReadDir(shm.Dir)
	require.NoError(t, err)
	for _, de := range ents {
		require.NotContains(t, de.Name(), "fdp."+inst+".", "leaked file %s", de.Name())
	}
}

// readerEntries returns the pids of the used reader entries of inst.
func readerEntries(t testing.TB, inst string) []uint32 {
	seg, err := shm.Open(shm.SegmentName(inst, fsync.LeasesSegment), false)
	require.NoError(t, err)
	defer seg.Close()
	ll, err := layout.DecodeLeases(seg.Data)
	require.NoError(t, err)
	var pids []uint32
	for r := 0; r < ll.Readers; r++ {
		if pid := layout.Load32(seg.Data, ll.ReaderOff(r)+layout.ReaderPID); pid != 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestSoak: an engine and several self-checking module processes; a killer
// SIGKILLs random modules at random moments FDP_SOAK_KILLS times (default
// 1000; `make soak` uses 10000) and restarts them. No torn frame is ever
// read, no partial batch is ever applied, the engine's frames keep coming,
// and nothing leaks (leases, reader entries, segments).
func TestSoak(t *testing.T) {
	maybeChild()
	kills := module.EnvInt("FDP_SOAK_KILLS", 1000)
	if testing.Short() {
		kills = min(kills, 100)
	}
	seed := time.Now().UnixNano()
	if v, err := strconv.ParseInt(os.Getenv("FDP_SOAK_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("soak: %d kills, seed %d (FDP_SOAK_SEED to replay)", kills, seed)
	rng := rand.New(rand.NewSource(seed))

	specs := []soakSpec{{"fast-a", module.Fast, 1}, {"fast-b", module.Fast, 1}, {"fast-c", module.Fast, 2}, {"slow-a", module.Slow, 3}}
	s := newSoakSchema()
	w, sim := newSoakWorld(t, s, len(specs))
	inst := uniqueInstance(t, "s")
	eng, err := host.New(host.Config{Instance: inst, FrameRate: 500, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}, w, sim)
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			eng.Close()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = eng.Run(ctx, nil) }()
	defer func() { cancel(); <-runDone }()

	leases, err := shm.Open(shm.SegmentName(inst, fsync.LeasesSegment), true)
	require.NoError(t, err)
	defer leases.Close()
	ll, err := layout.DecodeLeases(leases.Data)
	require.NoError(t, err)

	procs := make([]*exec.Cmd, len(specs))
	var outs []*countWriter
	spawn := func(k int) {
		out := &countWriter{}
		outs = append(outs, out)
		procs[k] = startSoakModule(t, "TestSoak", "soakmod", inst, k, specs[k], out)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			if p != nil && p.ProcessState == nil {
				_ = p.Process.Kill()
				_ = p.Wait()
			}
		}
	})
	for k := range specs {
		spawn(k)
	}
	start := time.Now()
	selfExits, wedged := 0, 0
	stepAt := sim.step.Load()
	for i := 0; i < kills; i++ {
		k := rng.Intn(len(specs))
		time.Sleep(time.Duration(rng.Int63n(int64(25 * time.Millisecond)))) // a random moment, not a synchronisation
		p := procs[k]
		_ = syscall.Kill(p.Process.Pid, syscall.SIGKILL)
		_ = p.Wait()
		if ws, ok := p.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			selfExits++
			t.Logf("module %s exited by itself: %v", specs[k].name, p.ProcessState)
		}
		// The supervisor's reclaim hook (as in `engine up`): release the dead
		// pid's reader entry, which the engine never learns about when the
		// module died before its handshake.
		fsync.ReleaseReadersOf(leases.Data, ll, p.Process.Pid)
		if !waitDeathSeen(eng, specs[k].name, p.Process.Pid, 5*time.Second) {
			// The engine admitted a module whose process died before the
			// welcome was delivered: no connection close will ever come.
			// Reclaim it as the supervisor would (see the report on
			// issue 5).
			wedged++
			eng.ModuleDied(p.Process.Pid)
		}
		spawn(k)
		if i%100 == 99 {
			now := sim.step.Load()
			require.Greater(t, now, stepAt, "engine frames stalled during kills %d..%d", i-99, i)
			stepAt = now
		}
	}
	elapsed := time.Since(start)

	// Every module is alive again: let them all attach and tick, then
	// check that every used reader entry belongs to a live process (the
	// entries of the killed ones were reclaimed).
	deadline := time.Now().Add(30 * time.Second)
	for {
		up := 0
		for _, sp := range specs {
			if m, ok := moduleInfo(eng, sp.name); ok && m.State == host.StateRunning {
				up++
			}
		}
		if up == len(specs) {
			break
		}
		require.True(t, time.Now().Before(deadline), "modules did not come back")
		time.Sleep(time.Millisecond) // polling, bounded
	}
	for _, pid := range readerEntries(t, inst) {
		require.True(t, shm.ProcessAlive(pid, mustStart(pid)), "reader entry of dead pid %d not reclaimed", pid)
	}
	// Kill them all; once the engine has seen every death nothing is held.
	for k, p := range procs {
		_ = syscall.Kill(p.Process.Pid, syscall.SIGKILL)
		_ = p.Wait()
		require.True(t, waitDeathSeen(eng, specs[k].name, p.Process.Pid, 5*time.Second))
	}
	cancel()
	<-runDone
	eng.Step()
	require.Zero(t, eng.LeasedSlots(), "leases left")
	require.Empty(t, readerEntries(t, inst), "reader entries left")

	checks, audits, torn, revoked := 0, 0, "", 0
	for _, o := range outs {
		c, other := o.result()
		checks += c
		audits += o.audited()
		revoked += o.revokedTicks()
		torn += other
	}
	// A frame taken back is one the engine revoked or stopped pinning.
	require.LessOrEqual(t, uint64(revoked), eng.Revoked+eng.PinsDropped, "ticks that saw their frame taken back")
	gap := time.Duration(sim.maxGap.Load())
	t.Logf("soak: %d kills in %v; %d checked ticks, %d audited frames; %d batches applied; %d frames; max frame gap %v; self exits %d; wedged joins %d",
		kills, elapsed.Round(time.Millisecond), checks, audits, sim.applied.Load(), sim.step.Load(), gap, selfExits, wedged)
	require.Empty(t, torn, "torn frames, audit problems (or other module output)")
	require.Greater(t, audits, checks/2, "modules must have audited the frames they read")
	require.Zero(t, sim.partial.Load(), "partial batch applied: %v", sim.partialMsg.Load())
	require.Greater(t, checks, kills, "modules must have checked frames")
	require.Greater(t, sim.applied.Load(), uint64(kills/2), "batches must have been applied")
	require.Zero(t, selfExits, "modules must only die by SIGKILL")
	require.Less(t, gap, 2*time.Second, "engine frames must keep coming")

	modules := eng.Modules()
	require.NoError(t, eng.Close())
	closed = true
	deaths := uint64(0)
	for _, m := range modules {
		deaths += m.Stats.Deaths
	}
	require.GreaterOrEqual(t, deaths, uint64(len(specs)), "deaths seen by the engine")
	requireNoSegments(t, inst)
}

func mustStart(pid uint32) uint64 {
	st, err := shm.ProcStartTime(int(pid))
	if err != nil {
		return 1 // no such process: ProcessAlive(pid, 1) is false
	}
	return st
}
