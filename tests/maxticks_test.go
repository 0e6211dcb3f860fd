package tests

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

const maxTicksEnv = "FDP_MAXTICKS_CHILD"

// lastTickModule creates one entity with HP = its value in each tick.
type lastTickModule struct {
	s     *schema
	spec  module.Spec
	value int32
}

func (m *lastTickModule) Spec() module.Spec { return m.spec }

func (m *lastTickModule) Tick(v *module.View, c *module.Commands, dt time.Duration) error {
	module.Set(c, c.Create(), m.s.hp, HP{V: m.value})
	time.Sleep(20 * time.Millisecond) // the tick's work: the engine goes on stepping meanwhile
	if m.value < 0 {
		c.Publish(7, make([]byte, layout.MaxModuleEventPayload+1)) // too large: the tick fails
	}
	return nil
}

func runLastTickModule(tier string) int {
	s := newSchema()
	v, _ := strconv.Atoi(os.Getenv("FDP_MAXTICKS_VALUE"))
	spec := module.Spec{Name: os.Getenv("FDP_MODULE"), Tier: tier, Every: 1, Reads: world.MaskOf(s.hp)}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := module.Run(context.Background(), &lastTickModule{s: s, spec: spec, value: int32(v)},
		module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.reg, Logger: log, MaxTicks: 1})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "module:", err)
		return 1
	}
	return 0
}

// TestMaxTicksLastBatchApplied: a module process that runs one tick
// (Options.MaxTicks) and exits as soon as Run returns loses nothing: Run
// returns only once the engine has played back the tick's batch. Three
// processes of each tier, one after the other, each create one entity.
func TestMaxTicksLastBatchApplied(t *testing.T) {
	testutil.RunChild(maxTicksEnv, runLastTickModule)
	r := newRig(t, 10)
	w := r.eng.World()
	for ti, tier := range []string{module.Fast, module.Slow} {
		name := "last-" + tier
		for k := 0; k < 3; k++ {
			value := 1000 + 10*ti + k
			c := testutil.StartChild(t, testutil.ChildOptions{Test: "TestMaxTicksLastBatchApplied", Env: []string{
				maxTicksEnv + "=" + tier, "FDP_MODULE=" + name, "FDP_INSTANCE=" + r.inst, "FDP_MAXTICKS_VALUE=" + strconv.Itoa(value)}})
			deadline := time.Now().Add(30 * time.Second)
			var st *os.ProcessState
			for st == nil {
				require.True(t, time.Now().Before(deadline), "%s run %d did not exit", name, k)
				r.eng.Step()
				st = c.Wait(time.Millisecond)
			}
			require.True(t, st.Success(), "%s run %d: %v", name, k, st)
			// The batch was played back before the process exited: no
			// frame after the exit is needed to find it.
			require.Equal(t, 1, countHP(w, r.s, int32(value)), "%s run %d: its entity", name, k)
		}
		m := r.module(name)
		require.Equal(t, uint64(6), m.Stats.Applied, "%s: 3 batches of a create and a set", name)
		require.Zero(t, m.Stats.Failures, name)
		// No tick was dispatched to a process waiting to leave
		// (layout.OffMLeaving), even while the test kept stepping.
		require.Equal(t, uint64(3), m.Stats.Runs, "%s: ticks dispatched", name)
		require.Equal(t, uint64(3), m.Ticks, "%s: ticks seen done", name)
	}
}

// countHP counts the live entities whose HP is v.
func countHP(w *world.World, s *schema, v int32) int {
	n := 0
	q := w.Query(world.MaskOf(s.hp))
	for q.Next() {
		col := world.Column[HP](&q, s.hp)
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) && col[i].V == v {
				n++
			}
		}
	}
	return n
}

// TestOversizedEventFailsTheTick: an event payload above
// layout.MaxModuleEventPayload fails the tick in the SDK with a clear error
// (before, the tick succeeded and the engine rejected the event as
// bad_length while applying the rest of the batch).
func TestOversizedEventFailsTheTick(t *testing.T) {
	testutil.RunChild(maxTicksEnv, runLastTickModule)
	r := newRig(t, 10)
	var stderr syncBuf
	c := testutil.StartChild(t, testutil.ChildOptions{Test: "TestOversizedEventFailsTheTick", Stderr: &stderr, Env: []string{
		maxTicksEnv + "=" + module.Fast, "FDP_MODULE=big", "FDP_INSTANCE=" + r.inst, "FDP_MAXTICKS_VALUE=-1"}})
	deadline := time.Now().Add(30 * time.Second)
	var st *os.ProcessState
	for st == nil {
		require.True(t, time.Now().Before(deadline), "the module did not exit")
		r.eng.Step()
		st = c.Wait(time.Millisecond)
	}
	m := r.module("big")
	require.Equal(t, uint64(1), m.Stats.Failures)
	require.Zero(t, m.Stats.Applied, "the batch is dropped whole")
	require.Zero(t, m.Stats.Rejected)
	require.Zero(t, countHP(r.eng.World(), r.s, -1))
	require.Contains(t, stderr.String(), "event payload too large: 4097 bytes, at most 4096")
}
