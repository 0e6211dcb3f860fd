package tests

// Components beyond the 64th (issue 13, caps): module processes of a world
// of 200 components declare Reads of ids in mask words 1 and 3, receive
// exactly those (a slow module's snapshot, a fast module's latest frame),
// read them in place with the SDK, and are refused a component of another
// word that they did not declare.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// wideEnv selects a child of TestModuleReadsComponentsBeyond64 (its role is
// its tier); FDP_MODULE names it.
const wideEnv = "FDP_WIDE_CHILD"

const (
	wideComps    = 200
	wideEntities = 50
	wideC65      = 65  // testutil.WideType(65) = [22]byte, mask word 1
	wideC130     = 130 // [44]uint32, word 2: not declared
	wideC199     = 199 // [67]uint32, word 3
)

// wideReads is what the children declare: components of words 1 and 3.
var wideReads = world.MaskOf(wideC65, wideC199)

// wideSim stamps the frame into entity 0's component 199 at every step, so
// that a module's view can be matched with the frame it shows.
type wideSim struct {
	w     *world.World
	frame uint32
}

func (s *wideSim) Step(float32) {
	s.frame++
	v := world.Ptr[[67]uint32](s.w, world.MakeEntity(0, 1), wideC199)
	v[0] = s.frame
}

type wideProbe struct{ spec module.Spec }

func (p *wideProbe) Spec() module.Spec { return p.spec }

// Tick prints what the view shows: the count of entities with both
// declared components, the sum of component 65's first byte over them,
// entity 0's stamp (component 199), and whether the undeclared component
// 130 was refused.
func (p *wideProbe) Tick(v *module.View, c *module.Commands, dt time.Duration) error {
	n, sum := 0, 0
	q := v.Query(wideReads)
	for q.Next() {
		col := module.Column[[22]byte](v, &q, wideC65)
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) {
				n++
				sum += int(col[i][0])
			}
		}
	}
	stamp, ok := module.Get[[67]uint32](v, world.MakeEntity(0, 1), wideC199)
	readable := v.Readable() == wideReads
	_, got130 := module.Get[[44]uint32](v, world.MakeEntity(0, 1), wideC130)
	fmt.Printf("wide frame=%d count=%d sum=%d stamp=%d/%t readable=%t got130=%t err=%v\n",
		v.Frame(), n, sum, stamp[0], ok, readable, got130, v.Err())
	return nil
}

func wideChild(tier string) int {
	spec := module.Spec{Name: os.Getenv("FDP_MODULE"), Tier: tier, Every: 1, Reads: wideReads}
	if tier == module.Slow {
		spec.Every, spec.Group = 2, "solo"
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := module.Run(context.Background(), &wideProbe{spec: spec},
		module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: testutil.WideRegistry(wideComps), Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "module:", err)
		return 1
	}
	return 0
}

// TestModuleReadsComponentsBeyond64: a fast and a slow module of a
// 200-component world (4-word masks) read components 65 and 199 of every
// frame they are given, with their values of that frame; a read of
// component 130, outside their Reads, is refused and fails the tick, as for
// any component; the slow module's snapshots hold exactly its Reads.
func TestModuleReadsComponentsBeyond64(t *testing.T) {
	testutil.RunChild(wideEnv, wideChild)
	w, err := world.New(testutil.WideRegistry(wideComps), world.Config{ChunkCapacity: 16, MaxChunks: 8})
	require.NoError(t, err)
	want := 0
	for i := 0; i < wideEntities; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, wideC199, [67]uint32{}))
		require.NoError(t, world.Set(w, e, wideC130, [44]uint32{}))
		if i%5 != 4 { // every fifth lacks 65: the query skips it
			require.NoError(t, world.Set(w, e, wideC65, [22]byte{byte(i)}))
			want += i
		}
	}
	inst := fmt.Sprintf("w%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	eng, err := host.New(host.Config{Instance: inst, FastDeadline: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}, w, &wideSim{w: w})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	stamps := map[uint64]uint32{} // frame -> entity 0's stamp in it

	var children []*testutil.Child
	for _, tier := range []string{module.Fast, module.Slow} {
		children = append(children, testutil.StartChild(t, testutil.ChildOptions{Test: "TestModuleReadsComponentsBeyond64",
			Env: []string{wideEnv + "=" + tier, "FDP_MODULE=wide-" + tier, "FDP_INSTANCE=" + inst}}))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		enough := true
		for _, c := range children {
			enough = enough && len(linesWith(c, "wide ")) >= 5
		}
		if enough {
			break
		}
		require.True(t, time.Now().Before(deadline), "timed out; modules %+v", eng.Modules())
		eng.Step()
		v, ok := world.Get[[67]uint32](w, world.MakeEntity(0, 1), wideC199)
		require.True(t, ok)
		stamps[eng.Frame()] = v[0]
	}
	const refused = `err=read refused: component "W130" is not in the module's Reads [W65 W199]`
	for i, c := range children {
		for _, l := range linesWith(c, "wide ") {
			var frame uint64
			var count, sum int
			var stamp uint32
			var ok, readable, got130 bool
			_, err := fmt.Sscanf(l, "wide frame=%d count=%d sum=%d stamp=%d/%t readable=%t got130=%t",
				&frame, &count, &sum, &stamp, &ok, &readable, &got130)
			require.NoError(t, err, l)
			require.Equal(t, wideEntities*4/5, count, l)
			require.Equal(t, want, sum, l)
			require.True(t, ok, l)
			wantStamp, published := stamps[frame]
			require.True(t, published, "frame %d was published by this test: %s", frame, l)
			require.Equal(t, wantStamp, stamp, "entity 0's component 199 of frame %d: %s", frame, l)
			require.True(t, readable, "Readable is the declared Reads: %s", l)
			require.False(t, got130, l)
			require.True(t, strings.HasSuffix(l, refused), "child %d: %s", i, l)
		}
	}
	for _, m := range eng.Modules() {
		require.NotZero(t, m.Stats.Failures, "%s: the refused read fails its ticks", m.Name)
		if m.Tier == module.Slow {
			require.Equal(t, wideReads, m.SnapshotMask, "a snapshot of its Reads alone")
		}
	}
}
