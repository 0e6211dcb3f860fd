package tests

// The query language across processes (issue 19): module processes run
// Without, Optional and Changed queries on the frames an engine publishes
// while its simulation makes random writes, and every answer is checked
// against a plain model of the world kept frame by frame.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// The components of the query tests: A and C are 8 bytes (the model's
// in-place writes), D is never in a module's Reads.
type (
	qA struct{ X, Y float32 }
	qB struct{ V int32 }
	qC struct{ V uint64 }
	qD struct{ V uint32 }
)

type querySchema struct {
	reg        *world.Registry
	a, b, c, d world.ComponentID
}

func newQuerySchema() *querySchema {
	s := &querySchema{reg: world.NewRegistry()}
	s.a, _ = world.Register[qA](s.reg, "A")
	s.b, _ = world.Register[qB](s.reg, "B")
	s.c, _ = world.Register[qC](s.reg, "C")
	s.d, _ = world.Register[qD](s.reg, "D")
	return s
}

// queryEnv selects the child's tier ("fast", "slow").
const queryEnv = "FDP_QUERY_CHILD"

// queryProbe prints, for every tick, what its queries found; on frames
// with frame % 5 == 2 it then reads D, outside its Reads: the tick fails
// (module.ErrNotRead) and must not move its Changed mark.
type queryProbe struct {
	s    *querySchema
	spec module.Spec
}

func (p *queryProbe) Spec() module.Spec { return p.spec }

func (p *queryProbe) Tick(v *module.View, _ *module.Commands, _ time.Duration) error {
	s := p.s
	last, ok := v.LastTick()
	fail := v.Frame()%5 == 2
	var changed []int
	q := v.Query(world.MaskOf(s.a), world.Changed(s.a, s.b))
	for q.Next() {
		changed = append(changed, q.Chunk())
	}
	q = v.Query(world.MaskOf(s.a), world.Without(s.b))
	first, any := q.First()
	without := q.Count()
	var absent []int
	optional := 0
	q = v.Query(world.MaskOf(s.a), world.Optional(s.c))
	for q.Next() {
		col := module.Column[qC](v, &q, s.c)
		if col == nil {
			absent = append(absent, q.Chunk())
		}
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) && q.Has(i, s.c) {
				optional++
				_ = col[i] // in place: a nil column here would panic the tick
			}
		}
	}
	fmt.Printf("tick frame=%d last=%d ok=%t fail=%t changed=%s without=%d first=%d any=%t absent=%s optional=%d\n",
		v.Frame(), last, ok, fail, ints(changed), without, uint64(first), any, ints(absent), optional)
	if fail {
		q = v.Query(world.MaskOf(s.a), world.Changed(s.d))
		q.Next()
	}
	return nil
}

// ints formats a list of chunks as "1,2,3" ("-" when empty).
func ints(l []int) string {
	if len(l) == 0 {
		return "-"
	}
	s := make([]string, len(l))
	for i, v := range l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func queryChild(tier string) int {
	s := newQuerySchema()
	spec := module.Spec{Name: "q-" + tier, Tier: tier, Every: 1, Reads: world.MaskOf(s.a, s.b, s.c)}
	if tier == module.Slow {
		spec.Every, spec.Group = 3, "solo" // a snapshot of A, B, C every third frame
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := module.Run(context.Background(), &queryProbe{s: s, spec: spec},
		module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.reg, Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "module:", err)
		return 1
	}
	return 0
}

// queryEngine is an engine whose simulation makes random writes through
// testutil.WorldOps, with the model of every frame it published.
type queryEngine struct {
	t      *testing.T
	eng    *host.Engine
	ops    *testutil.WorldOps
	frames map[uint64]*testutil.WorldModel
}

func (e *queryEngine) Step(float32) { e.ops.Run(e.ops.Rng.Intn(12)) }

func newQueryEngine(t *testing.T, s *querySchema, inst string, seed int64) *queryEngine {
	const capc = 16
	w, err := world.New(s.reg, world.Config{ChunkCapacity: capc, MaxChunks: 32})
	require.NoError(t, err)
	rng := rand.New(rand.NewSource(seed))
	m := testutil.NewWorldModel(capc)
	e := &queryEngine{t: t, frames: map[uint64]*testutil.WorldModel{},
		ops: &testutil.WorldOps{T: t, Rng: rng, W: w, M: m, Comps: []world.ComponentID{s.a, s.b, s.c, s.d}}}
	m.Now = 1
	e.ops.Run(800)
	e.eng, err = host.New(host.Config{Instance: inst, FastDeadline: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, w, e)
	require.NoError(t, err)
	t.Cleanup(func() { e.eng.Close() })
	return e
}

// step runs a frame and keeps the model of what it published.
func (e *queryEngine) step() {
	e.ops.M.Now = e.eng.Frame() + 1 // the frame the writes of this Step are published in
	e.eng.Step()
	e.frames[e.eng.Frame()] = e.ops.M.Clone()
}

// stepUntil runs frames until cond holds (bounded).
func (e *queryEngine) stepUntil(what string, cond func() bool) {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		require.True(e.t, time.Now().Before(deadline), "timed out waiting for %s", what)
		e.step()
		time.Sleep(200 * time.Microsecond) // frame pacing, not a synchronisation: ticks are waited for by cond
	}
}

// queryLine is a parsed tick line of queryProbe.
type queryLine struct {
	frame, last       uint64
	ok, fail, any     bool
	changed, absent   []int
	without, optional int
	first             world.Entity
	text              string
}

func parseQueryLine(t *testing.T, l string) queryLine {
	ql := queryLine{text: l}
	list := func(v string) []int {
		if v == "-" {
			return nil
		}
		var out []int
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			require.NoError(t, err, l)
			out = append(out, n)
		}
		return out
	}
	for _, f := range strings.Fields(strings.TrimPrefix(l, "tick ")) {
		k, v, _ := strings.Cut(f, "=")
		n, _ := strconv.ParseUint(v, 10, 64)
		switch k {
		case "frame":
			ql.frame = n
		case "last":
			ql.last = n
		case "ok":
			ql.ok = v == "true"
		case "fail":
			ql.fail = v == "true"
		case "any":
			ql.any = v == "true"
		case "changed":
			ql.changed = list(v)
		case "absent":
			ql.absent = list(v)
		case "without":
			ql.without = int(n)
		case "optional":
			ql.optional = int(n)
		case "first":
			ql.first = world.Entity(n)
		}
	}
	return ql
}

// checkQueryLines checks the tick lines of one module against the models
// of the frames they show: the mark (LastTick) is the frame of the previous
// tick that did not fail (none on the first tick with this engine),
// Changed visits exactly the chunks with a match written since that frame
// (every chunk with a match without one), Without, Optional, Count, Any and
// First are the model's. It returns the ticks checked, the failed ones, and
// those whose Changed query left out a chunk with a match.
func checkQueryLines(t *testing.T, s *querySchema, e *queryEngine, lines []string) (ticks, failed, partial int) {
	var prev uint64 // frame of the previous successful tick, 0 before one
	for _, l := range lines {
		if !strings.HasPrefix(l, "tick ") {
			continue
		}
		ql := parseQueryLine(t, l)
		m, ok := e.frames[ql.frame]
		require.True(t, ok, "frame %d was published by this engine: %s", ql.frame, l)
		require.Equal(t, prev != 0, ql.ok, "a mark exactly when an earlier tick with this engine succeeded: %s", l)
		since := uint64(0)
		if prev != 0 {
			require.Equal(t, prev, ql.last, "the mark is the last successful tick, frame %d: %s", prev, l)
			since = prev + 1
		}
		_, chunks := m.Expect(world.MaskOf(s.a), world.Mask{}, world.MaskOf(s.a, s.b), since)
		require.Equal(t, chunks, ql.changed, "Changed(A, B) since frame %d: %s", prev, l)
		ents, _ := m.Expect(world.MaskOf(s.a), world.MaskOf(s.b), world.Mask{}, 0)
		require.Equal(t, len(ents), ql.without, "Without(B): %s", l)
		require.Equal(t, len(ents) > 0, ql.any, l)
		if len(ents) > 0 {
			require.Equal(t, ents[0], ql.first, "First: %s", l)
		}
		withA, chunksA := m.Expect(world.MaskOf(s.a), world.Mask{}, world.Mask{}, 0)
		if len(ql.changed) < len(chunksA) {
			partial++
		}
		var absent []int
		for _, c := range chunksA {
			if !m.ChunkHas(c, s.c) {
				absent = append(absent, c)
			}
		}
		require.Equal(t, absent, ql.absent, "Optional(C): chunks without C: %s", l)
		optional := 0
		for _, en := range withA {
			if m.Has(en, s.c) {
				optional++
			}
		}
		require.Equal(t, optional, ql.optional, "Optional(C): rows with C: %s", l)
		ticks++
		if ql.fail {
			failed++
		} else {
			prev = ql.frame
		}
	}
	return ticks, failed, partial
}

// TestQueriesAcrossProcesses: a fast module (every frame) and a slow one
// (a snapshot of its Reads every third frame, frames skipped between its
// ticks) run Changed, Without and Optional queries while the engine's
// simulation makes random creates, destroys, writes, adds, removes and
// in-place writes; every fifth frame their tick fails (a read outside
// Reads). Every answer is the model's for the frame the tick showed, and
// Changed reports exactly the chunks written since the module's previous
// successful tick (checkQueryLines). Then the engine is replaced by a new
// one (another world): both modules rejoin, and on their first tick with it
// every chunk counts as changed.
func TestQueriesAcrossProcesses(t *testing.T) {
	testutil.RunChild(queryEnv, queryChild)
	s := newQuerySchema()
	inst := uniqueInstance(t, "qy")
	e := newQueryEngine(t, s, inst, 1)
	env := func(tier string) []string { return []string{queryEnv + "=" + tier, "FDP_INSTANCE=" + inst} }
	fast := testutil.StartChild(t, testutil.ChildOptions{Test: "TestQueriesAcrossProcesses", Env: env(module.Fast)})
	slow := testutil.StartChild(t, testutil.ChildOptions{Test: "TestQueriesAcrossProcesses", Env: env(module.Slow)})
	count := func(c *testutil.Child, from int) int {
		n := 0
		for _, l := range c.Lines()[from:] {
			if strings.HasPrefix(l, "tick ") {
				n++
			}
		}
		return n
	}
	e.stepUntil("60 ticks of each module", func() bool { return count(fast, 0) >= 60 && count(slow, 0) >= 60 })
	e.stepUntil("every tick done", e.eng.Idle)
	for _, c := range []struct {
		name  string
		child *testutil.Child
	}{{"q-fast", fast}, {"q-slow", slow}} {
		ticks, failed, partial := checkQueryLines(t, s, e, c.child.Lines())
		m, _ := moduleInfo(e.eng, c.name)
		require.Equal(t, uint64(failed), m.Stats.Failures, "%s: the engine counts the failed ticks", c.name)
		require.NotZero(t, failed, c.name)
		require.NotZero(t, partial, "%s: Changed left chunks out", c.name)
		t.Logf("%s: %d ticks checked, %d failed, %d of which Changed left chunks out", c.name, ticks, failed, partial)
	}

	// Another engine of the instance, with another world: its versions are
	// not comparable with the first one's, so the first tick with it must
	// count every chunk as changed.
	fromFast, fromSlow := len(fast.Lines()), len(slow.Lines())
	require.NoError(t, e.eng.Close())
	e = newQueryEngine(t, s, inst, 2)
	e.stepUntil("10 ticks of each module with the new engine", func() bool {
		return count(fast, fromFast) >= 10 && count(slow, fromSlow) >= 10
	})
	e.stepUntil("every tick done", e.eng.Idle)
	for _, lines := range [][]string{fast.Lines()[fromFast:], slow.Lines()[fromSlow:]} {
		i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "tick ") })
		require.False(t, parseQueryLine(t, lines[i]).ok, "no mark after the engine changed: %s", lines[i])
		checkQueryLines(t, s, e, lines)
	}
}
