// Package tests holds multi-process integration tests: an engine in the test
// process and module processes re-executed from the test binary.
package tests

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

type Pos struct{ X, Y float32 }
type HP struct{ V int32 }

type schema struct {
	reg     *world.Registry
	pos, hp world.ComponentID
}

func newSchema() *schema {
	s := &schema{reg: world.NewRegistry()}
	s.pos, _ = world.Register[Pos](s.reg, "Pos")
	s.hp, _ = world.Register[HP](s.reg, "HP")
	return s
}

// probe is a test module configured through the environment of its process.
type probe struct {
	s     *schema
	spec  module.Spec
	role  string
	out   *os.File
	ticks int
}

func (p *probe) Spec() module.Spec { return p.spec }

func (p *probe) Tick(v *module.View, c *module.Commands, dt time.Duration) error {
	p.ticks++
	switch p.role {
	case "create-once":
		if p.ticks == 1 {
			e := c.Create()
			module.Set(c, e, p.s.hp, HP{V: 42})
		}
	case "report":
		// Report the snapshot's slot and frame and the count of entities.
		fmt.Fprintf(p.out, "tick frame=%d count=%d\n", v.Frame(), v.Count(p.spec.Reads))
	case "hold":
		// Hold the snapshot while the engine advances at least 20 frames,
		// then check the snapshot did not change under us.
		first := v.Frame()
		sum := checksum(v, p.s)
		eng := latestFrame()
		for latestFrame() < eng+20 {
			time.Sleep(time.Millisecond) // waiting for the engine, not synchronising with it
		}
		if v.Frame() != first || checksum(v, p.s) != sum {
			return fmt.Errorf("snapshot changed while leased: frame %d->%d", first, v.Frame())
		}
		fmt.Fprintf(p.out, "held frame=%d while engine advanced to %d\n", first, latestFrame())
	case "fault":
		q := v.Query(world.MaskOf(p.s.pos))
		q.Next()
		col := module.Column[Pos](v, &q, p.s.pos)
		col[0].X = 1 // write into the read-only mapping
	}
	return nil
}

var worldSegPath string

// latestFrame reads the latest frame number from the world segment file.
func latestFrame() uint64 {
	f, err := os.Open(worldSegPath)
	if err != nil {
		return 0
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], layout.OffWLatest); err != nil {
		return 0
	}
	fr, _, _ := layout.UnpackLatest(binary.LittleEndian.Uint64(b[:]))
	return fr
}

func checksum(v *module.View, s *schema) float64 {
	var sum float64
	q := v.Query(world.MaskOf(s.pos))
	for q.Next() {
		pos := module.Column[Pos](v, &q, s.pos)
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) {
				sum += float64(pos[i].X) * float64(i+1)
			}
		}
	}
	return sum
}

func TestMain(m *testing.M) {
	if role := os.Getenv("FDP_TEST_MODULE"); role != "" {
		os.Exit(runProbe(role))
	}
	os.Exit(m.Run())
}

func runProbe(role string) int {
	s := newSchema()
	every, _ := strconv.Atoi(os.Getenv("FDP_EVERY"))
	tier := os.Getenv("FDP_TIER")
	var mask world.Mask
	for _, n := range strings.Split(os.Getenv("FDP_READS"), ",") {
		if id, ok := s.reg.Lookup(n); ok {
			mask = mask.With(id)
		}
	}
	p := &probe{s: s, role: role, out: os.Stdout, spec: module.Spec{
		Name: os.Getenv("FDP_MODULE"), Tier: tier, Every: every, Reads: mask, Group: os.Getenv("FDP_GROUP"),
	}}
	worldSegPath = os.Getenv("FDP_WORLD_PATH")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if role == "mainopts" {
		// A module whose own Spec names itself and no group, run by
		// module.MainOptions: the supervisor's $FDP_MODULE and $FDP_GROUP
		// win.
		p.spec.Name, p.spec.Group = "its-own-name", ""
		module.MainOptions(p, module.Options{Registry: s.reg, Logger: log})
		return 0
	}
	err := module.Run(context.Background(), p, module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.reg, Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "module:", err)
		return 1
	}
	return 0
}

// syncBuf collects a child's output while the test reads it.
type syncBuf = testutil.SyncBuffer

type rig struct {
	t    *testing.T
	s    *schema
	eng  *host.Engine
	inst string
	cmds []*exec.Cmd
	outs []*syncBuf
}

func newRig(t *testing.T, entities int) *rig { return newRigConfig(t, entities, nil) }

// newRigConfig is newRig with a hook that may change the engine's config.
func newRigConfig(t *testing.T, entities int, configure func(*host.Config)) *rig {
	s := newSchema()
	w, err := world.New(s.reg, world.Config{ChunkCapacity: 64, MaxChunks: 64})
	require.NoError(t, err)
	for i := 0; i < entities; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, s.pos, Pos{X: float32(i)}))
	}
	inst := fmt.Sprintf("h%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	cfg := host.Config{Instance: inst, FastDeadline: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if configure != nil {
		configure(&cfg)
	}
	eng, err := host.New(cfg, w, mover{s})
	require.NoError(t, err)
	r := &rig{t: t, s: s, eng: eng, inst: inst}
	t.Cleanup(r.close)
	return r
}

// mover changes every position each frame so frames differ.
type mover struct{ s *schema }

func (m mover) Step(float32) {}

func (r *rig) close() {
	for _, c := range r.cmds {
		if c.ProcessState == nil {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	r.eng.Close()
}

func (r *rig) spawn(name, role, tier string, every int, reads, group string) int {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FDP_TEST_MODULE="+role, "FDP_MODULE="+name, "FDP_TIER="+tier,
		"FDP_EVERY="+strconv.Itoa(every), "FDP_READS="+reads, "FDP_GROUP="+group, "FDP_INSTANCE="+r.inst,
		"FDP_WORLD_PATH="+r.eng.WorldPath())
	out := &syncBuf{}
	cmd.Stdout = out
	cmd.Stderr = os.Stderr
	require.NoError(r.t, cmd.Start())
	r.cmds = append(r.cmds, cmd)
	r.outs = append(r.outs, out)
	return len(r.cmds) - 1
}

// stepUntil runs frames until cond holds (bounded).
func (r *rig) stepUntil(what string, cond func() bool) {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		require.True(r.t, time.Now().Before(deadline), "timed out waiting for %s", what)
		r.eng.Step()
	}
}

func (r *rig) joined(n int) func() bool {
	return func() bool {
		c := 0
		for _, m := range r.eng.Modules() {
			if m.State != host.StateDead {
				c++
			}
		}
		return c >= n
	}
}

func (r *rig) module(name string) host.ModuleInfo {
	for _, m := range r.eng.Modules() {
		if m.Name == name {
			return m
		}
	}
	r.t.Fatalf("no module %q", name)
	return host.ModuleInfo{}
}

// TestCommandsAppliedExactlyOnce is the seeds' scenario across processes: a
// module creates one entity in its first tick and nothing afterwards; after
// many frames the world has exactly one more entity.
func TestCommandsAppliedExactlyOnce(t *testing.T) {
	r := newRig(t, 10)
	r.spawn("creator", "create-once", module.Fast, 1, "HP", "")
	r.stepUntil("join", r.joined(1))
	r.stepUntil("10 runs", func() bool { return r.module("creator").Stats.Runs >= 10 })
	for i := 0; i < 5; i++ {
		r.eng.Step() // play back anything still in flight
	}
	require.Equal(t, 11, r.eng.World().Count())
	require.Equal(t, uint64(2), r.module("creator").Stats.Applied) // create + set
	n := 0
	q := r.eng.World().Query(world.MaskOf(r.s.hp))
	for q.Next() {
		hp := world.Column[HP](&q, r.s.hp)
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) {
				require.Equal(t, int32(42), hp[i].V)
				n++
			}
		}
	}
	require.Equal(t, 1, n)
}

// TestConvoyGrouping: same tier+frequency share one snapshot per dispatch;
// a different frequency and a manual "solo" module get their own.
func TestConvoyGrouping(t *testing.T) {
	r := newRig(t, 100)
	r.spawn("a1", "report", module.Slow, 4, "Pos", "")
	r.spawn("a2", "report", module.Slow, 4, "HP", "")
	r.spawn("a3", "report", module.Slow, 4, "Pos", "")
	r.spawn("b", "report", module.Slow, 8, "Pos", "")
	r.spawn("solo", "report", module.Slow, 4, "Pos", "solo")
	r.stepUntil("join", r.joined(5))
	// Align to a fresh dispatch cycle and count snapshots over 16 frames.
	// At least one whole cycle first, each frame waited out: a member that
	// was busy at a group dispatch during the joins (frames at full speed)
	// runs its catch-up tick there, not in the counted frames.
	for i := 0; i < 8 || r.eng.Frame()%8 != 7; i++ {
		r.eng.Step()
		r.stepWaitIdle()
	}
	before := r.eng.Snapshots
	runs := map[string]uint64{}
	for _, m := range r.eng.Modules() {
		runs[m.Name] = m.Stats.Runs
	}
	for i := 0; i < 16; i++ {
		r.eng.Step()
		// Let every slow module finish before the next due frame.
		r.stepWaitIdle()
	}
	// 16 frames: the convoy (a1,a2,a3) and solo are due 4 times, b twice:
	// 4 + 4 + 2 snapshots, not 3*4 + 4 + 2.
	for _, m := range r.eng.Modules() {
		t.Logf("%s runs +%d skipped %d failures %d overruns %d group %s", m.Name, m.Stats.Runs-runs[m.Name], m.Stats.Skipped,
			m.Stats.Failures, m.Stats.Overruns, m.Group)
	}
	t.Logf("bounds %+v", r.eng.Bounds())
	require.Equal(t, uint64(10), r.eng.Snapshots-before)
	for name, want := range map[string]uint64{"a1": 4, "a2": 4, "a3": 4, "solo": 4, "b": 2} {
		require.Equal(t, want, r.module(name).Stats.Runs-runs[name], name)
	}
	// The convoy's one snapshot carries the union of its members' masks
	// (a2 reads HP, a1 and a3 Pos); the others only their own.
	union := world.MaskOf(r.s.pos, r.s.hp)
	for _, name := range []string{"a1", "a2", "a3"} {
		require.Equal(t, union, r.module(name).SnapshotMask, name)
	}
	require.Equal(t, world.MaskOf(r.s.pos), r.module("b").SnapshotMask)
	require.Equal(t, world.MaskOf(r.s.pos), r.module("solo").SnapshotMask)
	g := r.module("a1").Group
	require.Equal(t, g, r.module("a2").Group)
	require.Equal(t, g, r.module("a3").Group)
	require.NotEqual(t, g, r.module("b").Group)
	require.NotEqual(t, g, r.module("solo").Group)
}

// stepWaitIdle waits (without stepping) until no module is busy, by polling
// the module table: modules finish on their own.
func (r *rig) stepWaitIdle() {
	deadline := time.Now().Add(10 * time.Second)
	for !r.eng.Idle() {
		require.True(r.t, time.Now().Before(deadline), "modules did not finish")
		time.Sleep(100 * time.Microsecond) // polling a condition, bounded by the deadline
	}
}

// TestSnapshotFrozenWhileLeased: a slow module holds its snapshot while the
// engine publishes 20 more frames; the snapshot does not change and the
// engine keeps its frames going.
func TestSnapshotFrozenWhileLeased(t *testing.T) {
	r := newRig(t, 200)
	r.eng.SetSimulation(shifter{r.s, r.eng.World()})
	i := r.spawn("holder", "hold", module.Slow, 2, "Pos", "")
	r.stepUntil("join", r.joined(1))
	r.stepUntil("one held tick", func() bool { return strings.Contains(r.outs[i].String(), "held frame=") })
	m := r.module("holder")
	require.Zero(t, m.Stats.Failures)
	// While the module held its snapshot, the engine ran frames: it was
	// skipped (busy) at least once and never stalled.
	require.GreaterOrEqual(t, m.Stats.Skipped, uint64(5))
}

// shifter moves every entity each frame.
type shifter struct {
	s *schema
	w *world.World
}

func (sh shifter) Step(float32) {
	q := sh.w.Query(world.MaskOf(sh.s.pos))
	for q.Next() {
		pos := world.ColumnMut[Pos](&q, sh.s.pos)
		for i := range pos {
			pos[i].X++
		}
	}
}

// TestWriteIntoViewIsModuleError: a module writing into its read-only view
// gets a module failure (counted by the engine), not a corruption.
func TestWriteIntoViewIsModuleError(t *testing.T) {
	r := newRig(t, 10)
	r.spawn("faulty", "fault", module.Fast, 1, "Pos", "")
	r.stepUntil("join", r.joined(1))
	r.stepUntil("3 failures", func() bool { return r.module("faulty").Stats.Failures >= 3 })
	// The world is untouched.
	p, ok := world.Get[Pos](r.eng.World(), world.MakeEntity(0, 1), r.s.pos)
	require.True(t, ok)
	require.Equal(t, float32(0), p.X)
}

// TestModuleKilledIsReclaimed: SIGKILL a slow module mid-run: its leases are
// released and a restarted module with the same name gets the same slot.
func TestModuleKilledIsReclaimed(t *testing.T) {
	r := newRig(t, 50)
	i := r.spawn("victim", "report", module.Slow, 2, "Pos", "")
	r.stepUntil("join", r.joined(1))
	r.stepUntil("2 runs", func() bool { return r.module("victim").Stats.Runs >= 2 })
	slot := r.module("victim").Slot
	require.NoError(t, r.cmds[i].Process.Kill())
	_ = r.cmds[i].Wait()
	r.stepUntil("death seen", func() bool { return r.module("victim").State == host.StateDead })
	require.Zero(t, r.eng.LeasedSlots(), "a dead module's leases must be released")
	r.spawn("victim", "report", module.Slow, 2, "Pos", "")
	r.stepUntil("rejoin", r.joined(1))
	require.Equal(t, slot, r.module("victim").Slot)
	require.Equal(t, uint64(2), r.module("victim").Stats.Joins)
}

// TestMainOptionsTakeSupervisorIdentity: a module run by module.MainOptions
// joins under the name and convoy group that the supervisor's config gives
// it ($FDP_MODULE, $FDP_GROUP), not those of its own Spec (an outside tester
// found `group:` of the supervisor config ignored).
func TestMainOptionsTakeSupervisorIdentity(t *testing.T) {
	r := newRig(t, 64)
	r.spawn("from-config", "mainopts", module.Slow, 6, "Pos", "g1")
	r.stepUntil("the module joined", r.joined(1))
	m := r.module("from-config")
	require.Equal(t, "group:g1", m.Group)
	for _, x := range r.eng.Modules() {
		require.NotEqual(t, "its-own-name", x.Name)
	}
}
