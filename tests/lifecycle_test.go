package tests

// Issue 19, lifecycle events: every structural change of the world,
// whoever makes it (the simulation, a module's commands), is observed
// exactly once by a subscribed module, across SIGKILLs and restarts of its
// process, and not at all by a module that did not subscribe.

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
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
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

const (
	lcChildEnv   = "FDP_LC_ROLE"
	lcReportType = 0x0300 // a module's report of a tick (lcReport), in the tick's batch
	lcReportSize = 64
	lcSimFrames  = 1000
)

// lcReport is one committed tick of a module, as it published it.
type lcReport struct {
	id, pid  uint32
	view     uint64 // the frame its view showed
	calls    uint64 // observer calls in the tick
	digest   uint64 // of the calls: fnv64a over (kind, entity, component) each
	lcEvents uint64 // lifecycle events View.Events delivered
	foreign  uint64 // of those, events of kinds or components it did not subscribe to
	events   uint64 // every event View.Events delivered
}

func (r *lcReport) put(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], r.id)
	binary.LittleEndian.PutUint32(b[4:], r.pid)
	for i, v := range []uint64{r.view, r.calls, r.digest, r.lcEvents, r.foreign, r.events} {
		binary.LittleEndian.PutUint64(b[8+8*i:], v)
	}
}

func decodeLcReport(b []byte) lcReport {
	var r lcReport
	r.id, r.pid = binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint32(b[4:])
	for i, p := range []*uint64{&r.view, &r.calls, &r.digest, &r.lcEvents, &r.foreign, &r.events} {
		*p = binary.LittleEndian.Uint64(b[8+8*i:])
	}
	return r
}

// lcDigest accumulates lifecycle events as (kind, entity, component).
type lcDigest struct {
	h interface {
		Write([]byte) (int, error)
		Sum64() uint64
	}
	n uint64
}

func newLcDigest() *lcDigest { return &lcDigest{h: fnv.New64a()} }

func (d *lcDigest) add(k layout.LifecycleKind, e world.Entity, c world.ComponentID) {
	var b [11]byte
	b[0] = byte(k)
	binary.LittleEndian.PutUint64(b[1:], uint64(e))
	binary.LittleEndian.PutUint16(b[9:], uint16(c))
	_, _ = d.h.Write(b[:])
	d.n++
}

// lcModule observes lifecycle events (all of them, or the removals of HP
// only, or none) and reports each tick; with hold > 0, its hold-th tick
// whose observers got events prints HELD and never ends (the test kills it
// there, between its observers and its commit).
type lcModule struct {
	s    *schema
	spec module.Spec
	id   uint32
	role string
	hold uint64
	got  uint64 // ticks whose observers got events
	d    *lcDigest
}

func (m *lcModule) Spec() module.Spec { return m.spec }

func (m *lcModule) Observe(o *module.Observers) {
	on := func(k layout.LifecycleKind, c world.ComponentID) func(world.Entity) {
		return func(e world.Entity) { m.d.add(k, e, c) }
	}
	switch m.role {
	case "obs-all":
		o.OnCreated(on(layout.LifecycleCreated, 0))
		o.OnDestroyed(on(layout.LifecycleDestroyed, 0))
		for _, c := range []world.ComponentID{m.s.pos, m.s.hp} {
			o.OnAdded(c, on(layout.LifecycleAdded, c))
			o.OnRemoved(c, on(layout.LifecycleRemoved, c))
		}
	case "obs-hp":
		o.OnRemoved(m.s.hp, on(layout.LifecycleRemoved, m.s.hp))
	}
}

// wants is the module's subscription.
func (m *lcModule) wants(k layout.LifecycleKind, c world.ComponentID) bool {
	switch m.role {
	case "obs-all":
		return true
	case "obs-hp":
		return k == layout.LifecycleRemoved && c == m.s.hp
	}
	return false
}

func (m *lcModule) Tick(v *module.View, c *module.Commands, _ time.Duration) error {
	rep := lcReport{id: m.id, pid: uint32(os.Getpid()), view: v.Frame(), calls: m.d.n, digest: m.d.h.Sum64()}
	m.d = newLcDigest() // the next tick's observers start afresh
	_, err := v.Events(func(_, _ uint64, typ uint16, p []byte) {
		rep.events++
		if k, _, comp, err := layout.DecodeLifecycle(typ, p); err == nil {
			rep.lcEvents++
			if !m.wants(k, world.ComponentID(comp)) {
				rep.foreign++
			}
		}
	})
	if err != nil {
		return err
	}
	if rep.calls > 0 {
		m.got++
	}
	if m.hold > 0 && m.got == m.hold {
		fmt.Printf("HELD %d\n", os.Getpid())
		select {} // killed here, before the commit
	}
	var b [lcReportSize]byte
	rep.put(b[:])
	c.Publish(lcReportType, b[:])
	return nil
}

// lcCommander changes the world's structure through commands: creates
// (with Pos, some with HP), destroys, adds and removes of components.
type lcCommander struct {
	s   *schema
	rng *rand.Rand
}

func (m *lcCommander) Spec() module.Spec {
	return module.Spec{Name: "cmd", Tier: module.Fast, Every: 2, Reads: world.MaskOf(m.s.pos, m.s.hp)}
}

func (m *lcCommander) Tick(v *module.View, c *module.Commands, _ time.Duration) error {
	var seen []world.Entity
	var has []bool
	q := v.Query(world.MaskOf(m.s.pos))
	for q.Next() {
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) {
				e := q.Entity(i)
				_, hp := module.Get[HP](v, e, m.s.hp)
				seen, has = append(seen, e), append(has, hp)
			}
		}
	}
	for range m.rng.Intn(3) {
		e := c.Create()
		module.Set(c, e, m.s.pos, Pos{X: 1})
		if m.rng.Intn(2) == 0 {
			module.Set(c, e, m.s.hp, HP{V: 5})
		}
		if m.rng.Intn(6) == 0 {
			c.Destroy(e) // created and destroyed in one batch
		}
	}
	if len(seen) == 0 {
		return nil
	}
	for range m.rng.Intn(3) {
		i := m.rng.Intn(len(seen))
		switch m.rng.Intn(4) {
		case 0:
			c.Destroy(seen[i])
		case 1:
			if has[i] {
				c.Remove(seen[i], m.s.hp)
			} else {
				c.Add(seen[i], m.s.hp)
			}
		case 2:
			module.Set(c, seen[i], m.s.hp, HP{V: 9}) // adds it when absent
		default:
			c.Remove(seen[i], m.s.pos)
		}
	}
	return nil
}

func lcChild(role string) int {
	s := newSchema()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var m module.Module
	id, _ := strconv.Atoi(os.Getenv("FDP_LC_ID"))
	hold, _ := strconv.ParseUint(os.Getenv("FDP_LC_HOLD"), 10, 64)
	switch role {
	case "cmd":
		m = &lcCommander{s: s, rng: rand.New(rand.NewSource(int64(os.Getpid())))}
	case "obs-all":
		m = &lcModule{s: s, id: uint32(id), role: role, hold: hold, d: newLcDigest(),
			spec: module.Spec{Name: role, Tier: module.Slow, Every: 3, Group: "solo", Reads: world.MaskOf(s.pos)}}
	default: // obs-hp, none
		m = &lcModule{s: s, id: uint32(id), role: role, hold: hold, d: newLcDigest(),
			spec: module.Spec{Name: role, Tier: module.Fast, Every: 1, Reads: world.MaskOf(s.pos)}}
	}
	err := module.Run(context.Background(), m, module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.reg, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "module:", err)
		return 1
	}
	return 0
}

// lcSim churns the world while on: creates (some with HP), destroys
// (its own entities and the modules', found by queries), adds and removes
// HP and Pos, and creates and destroys within one frame.
type lcSim struct {
	s   *schema
	w   *world.World
	rng *rand.Rand
	on  bool
}

func (sim *lcSim) Step(float32) {
	if !sim.on {
		return
	}
	w, s, r := sim.w, sim.s, sim.rng
	var live []world.Entity
	for _, m := range []world.Mask{world.MaskOf(s.pos), world.MaskOf(s.hp)} {
		q := w.Query(m)
		for q.Next() {
			for i := 0; i < q.Rows(); i++ {
				if q.Match(i) {
					live = append(live, q.Entity(i))
				}
			}
		}
	}
	for range r.Intn(4) {
		if len(live) > 0 {
			_ = w.Destroy(live[r.Intn(len(live))]) // may be destroyed already: stale
		}
	}
	for range r.Intn(4) {
		e, err := w.Create()
		if err != nil {
			break
		}
		_ = world.Set(w, e, s.pos, Pos{X: 2})
		if r.Intn(2) == 0 {
			_ = world.Set(w, e, s.hp, HP{V: 1})
		}
		if r.Intn(5) == 0 {
			_ = w.Destroy(e) // within the frame: its index is free again at once
		}
	}
	for range r.Intn(4) {
		if len(live) == 0 {
			break
		}
		e := live[r.Intn(len(live))]
		switch r.Intn(3) {
		case 0:
			_ = w.Remove(e, s.hp)
		case 1:
			_ = world.Set(w, e, s.hp, HP{V: 3})
		default:
			if w.Remove(e, s.pos) == nil && r.Intn(2) == 0 {
				_ = world.Set(w, e, s.pos, Pos{}) // back in the same frame
			}
		}
	}
	if r.Intn(3) == 0 {
		if e, err := w.Create(); err == nil {
			_ = world.Set(w, e, s.hp, HP{}) // an entity without Pos
		}
	}
}

// lcEntity is the model's record of an entity index.
type lcEntity struct {
	gen   uint32
	alive bool
	mask  world.Mask
}

// lcModel is the world's structure as the lifecycle events describe it,
// applied frame by frame and compared with each published frame.
type lcModel struct {
	t    *testing.T
	ents []lcEntity
}

// apply applies one lifecycle event; an event that cannot follow the
// model's state (a create of a live index, an add of a present component,
// a destroy of an entity that still has components, a stale generation)
// fails the test.
func (m *lcModel) apply(seq uint64, k layout.LifecycleKind, e world.Entity, c world.ComponentID) {
	i := int(e.Index())
	for len(m.ents) <= i {
		m.ents = append(m.ents, lcEntity{gen: 1})
	}
	en := &m.ents[i]
	where := fmt.Sprintf("event %d: %s %v component %d, model %+v", seq, k, e, c, *en)
	if k == layout.LifecycleCreated {
		require.False(m.t, en.alive, where)
		require.Equal(m.t, en.gen, e.Gen(), where)
		en.alive = true
		return
	}
	require.True(m.t, en.alive, where)
	require.Equal(m.t, en.gen, e.Gen(), where)
	switch k {
	case layout.LifecycleDestroyed:
		require.True(m.t, en.mask.Empty(), "%s: its components are removed first", where)
		en.alive, en.gen = false, en.gen+1
		if en.gen == 0 {
			en.gen = 1
		}
	case layout.LifecycleAdded:
		require.False(m.t, en.mask.Has(c), where)
		en.mask = en.mask.With(c)
	case layout.LifecycleRemoved:
		require.True(m.t, en.mask.Has(c), where)
		en.mask = en.mask.Without(c)
	}
}

// load sets the model to frame f; check compares it with f.
func (m *lcModel) load(f *fsync.Frame)  { m.compare(f, true) }
func (m *lcModel) check(f *fsync.Frame) { m.compare(f, false) }

func (m *lcModel) compare(f *fsync.Frame, load bool) {
	k := f.Info().Entities
	capacity := uint32(64)
	if load {
		m.ents = make([]lcEntity, k)
	}
	for i := uint32(0); i < max(k, uint32(len(m.ents))); i++ {
		rec := f.Record(int(i/capacity), int(i%capacity))
		got := lcEntity{gen: max(rec.Gen, 1), alive: rec.Flags&layout.FlagAlive != 0, mask: world.Mask(rec.Mask)}
		if i >= k {
			got = lcEntity{gen: 1}
		}
		if load {
			m.ents[i] = got
			continue
		}
		want := lcEntity{gen: 1} // an index never used
		if int(i) < len(m.ents) {
			want = m.ents[i]
		}
		require.Equal(m.t, want, got, "frame %d: entity index %d (published %+v)", f.Number(), i, rec)
	}
}

// TestLifecycleObservedExactlyOnce: a simulation churns the world for 1,000
// frames (creates, destroys, adds and removes, some undone in the same
// frame) while a module's commands do the same. The lifecycle events the
// log holds for each frame take the model from the previous published
// frame exactly to the frame published (every alive flag, generation and
// component bit of every entity index): none missing, none extra, each in
// an order that can happen. A slow module observing everything, SIGKILLed
// twice (once in the middle of a tick after its observers ran) and
// restarted, and a fast one observing the removals of HP, SIGKILLed once,
// report every committed tick: its observer calls are exactly the log's
// events of its subscription in the frames since its previous committed
// tick up to its view, in order; a module that subscribed to nothing gets
// none of them from View.Events. Before anyone subscribed, the churn
// produced no lifecycle event at all.
func TestLifecycleObservedExactlyOnce(t *testing.T) {
	testutil.RunChild(lcChildEnv, lcChild)
	r := newRigConfig(t, 300, func(c *host.Config) {
		c.EventLogBytes = 16 << 20 // the test's own reader must never be lapped
		c.MaxEventBytesPerModule = -1
	})
	sim := &lcSim{s: r.s, w: r.eng.World(), rng: rand.New(rand.NewSource(19))}
	r.eng.SetSimulation(sim)

	evSeg, err := shm.Open(shm.SegmentName(r.inst, "events"), false)
	require.NoError(t, err)
	t.Cleanup(func() { evSeg.Close() })
	reader, err := ipc.NewEventReader(evSeg.Data)
	require.NoError(t, err)
	fr, err := fsync.Attach(r.inst, fsync.AttachOptions{Name: "lctest"})
	require.NoError(t, err)
	t.Cleanup(func() { fr.Close() })

	type lcLogged struct {
		frame uint64
		kind  layout.LifecycleKind
		e     world.Entity
		c     world.ComponentID
	}
	var cur ipc.EventCursor
	var logged []lcLogged // the lifecycle events of the log, in order
	reports := map[uint32][]lcReport{}
	model := &lcModel{t: t}
	checking := false
	var lastFrameChecked uint64
	var nextEv int // the first event of logged not applied to the model
	step := func() {
		st := r.eng.Step()
		require.NoError(t, st.PublishErr)
		_, err := reader.Read(&cur, func(seq, frame uint64, typ uint16, p []byte) {
			if typ == lcReportType {
				rep := decodeLcReport(p)
				reports[rep.id] = append(reports[rep.id], rep)
				return
			}
			if k, e, c, err := layout.DecodeLifecycle(typ, p); err == nil {
				logged = append(logged, lcLogged{frame, k, world.Entity(e), world.ComponentID(c)})
			}
			require.LessOrEqual(t, frame, st.Frame, "an event of a frame not published yet")
		})
		require.NoError(t, err)
		f, err := fr.Pin()
		require.NoError(t, err)
		require.Equal(t, st.Frame, f.Number())
		if checking {
			// The events of frame N take published frame N-1 to frame N.
			for ; nextEv < len(logged) && logged[nextEv].frame <= f.Number(); nextEv++ {
				ev := logged[nextEv]
				require.Greater(t, ev.frame, lastFrameChecked)
				model.apply(uint64(nextEv), ev.kind, ev.e, ev.c)
			}
			model.check(f)
			lastFrameChecked = f.Number()
		}
		require.NoError(t, f.Release())
	}

	procs := map[string]*exec.Cmd{}
	lines := map[string]<-chan string{}
	ids := map[string]uint32{"obs-all": 1, "obs-hp": 2, "none": 3, "cmd": 4}
	spawn := func(role string, hold uint64) {
		lines[role], _, procs[role] = r.spawnChild("TestLifecycleObservedExactlyOnce", lcChildEnv, role, role,
			"FDP_LC_ID="+strconv.Itoa(int(ids[role])), "FDP_LC_HOLD="+strconv.FormatUint(hold, 10))
	}
	joinedAs := func(role string) {
		pid := procs[role].Process.Pid
		deadline := time.Now().Add(20 * time.Second)
		for {
			for _, mi := range r.eng.Modules() {
				if mi.Name == role && mi.PID == pid && mi.State != host.StateDead {
					return
				}
			}
			require.True(t, time.Now().Before(deadline), "%s (pid %d) did not join", role, pid)
			step()
		}
	}
	kill := func(role string) {
		require.NoError(t, procs[role].Process.Kill()) // SIGKILL
		_ = procs[role].Wait()
		r.eng.ModuleDied(procs[role].Process.Pid)
	}
	// isHeld: obs-all printed HELD (it holds its tick until killed).
	isHeld := false
	pollHeld := func() bool {
		for !isHeld {
			select {
			case l, ok := <-lines["obs-all"]:
				if !ok {
					return false
				}
				isHeld = strings.HasPrefix(l, "HELD ")
			default:
				return false
			}
		}
		return true
	}
	waitIdle := func() {
		deadline := time.Now().Add(10 * time.Second)
		for !r.eng.Idle() && !pollHeld() {
			require.True(t, time.Now().Before(deadline), "modules did not finish their ticks")
			time.Sleep(100 * time.Microsecond) // polling, bounded by the deadline
		}
	}

	// Nobody subscribed: churn (the simulation's and the commander's)
	// generates no lifecycle event.
	spawn("none", 0)
	spawn("cmd", 0)
	joinedAs("none")
	joinedAs("cmd")
	sim.on = true
	for range 30 {
		step()
	}
	require.Empty(t, logged, "lifecycle events generated with no subscriber")
	require.Positive(t, r.module("cmd").Stats.Applied)

	spawn("obs-all", 40)
	spawn("obs-hp", 0)
	joinedAs("obs-all")
	joinedAs("obs-hp")
	// From here every kind is generated: the model starts at the frame
	// published now.
	step()
	f, err := fr.Pin()
	require.NoError(t, err)
	model.load(f)
	lastFrameChecked = f.Number()
	require.NoError(t, f.Release())
	for nextEv < len(logged) && logged[nextEv].frame <= lastFrameChecked {
		nextEv++
	}
	checking = true
	start := r.eng.Frame()

	heldDone := false
	for r.eng.Frame() < start+lcSimFrames {
		switch r.eng.Frame() - start {
		case 450:
			kill("obs-all") // at whatever point it is
			for range 30 {
				step() // its events are generated while it is dead
			}
			spawn("obs-all", 0)
			joinedAs("obs-all")
		case 600:
			kill("cmd")
			spawn("cmd", 0)
			joinedAs("cmd")
		case 700:
			kill("obs-hp")
			spawn("obs-hp", 0)
			joinedAs("obs-hp")
		}
		step()
		if !heldDone && pollHeld() {
			// Its observers got events of this tick; it is killed before
			// its commit: the next process gets them again.
			heldDone, isHeld = true, false
			kill("obs-all")
			for range 10 {
				step()
			}
			spawn("obs-all", 0)
			joinedAs("obs-all")
		}
		if r.eng.Frame()%8 == 0 {
			waitIdle() // keeps the slow observer within a few frames
		}
	}
	require.True(t, heldDone, "obs-all never held a tick")
	sim.on = false
	kill("cmd")
	end := r.eng.Frame()
	// Every observer gets to the end.
	deadline := time.Now().Add(30 * time.Second)
	for _, role := range []string{"obs-all", "obs-hp", "none"} {
		id := ids[role]
		for n := len(reports[id]); n == 0 || reports[id][n-1].view <= end; n = len(reports[id]) {
			require.True(t, time.Now().Before(deadline), "%s reported up to frame %d of %d", role, reports[id][n-1].view, end)
			step()
		}
	}
	for _, role := range []string{"obs-all", "obs-hp", "none"} {
		kill(role)
	}
	for range 3 {
		step()
	}

	sub := map[string]func(ev lcLogged) bool{
		"obs-all": func(lcLogged) bool { return true },
		"obs-hp":  func(ev lcLogged) bool { return ev.kind == layout.LifecycleRemoved && ev.c == r.s.hp },
	}
	kinds := map[layout.LifecycleKind]int{}
	for _, ev := range logged {
		kinds[ev.kind]++
	}
	for k := range layout.NumLifecycleKinds {
		require.Greater(t, kinds[k], 100, "%s events in the log", k)
	}
	for _, role := range []string{"obs-all", "obs-hp"} {
		nproc := map[string]int{"obs-all": 3, "obs-hp": 2}[role]
		reps := reports[ids[role]]
		require.Greater(t, len(reps), 10, role)
		pids := map[uint32]bool{}
		observed := 0
		for i := 1; i < len(reps); i++ {
			prev, rep := reps[i-1], reps[i]
			pids[rep.pid] = true
			require.Greater(t, rep.view, prev.view, "%s: views of committed ticks", role)
			want := newLcDigest()
			for _, ev := range logged {
				if ev.frame > prev.view && ev.frame <= rep.view && sub[role](ev) {
					want.add(ev.kind, ev.e, ev.c)
				}
			}
			require.Equal(t, want.n, rep.calls, "%s (pid %d): observer calls for frames %d..%d", role, rep.pid, prev.view+1, rep.view)
			require.Equal(t, want.h.Sum64(), rep.digest, "%s (pid %d): the observed events for frames %d..%d", role, rep.pid, prev.view+1, rep.view)
			require.Equal(t, rep.calls, rep.lcEvents, "%s: View.Events delivers the events its observers got", role)
			require.Zero(t, rep.foreign, "%s: lifecycle events it did not subscribe to", role)
			observed += int(rep.calls)
		}
		t.Logf("%s: %d committed ticks by %d processes observed %d events", role, len(reps), len(pids), observed)
		require.Len(t, pids, nproc, "%s: processes that committed ticks after the first", role)
	}
	require.Equal(t, kinds[layout.LifecycleCreated]+kinds[layout.LifecycleDestroyed]+kinds[layout.LifecycleAdded]+kinds[layout.LifecycleRemoved],
		len(logged))
	var noneEvents uint64
	for _, rep := range reports[ids["none"]] {
		require.Zero(t, rep.lcEvents, "a module that subscribed to nothing got a lifecycle event")
		require.Zero(t, rep.calls)
		noneEvents += rep.events
	}
	require.Positive(t, noneEvents, "the unsubscribed module read the other events")
	t.Logf("%d lifecycle events in %d frames: %v", len(logged), end-start, kinds)
}
