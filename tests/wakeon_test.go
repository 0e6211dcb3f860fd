package tests

// Issue 19, reactive modules: a slow module with a Spec.WakeOn runs in the
// frame in which one of its event types is published or one of its
// components changes, and not otherwise; a wake while it is busy runs it at
// the first frame it is idle.

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"os"
	"strconv"
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
	wkChildEnv   = "FDP_WK_ROLE"
	wkPing       = 0x0400 // woken on
	wkOther      = 0x0401 // not woken on
	wkReportType = 0x0402
	wkReportSize = 48
	wkHold       = 3 // frames a holding tick lasts
	wkHoldEvery  = 4 // every 4th tick holds
	wkFrames     = 600
)

// wkReport is one tick of a reactive module.
type wkReport struct {
	id, pid                uint32
	view, tick             uint64
	pings, destroyed, lost uint64
}

func (r *wkReport) put(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], r.id)
	binary.LittleEndian.PutUint32(b[4:], r.pid)
	for i, v := range []uint64{r.view, r.tick, r.pings, r.destroyed, r.lost} {
		binary.LittleEndian.PutUint64(b[8+8*i:], v)
	}
}

func decodeWkReport(b []byte) wkReport {
	var r wkReport
	r.id, r.pid = binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint32(b[4:])
	for i, p := range []*uint64{&r.view, &r.tick, &r.pings, &r.destroyed, &r.lost} {
		*p = binary.LittleEndian.Uint64(b[8+8*i:])
	}
	return r
}

// wkModule wakes on wkPing, on destroyed entities and on HP changes; its
// every wkHoldEvery-th tick lasts until the test writes a line to its
// stdin (after the frame wkHold frames later).
type wkModule struct {
	spec  module.Spec
	id    uint32
	ticks uint64
	in    *bufio.Reader
}

func (m *wkModule) Spec() module.Spec { return m.spec }

func (m *wkModule) Tick(v *module.View, c *module.Commands, _ time.Duration) error {
	m.ticks++
	rep := wkReport{id: m.id, pid: uint32(os.Getpid()), view: v.Frame(), tick: m.ticks}
	lost, err := v.Events(func(_, _ uint64, typ uint16, _ []byte) {
		switch world.EventType(typ) {
		case wkPing:
			rep.pings++
		case world.EventDestroyed:
			rep.destroyed++
		}
	})
	if err != nil {
		return err
	}
	rep.lost = lost
	if m.ticks%wkHoldEvery == 0 {
		if _, err := m.in.ReadString('\n'); err != nil {
			return err
		}
	}
	var b [wkReportSize]byte
	rep.put(b[:])
	c.Publish(wkReportType, b[:])
	return nil
}

func wkChild(role string) int {
	s := newSchema()
	every, _ := strconv.Atoi(os.Getenv("FDP_WK_EVERY"))
	id, _ := strconv.Atoi(os.Getenv("FDP_WK_ID"))
	m := &wkModule{id: uint32(id), in: bufio.NewReader(os.Stdin), spec: module.Spec{Name: role, Tier: module.Slow, Every: every, Group: "solo",
		Reads: world.MaskOf(s.pos), WakeOn: module.WakeOn{Events: []world.EventType{wkPing, world.EventDestroyed}, Components: world.MaskOf(s.hp)}}}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := module.Run(context.Background(), m, module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.reg, Logger: log}); err != nil {
		fmt.Fprintln(os.Stderr, "module:", err)
		return 1
	}
	return 0
}

// wkSim moves positions every frame (not woken on), and from its second
// frame to frame wkFrames publishes wkPing and wkOther, sets HP and
// destroys (and replaces) entities, each on random frames.
type wkSim struct {
	s     *schema
	w     *world.World
	rng   *rand.Rand
	frame int
	live  []world.Entity
}

func (sim *wkSim) Step(float32) {
	sim.frame++
	w, s, r := sim.w, sim.s, sim.rng
	q := w.Query(world.MaskOf(s.pos))
	for q.Next() {
		pos := world.ColumnMut[Pos](&q, s.pos)
		for i := range pos {
			pos[i].X++
		}
	}
	if sim.frame < 2 || sim.frame > wkFrames {
		return
	}
	if r.Intn(12) == 0 {
		w.Emit(wkPing, []byte{1})
	}
	if r.Intn(5) == 0 {
		w.Emit(wkOther, []byte{2})
	}
	if r.Intn(16) == 0 {
		_ = world.Set(w, sim.live[r.Intn(len(sim.live))], s.hp, HP{V: int32(sim.frame)})
	}
	if r.Intn(25) == 0 {
		i := r.Intn(len(sim.live))
		_ = w.Destroy(sim.live[i])
		e, _ := w.Create()
		_ = world.Set(w, e, s.pos, Pos{})
		sim.live[i] = e
	}
}

// TestWakeOnRunsInItsFrame: two slow modules wake on an event type, on
// destroyed entities (a lifecycle type: waking on it subscribes them) and
// on HP changes; one has Every 0 (only when woken), the other Every 7. The
// simulation publishes that type, another type, changes HP and positions
// and destroys entities on random frames for 600 frames; every fourth tick
// of each module lasts three frames. The frames each module ran in are
// exactly those of a model fed with what the test reads from the log (the
// event types of each frame) and from the published frames (a chunk
// version of HP that moved since the previous frame): the frame of each
// wake, or the first frame it is idle after it, and the periodic one's
// period (a wake not moving it); never a frame with only another event
// type or a position change. Each gets every wake event and destroyed
// event once, in View.Events.
func TestWakeOnRunsInItsFrame(t *testing.T) {
	testutil.RunChild(wkChildEnv, wkChild)
	r := newRigConfig(t, 200, func(c *host.Config) { c.EventLogBytes = 4 << 20 })
	w := r.eng.World()
	sim := &wkSim{s: r.s, w: w, rng: rand.New(rand.NewSource(7))}
	q := w.Query(world.MaskOf(r.s.pos))
	for q.Next() {
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) {
				sim.live = append(sim.live, q.Entity(i))
			}
		}
	}
	r.eng.SetSimulation(sim)
	evSeg, err := shm.Open(shm.SegmentName(r.inst, "events"), false)
	require.NoError(t, err)
	t.Cleanup(func() { evSeg.Close() })
	reader, err := ipc.NewEventReader(evSeg.Data)
	require.NoError(t, err)
	fr, err := fsync.Attach(r.inst, fsync.AttachOptions{Name: "wktest"})
	require.NoError(t, err)
	t.Cleanup(func() { fr.Close() })

	type wkMod struct {
		name             string
		every            int
		id               uint32
		pid              int
		next, busyUntil  uint64 // the model
		pending          bool
		tick             uint64
		holdUntil        uint64 // the engine's side: a holding tick ends after this frame
		in               io.Writer
		seg              *shm.Segment // its module segment: its done frame
		runs             []uint64
		want             []uint64
		reports          []wkReport
		pings, destroyed uint64
	}
	mods := []*wkMod{{name: "react", every: 0, id: 1}, {name: "periodic", every: 7, id: 2}}
	for _, m := range mods {
		_, in, cmd := r.spawnChild("TestWakeOnRunsInItsFrame", wkChildEnv, m.name, m.name,
			"FDP_WK_EVERY="+strconv.Itoa(m.every), "FDP_WK_ID="+strconv.Itoa(int(m.id)))
		m.pid, m.in = cmd.Process.Pid, in
	}
	info := func(m *wkMod) host.ModuleInfo {
		for _, mi := range r.eng.Modules() {
			if mi.Name == m.name && mi.PID == m.pid {
				return mi
			}
		}
		return host.ModuleInfo{}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, m := range mods {
		for info(m).Name == "" {
			require.True(t, time.Now().Before(deadline), "%s did not join", m.name)
			time.Sleep(time.Millisecond) // polling the module table: no frame before both joined
		}
		m.seg, err = shm.Open(layout.ModuleSegmentName(r.inst, info(m).Slot), false)
		require.NoError(t, err)
		t.Cleanup(func() { m.seg.Close() })
	}

	var cur ipc.EventCursor
	var totalPings, totalDestroyed uint64
	prevHP := map[int]uint64{}
	for f := uint64(1); f <= wkFrames+20; f++ {
		st := r.eng.Step()
		require.NoError(t, st.PublishErr)
		require.Equal(t, f, st.Frame)
		// What wakes a module in frame f: the log's events of frame f, and
		// HP chunk versions that moved since frame f-1.
		woken := false
		_, err := reader.Read(&cur, func(_, frame uint64, typ uint16, p []byte) {
			switch world.EventType(typ) {
			case wkPing:
				totalPings++
			case world.EventDestroyed:
				totalDestroyed++
			case wkReportType:
				rep := decodeWkReport(p)
				mods[rep.id-1].reports = append(mods[rep.id-1].reports, rep)
				return
			default:
				return
			}
			require.Equal(t, f, frame)
			woken = true
		})
		require.NoError(t, err)
		fm, err := fr.Pin()
		require.NoError(t, err)
		require.Equal(t, f, fm.Number())
		for c := 0; c < fm.Chunks(); c++ {
			v := fm.ChunkVersion(c, r.s.hp)
			if old, ok := prevHP[c]; f > 1 && (!ok || old != v) && v != 0 {
				woken = true
			}
			prevHP[c] = v
		}
		require.NoError(t, fm.Release())

		for _, m := range mods {
			// The model's dispatch of frame f.
			m.pending = m.pending || woken
			due := f >= m.next
			run := (due || m.pending) && f > m.busyUntil
			if run {
				m.tick++
				m.want = append(m.want, f)
				if due {
					m.next = math.MaxUint64
					if m.every > 0 {
						m.next = f + uint64(m.every)
					}
				}
				m.pending = false
				m.busyUntil = f
				if m.tick%wkHoldEvery == 0 {
					m.busyUntil = f + wkHold
				}
			}
			// What the engine did.
			mi := info(m)
			if ran := mi.Stats.Runs > uint64(len(m.runs)); ran {
				require.Equal(t, uint64(len(m.runs)+1), mi.Stats.Runs, "%s: one tick per frame at most", m.name)
				m.runs = append(m.runs, f)
				if mi.Stats.Runs%wkHoldEvery == 0 {
					m.holdUntil = f + wkHold
				}
			}
			require.Equal(t, m.want, m.runs, "%s: the frames it ran in, up to frame %d", m.name, f)
		}
		// A tick that does not hold is done before the next frame, and a
		// holding one is let go after the frame its hold ends with.
		for _, m := range mods {
			if m.holdUntil > f {
				continue
			}
			if m.holdUntil == f {
				_, err := io.WriteString(m.in, "go\n")
				require.NoError(t, err)
			}
			if len(m.runs) == 0 {
				continue
			}
			deadline := time.Now().Add(10 * time.Second)
			for last := m.runs[len(m.runs)-1]; layout.Load64(m.seg.Data, layout.OffMDoneFrame)&^layout.DoneFailed < last; {
				require.True(t, time.Now().Before(deadline), "%s did not finish its tick of frame %d", m.name, last)
				time.Sleep(100 * time.Microsecond) // polling its done word, bounded by the deadline
			}
		}
	}
	for range 3 {
		r.eng.Step()
		_, err := reader.Read(&cur, func(_, _ uint64, typ uint16, p []byte) {
			if typ == wkReportType {
				rep := decodeWkReport(p)
				mods[rep.id-1].reports = append(mods[rep.id-1].reports, rep)
			}
		})
		require.NoError(t, err)
	}
	for _, m := range mods {
		require.Len(t, m.reports, len(m.runs), "%s: a report per tick", m.name)
		for i, rep := range m.reports {
			require.Equal(t, m.runs[i], rep.view, "%s: tick %d's view is the frame it was dispatched in", m.name, i+1)
			require.Zero(t, rep.lost)
			m.pings += rep.pings
			m.destroyed += rep.destroyed
		}
		require.Equal(t, totalPings, m.pings, "%s: every wake event, once", m.name)
		require.Equal(t, totalDestroyed, m.destroyed, "%s: every destroyed event, once", m.name)
		mi := info(m)
		t.Logf("%s: %d runs in %d frames, %d with a wake, %d frames busy when due or woken", m.name, len(m.runs), wkFrames+20, mi.Stats.Wakes, mi.Stats.Skipped)
		require.Positive(t, mi.Stats.Skipped, "%s: wakes came while it was busy", m.name)
	}
	require.Positive(t, totalPings)
	require.Positive(t, totalDestroyed)
	require.Less(t, len(mods[0].runs), wkFrames/2, "react runs only when woken")
}
