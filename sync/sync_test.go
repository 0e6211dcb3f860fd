package sync

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

type Pos struct{ X, Y, Z, W float32 }
type Vel struct{ X, Y, Z, W float32 }
type Health struct {
	HP, Max int32
	Regen   float32
	Pad     int32
}
type Stamp struct{ Frame, Check uint64 }

type ids struct {
	pos, vel, hp, stamp world.ComponentID
	label               world.ComponentID // a string component: up to 40 bytes, 16 arena bytes per entity
	clock, wind         world.SingletonID // the engine's time, and a singleton of 12 bytes
}

// labelMax is the label's max length.
const labelMax = 40

// Wind is a test singleton.
type Wind struct{ X, Y, Gust float32 }

func testRegistry(t testing.TB) (*world.Registry, ids) {
	r := world.NewRegistry()
	var x ids
	var err error
	x.pos, err = world.Register[Pos](r, "Position")
	require.NoError(t, err)
	x.vel, err = world.Register[Vel](r, "Velocity")
	require.NoError(t, err)
	x.hp, err = world.Register[Health](r, "Health")
	require.NoError(t, err)
	x.stamp, err = world.Register[Stamp](r, "Stamp")
	require.NoError(t, err)
	x.label, err = world.RegisterBytes(r, "Label", world.BytesSpec{MaxLen: labelMax, PerEntity: 16, UTF8: true})
	require.NoError(t, err)
	x.clock, err = world.RegisterTime(r)
	require.NoError(t, err)
	x.wind, err = world.RegisterSingleton[Wind](r, "Wind")
	require.NoError(t, err)
	return r, x
}

func instanceName(t testing.TB) string {
	return fmt.Sprintf("t%d%06x", os.Getpid()%100000, rand.Intn(1<<24))
}

type fixture struct {
	w    *world.World
	ids  ids
	segs *WorldSegments
	pub  *Publisher
	inst string
}

func newFixture(t testing.TB, chunkCap, maxChunks, entities int) *fixture {
	reg, x := testRegistry(t)
	w, err := world.New(reg, world.Config{ChunkCapacity: chunkCap, MaxChunks: maxChunks})
	require.NoError(t, err)
	for i := 0; i < entities; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, x.pos, Pos{X: float32(i)}))
		require.NoError(t, world.Set(w, e, x.vel, Vel{X: 1}))
		require.NoError(t, world.Set(w, e, x.hp, Health{HP: 100, Max: 100}))
		require.NoError(t, world.Set(w, e, x.stamp, Stamp{Frame: 0, Check: check(0, e.Index())}))
	}
	inst := instanceName(t)
	segs, err := CreateWorldSegments(inst, w, 0, 0)
	require.NoError(t, err)
	t.Cleanup(func() { segs.Unlink(); segs.Close() })
	pub, err := NewPublisher(w, segs)
	require.NoError(t, err)
	return &fixture{w: w, ids: x, segs: segs, pub: pub, inst: inst}
}

func check(frame uint64, idx uint32) uint64 {
	x := frame*0x9E3779B97F4A7C15 ^ uint64(idx)*0xC2B2AE3D27D4EB4F
	return x ^ x>>29
}

// touch rewrites Stamp and Position of every alive entity in the given
// chunks so that the two columns agree on the frame.
func (fx *fixture) touch(frame uint64, chunks []int) {
	capc := fx.w.ChunkCapacity()
	for _, c := range chunks {
		for row := 0; row < capc; row++ {
			idx := c*capc + row
			if idx >= fx.w.HighWater() {
				break
			}
			rec := fx.w.ChunkRecord(c, row)
			if rec.Flags&layout.FlagAlive == 0 {
				continue
			}
			e := world.Entity(uint64(rec.Gen)<<32 | uint64(idx))
			_ = world.Set(fx.w, e, fx.ids.stamp, Stamp{Frame: frame, Check: check(frame, uint32(idx))})
			_ = world.Set(fx.w, e, fx.ids.pos, Pos{X: float32(idx), W: float32(frame % 65536)})
		}
	}
}

func TestMain(m *testing.M) {
	switch os.Getenv("FDP_TEST_CHILD") {
	case "reader":
		os.Exit(childReader())
	}
	os.Exit(m.Run())
}

// childReader attaches to FDP_TEST_INSTANCE and validates frames until it has
// seen FDP_TEST_FRAMES distinct frames. Exit code 0 = all good.
func childReader() int {
	inst := os.Getenv("FDP_TEST_INSTANCE")
	want, _ := strconv.Atoi(os.Getenv("FDP_TEST_FRAMES"))
	reg, x := testRegistry(&testing.T{})
	r, err := Attach(inst, AttachOptions{Name: "child", Registry: reg})
	if err != nil {
		fmt.Fprintln(os.Stderr, "attach:", err)
		return 2
	}
	defer r.Close()
	seen, last := 0, uint64(0)
	deadline := time.Now().Add(90 * time.Second)
	for seen < want && time.Now().Before(deadline) {
		f, err := r.Pin()
		if errors.Is(err, ErrNoFrame) || errors.Is(err, ErrBusy) {
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "pin:", err)
			return 3
		}
		n := f.Number()
		if n < last {
			fmt.Fprintf(os.Stderr, "frame went backwards: %d after %d\n", n, last)
			return 4
		}
		if n != last {
			if msg := validateFrame(f, x); msg != "" {
				fmt.Fprintf(os.Stderr, "frame %d: %s\n", n, msg)
				return 5
			}
			seen++
			last = n
		}
		pinSeq, slot := f.seq, f.slot
		if err := f.Release(); err != nil {
			fmt.Fprintf(os.Stderr, "torn frame: slot %d pinned at seq %d, seq now %d, frame %d\n", slot, pinSeq, layout.Load64(r.lw.B, r.lw.SlotOff(slot)), f.Number())
			fmt.Fprintln(os.Stderr, "release:", err)
			return 6
		}
	}
	fmt.Printf("validated %d frames, last %d\n", seen, last)
	if seen < want {
		return 7
	}
	return 0
}

// validateFrame checks every alive entity of a pinned frame: its Stamp is
// self-consistent, not from the future, and Position agrees with it (the two
// columns were written in the same frame, so a torn copy would disagree).
func validateFrame(f *Frame, x ids) string {
	mask := world.MaskOf(x.pos, x.stamp)
	alive := 0
	q := f.Query(mask)
	for q.Next() {
		st := Column[Stamp](f, q.Chunk(), x.stamp)
		ps := Column[Pos](f, q.Chunk(), x.pos)
		for i := 0; i < q.Rows(); i++ {
			if !q.Match(i) {
				continue
			}
			alive++
			e := q.Entity(i)
			s := st[i]
			if s.Check != check(s.Frame, e.Index()) {
				return fmt.Sprintf("entity %v: stamp %+v fails its check", e, s)
			}
			if s.Frame > f.Number() {
				return fmt.Sprintf("entity %v: stamp from frame %d in frame %d", e, s.Frame, f.Number())
			}
			if ps[i].W != float32(s.Frame%65536) || ps[i].X != float32(e.Index()) {
				return fmt.Sprintf("entity %v: position %+v disagrees with stamp %+v", e, ps[i], s)
			}
		}
	}
	if alive != int(f.Info().Alive) {
		return fmt.Sprintf("%d alive entities with both components, header says %d", alive, f.Info().Alive)
	}
	if !f.Valid() {
		return "pinned frame changed under the reader"
	}
	return ""
}

// TestCrossProcessReader publishes thousands of frames (random dirty chunks,
// entities spawning and dying) while a child process validates every frame it
// pins.
func TestCrossProcessReader(t *testing.T) {
	fx := newFixture(t, 256, 32, 6000)
	frames := 2000
	if testing.Short() {
		frames = 300
	}
	frame := uint64(1)
	_, err := fx.pub.Publish(frame, world.MaskAll())
	require.NoError(t, err)

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrossProcessReader$")
	cmd.Env = append(os.Environ(), "FDP_TEST_CHILD=reader", "FDP_TEST_INSTANCE="+fx.inst, "FDP_TEST_FRAMES="+strconv.Itoa(frames))
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	rng := rand.New(rand.NewSource(1))
	var live []world.Entity
	deadline := time.Now().Add(120 * time.Second)
	var childErr error
loop:
	for {
		select {
		case childErr = <-done:
			break loop
		default:
		}
		require.True(t, time.Now().Before(deadline), "child did not finish; stderr: %s", errb.String())
		frame++
		fx.w.Advance()
		// Spawn and kill a few entities each frame.
		for i := 0; i < 3; i++ {
			e, err := fx.w.Create()
			if err == nil {
				live = append(live, e)
			}
		}
		for i := 0; i < 3 && len(live) > 0; i++ {
			j := rng.Intn(len(live))
			require.NoError(t, fx.w.Destroy(live[j]))
			live[j] = live[len(live)-1]
			live = live[:len(live)-1]
		}
		var chunks []int
		for c := 0; c < fx.w.NumChunks(); c++ {
			if rng.Intn(10) < 3 {
				chunks = append(chunks, c)
			}
		}
		fx.touch(frame, chunks)
		// New entities get both components at once so they are valid.
		for _, e := range live {
			if _, ok := world.Get[Stamp](fx.w, e, fx.ids.stamp); !ok {
				require.NoError(t, world.Set(fx.w, e, fx.ids.stamp, Stamp{Frame: frame, Check: check(frame, e.Index())}))
				require.NoError(t, world.Set(fx.w, e, fx.ids.pos, Pos{X: float32(e.Index()), W: float32(frame % 65536)}))
			}
		}
		_, err := fx.pub.Publish(frame, world.MaskAll())
		if err != nil {
			require.ErrorIs(t, err, ErrNoFreeSlot)
		}
	}
	require.NoError(t, childErr, "child stderr: %s stdout: %s", errb.String(), out.String())
	require.Contains(t, out.String(), fmt.Sprintf("validated %d frames", frames))
	require.Greater(t, fx.pub.Publishes, uint64(frames))
}

// TestDirtyTracking asserts the copy counters: only touched chunk columns are
// copied, and a second slot catches up on what it missed.
func TestDirtyTracking(t *testing.T) {
	fx := newFixture(t, 64, 16, 64*10) // 10 full chunks
	all := world.MaskAll()
	st, err := fx.pub.Publish(1, all)
	require.NoError(t, err)
	// First publish: 10 chunks x (records + 4 columns).
	require.Equal(t, 50, st.ChunksCopied)
	recBytes := 64 * fx.pub.Layout().RecordSize
	require.Equal(t, 10*(recBytes+64*(16+16+16+16)), st.BytesCopied)

	// Publish again with no change: the second slot is fresh, so it copies
	// everything once; after that, a slot that already holds the data copies
	// nothing.
	for f := uint64(2); f < 2+uint64(DefaultSlots); f++ {
		_, err := fx.pub.Publish(f, all)
		require.NoError(t, err)
	}
	// Publishes alternate between two slots (a slot of the same mask is
	// preferred); the engine's idle warm-up fills the others.
	for fx.pub.WarmOne(0, all) {
	}
	st, err = fx.pub.Publish(100, all)
	require.NoError(t, err)
	require.Equal(t, 0, st.ChunksCopied)
	require.Equal(t, 0, st.BytesCopied)

	// Touch one component of chunk 3 only.
	fx.w.Advance()
	e := world.Entity(uint64(fx.w.ChunkRecord(3, 5).Gen)<<32 | uint64(3*64+5))
	require.NoError(t, world.Set(fx.w, e, fx.ids.hp, Health{HP: 7}))
	st, err = fx.pub.Publish(101, all)
	require.NoError(t, err)
	require.Equal(t, 1, st.ChunksCopied)
	require.Equal(t, 64*16, st.BytesCopied)

	// A mask without Health copies no column even though Health is dirty;
	// the slot's records, filtered with the full mask before, are recopied
	// filtered with this one (they name only the components the slot holds).
	fx.w.Advance()
	require.NoError(t, world.Set(fx.w, e, fx.ids.hp, Health{HP: 8}))
	st, err = fx.pub.Publish(102, world.MaskOf(fx.ids.pos))
	require.NoError(t, err)
	require.Equal(t, 10, st.ChunksCopied)
	require.Equal(t, 10*recBytes, st.BytesCopied)
	require.Equal(t, world.MaskOf(fx.ids.pos), world.Mask(fx.pub.Layout().ReadSlotInfo(st.Slot).Mask))

	// Destroying an entity copies that chunk's records and the columns of
	// the components it had (the world stamps them on destroy), here only
	// Position because of the mask. (The slot, frame 101's, held records of
	// the full mask: the other 9 chunks' records are recopied filtered.)
	fx.w.Advance()
	require.NoError(t, fx.w.Destroy(e))
	st, err = fx.pub.Publish(103, world.MaskOf(fx.ids.pos))
	require.NoError(t, err)
	require.Equal(t, 10+1, st.ChunksCopied)
	require.Equal(t, 10*recBytes+64*16, st.BytesCopied)

	// The data is really there: read it back through a reader.
	r, err := Attach(fx.inst, AttachOptions{Name: "t", Registry: fx.w.Registry()})
	require.NoError(t, err)
	defer r.Close()
	f, err := r.Pin()
	require.NoError(t, err)
	require.Equal(t, uint64(103), f.Number())
	require.False(t, f.IsAlive(e))
	e2 := world.Entity(uint64(fx.w.ChunkRecord(3, 6).Gen)<<32 | uint64(3*64+6))
	require.True(t, f.IsAlive(e2))
	p, ok := Get[Pos](f, e2, fx.ids.pos)
	require.True(t, ok)
	require.Equal(t, float32(3*64+6), p.X)
	require.NoError(t, f.Release())
}

// TestPinBlocksRewrite: a pinned slot is never rewritten, and a leased slot
// is never chosen.
func TestPinBlocksRewrite(t *testing.T) {
	fx := newFixture(t, 64, 4, 100)
	all := world.MaskAll()
	_, f := publishAndPin(t, fx)
	pinned := f.Slot()
	lw := fx.pub.Layout()
	seq := layout.Load64(lw.B, lw.SlotOff(pinned)+layout.SlotSeq)

	// Lease another slot to a holder: it must not be used either.
	leased := (pinned + 1) % lw.Slots
	fx.pub.holders[leased] = layout.ModuleSetOf(layout.MaxModules - 1) // the last holder id
	leasedSeq := layout.Load64(lw.B, lw.SlotOff(leased)+layout.SlotSeq)
	// A holder word forged in the leases segment (a copy for inspection)
	// holds nothing.
	ll := fx.pub.LeasesLayout()
	forged := (pinned + 2) % lw.Slots
	layout.PutModuleSet(fx.segs.Leases.Data, ll.LeaseOff(forged)+layout.LeaseHolders, holdersUpTo(layout.MaxModules))
	layout.Store32(fx.segs.Leases.Data, ll.LeaseOff(forged)+layout.LeaseEngine, 1)

	used := map[int]bool{}
	for fr := uint64(2); fr < 60; fr++ {
		fx.w.Advance()
		fx.touch(fr, []int{0, 1})
		st, err := fx.pub.Publish(fr, all)
		require.NoError(t, err)
		used[st.Slot] = true
	}
	require.False(t, used[pinned])
	require.False(t, used[leased])
	require.True(t, used[forged], "a forged holder word in the leases segment is ignored")
	require.GreaterOrEqual(t, len(used), 2)
	require.Equal(t, seq, layout.Load64(lw.B, lw.SlotOff(pinned)+layout.SlotSeq))
	require.Equal(t, leasedSeq, layout.Load64(lw.B, lw.SlotOff(leased)+layout.SlotSeq))
	require.True(t, f.Valid())
	require.Equal(t, uint64(1), f.Number())
	require.NoError(t, f.Release())
	require.ErrorIs(t, f.Release(), ErrNotPinned)
}

// TestTornReadDetected: if the pin is taken away (as when a reader is
// wrongly reclaimed), the rewrite is detected and Release reports ErrTorn.
func TestTornReadDetected(t *testing.T) {
	fx := newFixture(t, 64, 4, 100)
	all := world.MaskAll()
	r, f := publishAndPin(t, fx)
	pinned := f.Slot()
	// Steal the pin.
	layout.Store64(fx.segs.Leases.Data, fx.pub.LeasesLayout().ReaderOff(r.Entry())+layout.ReaderPin, 0)
	rewritten := false
	for fr := uint64(2); fr < 40 && !rewritten; fr++ {
		fx.w.Advance()
		fx.touch(fr, []int{0})
		st, err := fx.pub.Publish(fr, all)
		require.NoError(t, err)
		rewritten = st.Slot == pinned
	}
	require.True(t, rewritten, "publisher never reused the unpinned slot")
	require.False(t, f.Valid())
	require.ErrorIs(t, f.Release(), ErrTorn)
}

// TestPinRetriesOnOddSeq: a latest slot left odd (writer died mid-publish)
// is never handed out.
func TestPinRetriesOnOddSeq(t *testing.T) {
	fx := newFixture(t, 64, 4, 10)
	_, err := fx.pub.Publish(1, world.MaskAll())
	require.NoError(t, err)
	lw := fx.pub.Layout()
	s := fx.pub.Latest()
	off := lw.SlotOff(s) + layout.SlotSeq
	layout.Store64(lw.B, off, layout.Load64(lw.B, off)|1)
	r, err := Attach(fx.inst, AttachOptions{Name: "t"})
	require.NoError(t, err)
	defer r.Close()
	_, err = r.Pin()
	require.ErrorIs(t, err, ErrBusy)
	ll := fx.pub.LeasesLayout()
	require.Equal(t, uint64(MaxPinAttempts), layout.Load64(fx.segs.Leases.Data, ll.ReaderOff(r.Entry())+layout.ReaderRetries))
}

func TestAttachSchemaMismatch(t *testing.T) {
	fx := newFixture(t, 64, 4, 10)
	reg := world.NewRegistry()
	_, err := world.Register[Pos](reg, "Position")
	require.NoError(t, err)
	_, err = world.Register[Health](reg, "Velocity") // same size, other layout
	require.NoError(t, err)
	_, err = Attach(fx.inst, AttachOptions{Name: "t", Registry: reg})
	require.ErrorIs(t, err, layout.ErrSchema)
	require.Contains(t, err.Error(), "Velocity")
	_, err = Attach(fx.inst, AttachOptions{Name: "t", SchemaHash: 12345})
	require.ErrorIs(t, err, layout.ErrSchema)
	_, err = Attach("nosuchinstance", AttachOptions{})
	require.Error(t, err)
}

func TestColumnTypeCheck(t *testing.T) {
	fx := newFixture(t, 64, 4, 10)
	_, f := publishAndPin(t, fx)
	require.Nil(t, Column[uint32](f, 0, fx.ids.pos))
	require.ErrorIs(t, CheckType[uint32](f, fx.ids.pos), ErrTypeMismatch)
	require.NoError(t, CheckType[Pos](f, fx.ids.pos))
	require.Len(t, Column[Pos](f, 0, fx.ids.pos), 64)
	require.Nil(t, Column[Pos](f, 5, fx.ids.pos))
	require.NoError(t, f.Release())
}

// TestReclaimDeadReader: an external reader process killed while holding a
// pin is found dead and its entry and pin are released; a pin in an entry
// nobody owns is cleared.
func TestReclaimDeadReader(t *testing.T) {
	fx := newFixture(t, 64, 4, 10)
	_, err := fx.pub.Publish(1, world.MaskAll())
	require.NoError(t, err)
	ll := fx.pub.LeasesLayout()
	lb := fx.segs.Leases.Data
	// A real process that exits: sleep is only the victim here, not a sync.
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	start, err := shm.ProcStartTime(pid)
	require.NoError(t, err)
	o := ll.ReaderOff(7)
	layout.Store32(lb, o+layout.ReaderPID, uint32(pid))
	layout.Store64(lb, o+layout.ReaderStart, start)
	layout.Store64(lb, o+layout.ReaderPin, layout.PackPin(fx.pub.Latest(), 2))
	require.Equal(t, 0, ReclaimDeadReaders(lb, ll), "alive reader must not be reclaimed")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	orphan := ll.ReaderOff(9)
	layout.Store64(lb, orphan+layout.ReaderPin, layout.PackPin(fx.pub.Latest(), 2))
	require.Equal(t, 2, ReclaimDeadReaders(lb, ll))
	require.Zero(t, layout.Load32(lb, o+layout.ReaderPID))
	require.Zero(t, layout.Load64(lb, o+layout.ReaderPin))
	require.Zero(t, layout.Load64(lb, orphan+layout.ReaderPin), "a pin of an entry nobody owns is reclaimed")
}

// TestValidToleratesAbortedClaim: a writer that claims a pinned slot makes
// its seq odd for an instant before it sees the pin and restores it. A pinned
// reader checking Valid in that instant must not report a torn frame; a claim
// that goes on to rewrite the slot (or never ends) must be reported.
func TestValidToleratesAbortedClaim(t *testing.T) {
	fx := newFixture(t, 64, 4, 10)
	_, f := publishAndPin(t, fx)
	lw := fx.pub.Layout()
	off := lw.SlotOff(f.Slot()) + layout.SlotSeq
	q := layout.Load64(lw.B, off)

	// Aborted claim: odd, then restored while the reader checks.
	layout.Store64(lw.B, off, q+1)
	checking := make(chan struct{})
	restored := make(chan struct{})
	go func() {
		<-checking
		layout.Store64(lw.B, off, q)
		close(restored)
	}()
	close(checking)
	require.True(t, f.Valid(), "an aborted claim is not a rewrite")
	<-restored
	require.True(t, f.Valid())

	// A claim that never resolves, and a completed rewrite, are torn.
	layout.Store64(lw.B, off, q+1)
	require.False(t, f.Valid())
	layout.Store64(lw.B, off, q+2)
	require.False(t, f.Valid())
	require.ErrorIs(t, f.Release(), ErrTorn)
}

// TestSnapshotPoolWarmUpAndReuse: after WarmUp every free slot holds the
// world, so a snapshot copies only what changed since, reusing its slot; the
// slot returns to the pool when its last holder releases it, and an extra
// release is an error.
func TestSnapshotPoolWarmUpAndReuse(t *testing.T) {
	fx := newFixture(t, 64, 4, 200)
	all := world.MaskAll()
	require.Equal(t, DefaultSlots, fx.pub.WarmUp(0, all))
	_, err := fx.pub.Publish(1, all)
	require.NoError(t, err)
	fx.w.Advance()
	fx.touch(2, []int{1})
	slot, st, err := fx.pub.Snapshot(2, world.MaskOf(fx.ids.stamp), layout.ModuleSetOf(3, 5))
	require.NoError(t, err)
	require.Equal(t, uint64(1), fx.pub.SnapshotsReused)
	// The touched chunk's Stamp column, and the records of every chunk: the
	// warmed slot's were filtered with the full mask, the snapshot's name
	// only Stamp.
	require.Equal(t, 1+fx.w.NumChunks(), st.ChunksCopied, "only the touched chunk's Stamp column, and the records")
	require.Equal(t, 1, fx.pub.LeasedSlots())
	ll, lb := fx.pub.LeasesLayout(), fx.segs.Leases.Data
	require.Equal(t, layout.ModuleSetOf(3, 5), layout.GetModuleSet(lb, ll.LeaseOff(slot)+layout.LeaseHolders), "mirrored for inspection")
	require.NoError(t, fx.pub.ReleaseHolder(slot, 3))
	require.Equal(t, 1, fx.pub.LeasedSlots(), "still held by holder 5")
	require.NoError(t, fx.pub.ReleaseHolder(slot, 5))
	require.Equal(t, 0, fx.pub.LeasedSlots(), "back in the pool")
	require.Zero(t, layout.GetModuleSet(lb, ll.LeaseOff(slot)+layout.LeaseHolders))
	require.ErrorIs(t, fx.pub.ReleaseHolder(slot, 5), ErrNotHolder)
}

// publishAndPin publishes frame 1 of fx, attaches a reader (closed at the end
// of the test) and pins the frame.
func publishAndPin(t *testing.T, fx *fixture) (*Reader, *Frame) {
	_, err := fx.pub.Publish(1, world.MaskAll())
	require.NoError(t, err)
	r, err := Attach(fx.inst, AttachOptions{Name: "t"})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	f, err := r.Pin()
	require.NoError(t, err)
	return r, f
}

// holdersUpTo returns the holder set of ids 0..n-1.
func holdersUpTo(n int) layout.ModuleSet {
	var s layout.ModuleSet
	for i := 0; i < n; i++ {
		s.Set(i)
	}
	return s
}
