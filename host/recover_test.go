package host

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

type rPos struct{ X, Y float32 }
type rHP struct{ V int32 }
type rTag struct{ A, B uint64 }

// rStep is a singleton the simulation sets every step.
type rStep struct{ Step, Sum int64 }

type rSchema struct {
	reg          *world.Registry
	pos, hp, tag world.ComponentID
	name         world.ComponentID // variable-size (a string)
	clock, step  world.SingletonID
}

func newRSchema() *rSchema {
	s := &rSchema{reg: world.NewRegistry()}
	s.pos, _ = world.Register[rPos](s.reg, "Pos")
	s.hp, _ = world.Register[rHP](s.reg, "HP")
	s.tag, _ = world.Register[rTag](s.reg, "Tag")
	s.name, _ = world.RegisterBytes(s.reg, "Name", world.BytesSpec{MaxLen: 24, PerEntity: 16, UTF8: true})
	s.clock, _ = world.RegisterTime(s.reg)
	s.step, _ = world.RegisterSingleton[rStep](s.reg, "Step")
	return s
}

func newRWorld(t testing.TB, s *rSchema) *world.World {
	w, err := world.New(s.reg, world.Config{ChunkCapacity: 64, MaxChunks: 128})
	require.NoError(t, err)
	return w
}

// detSim is a deterministic simulation: replaying it from the same initial
// world gives the same world after the same number of steps, so the parent
// can compute independently what a dead engine published at frame F.
type detSim struct {
	s    *rSchema
	w    *world.World
	rng  *rand.Rand
	live []world.Entity
	step int
}

const detEntities = 3000

func newDetSim(t testing.TB, s *rSchema, w *world.World) *detSim {
	d := &detSim{s: s, w: w, rng: rand.New(rand.NewSource(7))}
	for i := 0; i < detEntities; i++ {
		d.spawn()
	}
	return d
}

func (d *detSim) spawn() {
	e, err := d.w.Create()
	if err != nil {
		panic(err)
	}
	_ = world.Set(d.w, e, d.s.pos, rPos{X: float32(e.Index())})
	if e.Index()%3 != 0 {
		_ = world.Set(d.w, e, d.s.hp, rHP{V: int32(e.Index())})
	}
	if e.Index()%4 == 0 {
		_ = d.w.SetString(e, d.s.name, fmt.Sprintf("é-%d", e.Index()))
	}
	d.live = append(d.live, e)
}

func (d *detSim) Step(float32) {
	d.step++
	f := float32(d.step)
	q := d.w.Query(world.MaskOf(d.s.pos))
	for q.Next() {
		pos := world.ColumnMut[rPos](&q, d.s.pos)
		for i := range pos {
			if q.Match(i) {
				pos[i].X += 1
				pos[i].Y = f
			}
		}
	}
	// Churn: destroy and create a few entities, move components around.
	for k := 0; k < 5; k++ {
		j := d.rng.Intn(len(d.live))
		_ = d.w.Destroy(d.live[j])
		d.live[j] = d.live[len(d.live)-1]
		d.live = d.live[:len(d.live)-1]
		d.spawn()
	}
	prev, _ := world.GetSingleton[rStep](d.w)
	_ = world.SetSingleton(d.w, rStep{Step: int64(d.step), Sum: prev.Sum + int64(d.step)})
	// Grow, shrink or drop a name (a full arena refuses a grow: the
	// replay refuses it the same way).
	if n := d.live[d.rng.Intn(len(d.live))]; d.rng.Intn(3) == 0 {
		_ = d.w.Remove(n, d.s.name)
	} else {
		_ = d.w.SetString(n, d.s.name, strings.Repeat("n", d.rng.Intn(25)))
	}
	e := d.live[d.rng.Intn(len(d.live))]
	if d.w.Has(e, d.s.tag) {
		_ = d.w.Remove(e, d.s.tag)
	} else {
		_ = world.Set(d.w, e, d.s.tag, rTag{A: uint64(d.step), B: uint64(e)})
	}
}

// expectedWorld replays the simulation for frames steps, as the engine does
// (Advance, then the systems).
func expectedWorld(t testing.TB, s *rSchema, frames uint64) *world.World {
	w := newRWorld(t, s)
	d := newDetSim(t, s, w)
	for i := uint64(0); i < frames; i++ {
		w.Advance()
		d.Step(0)
	}
	return w
}

// requireSameWorld compares entity records, component values and the
// simulation's singletons (not the engine's Time: requireTime).
func requireSameWorld(t testing.TB, want, got *world.World) {
	t.Helper()
	ws, wok := world.GetSingleton[rStep](want)
	gs, gok := world.GetSingleton[rStep](got)
	require.Equal(t, wok, gok, "Step singleton set")
	require.Equal(t, ws, gs, "Step singleton")
	require.Equal(t, want.HighWater(), got.HighWater(), "high-water mark")
	require.Equal(t, want.Count(), got.Count(), "alive entities")
	n := want.Registry().Len()
	for c := 0; c < want.NumChunks(); c++ {
		wr, gr := want.ChunkRecords(c), got.ChunkRecords(c)
		require.Equal(t, wr, gr, "records of chunk %d", c)
		for i, r := range wr {
			if r.Flags&layout.FlagAlive == 0 {
				continue
			}
			e := world.MakeEntity(uint32(c*want.ChunkCapacity()+i), r.Gen)
			for k := 0; k < n; k++ {
				a, aok := want.GetRaw(e, world.ComponentID(k))
				b, bok := got.GetRaw(e, world.ComponentID(k))
				if want.Kind(world.ComponentID(k)) != world.KindFixed { // the value, not its handle
					a, aok = want.GetBytes(e, world.ComponentID(k))
					b, bok = got.GetBytes(e, world.ComponentID(k))
				}
				require.Equal(t, aok, bok)
				require.True(t, bytes.Equal(a, b), "entity %v component %d: %x != %x", e, k, a, b)
			}
		}
	}
}

// requireTime checks the engine's time singleton of a world an engine at
// rate frames per second published frame frames of (from frame 1): the
// frame, and a simulation time of one step per frame.
func requireTime(t testing.TB, w *world.World, frame uint64, rate int) {
	t.Helper()
	tm, ok := world.GetSingleton[world.Time](w)
	require.True(t, ok, "time singleton set")
	dt := int64(time.Second / time.Duration(rate))
	require.Equal(t, world.Time{Frame: frame, Nanos: int64(frame) * dt, Dt: dt, Scale: 1}, tm)
}

// childRate is the frame rate of the recovery tests' engine process.
const childRate = 1000

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testInstance(t testing.TB) string {
	inst := fmt.Sprintf("r%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	t.Cleanup(func() { _, _ = shm.RemoveInstance(inst) })
	return inst
}

// childEngine is the engine process of the recovery tests (FDP_HOST_CHILD
// selects the mode). It prints "f N" after every completed frame.
func childEngine(mode, inst string) {
	s := newRSchema()
	w, err := world.New(s.reg, world.Config{ChunkCapacity: 64, MaxChunks: 128})
	if err != nil {
		panic(err)
	}
	d := newDetSim(nil, s, w)
	if mode == "prepare" {
		// The start-up path of an engine killed before its first publish.
		rw, info, err := PrepareStart(inst, func() (*world.World, error) {
			return world.New(s.reg, world.Config{ChunkCapacity: 64, MaxChunks: 128})
		}, quietLog())
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		if rw == nil {
			rw = w
		}
		if _, err = New(Config{Instance: inst, Logger: quietLog()}, rw, nil); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Printf("prepared %v %d\n", info.Recovered, info.Frame)
		select {} // wait for SIGKILL
	}
	e, err := New(Config{Instance: inst, FrameRate: childRate, Logger: quietLog()}, w, d)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	switch mode {
	case "resume":
		f, _ := strconv.ParseUint(os.Getenv("FDP_RESUME"), 10, 64)
		if err := e.ResumeAfter(f); err != nil {
			panic(err)
		}
		_ = e.Run(context.Background(), func(st FrameStats) {
			fmt.Fprintf(out, "f %d\n", st.Frame)
			out.Flush()
		})
	case "run":
		_ = e.Run(context.Background(), func(st FrameStats) {
			fmt.Fprintf(out, "f %d\n", st.Frame)
			out.Flush()
		})
	case "odd", "oddlatest":
		for i := 0; i < 50; i++ {
			e.Step()
		}
		b := e.segs.World.Data
		lw := e.pub.Layout()
		s := e.pub.Latest()
		if mode == "odd" {
			// Claim another slot as a publish would, scribble over it and
			// "die" before finishing: a torn slot left odd.
			s = (s + 1) % lw.Slots
			off := lw.SlotOff(s)
			layout.Store64(b, off+layout.SlotSeq, layout.Load64(b, off+layout.SlotSeq)|1)
			binary.LittleEndian.PutUint64(b[off+layout.SlotFrame:], 1<<40)
			for i := off + layout.SlotHeaderSize; i < off+lw.SlotStride; i += 7 {
				b[i] = 0xA5
			}
		} else {
			off := lw.SlotOff(s)
			layout.Store64(b, off+layout.SlotSeq, layout.Load64(b, off+layout.SlotSeq)|1)
		}
		fmt.Fprintf(out, "%s %d frame %d\n", mode, s, e.Frame())
		out.Flush()
		select {} // wait for SIGKILL
	}
}

type childProc struct {
	cmd   *exec.Cmd
	lines chan string
}

func startChild(t *testing.T, test, mode, inst string, env ...string) *childProc {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(append(os.Environ(), "FDP_HOST_CHILD="+mode, "FDP_INSTANCE="+inst), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	c := &childProc{cmd: cmd, lines: make(chan string, 1<<16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
	})
	return c
}

func (c *childProc) kill(t *testing.T) {
	require.NoError(t, syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL))
	_ = c.cmd.Wait()
}

// next returns the next line of the child (bounded wait).
func (c *childProc) next(t *testing.T) string {
	select {
	case l, ok := <-c.lines:
		require.True(t, ok, "child ended")
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("child said nothing for 30 s")
		return ""
	}
}

func childMode(t *testing.T) {
	if mode := os.Getenv("FDP_HOST_CHILD"); mode != "" {
		childEngine(mode, os.Getenv("FDP_INSTANCE"))
		os.Exit(0)
	}
}

// TestRecoverAfterKill: an engine child publishes frames at 1 kHz and is
// SIGKILLed at a random moment (mid-publish or not); the parent recovers the
// world: it equals the deterministic simulation replayed to the recovered
// frame, which is the last frame the child completed (or the one it was
// publishing, if its publish completed before the kill). A fresh engine then
// resumes after that frame.
func TestRecoverAfterKill(t *testing.T) {
	childMode(t)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for round := 0; round < 3; round++ {
		inst := testInstance(t)
		c := startChild(t, "TestRecoverAfterKill", "run", inst)
		var last uint64
		target := uint64(20 + rng.Intn(80))
		for last < target {
			l := c.next(t)
			f, err := strconv.ParseUint(strings.TrimPrefix(l, "f "), 10, 64)
			require.NoError(t, err, l)
			last = f
		}
		c.kill(t)
		for l := range c.lines {
			if f, err := strconv.ParseUint(strings.TrimPrefix(l, "f "), 10, 64); err == nil {
				last = f
			}
		}
		s := newRSchema()
		w, info, err := PrepareStart(inst, func() (*world.World, error) { return newRWorld(t, s), nil }, quietLog())
		require.NoError(t, err)
		require.True(t, info.Recovered, "reason: %v", info.Reason)
		require.NotNil(t, w)
		require.GreaterOrEqual(t, info.Frame, last, "recovered frame older than the last completed one")
		require.LessOrEqual(t, info.Frame, last+1)
		require.NotEmpty(t, info.Removed, "stale segments removed")
		requireSameWorld(t, expectedWorld(t, s, info.Frame), w)
		requireTime(t, w, info.Frame, childRate)

		// A fresh engine on the recovered world resumes after the frame,
		// and so does its time: one more step, of the new engine's rate.
		e, err := New(Config{Instance: inst, Logger: quietLog()}, w, nil)
		require.NoError(t, err)
		require.NoError(t, e.ResumeAfter(info.Frame))
		e.Step()
		require.Equal(t, info.Frame+1, e.Publisher().Frame())
		tm, _ := world.GetSingleton[world.Time](w)
		dt := int64(time.Second / 60)
		require.Equal(t, world.Time{Frame: info.Frame + 1, Nanos: int64(info.Frame)*int64(time.Second/childRate) + dt, Dt: dt, Scale: 1}, tm)
		require.Error(t, e.ResumeAfter(info.Frame), "resume after the first step")
		require.NoError(t, e.Close())
		left, err := shm.List()
		require.NoError(t, err)
		for _, in := range left {
			require.NotEqual(t, inst, in.Instance, "leaked %s", in.Name)
		}
	}
}

// TestRecoverIgnoresOddSlot: the child leaves a non-latest slot odd and
// scribbled over (with a newer frame number in its header) when it is
// killed; recovery uses the latest complete frame and never the odd slot.
func TestRecoverIgnoresOddSlot(t *testing.T) {
	childMode(t)
	inst := testInstance(t)
	c := startChild(t, "TestRecoverIgnoresOddSlot", "odd", inst)
	var slot int
	var frame uint64
	_, err := fmt.Sscanf(c.next(t), "odd %d frame %d", &slot, &frame)
	require.NoError(t, err)
	c.kill(t)
	require.Equal(t, uint64(50), frame)

	// The odd slot is there, with its bogus frame number.
	seg, err := shm.Open(shm.SegmentName(inst, fsync.WorldSegment), false)
	require.NoError(t, err)
	lw, err := layout.DecodeWorld(seg.Data)
	require.NoError(t, err)
	si := lw.ReadSlotInfo(slot)
	require.Equal(t, uint64(1), si.Seq&1)
	require.Equal(t, uint64(1<<40), si.Frame)
	require.NoError(t, seg.Close())

	s := newRSchema()
	w := newRWorld(t, s)
	got, err := RecoverWorld(inst, w)
	require.NoError(t, err)
	require.Equal(t, frame, got)
	requireSameWorld(t, expectedWorld(t, s, frame), w)
}

// TestRecoverOddLatestStartsClean: a latest slot that is odd is never used:
// recovery fails with a clear reason and the start-up path starts clean,
// removing the stale segments.
func TestRecoverOddLatestStartsClean(t *testing.T) {
	childMode(t)
	inst := testInstance(t)
	c := startChild(t, "TestRecoverOddLatestStartsClean", "oddlatest", inst)
	_ = c.next(t)
	c.kill(t)
	s := newRSchema()
	_, err := RecoverWorld(inst, newRWorld(t, s))
	require.ErrorIs(t, err, ErrRecover)
	require.Contains(t, err.Error(), "left being written")
	var logBuf syncBuffer
	w, info, err := PrepareStart(inst, func() (*world.World, error) { return newRWorld(t, s), nil },
		slog.New(slog.NewTextHandler(&logBuf, nil)))
	require.NoError(t, err)
	require.Nil(t, w)
	require.False(t, info.Recovered)
	require.ErrorIs(t, info.Reason, ErrRecover)
	require.Contains(t, logBuf.String(), "starting clean")
	require.Contains(t, logBuf.String(), "left being written")
	require.ElementsMatch(t, []string{shm.SegmentName(inst, "world"), shm.SegmentName(inst, "leases"), shm.SegmentName(inst, "events"),
		shm.SegmentName(inst, "sock")}, info.Removed, "world (renamed aside), leases and events segments, and the dead engine's socket")
	require.Equal(t, uint64(50), info.ResumeFrame, "the latest word is still readable")
	require.Equal(t, []string{shm.SegmentName(inst, "world.prev")}, info.Aside, "kept for its frame number")
}

type syncBuffer struct{ bytes.Buffer }

// publishedCopy runs an in-process engine for frames frames and returns a
// private copy of its world segment (as a dead engine would leave it).
func publishedCopy(t *testing.T, s *rSchema, frames int) []byte {
	inst := testInstance(t)
	w := newRWorld(t, s)
	e, err := New(Config{Instance: inst, Logger: quietLog()}, w, newDetSim(t, s, w))
	require.NoError(t, err)
	defer e.Close()
	for i := 0; i < frames; i++ {
		e.Step()
	}
	// RecoverWorld refuses a live engine's segment.
	_, err = RecoverWorld(inst, newRWorld(t, s))
	require.ErrorIs(t, err, ErrEngineAlive)
	return append([]byte(nil), e.segs.World.Data...)
}

func TestRecoverFromSegmentValidates(t *testing.T) {
	s := newRSchema()
	good := publishedCopy(t, s, 12)
	w := newRWorld(t, s)
	f, err := RecoverFromSegment(good, w)
	require.NoError(t, err)
	require.Equal(t, uint64(12), f)
	requireSameWorld(t, expectedWorld(t, s, 12), w)
	requireTime(t, w, 12, DefaultConfig().FrameRate)

	_, err = RecoverFromSegment(good, w)
	require.ErrorContains(t, err, "not empty")

	lw, err := layout.DecodeWorld(good)
	require.NoError(t, err)
	_, slot, _ := layout.UnpackLatest(binary.LittleEndian.Uint64(good[layout.OffWLatest:]))
	so := lw.SlotOff(slot)
	eo, _ := lw.EntityRange(slot, 0)

	other := world.NewRegistry()
	_, _ = world.Register[rPos](other, "Pos")
	_, _ = world.Register[rHP](other, "Health")
	_, _ = world.Register[rTag](other, "Tag")
	ow, err := world.New(other, world.Config{ChunkCapacity: 64, MaxChunks: 128})
	require.NoError(t, err)
	_, err = RecoverFromSegment(good, ow)
	require.ErrorIs(t, err, layout.ErrSchema)

	small, err := world.New(newRSchema().reg, world.Config{ChunkCapacity: 128, MaxChunks: 64})
	require.NoError(t, err)
	_, err = RecoverFromSegment(good, small)
	require.ErrorContains(t, err, "chunk capacity")

	cases := []struct {
		name, want string
		mutate     func(b []byte)
	}{
		{"header", "world segment", func(b []byte) { b[layout.OffKindHeader] ^= 0xff }},
		{"nothing published", "nothing was published", func(b []byte) { binary.LittleEndian.PutUint64(b[layout.OffWLatest:], 0) }},
		{"latest out of range", "names slot", func(b []byte) {
			binary.LittleEndian.PutUint64(b[layout.OffWLatest:], layout.PackLatest(12, layout.MaxSlots+1))
		}},
		{"frame mismatch", "latest word says", func(b []byte) {
			binary.LittleEndian.PutUint64(b[layout.OffWLatest:], layout.PackLatest(13, slot))
		}},
		{"alive > entities", "header", func(b []byte) {
			binary.LittleEndian.PutUint32(b[so+layout.SlotAlive:], 1<<20)
		}},
		{"alive count lies", "records hold", func(b []byte) {
			binary.LittleEndian.PutUint32(b[so+layout.SlotAlive:], 5)
		}},
		{"partial mask", "partial snapshot", func(b []byte) { binary.LittleEndian.PutUint64(b[so+layout.SlotMask:], 1) }},
		{"chunk count", "chunks for", func(b []byte) {
			binary.LittleEndian.PutUint32(b[so+layout.SlotChunks:], 100)
		}},
		{"record flags", "unknown flags", func(b []byte) { b[eo+4] |= 0x80 }},
		{"record mask", "unregistered", func(b []byte) { b[eo+15] = 0x80 }},
		{"bytes handle", "outside an arena", func(b []byte) {
			ho, _ := lw.ColumnRange(slot, 0, int(s.name))
			binary.LittleEndian.PutUint32(b[ho+4:], 25) // entity 0 has a name: longer than the max
		}},
		{"singleton version ahead", "above the slot's", func(b []byte) {
			binary.LittleEndian.PutUint64(b[lw.SingletonVersionOff(slot, int(s.step)):], 1<<40)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			tc.mutate(b)
			_, err := RecoverFromSegment(b, newRWorld(t, s))
			require.ErrorIs(t, err, ErrRecover)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestRecoverNothing(t *testing.T) {
	inst := testInstance(t)
	s := newRSchema()
	_, err := RecoverWorld(inst, newRWorld(t, s))
	require.ErrorIs(t, err, ErrNoStaleWorld)
	w, info, err := PrepareStart(inst, func() (*world.World, error) { return newRWorld(t, s), nil }, quietLog())
	require.NoError(t, err)
	require.Nil(t, w)
	require.True(t, errors.Is(info.Reason, ErrNoStaleWorld))
	require.Empty(t, info.Removed)
}

// runUntil starts an engine child in mode and returns it once it completed
// at least frames frames, with the last frame it reported.
func runUntil(t *testing.T, test, mode, inst string, frames uint64, env ...string) (*childProc, uint64) {
	c := startChild(t, test, mode, inst, env...)
	var last uint64
	for last < frames {
		l := c.next(t)
		f, err := strconv.ParseUint(strings.TrimPrefix(l, "f "), 10, 64)
		require.NoError(t, err, l)
		last = f
	}
	return c, last
}

// killAndDrain SIGKILLs c and returns the last frame it reported.
func killAndDrain(t *testing.T, c *childProc, last uint64) uint64 {
	c.kill(t)
	for l := range c.lines {
		if f, err := strconv.ParseUint(strings.TrimPrefix(l, "f "), 10, 64); err == nil {
			last = f
		}
	}
	return last
}

func asideNames(t *testing.T, inst string) []string {
	infos, err := shm.List()
	require.NoError(t, err)
	var out []string
	for _, in := range infos {
		if in.Instance == inst && in.Aside != shm.NoAside {
			out = append(out, in.Name)
		}
	}
	return out
}

// TestKilledBeforeFirstPublishLosesNothing: an engine is killed; the next one
// recovers (its world segment renamed aside) and is killed before its first
// publish; a third engine recovers the same frame from the aside copy,
// publishes it at once (ResumeAfter), which removes the copy, and resumes
// after it.
func TestKilledBeforeFirstPublishLosesNothing(t *testing.T) {
	childMode(t)
	inst := testInstance(t)
	c, last := runUntil(t, "TestKilledBeforeFirstPublishLosesNothing", "run", inst, 30)
	last = killAndDrain(t, c, last)

	p := startChild(t, "TestKilledBeforeFirstPublishLosesNothing", "prepare", inst)
	var recovered bool
	var frame uint64
	_, err := fmt.Sscanf(p.next(t), "prepared %t %d", &recovered, &frame)
	require.NoError(t, err)
	require.True(t, recovered)
	require.GreaterOrEqual(t, frame, last)
	p.kill(t)
	require.Equal(t, []string{shm.SegmentName(inst, "world.prev")}, asideNames(t, inst), "the old world is kept aside")

	s := newRSchema()
	w, info, err := PrepareStart(inst, func() (*world.World, error) { return newRWorld(t, s), nil }, quietLog())
	require.NoError(t, err)
	require.True(t, info.Recovered, "reason: %v", info.Reason)
	require.Equal(t, frame, info.Frame, "the aside copy's frame")
	require.Equal(t, frame, info.ResumeFrame)
	require.Equal(t, shm.SegmentName(inst, "world.prev"), info.Source)
	require.Contains(t, info.Removed, shm.SegmentName(inst, fsync.WorldSegment), "the unpublished world of the killed engine")
	requireSameWorld(t, expectedWorld(t, s, frame), w)

	e, err := New(Config{Instance: inst, Logger: quietLog()}, w, nil)
	require.NoError(t, err)
	defer e.Close()
	require.NotEmpty(t, asideNames(t, inst), "kept until the first publish")
	require.NoError(t, e.ResumeAfter(info.Frame))
	require.Equal(t, frame, latestOf(t, inst), "the recovered frame is published at once")
	require.Empty(t, asideNames(t, inst), "removed after the first publish")
	e.Step()
	require.Equal(t, frame+1, latestOf(t, inst))
}

// latestOf returns the frame in the latest word of the instance's world.
func latestOf(t *testing.T, inst string) uint64 {
	seg, err := shm.Open(shm.SegmentName(inst, fsync.WorldSegment), false)
	require.NoError(t, err)
	defer seg.Close()
	f, _, _ := layout.UnpackLatest(layout.Load64(seg.Data, layout.OffWLatest))
	return f
}

// TestFailedRecoveryKeepsFrameNumbers: the stale world's payload is corrupt
// but its latest word readable: the next engine starts clean, but after the
// old frame number; the corrupt world is kept aside (for its frame number)
// until the first publish.
func TestFailedRecoveryKeepsFrameNumbers(t *testing.T) {
	childMode(t)
	inst := testInstance(t)
	c, last := runUntil(t, "TestFailedRecoveryKeepsFrameNumbers", "run", inst, 30)
	last = killAndDrain(t, c, last)
	testutil.CorruptLatestPayload(t, shm.SegmentName(inst, fsync.WorldSegment))

	s := newRSchema()
	w, info, err := PrepareStart(inst, func() (*world.World, error) { return newRWorld(t, s), nil }, quietLog())
	require.NoError(t, err)
	require.Nil(t, w)
	require.False(t, info.Recovered)
	require.ErrorIs(t, info.Reason, ErrRecover)
	require.ErrorContains(t, info.Reason, "unknown flags")
	require.GreaterOrEqual(t, info.ResumeFrame, last)
	require.Equal(t, []string{shm.SegmentName(inst, "world.prev")}, info.Aside)

	e, err := New(Config{Instance: inst, Logger: quietLog()}, newRWorld(t, s), nil)
	require.NoError(t, err)
	defer e.Close()
	require.NoError(t, e.ResumeAfter(info.ResumeFrame))
	require.NotEmpty(t, asideNames(t, inst), "a clean world is not published by ResumeAfter")
	st := e.Step()
	require.NoError(t, st.PublishErr)
	require.Equal(t, info.ResumeFrame+1, latestOf(t, inst), "frame numbers never go backwards")
	require.Empty(t, asideNames(t, inst), "the engine's first publish removed the aside copy")
	removed, err := DropAside(inst)
	require.NoError(t, err)
	require.Empty(t, removed, "nothing pending any more")
}

// TestRecoverNewestOfWorldAndAside: the world segment holds a higher frame
// than the aside copy but is corrupt; the aside copy is recovered, the
// engine resumes after the higher frame, and both are kept until the first
// publish (the corrupt one in the second aside place).
func TestRecoverNewestOfWorldAndAside(t *testing.T) {
	childMode(t)
	inst := testInstance(t)
	c, last := runUntil(t, "TestRecoverNewestOfWorldAndAside", "run", inst, 20)
	old := killAndDrain(t, c, last)
	prev := shm.SegmentName(inst, "world.prev")
	require.NoError(t, shm.Rename(shm.SegmentName(inst, fsync.WorldSegment), prev))
	_, err := shm.GC(inst)
	require.NoError(t, err)
	c, last = runUntil(t, "TestRecoverNewestOfWorldAndAside", "resume", inst, old+1000, fmt.Sprint("FDP_RESUME=", old+1000))
	newer := killAndDrain(t, c, last)
	testutil.CorruptLatestPayload(t, shm.SegmentName(inst, fsync.WorldSegment))

	s := newRSchema()
	var logBuf bytes.Buffer
	w, info, err := PrepareStart(inst, func() (*world.World, error) { return newRWorld(t, s), nil },
		slog.New(slog.NewTextHandler(&logBuf, nil)))
	require.NoError(t, err)
	require.True(t, info.Recovered, "%v", info.Reason)
	require.Equal(t, prev, info.Source)
	require.GreaterOrEqual(t, info.Frame, old)
	require.Less(t, info.Frame, old+1000)
	requireSameWorld(t, expectedWorld(t, s, info.Frame), w)
	require.GreaterOrEqual(t, info.ResumeFrame, newer)
	require.ElementsMatch(t, []string{prev, shm.SegmentName(inst, "world.prev2")}, info.Aside)
	require.Contains(t, logBuf.String(), "a newer world of the dead engine is not recoverable")

	e, err := New(Config{Instance: inst, Logger: quietLog()}, w, nil)
	require.NoError(t, err)
	defer e.Close()
	require.NoError(t, e.ResumeAfter(info.ResumeFrame))
	require.NotEmpty(t, asideNames(t, inst), "the world resumed is not the recovered frame: nothing published yet")
	e.Step()
	require.Equal(t, info.ResumeFrame+1, latestOf(t, inst))
	require.Empty(t, asideNames(t, inst), "the engine's first publish removed the aside copies")
}
