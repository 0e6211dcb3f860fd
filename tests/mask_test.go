package tests

// What a module reads is exactly what it asked for (issue 12): a module
// process that reads a component outside its Spec.Reads gets nil, false and
// no matches, never bytes of another frame, and its tick fails with an error
// naming the component; one that reads inside gets the values of the frame
// its view shows.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// maskEnv selects the part of a child process of these tests ("outside",
// "inside"); FDP_MASK_TIER and FDP_MASK_READS give its tier and Reads.
const maskEnv = "FDP_MASK_CHILD"

// maskProbe is the module of a child.
type maskProbe struct {
	s    *schema
	spec module.Spec
	role string
}

func (p *maskProbe) Spec() module.Spec { return p.spec }

func (p *maskProbe) Tick(v *module.View, c *module.Commands, dt time.Duration) error {
	e0 := world.MakeEntity(0, 1)
	switch p.role {
	case "outside":
		// Reads HP only: every read of Pos is refused; the first one
		// (Count of Pos and HP) is the tick's error.
		n := v.Count(world.MaskOf(p.s.pos, p.s.hp))
		pos, ok := module.Get[Pos](v, e0, p.s.pos)
		matched, cols := 0, 0
		q := v.Query(world.MaskOf(p.s.pos))
		for q.Next() {
			matched++
		}
		q = v.Query(world.MaskOf(p.s.hp))
		for q.Next() {
			if module.Column[Pos](v, &q, p.s.pos) != nil {
				cols++
			}
		}
		hp, hpOK := module.Get[HP](v, e0, p.s.hp)
		fmt.Printf("outside frame=%d count=%d get=%v x=%g matched=%d columns=%d hp=%d/%v err=%v\n",
			v.Frame(), n, ok, pos.X, matched, cols, hp.V, hpOK, v.Err())
	case "writer":
		// Writes into its read-only view: the fault fails the tick.
		q := v.Query(world.MaskOf(p.s.hp))
		for q.Next() {
			col := module.Column[HP](v, &q, p.s.hp)
			fmt.Printf("writer frame=%d\n", v.Frame())
			col[0].V = -1
		}
	case "wrongtype":
		// Reads HP, as a Pos (another size): refused, the tick fails.
		_, ok := module.Get[Pos](v, e0, p.s.hp)
		q := v.Query(world.MaskOf(p.s.hp))
		cols := 0
		for q.Next() {
			if module.Column[Pos](v, &q, p.s.hp) != nil {
				cols++
			}
		}
		fmt.Printf("wrongtype frame=%d get=%v columns=%d err=%v\n", v.Frame(), ok, cols, v.Err())
	case "inside":
		pos, ok := module.Get[Pos](v, e0, p.s.pos)
		var sum float64
		rows := 0
		q := v.Query(world.MaskOf(p.s.pos))
		for q.Next() {
			col := module.Column[Pos](v, &q, p.s.pos)
			for i := 0; i < q.Rows(); i++ {
				if q.Match(i) {
					sum += float64(col[i].X)
					rows++
				}
			}
		}
		fmt.Printf("inside frame=%d get=%v x=%g rows=%d sum=%g err=%v\n", v.Frame(), ok, pos.X, rows, sum, v.Err())
	}
	return nil
}

func maskChild(role string) int {
	s := newSchema()
	var reads world.Mask
	for _, n := range strings.Split(os.Getenv("FDP_MASK_READS"), ",") {
		if id, ok := s.reg.Lookup(n); ok {
			reads = reads.With(id)
		}
	}
	spec := module.Spec{Name: os.Getenv("FDP_MODULE"), Tier: os.Getenv("FDP_MASK_TIER"), Every: 1, Reads: reads}
	if spec.Tier == module.Slow {
		spec.Every, spec.Group = 2, "solo"
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := module.Run(context.Background(), &maskProbe{s: s, spec: spec, role: role},
		module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.reg, Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "module:", err)
		return 1
	}
	return 0
}

// maskRig is a rig whose 100 entities have Pos and HP, and whose simulation
// moves every Pos each frame; it remembers entity 0's Pos.X at every frame.
type maskRig struct {
	*rig
	x map[uint64]float32
}

func newMaskRig(t *testing.T) *maskRig {
	r := newRig(t, 100)
	w := r.eng.World()
	for i := 0; i < 100; i++ {
		require.NoError(t, world.Set(w, world.MakeEntity(uint32(i), 1), r.s.hp, HP{V: int32(i)}))
	}
	r.eng.SetSimulation(shifter{r.s, w})
	return &maskRig{rig: r, x: map[uint64]float32{}}
}

// child starts a module child of test with role, tier and reads; its
// stderr (the SDK's log) goes to stderr.
func (r *maskRig) child(test, role, tier, reads string, stderr *syncBuf) *testutil.Child {
	return testutil.StartChild(r.t, testutil.ChildOptions{Test: test, Stderr: stderr, Env: []string{
		maskEnv + "=" + role, "FDP_MODULE=" + role, "FDP_INSTANCE=" + r.inst, "FDP_MASK_TIER=" + tier, "FDP_MASK_READS=" + reads,
	}})
}

// stepUntil steps the engine until cond holds (bounded), recording entity
// 0's Pos.X at each frame: what a snapshot of that frame holds. A timeout
// shows the last lines of c (when not nil).
func (r *maskRig) stepUntil(what string, c *testutil.Child, cond func() bool) {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			var last []string
			if c != nil {
				last = c.Lines()
				last = last[max(0, len(last)-3):]
			}
			r.t.Fatalf("timed out waiting for %s; last lines of the module: %q", what, last)
		}
		r.eng.Step()
		p, ok := world.Get[Pos](r.eng.World(), world.MakeEntity(0, 1), r.s.pos)
		require.True(r.t, ok)
		r.x[r.eng.Frame()] = p.X
	}
}

// linesWith returns the child's lines that start with prefix.
func linesWith(c *testutil.Child, prefix string) []string {
	var out []string
	for _, l := range c.Lines() {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// requireRefused checks an "outside" child: every line shows every read of
// Pos refused (and HP read), its ticks fail in the engine, and its log gives
// the one-line error.
func (r *maskRig) requireRefused(c *testutil.Child, stderr *syncBuf, name string) {
	const want = `read refused: component "Pos" is not in the module's Reads [HP]`
	r.stepUntil(name+": 3 failed ticks", c, func() bool {
		return r.module(name).Stats.Failures >= 3 && len(linesWith(c, "outside ")) >= 3
	})
	lines := linesWith(c, "outside ")
	for _, l := range lines {
		var frame uint64
		var count, matched, cols int
		var get, hpOK bool
		var x float32
		var hp int32
		_, err := fmt.Sscanf(l, "outside frame=%d count=%d get=%t x=%g matched=%d columns=%d hp=%d/%t",
			&frame, &count, &get, &x, &matched, &cols, &hp, &hpOK)
		require.NoError(r.t, err, l)
		require.Zero(r.t, count, l)
		require.False(r.t, get, "Get of Pos outside Reads: %s", l)
		require.Zero(r.t, x, "no bytes of any frame: %s", l)
		require.Zero(r.t, matched, l)
		require.Zero(r.t, cols, l)
		require.True(r.t, hpOK, "HP is in Reads: %s", l)
		require.Zero(r.t, hp, l)
		require.True(r.t, strings.HasSuffix(l, " err="+want), "the tick's first read error names Pos: %s", l)
	}
	m := r.module(name)
	require.GreaterOrEqual(r.t, m.Stats.Failures, uint64(3), "the engine counts the failed ticks")
	require.Zero(r.t, m.Stats.Applied)
	// The SDK's warning (slog quotes the value).
	require.Eventually(r.t, func() bool {
		return strings.Contains(stderr.String(), "tick failed") && strings.Contains(stderr.String(), fmt.Sprintf("err=%q", want))
	}, 10*time.Second, time.Millisecond, "module log: %s", stderr.String())
}

// TestSlowModuleReadsOnlyItsMask: two slow solo modules, each with a
// snapshot of its own Reads, alternating in the same slots. The one that
// declared HP and reads Pos gets nothing (before, it read Pos bytes of an
// older frame that the slot still held, as if they were this frame's) and
// every such tick fails with the error naming Pos; the one that declared Pos
// reads Pos of exactly the frame its snapshot shows.
func TestSlowModuleReadsOnlyItsMask(t *testing.T) {
	testutil.RunChild(maskEnv, maskChild)
	r := newMaskRig(t)
	var outErr, inErr syncBuf
	out := r.child("TestSlowModuleReadsOnlyItsMask", "outside", module.Slow, "HP", &outErr)
	in := r.child("TestSlowModuleReadsOnlyItsMask", "inside", module.Slow, "Pos", &inErr)
	r.stepUntil("join", nil, r.joined(2))
	r.requireRefused(out, &outErr, "outside")
	require.Equal(t, world.MaskOf(r.s.hp), r.module("outside").SnapshotMask, "a snapshot of its Reads alone")

	r.stepUntil("5 inside ticks", in, func() bool { return len(linesWith(in, "inside ")) >= 5 })
	for _, l := range linesWith(in, "inside ") {
		var frame uint64
		var get bool
		var x float32
		var rows int
		var sum float64
		_, err := fmt.Sscanf(l, "inside frame=%d get=%t x=%g rows=%d sum=%g err=<nil>", &frame, &get, &x, &rows, &sum)
		require.NoError(t, err, l)
		want, ok := r.x[frame]
		require.True(t, ok, "frame %d was published by this test: %s", frame, l)
		require.True(t, get, l)
		require.Equal(t, want, x, "entity 0's Pos of frame %d: %s", frame, l)
		require.Equal(t, 100, rows, l)
		// Entity i's X is i + (X of entity 0) at every frame (shifter).
		require.Equal(t, float64(100*want+99*100/2), sum, l)
	}
	require.Zero(t, r.module("inside").Stats.Failures)
}

// TestFastModuleReadsOnlyItsReads: a fast module pins the latest frame,
// which holds every component, yet reading a component outside its declared
// Reads is refused the same way: what a module reads is what it asked for,
// on either tier.
func TestFastModuleReadsOnlyItsReads(t *testing.T) {
	testutil.RunChild(maskEnv, maskChild)
	r := newMaskRig(t)
	var outErr syncBuf
	out := r.child("TestFastModuleReadsOnlyItsReads", "outside", module.Fast, "HP", &outErr)
	r.stepUntil("join", nil, r.joined(1))
	r.requireRefused(out, &outErr, "outside")
}

// TestModuleReadsWithWrongType: a module that reads a component it declared
// as a Go type of another size gets nothing, and its tick fails with the
// error naming the component and both sizes.
func TestModuleReadsWithWrongType(t *testing.T) {
	testutil.RunChild(maskEnv, maskChild)
	r := newMaskRig(t)
	c, _ := r.failing("TestModuleReadsWithWrongType", "wrongtype", module.Slow)
	for _, l := range linesWith(c, "wrongtype ") {
		require.Contains(t, l, " get=false columns=0 ", l)
		require.Contains(t, l, `err=read refused: component size does not match the Go type: component "HP" is 4 bytes, Go type is`, l)
	}
	require.Zero(t, r.module("wrongtype").Stats.Applied)
}

// TestModuleWritingIntoItsViewFails: a module that writes into the frame it
// reads (read-only shared memory) faults; the SDK fails the tick with an
// error that says so (the runtime would call it a nil dereference), naming
// the component written into, and the process goes on.
func TestModuleWritingIntoItsViewFails(t *testing.T) {
	testutil.RunChild(maskEnv, maskChild)
	r := newMaskRig(t)
	_, stderr := r.failing("TestModuleWritingIntoItsViewFails", "writer", module.Fast)
	require.Eventually(t, func() bool {
		// The fault address is mapped back to what it hit: the HP column.
		return strings.Contains(stderr.String(), `writer wrote into the read-only view: component \"HP\" (column of chunk 0, slot `) &&
			strings.Contains(stderr.String(), "the View is read-only shared memory")
	}, 10*time.Second, time.Millisecond, "module log: %s", stderr.String())
	require.Zero(t, r.module("writer").Stats.Applied)
	p, ok := world.Get[HP](r.eng.World(), world.MakeEntity(0, 1), r.s.hp)
	require.True(t, ok)
	require.Equal(t, int32(0), p.V, "the world is untouched")
}

// failing starts a module child of test with role and tier that reads HP,
// and steps the engine until it has failed 3 ticks (and printed 3 lines).
func (r *maskRig) failing(test, role, tier string) (*testutil.Child, *syncBuf) {
	stderr := &syncBuf{}
	c := r.child(test, role, tier, "HP", stderr)
	r.stepUntil("join", nil, r.joined(1))
	r.stepUntil(role+": 3 failed ticks", c, func() bool {
		return r.module(role).Stats.Failures >= 3 && len(linesWith(c, role+" ")) >= 3
	})
	return c, stderr
}
