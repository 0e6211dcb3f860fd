package tests

// Issue 12, "events from the future": the events a tick gets are exactly
// those of the frames up to the one its view shows, since the module's
// previous successful tick, each once, across SIGKILLs and restarts of the
// module's process; loss only where an overrun says so.

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

const (
	evChildEnv = "FDP_EVENTS_ROLE"
	// evSimType is the simulation's event (payload: u64 sim frame index,
	// u64 event index, padding to evSimSize); evReportType a module's
	// report of what its tick got (evReport), published in the tick's
	// batch, so that it is in the log exactly when the tick's
	// acknowledgement was played back.
	evSimType    = 0x0100
	evReportType = 0x0200
	evSimSize    = 200
	evReportSize = 64
	evSimFrames  = 1000
	evPerFrame   = 4
)

// evReport is one successful tick of a module, as it published it.
type evReport struct {
	id, pid     uint32
	view        uint64 // the frame its view showed
	first, last uint64 // sequence numbers of the events it got (n > 0)
	n, overrun  uint64
	maxFrame    uint64 // the latest frame among them
}

func (r *evReport) put(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], r.id)
	binary.LittleEndian.PutUint32(b[4:], r.pid)
	for i, v := range []uint64{r.view, r.first, r.last, r.n, r.overrun, r.maxFrame} {
		binary.LittleEndian.PutUint64(b[8+8*i:], v)
	}
}

func decodeEvReport(b []byte) evReport {
	var r evReport
	r.id, r.pid = binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint32(b[4:])
	for i, p := range []*uint64{&r.view, &r.first, &r.last, &r.n, &r.overrun, &r.maxFrame} {
		*p = binary.LittleEndian.Uint64(b[8+8*i:])
	}
	return r
}

// evModule reads its events every tick and reports them. With hold > 0,
// the tick that gets the simulation's event of frame index >= hold prints
// "HELD <first> <last>" and never ends (the test kills it there: between
// its reads and its commit).
type evModule struct {
	spec module.Spec
	id   uint32
	hold uint64
	work time.Duration
	// failEvery > 0: every failEvery-th tick that got events fails after
	// its reads (and its report): its events go to the next tick.
	failEvery, got int
}

func (m *evModule) Spec() module.Spec { return m.spec }

func (m *evModule) Tick(v *module.View, c *module.Commands, _ time.Duration) error {
	rep := evReport{id: m.id, pid: uint32(os.Getpid()), view: v.Frame()}
	if m.work > 0 {
		// Work before the reads: the engine goes on meanwhile, so that the
		// log holds events of frames after this view's when they are read.
		time.Sleep(m.work)
	}
	maxSim := uint64(0)
	var bad error
	ov, err := v.Events(func(seq, frame uint64, typ uint16, p []byte) {
		if rep.n > 0 && seq != rep.last+1 && bad == nil {
			bad = fmt.Errorf("seq %d after %d in one tick", seq, rep.last)
		}
		if rep.n == 0 {
			rep.first = seq
		}
		rep.last, rep.n, rep.maxFrame = seq, rep.n+1, max(rep.maxFrame, frame)
		if typ == evSimType {
			maxSim = max(maxSim, binary.LittleEndian.Uint64(p))
		}
	})
	if err != nil {
		return err
	}
	if bad != nil {
		return bad
	}
	rep.overrun = ov
	if m.hold > 0 && maxSim >= m.hold {
		fmt.Printf("HELD %d %d %d\n", rep.first, rep.last, os.Getpid())
		select {} // killed here, before the commit
	}
	if rep.n == 0 && ov == 0 {
		return nil
	}
	var b [evReportSize]byte
	rep.put(b[:])
	c.Publish(evReportType, b[:])
	if m.got++; m.failEvery > 0 && m.got%m.failEvery == 0 {
		return fmt.Errorf("tick %d fails on purpose", m.got)
	}
	if m.work > 0 {
		time.Sleep(m.work) // the tick's work: a kill may land here, after the reads
	}
	return nil
}

func evChild(string) int {
	s := newSchema()
	id, _ := strconv.Atoi(os.Getenv("FDP_EV_ID"))
	every, _ := strconv.Atoi(os.Getenv("FDP_EV_EVERY"))
	hold, _ := strconv.ParseUint(os.Getenv("FDP_EV_HOLD"), 10, 64)
	failEvery, _ := strconv.Atoi(os.Getenv("FDP_EV_FAIL"))
	m := &evModule{id: uint32(id), hold: hold, failEvery: failEvery, spec: module.Spec{
		Name: os.Getenv("FDP_MODULE"), Tier: os.Getenv("FDP_EV_TIER"), Every: every, Group: os.Getenv("FDP_EV_GROUP"),
	}}
	if m.spec.Tier == module.Slow {
		m.work = 500 * time.Microsecond
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := module.Run(context.Background(), m, module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.reg, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "module:", err)
		return 1
	}
	return 0
}

// evSim emits evPerFrame events of evSimSize bytes per frame while on, for
// evSimFrames frames.
type evSim struct {
	w      *world.World
	on     bool
	frames uint64 // frames emitted
	events uint64 // events emitted
}

func (s *evSim) Step(float32) {
	if !s.on || s.frames >= evSimFrames {
		return
	}
	s.frames++
	var p [evSimSize]byte
	for range evPerFrame {
		s.events++
		binary.LittleEndian.PutUint64(p[0:], s.frames)
		binary.LittleEndian.PutUint64(p[8:], s.events)
		s.w.Emit(evSimType, p[:])
	}
}

// evLogged is an event of the log as the test read it.
type evLogged struct {
	frame uint64
	typ   uint16
}

// evModSpec describes one of the four modules.
type evModSpec struct {
	name, tier, group string
	every, failEvery  int
	processes         int // started in the test (see its schedule)
}

// TestEventsExactlyOnce: a fast module, a slow solo module and the two
// members of a convoy each read their events in every tick and publish, in
// the tick's own batch, what they got. The simulation emits events in 1,000
// frames while the test SIGKILLs and restarts the modules' processes: three
// times in the middle of a tick after its reads (the module prints HELD
// and waits for the kill), three times at whatever point they are, and
// once keeping the solo module down long enough for the log to lap it. From
// the event log, for each module: the ranges its reports name follow each
// other without overlap (no event twice) and without gap except exactly the
// overrun reported (none skipped, across processes: a restarted process
// resumes at its predecessor's last acknowledgement, and a held tick's
// events go to the next process); no event of a frame later than the
// tick's view; the event after each range is of a later frame than the
// view (the tick got everything its view shows); only the module kept down
// loses events; the engine's EventsDelivered and EventsLost equal the
// reports' sums.
func TestEventsExactlyOnce(t *testing.T) {
	testutil.RunChild(evChildEnv, evChild)
	r := newRigConfig(t, 10, func(c *host.Config) {
		c.EventLogBytes = 256 << 10
		c.MaxEventBytesPerModule = -1 // a report must never be refused
	})
	sim := &evSim{w: r.eng.World()}
	r.eng.SetSimulation(sim)

	// The test's own copy of the log, read after every frame.
	evSeg, err := shm.Open(shm.SegmentName(r.inst, "events"), false)
	require.NoError(t, err)
	t.Cleanup(func() { evSeg.Close() })
	reader, err := ipc.NewEventReader(evSeg.Data)
	require.NoError(t, err)
	var cur ipc.EventCursor
	logged := map[uint64]evLogged{}
	reports := map[uint32][]evReport{}
	covered := map[uint32]uint64{} // the last seq each module reported
	readLog := func() {
		ov, err := reader.Read(&cur, func(seq, frame uint64, typ uint16, p []byte) {
			if typ == evReportType {
				require.Len(t, p, evReportSize)
				rep := decodeEvReport(p)
				reports[rep.id] = append(reports[rep.id], rep)
				if rep.n > 0 {
					covered[rep.id] = rep.last
				}
			}
			logged[seq] = evLogged{frame: frame, typ: typ}
		})
		require.NoError(t, err)
		require.Zero(t, ov, "the test's own reader must not be lapped")
	}

	mods := []evModSpec{
		{"fast", module.Fast, "", 1, 7, 4},
		{"solo", module.Slow, "solo", 5, 0, 3},
		{"convoy-1", module.Slow, "convoy", 3, 0, 3},
		{"convoy-2", module.Slow, "convoy", 3, 3, 2},
	}
	procs := make([]*exec.Cmd, len(mods))
	lines := make([]<-chan string, len(mods))
	pids := make([]map[int]bool, len(mods))
	spawn := func(i int, hold uint64) {
		m := mods[i]
		lines[i], _, procs[i] = r.spawnChild("TestEventsExactlyOnce", evChildEnv, "module", m.name,
			"FDP_EV_ID="+strconv.Itoa(i), "FDP_EV_TIER="+m.tier, "FDP_EV_EVERY="+strconv.Itoa(m.every),
			"FDP_EV_GROUP="+m.group, "FDP_EV_HOLD="+strconv.FormatUint(hold, 10), "FDP_EV_FAIL="+strconv.Itoa(m.failEvery))
		if pids[i] == nil {
			pids[i] = map[int]bool{}
		}
		pids[i][procs[i].Process.Pid] = true
	}
	// joinedAs waits (without frames: a frame would add events) until the
	// engine admitted module i's current process.
	joinedAs := func(i int) {
		pid := procs[i].Process.Pid
		deadline := time.Now().Add(20 * time.Second)
		for {
			for _, mi := range r.eng.Modules() {
				if mi.Name == mods[i].name && mi.PID == pid && mi.State != host.StateDead {
					return
				}
			}
			require.True(t, time.Now().Before(deadline), "%s (pid %d) did not join", mods[i].name, pid)
			time.Sleep(200 * time.Microsecond) // polling the engine's table, bounded by the deadline
		}
	}
	kill := func(i int) {
		require.NoError(t, procs[i].Process.Kill()) // SIGKILL
		_ = procs[i].Wait()
		// Reaped: tell the engine, as a supervisor does (a frame would
		// find the closed connection too), so that no tick waits for it.
		r.eng.ModuleDied(procs[i].Process.Pid)
	}
	// heldLine: the HELD line of a module that holds its tick (busy until
	// it is killed), once read from its stdout.
	heldLine := make([]string, len(mods))
	pollHeld := func() bool {
		found := false
		for i := range mods {
		drain:
			for heldLine[i] == "" {
				select {
				case l, ok := <-lines[i]:
					if !ok {
						break drain
					}
					if strings.HasPrefix(l, "HELD ") {
						heldLine[i] = l
					}
				default:
					break drain
				}
			}
			found = found || heldLine[i] != ""
		}
		return found
	}
	// waitIdle waits until no module has a tick out, or one holds its tick.
	waitIdle := func() {
		deadline := time.Now().Add(10 * time.Second)
		for !r.eng.Idle() && !pollHeld() {
			require.True(t, time.Now().Before(deadline), "modules did not finish their ticks")
			time.Sleep(100 * time.Microsecond) // polling, bounded by the deadline
		}
	}
	step := func() {
		r.eng.Step()
		readLog()
		if r.eng.Frame()%8 == 0 {
			// Keep the slow modules within a few frames of the engine, so
			// that only the module kept down is lapped.
			waitIdle()
		}
	}

	holds := map[int]uint64{0: 100, 1: 200, 2: 300} // module index -> the sim frame of its held tick
	for i := range mods {
		spawn(i, holds[i])
	}
	for i := range mods {
		joinedAs(i)
	}
	for range 10 {
		step() // every module ticks once with nothing to read
	}
	require.Empty(t, logged, "no event before the simulation starts")
	sim.on = true

	type held struct {
		first, last uint64
		pid         int
	}
	var helds []held
	// restart kills module i, runs after frames, starts its next process
	// (holding at hold, if not 0) and waits until the engine admitted it.
	restart := func(i int, after int, hold uint64) {
		kill(i)
		for range after {
			step()
		}
		spawn(i, hold)
		joinedAs(i)
	}
	// holdUntilKilled runs frames until module i holds its tick (it got
	// the events of the simulation's frame holds[i]), kills it there and
	// starts its next process.
	holdUntilKilled := func(i int) {
		deadline := time.Now().Add(20 * time.Second)
		for pollHeld(); heldLine[i] == ""; pollHeld() {
			require.True(t, time.Now().Before(deadline), "%s did not hold its tick", mods[i].name)
			step()
		}
		var h held
		_, err := fmt.Sscanf(heldLine[i], "HELD %d %d %d", &h.first, &h.last, &h.pid)
		require.NoError(t, err)
		helds = append(helds, h)
		heldLine[i] = ""
		restart(i, 20, 0)
	}
	for sim.frames < evSimFrames {
		switch sim.frames {
		case holds[0] - 1:
			holdUntilKilled(0) // fast, in the middle of its tick
		case holds[1] - 1:
			holdUntilKilled(1) // solo
		case holds[2] - 1:
			holdUntilKilled(2) // a convoy member
		case 400:
			// Two at once, at whatever point they are.
			kill(3)
			restart(0, 5, 0)
			spawn(3, 0)
			joinedAs(3)
		case 450:
			// Down for 350 frames: the log (256 KiB, about 1 KiB a frame)
			// laps the solo module's acknowledged cursor.
			restart(1, 350, 0)
		case 850:
			kill(2)
			restart(0, 0, 0)
			spawn(2, 0)
			joinedAs(2)
		}
		step()
	}
	lastSim := uint64(0)
	for seq, ev := range logged {
		if ev.typ == evSimType {
			lastSim = max(lastSim, seq)
		}
	}
	// Every module gets to the last event of the simulation.
	deadline := time.Now().Add(30 * time.Second)
	for i := range mods {
		for covered[uint32(i)] < lastSim {
			require.True(t, time.Now().Before(deadline), "%s reported up to seq %d of %d", mods[i].name, covered[uint32(i)], lastSim)
			step()
		}
	}
	// Quiesce: kill every process (a batch in flight is played back with
	// its report or dropped with it), then let the engine play back and log.
	for i := range mods {
		kill(i)
	}
	for range 3 {
		r.eng.Step()
		readLog()
	}

	simTotal := sim.events
	require.Equal(t, uint64(evSimFrames*evPerFrame), simTotal)
	for i, m := range mods {
		id := uint32(i)
		next, pendingOv := uint64(1), uint64(0)
		var delivered, lost, simGot, simLost uint64
		countSim := func(from, to uint64) (n uint64) {
			for s := from; s <= to; s++ {
				if logged[s].typ == evSimType {
					n++
				}
			}
			return n
		}
		for _, rp := range reports[id] {
			pendingOv += rp.overrun
			if rp.n == 0 {
				continue
			}
			require.Equal(t, rp.n, rp.last-rp.first+1, "%s: one tick's events are contiguous", m.name)
			require.Equal(t, pendingOv, rp.first-next, "%s: events %d..%d missing, %d reported lost (tick at frame %d, pid %d)",
				m.name, next, rp.first-1, pendingOv, rp.view, rp.pid)
			simLost += countSim(next, rp.first-1)
			lost += pendingOv
			pendingOv = 0
			require.LessOrEqual(t, rp.maxFrame, rp.view, "%s: an event of a later frame than its view", m.name)
			require.LessOrEqual(t, logged[rp.last].frame, rp.view, "%s: seq %d is of frame %d, its view %d",
				m.name, rp.last, logged[rp.last].frame, rp.view)
			if after, ok := logged[rp.last+1]; ok {
				require.Greater(t, after.frame, rp.view, "%s: seq %d of frame %d left for a later tick, its view was %d",
					m.name, rp.last+1, after.frame, rp.view)
			}
			delivered += rp.n
			simGot += countSim(rp.first, rp.last)
			next = rp.last + 1
		}
		require.Greater(t, next, lastSim, "%s got to the end", m.name)
		require.Equal(t, simTotal, simGot+simLost, "%s: every simulation event delivered once or reported lost", m.name)
		mi := r.module(m.name)
		require.Equal(t, delivered, mi.Stats.EventsDelivered, "%s: engine's count of delivered events", m.name)
		require.Equal(t, lost+pendingOv, mi.Stats.EventsLost, "%s: engine's count of lost events", m.name)
		t.Logf("%s: %d processes, %d reports, %d events (%d of the simulation), %d lost (%d of the simulation)",
			m.name, len(pids[i]), len(reports[id]), delivered, simGot, lost, simLost)
		require.Len(t, pids[i], m.processes, "%s: processes started", m.name)
		if m.name == "solo" {
			require.Positive(t, simLost, "the solo module was kept down past a lap of the log")
		} else {
			require.Zero(t, lost, "%s lost events", m.name)
		}
	}
	require.Len(t, helds, 3)
	for _, h := range helds {
		require.Positive(t, h.last)
		for _, reps := range reports {
			for _, rp := range reps {
				require.False(t, int(rp.pid) == h.pid && rp.n > 0 && rp.first <= h.last && rp.last >= h.first,
					"the held tick of pid %d was committed", h.pid)
			}
		}
	}
}

// TestEventsAfterEngineRestart: a module process outlives its engine and
// rejoins the next one (module.Run's rejoin, in the same process). The
// cursor the first engine acknowledged belongs to the first engine's log:
// the module reads the new log from its tail (the new engine's
// acknowledgement of a module new to it is zero), from seq 1, without a
// failed tick or a lost event.
func TestEventsAfterEngineRestart(t *testing.T) {
	testutil.RunChild(evChildEnv, evChild)
	configure := func(c *host.Config) { c.MaxEventBytesPerModule = -1 }
	r := newRigConfig(t, 10, configure)
	sim := &evSim{w: r.eng.World()}
	r.eng.SetSimulation(sim)
	out, _, cmd := r.spawnChild("TestEventsAfterEngineRestart", evChildEnv, "module", "fast",
		"FDP_EV_ID=0", "FDP_EV_TIER="+module.Fast, "FDP_EV_EVERY=1")
	go func() {
		for range out { // drained: the module prints nothing unless it fails
		}
	}()
	pid := cmd.Process.Pid
	joined := func() bool {
		for _, mi := range r.eng.Modules() {
			if mi.Name == "fast" && mi.PID == pid && mi.State != host.StateDead {
				return true
			}
		}
		return false
	}
	r.stepUntil("the module joins", joined)
	sim.on = true
	r.stepUntil("the module acknowledges events", func() bool { return r.module("fast").Stats.EventsDelivered > 200 })
	first := r.module("fast").Stats

	cfg := r.eng.Config()
	require.NoError(t, r.eng.Close())
	w, err := world.New(r.s.reg, world.Config{ChunkCapacity: 64, MaxChunks: 64})
	require.NoError(t, err)
	sim = &evSim{w: w}
	r.eng, err = host.New(cfg, w, sim)
	require.NoError(t, err)
	deadline := time.Now().Add(30 * time.Second)
	for !joined() {
		require.True(t, time.Now().Before(deadline), "the module did not rejoin")
		time.Sleep(time.Millisecond) // polling the engine's table: no frame before the module is back
	}
	sim.on = true
	for range 100 {
		r.eng.Step()
	}
	for r.eng.Step(); !r.eng.Idle(); r.eng.Step() {
	}
	mi := r.module("fast")
	require.Zero(t, mi.Stats.Failures, "ticks failed in the new engine")
	require.Zero(t, mi.Stats.EventsLost)
	require.Positive(t, mi.Stats.EventsDelivered)

	evSeg, err := shm.Open(shm.SegmentName(r.inst, "events"), false)
	require.NoError(t, err)
	defer evSeg.Close()
	reader, err := ipc.NewEventReader(evSeg.Data)
	require.NoError(t, err)
	var cur ipc.EventCursor
	next, reports := uint64(1), 0
	_, err = reader.Read(&cur, func(_, _ uint64, typ uint16, p []byte) {
		if typ != evReportType {
			return
		}
		rep := decodeEvReport(p)
		require.Equal(t, uint32(pid), rep.pid, "the same process")
		require.Zero(t, rep.overrun)
		require.Equal(t, next, rep.first, "the new log is read from its start, each event once")
		next = rep.last + 1
		reports++
	})
	require.NoError(t, err)
	require.Positive(t, reports)
	t.Logf("first engine: %d events delivered; new engine: %d in %d reports", first.EventsDelivered, mi.Stats.EventsDelivered, reports)
}
