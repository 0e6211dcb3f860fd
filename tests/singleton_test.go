package tests

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

// Weather is the singleton the "setter" module sets through commands.
type Weather struct {
	Seq  uint32  // the setter's tick that set it
	Wind float32 // the frame its view showed
}

// sgSchema is the schema of the singleton tests: a component, a string
// component (up to sgLabelMax bytes), the engine's time and Weather.
type sgSchema struct {
	reg        *world.Registry
	pos, label world.ComponentID
	clock, wtr world.SingletonID
}

// sgLabelMax is the Label's max length; sgLabeled the entities whose Label
// the setter sets.
const (
	sgLabelMax = 16
	sgLabeled  = 10
)

func newSgSchema() *sgSchema {
	s := &sgSchema{reg: world.NewRegistry()}
	s.pos, _ = world.Register[Pos](s.reg, "Pos")
	s.label, _ = world.RegisterBytes(s.reg, "Label", world.BytesSpec{MaxLen: sgLabelMax, PerEntity: 8, UTF8: true})
	s.clock, _ = world.RegisterTime(s.reg)
	s.wtr, _ = world.RegisterSingleton[Weather](s.reg, "Weather")
	return s
}

const sgEnv = "FDP_SINGLETON_CHILD"

// sgProbe is a module of the singleton tests: "setter" sets Weather and
// the Label of one of the first sgLabeled entities every tick (a value of
// 0..sgLabelMax bytes: it grows and shrinks), and once each the engine's
// Time, a Label too long and one not UTF-8 (which the engine must reject),
// and prints its rejections as its own statistics show them; "fast" and
// "slow" print the singletons and the labels their frame holds.
type sgProbe struct {
	s    *sgSchema
	spec module.Spec
	role string
	n    uint32
}

func (p *sgProbe) Spec() module.Spec { return p.spec }

func (p *sgProbe) Tick(v *module.View, c *module.Commands, _ time.Duration) error {
	p.n++
	tm, tok := module.Singleton[world.Time](v)
	wt, wok := module.Singleton[Weather](v)
	switch p.role {
	case "setter":
		module.SetSingleton(c, Weather{Seq: p.n, Wind: float32(v.Frame())})
		e := world.MakeEntity(p.n%sgLabeled, 1)
		n := p.n * 7 % 17 // 0..16 bytes: the labels grow and shrink
		if n == 1 {
			n = 0 // not inside the é
		}
		c.SetString(e, p.s.label, ("é" + strings.Repeat("x", 15))[:n])
		switch p.n {
		case 1:
			module.SetSingleton(c, world.Time{Frame: 1 << 40}) // engine-owned: rejected
		case 2:
			c.SetBytes(e, p.s.label, make([]byte, sgLabelMax+1)) // too_large
		case 3:
			c.SetBytes(e, p.s.label, []byte{'o', 'k', 0xc3}) // bad_utf8
		}
		st, err := v.Stats()
		if err == nil {
			fmt.Printf("stats applied=%d engine_owned=%d too_large=%d bad_utf8=%d\n", st.Applied,
				st.RejectedByReason[world.RejectEngineOwned], st.RejectedByReason[world.RejectTooLarge], st.RejectedByReason[world.RejectBadUTF8])
		}
	default:
		labels := make([]string, sgLabeled)
		for i := range labels {
			if l, ok := module.GetString(v, world.MakeEntity(uint32(i), 1), p.s.label); ok {
				labels[i] = fmt.Sprintf("%x", l) // hex: a label may be empty
			} else {
				labels[i] = "-"
			}
		}
		// The query path reads the same values in place.
		q := v.Query(world.MaskOf(p.s.label))
		for q.Next() {
			col := module.BytesColumn(v, &q, p.s.label)
			for i := 0; i < q.Rows(); i++ {
				if q.Match(i) && fmt.Sprintf("%x", col.String(i)) != labels[q.Entity(i).Index()] {
					return fmt.Errorf("entity %d: the column says %q, GetString %s", i, col.String(i), labels[i])
				}
			}
		}
		fmt.Printf("tick frame=%d time=%t/%d/%d/%d/%g/%d weather=%t/%d/%g labels=%s\n", v.Frame(), tok, tm.Frame, tm.Nanos, tm.Dt, tm.Scale, tm.Paused, wok, wt.Seq, wt.Wind,
			strings.Join(labels, ","))
	}
	return v.Err()
}

func runSgChild(role string) int {
	s := newSgSchema()
	spec := module.Spec{Name: role, Tier: module.Fast, Every: 1}
	if role == "slow" {
		// A filtered snapshot (Pos and Label) holds every singleton too.
		spec = module.Spec{Name: role, Tier: module.Slow, Every: 3, Group: "solo", Reads: world.MaskOf(s.pos, s.label)}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := module.Run(context.Background(), &sgProbe{s: s, spec: spec, role: role},
		module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.reg, Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "module:", err)
		return 1
	}
	return 0
}

// TestSingletonsAcrossProcesses: a module sets a singleton and
// variable-size values through commands and two other module processes read
// them, with the engine's time singleton, from the latest frame (fast) and
// from a snapshot filtered to two components (slow): every value a reader
// sees (a singleton, a string in place through GetString and through a
// query's BytesColumn) is the one the world held when its frame was
// published, the time singleton says the frame and advances by its step
// every frame, and the setter's attempts to set the engine-owned Time, a
// value too long and one not UTF-8 are rejected with the reasons
// engine_owned, too_large and bad_utf8, which the setter itself reads in its
// statistics.
func TestSingletonsAcrossProcesses(t *testing.T) {
	testutil.RunChild(sgEnv, runSgChild)
	s := newSgSchema()
	w, err := world.New(s.reg, world.Config{ChunkCapacity: 64, MaxChunks: 4})
	require.NoError(t, err)
	for i := 0; i < 20; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, s.pos, Pos{X: float32(i)}))
	}
	inst := fmt.Sprintf("sg%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	eng, err := host.New(host.Config{Instance: inst, FastDeadline: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}, w, nil)
	require.NoError(t, err)
	defer eng.Close()

	start := func(role string) *testutil.Child {
		return testutil.StartChild(t, testutil.ChildOptions{Test: "TestSingletonsAcrossProcesses",
			Env: []string{sgEnv + "=" + role, "FDP_INSTANCE=" + inst}})
	}
	setter, fast, slow := start("setter"), start("fast"), start("slow")

	// weatherAt[f] is the Weather the world held when frame f was
	// published: the value before frame f's step (its playback comes
	// after its publish).
	weatherAt := map[uint64]Weather{}
	labelsAt := map[uint64]string{} // the labels as the readers print them
	step := func() {
		wt, _ := world.GetSingleton[Weather](w)
		weatherAt[eng.Frame()+1] = wt
		labels := make([]string, sgLabeled)
		for i := range labels {
			if l, ok := w.GetBytes(world.MakeEntity(uint32(i), 1), s.label); ok {
				labels[i] = fmt.Sprintf("%x", l)
			} else {
				labels[i] = "-"
			}
		}
		labelsAt[eng.Frame()+1] = strings.Join(labels, ",")
		eng.Step()
	}
	rejected := func() bool {
		for _, l := range setter.Lines() {
			if strings.HasSuffix(l, " engine_owned=1 too_large=1 bad_utf8=1") {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(fast.Lines()) < 60 || len(slow.Lines()) < 15 || !rejected() {
		require.True(t, time.Now().Before(deadline), "timed out: %d fast lines, %d slow lines, setter %q",
			len(fast.Lines()), len(slow.Lines()), setter.Lines())
		step()
	}
	for _, m := range eng.Modules() {
		if m.Name == "setter" {
			require.Equal(t, uint64(1), m.PlaybackRejectReasons["engine_owned"], "the engine counts the rejections")
			require.Equal(t, uint64(1), m.PlaybackRejectReasons["too_large"])
			require.Equal(t, uint64(1), m.PlaybackRejectReasons["bad_utf8"])
		}
	}

	dt := int64(time.Second / 60)
	for _, c := range []*testutil.Child{fast, slow} {
		var prev world.Time
		set := 0
		for _, l := range c.Lines() {
			var frame uint64
			var tm world.Time
			var tok, wok bool
			var wt Weather
			var labels string
			_, err := fmt.Sscanf(l, "tick frame=%d time=%t/%d/%d/%d/%g/%d weather=%t/%d/%g labels=%s", &frame, &tok, &tm.Frame, &tm.Nanos, &tm.Dt, &tm.Scale, &tm.Paused, &wok, &wt.Seq, &wt.Wind, &labels)
			require.NoError(t, err, l)
			require.Equal(t, labelsAt[frame], labels, "the labels of frame %d: %s", frame, l)
			// The time singleton: set by the engine for every frame, never
			// by the setter's command.
			require.True(t, tok, l)
			require.Equal(t, world.Time{Frame: frame, Nanos: int64(frame) * dt, Dt: dt, Scale: 1}, tm, l)
			if prev.Frame != 0 {
				require.Equal(t, int64(tm.Frame-prev.Frame)*tm.Dt, tm.Nanos-prev.Nanos, "advances by dt per frame: %s", l)
			}
			prev = tm
			want, ok := weatherAt[frame]
			require.True(t, ok, "frame %d was published by this test: %s", frame, l)
			require.Equal(t, want.Seq != 0, wok, l)
			require.Equal(t, want, wt, "the Weather of frame %d: %s", frame, l)
			if wok {
				set++
			}
		}
		require.NotZero(t, set, "a reader saw the setter's Weather")
		// The setter's labels reached the readers.
		last := c.Lines()[len(c.Lines())-1]
		last = last[strings.Index(last, " labels="):]
		require.NotContains(t, last, "-", "every labeled entity has a label by the end: %s", last)
	}
	t.Logf("fast %d lines, slow %d lines, %d frames; setter: %s", len(fast.Lines()), len(slow.Lines()), eng.Frame(), setter.Lines()[len(setter.Lines())-1])
	// Weather values round-trip: the setter's ticks appear in the readers'
	// frames in order.
	require.NotZero(t, weatherAt[eng.Frame()].Seq)
}
