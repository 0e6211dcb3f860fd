// Package module is the SDK for FDP module authors.
//
// A module is a separate process that reads the engine's world in place
// (read-only shared memory) and sends commands back:
//
//	type Mover struct{ ... }
//	func (m *Mover) Spec() module.Spec { return module.Spec{Name: "mover", Tier: module.Fast, Every: 1, Reads: world.MaskOf(pos)} }
//	func (m *Mover) Tick(v *module.View, c *module.Commands, dt time.Duration) error { ... }
//	func main() { module.Main(schema.Reg, &Mover{}) }
//
// Fast-tier modules read the latest full frame (GDB) every tick. Slow-tier
// modules get a snapshot (SoD) with the components they declare, leased to
// them for the whole tick even while the engine moves on; modules of the same
// tier and frequency share one snapshot (convoy).
package module

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// Tiers.
const (
	Fast = ipc.TierFast
	Slow = ipc.TierSlow
)

// Spec declares what a module is.
type Spec struct {
	Name string
	Tier string // Fast or Slow
	// Every: the module's ticks start at least Every engine frames apart
	// (1 = every frame), for either tier; a tick still running when the
	// next is due delays it (the period then counts from the delayed tick)
	// instead of dropping it. A module (re)joining is due at once.
	Every int
	// Reads are the components the module reads: a slow module's snapshot
	// holds exactly these, and the View refuses to read any other (View.Err,
	// for either tier). Empty: every component of the registry (the seeds'
	// rule: a module that declares nothing reads everything).
	Reads world.Mask
	// Group overrides automatic convoy grouping (same tier + Every): modules
	// with the same Group share snapshots; "solo" never shares.
	Group string
	// MaxRuntime bounds each slow tick (and its snapshot lease): past it the
	// engine revokes the snapshot, counts an overrun toward the module's
	// breaker and the tick fails ("tick exceeded its runtime"). 0: the
	// engine's default (host.Config.MaxSlowTick: 10 periods, at least 1 s).
	MaxRuntime time.Duration
}

// Module is implemented by module authors.
type Module interface {
	Spec() Spec
	// Tick runs once per dispatched tick. dt is the simulated time since
	// the module's previous tick. An error (or a panic, including a fault
	// from writing into the read-only view) counts as a module failure.
	Tick(v *View, c *Commands, dt time.Duration) error
}

// Options configure Run.
type Options struct {
	Instance string
	Registry *world.Registry
	Logger   *slog.Logger
	// Name and Group, when set, replace the module's Spec.Name and
	// Spec.Group: the supervisor's config names the process and its convoy
	// group (MainOptions reads them from $FDP_MODULE and $FDP_GROUP).
	Name, Group string
	// AttachTimeout bounds the wait for the engine to come up (default 10 s).
	AttachTimeout time.Duration
	// RejoinTimeout bounds the wait for a new engine of the instance after
	// the control connection ended (the engine died, or stopped): Run then
	// attaches to the new engine and goes on calling the same Module (its
	// own state survives). Default DefaultRejoinTimeout; negative: do not
	// wait, Run returns ErrEngineGone when the connection ends.
	RejoinTimeout time.Duration
	// MaxTicks stops Run after that many ticks, counted over every engine
	// the module joined (0 = until ctx is done or the engine is gone for
	// good).
	MaxTicks int
	// WarmSpin is how long a fast-tier module polls its tick bell after the
	// engine pre-wakes it (ahead of the tick: at the start of the frame, or
	// before its publish), so that the tick reaches a running process
	// instead of waking a sleeping one. Default DefaultWarmSpin; negative
	// turns it off. Slow-tier modules are not pre-woken and do not poll.
	WarmSpin time.Duration
}

// DefaultWarmSpin bounds the polling after a pre-wake. The engine pre-wakes
// at most 1 ms before the tick (the engine's default Config.PrewakeEarlyMax),
// or else just before its publish (p99 about 0.5 ms for the 100K-entity demo
// world); a tick that comes later finds the module asleep again and wakes it
// as usual.
const DefaultWarmSpin = 2 * time.Millisecond

// DefaultRejoinTimeout is how long a module waits for a new engine by
// default (Options.RejoinTimeout): the supervisor restarts a dead engine
// within its restart backoff (at most 5 s by default), and a module that
// gives up is restarted by it anyway.
const DefaultRejoinTimeout = time.Minute

// ErrEngineGone is returned by Run when the engine's control connection
// ended and no new engine of the instance came up within
// Options.RejoinTimeout (at once when it is negative).
var ErrEngineGone = errors.New("engine went away")

// Main runs m in this process until SIGTERM/SIGINT (or until the engine is
// gone for good: see Options.RejoinTimeout), reading the instance from
// $FDP_INSTANCE (default "demo"). It exits the process.
func Main(reg *world.Registry, m Module) { MainOptions(m, Options{Registry: reg}) }

// MainOptions is Main with options: an empty Instance is read from
// $FDP_INSTANCE (default "demo"), empty Name and Group from $FDP_MODULE and
// $FDP_GROUP (set by the supervisor from its config), a nil Logger logs text
// to stderr with the module's name. It exits the process.
func MainOptions(m Module, opt Options) {
	if opt.Instance == "" {
		opt.Instance = os.Getenv("FDP_INSTANCE")
	}
	if opt.Instance == "" {
		opt.Instance = "demo"
	}
	if opt.Name == "" {
		opt.Name = os.Getenv("FDP_MODULE")
	}
	if opt.Group == "" {
		opt.Group = os.Getenv("FDP_GROUP")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if opt.Logger == nil {
		name := opt.Name
		if name == "" {
			name = m.Spec().Name
		}
		opt.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("module", name)
	}
	err := Run(ctx, m, opt)
	if err != nil && !errors.Is(err, context.Canceled) {
		opt.Logger.Error("module stopped", "err", err)
		stop()
		os.Exit(1)
	}
}

// session is one module process attached to an engine; Run replaces its
// engine-side parts when it rejoins a restarted engine.
type session struct {
	m    Module
	spec Spec
	opt  Options

	// One engine's: released by detach.
	reader *fsync.Reader
	conn   *ipc.ControlConn
	wel    ipc.Welcome
	modSeg *shm.Segment
	evSeg  *shm.Segment
	prod   *ipc.Producer
	tick   *ipc.Doorbell
	done   *ipc.Doorbell
	view   View
	cmds   Commands
	// ack is the event acknowledgement of the last committed batch (or
	// where this attach started reading events); foreignChecked: the
	// first tick's skipForeignTemps ran (module/events.go).
	ack            eventAck
	foreignChecked bool
	// joined is CLOCK_MONOTONIC just before the handshake: a tick stamped
	// earlier was rung for a previous incarnation of the module (its slot's
	// segment is kept by the engine) and is not ours to run.
	joined    uint64
	stopWatch chan struct{}
	watchDone chan struct{}

	// beat is the module segment of the engine that went away, kept mapped
	// only to keep the heartbeat fresh while Run waits for the new engine
	// (the supervisor's hang monitor reads it until the new engine removes
	// it).
	beat  *shm.Segment
	ticks int
	// tickBegan is the wall time (UnixNano) the running tick began, 0
	// between ticks; tickMax its runtime limit (see beatDuringTicks).
	tickBegan, tickMax atomic.Int64
	// redial is the earliest time of the next handshake after a welcomed
	// connection was dropped (see abandon).
	redial time.Time
}

// detach releases everything of the current engine except the module
// segment, which moves to beat.
func (s *session) detach() {
	if s.stopWatch != nil {
		close(s.stopWatch)
		<-s.watchDone
		s.stopWatch, s.watchDone = nil, nil
	}
	if s.conn != nil {
		s.conn.Close()
	}
	if s.reader != nil {
		s.reader.Close()
	}
	if s.evSeg != nil {
		s.evSeg.Close()
	}
	if s.modSeg != nil {
		if s.beat != nil {
			s.beat.Close()
		}
		s.beat = s.modSeg
	}
	s.reader, s.conn, s.evSeg, s.modSeg = nil, nil, nil, nil
	s.prod, s.tick, s.done = nil, nil, nil
	s.view, s.cmds = View{}, Commands{}
}

func (s *session) close() {
	s.detach()
	if s.beat != nil {
		s.beat.Close()
		s.beat = nil
	}
}

// Run attaches m to the engine of opt.Instance and runs its ticks. When the
// engine goes away (its control connection ends) Run waits for the next
// engine of the instance (Options.RejoinTimeout), attaches to it and keeps
// calling m: the process and m's own state survive an engine restart.
func Run(ctx context.Context, m Module, opt Options) error {
	if opt.Registry == nil {
		return errors.New("a registry is required (Options.Registry)")
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.AttachTimeout == 0 {
		opt.AttachTimeout = 10 * time.Second
	}
	if opt.RejoinTimeout == 0 {
		opt.RejoinTimeout = DefaultRejoinTimeout
	}
	spec := m.Spec()
	if spec.Every < 1 {
		spec.Every = 1
	}
	if opt.Name != "" {
		spec.Name = opt.Name
	}
	if opt.Group != "" {
		spec.Group = opt.Group
	}
	if spec.Reads == 0 {
		spec.Reads = opt.Registry.Mask() // see Spec.Reads
	}
	s := &session{m: m, spec: spec, opt: opt}
	defer s.close()
	if err := s.attach(ctx, time.Now().Add(opt.AttachTimeout)); err != nil {
		return err
	}
	s.opt.Logger.Info("attached", "instance", s.opt.Instance, "slot", s.wel.Slot, "tier", s.spec.Tier, "every", s.spec.Every)
	for {
		err := s.loop(ctx)
		if !errors.Is(err, ErrEngineGone) || opt.RejoinTimeout < 0 {
			return err
		}
		if err := s.rejoin(ctx); err != nil {
			return err
		}
	}
}

// rejoin waits for the next engine of the instance and attaches to it.
func (s *session) rejoin(ctx context.Context) error {
	lost := time.Now()
	oldSlot := s.wel.Slot
	s.opt.Logger.Info("engine went away: waiting for the next engine", "instance", s.opt.Instance, "slot", oldSlot)
	// Whatever the dead engine did not play back is lost with it; the
	// producer's uncommitted records go with its ring.
	s.detach()
	if err := s.attach(ctx, lost.Add(s.opt.RejoinTimeout)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("no engine of %q came back within %v: %w (%w)", s.opt.Instance, s.opt.RejoinTimeout, ErrEngineGone, err)
	}
	s.opt.Logger.Info("rejoined", "instance", s.opt.Instance, "slot", s.wel.Slot, "previous_slot", oldSlot,
		"after", time.Since(lost).Round(time.Microsecond))
	return nil
}

// errRedialWait: a handshake waits for the engine to handle the end of the
// connection this process dropped (see abandon).
var errRedialWait = errors.New("waiting for the engine to see the dropped connection")

// abandon closes a connection the engine has admitted and holds the next
// handshake back for two of its frame periods (50 to 200 ms). The engine
// handles the end of a module's connection at its next frame, by the
// module's pid: a handshake of this process before then would be taken for
// the dropped connection's incarnation and reclaimed with it.
func (s *session) abandon(conn *ipc.ControlConn, wel ipc.Welcome) {
	conn.Close()
	s.redial = time.Now().Add(min(max(2*time.Duration(wel.FramePeriod), 50*time.Millisecond), 200*time.Millisecond))
}

// attach connects to the instance's control socket and maps the segments
// the engine passes with its welcome, retrying until deadline while the
// engine is not up yet (no socket, or a dead engine's socket that refuses
// connections).
func (s *session) attach(ctx context.Context, deadline time.Time) error {
	w := newDirWatch(shm.Dir)
	defer w.close()
	var last error
	for {
		err := s.tryAttach()
		if err == nil {
			if s.beat != nil {
				s.beat.Close()
				s.beat = nil
			}
			s.startWatch(ctx)
			return nil
		}
		if errors.Is(err, layout.ErrSchema) || errors.Is(err, ipc.ErrSchemaMismatch) ||
			errors.Is(err, ipc.ErrVersionMismatch) || errors.Is(err, ipc.ErrRejected) ||
			errors.Is(err, ipc.ErrPeerCred) {
			return fmt.Errorf("attach to %q: %w", s.opt.Instance, err)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("attach to %q: %w", s.opt.Instance, last)
		}
		if s.beat != nil {
			layout.Store64(s.beat.Data, layout.OffMHeartbeat, uint64(time.Now().UnixNano()))
		}
		// No socket, or nobody listening on it yet: the engine is
		// starting. Wait for a change in the segment directory (bounded:
		// the listener may start after the socket's name appears).
		if err := w.wait(ctx, time.Until(deadline)); err != nil {
			return err
		}
	}
}

// tryAttach makes one attempt: dial the engine's control socket, then map
// the descriptors of its welcome (the world and event log read-only, the
// module's own segment read-write). The descriptors come from the engine
// that answered, so they always belong to the same, live engine.
func (s *session) tryAttach() error {
	if time.Now().Before(s.redial) {
		return errRedialWait
	}
	var names []string
	for _, c := range s.opt.Registry.Components() {
		names = append(names, c.Name)
	}
	hello := ipc.Hello{
		Name: s.spec.Name, Tier: s.spec.Tier, Every: s.spec.Every, Mask: uint64(s.spec.Reads), Components: names,
		SchemaHash: s.opt.Registry.SchemaHash(), PID: os.Getpid(), Group: s.spec.Group,
		MaxRuntime: int64(s.spec.MaxRuntime),
	}
	joined := ipc.MonoNanos()
	conn, wel, err := ipc.Dial(s.opt.Instance, hello, 2*time.Second)
	if err != nil {
		return err
	}
	files := wel.Files
	wel.Files = nil
	s.conn, s.wel, s.joined = conn, wel, joined
	var world *shm.Segment
	fail := func(err error) error {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
		if s.reader != nil {
			s.reader.Close() // also unmaps world
		} else if world != nil {
			world.Close()
		}
		for _, seg := range []*shm.Segment{s.modSeg, s.evSeg} {
			if seg != nil {
				seg.Close()
			}
		}
		s.abandon(s.conn, wel)
		s.reader, s.conn, s.modSeg, s.evSeg, s.prod, s.tick, s.done = nil, nil, nil, nil, nil, nil, nil
		return err
	}
	take := func(i ipc.WelcomeFD) *os.File { f := files[i]; files[i] = nil; return f }
	if world, err = shm.MapFD(take(ipc.WelcomeFDWorld), wel.Segments.World, false); err != nil {
		return fail(err)
	}
	if s.evSeg, err = shm.MapFD(take(ipc.WelcomeFDEvents), wel.Segments.Events, false); err != nil {
		return fail(err)
	}
	if s.modSeg, err = shm.MapFD(take(ipc.WelcomeFDModule), wel.Segments.Module, true); err != nil {
		return fail(err)
	}
	lm, err := layout.DecodeModule(s.modSeg.Data)
	if err != nil {
		return fail(err)
	}
	if int(lm.Info.Slot) != wel.Slot {
		return fail(fmt.Errorf("%w: welcome names slot %d, the module segment passed is slot %d", ipc.ErrControl, wel.Slot, lm.Info.Slot))
	}
	if s.reader, err = fsync.NewModuleReader(world, lm, fsync.AttachOptions{Name: s.spec.Name, Registry: s.opt.Registry}); err != nil {
		world = nil // closed by NewModuleReader
		return fail(err)
	}
	if s.prod, err = ipc.NewProducer(lm.Ring()); err != nil {
		return fail(err)
	}
	if s.tick, err = ipc.NewDoorbell(s.modSeg.Data, layout.OffMTick, layout.OffMTickNeedWake); err != nil {
		return fail(err)
	}
	if s.spec.Tier == Fast {
		warm := s.opt.WarmSpin
		if warm == 0 {
			warm = DefaultWarmSpin
		}
		s.tick.SetWarmSpin(warm) // negative: off
	}
	if s.done, err = ipc.NewDoorbell(s.modSeg.Data, layout.OffMDone, layout.OffMDoneNeedWake); err != nil {
		return fail(err)
	}
	evr, err := ipc.NewEventReader(s.evSeg.Data)
	if err != nil {
		return fail(err)
	}
	cur := s.eventStart(evr)
	s.view = View{events: evr, cursor: cur, slot: uint32(wel.Slot), reads: s.spec.Reads}
	s.cmds = Commands{p: s.prod}
	s.ack, s.foreignChecked = eventAck{cursor: cur}, false
	b := s.modSeg.Data
	layout.Store32(b, layout.OffMPID, uint32(os.Getpid()))
	layout.Store64(b, layout.OffMStartTime, shm.SelfStartTime())
	layout.Store64(b, layout.OffMHeartbeat, uint64(time.Now().UnixNano()))
	return nil
}

// eventStart is where this attach reads events from: the cursor the engine
// wrote into the module segment's event line. It is the acknowledgement of
// the module's last played batch (a restarted process resumes at the first
// event no committed tick got; if it was overwritten meanwhile, the first
// read reports the overrun), or for a module new to the engine (also a
// slot reused for another name, and every module after an engine restart:
// the new engine has a new log, in which the old cursor means nothing) the
// end of the log when the engine admitted it. Zero (nothing written): the
// log's tail.
func (s *session) eventStart(evr *ipc.EventReader) ipc.EventCursor {
	b := s.modSeg.Data
	// ORDER(evack): the engine stored them before it sent the welcome.
	ack := ipc.EventCursor{Seq: layout.Load64(b, layout.OffMAckSeq), Pos: layout.Load64(b, layout.OffMAckPos)}
	tail := evr.Tail()
	switch {
	case ack.Seq == 0:
		return tail
	case ack.Seq > tail.Seq || ack.Pos > tail.Pos:
		// The engine checks what it writes there: not from this log.
		s.opt.Logger.Warn("acknowledged event cursor ahead of the event log: reading from its tail",
			"ack_seq", ack.Seq, "ack_pos", ack.Pos, "tail_seq", tail.Seq, "tail_pos", tail.Pos)
		return tail
	}
	return ack
}

// startWatch rings the module's own tick bell when the engine's connection
// ends or ctx is done, so that a loop asleep on the bell sees it at once
// rather than at its wait's timeout. The extra ring only wakes the loop: it
// checks both before it runs a tick. detach stops it.
func (s *session) startWatch(ctx context.Context) {
	bell, err := ipc.NewDoorbell(s.modSeg.Data, layout.OffMTick, layout.OffMTickNeedWake)
	if err != nil {
		return // the loop's wait timeout still sees both
	}
	stop, done, conn := make(chan struct{}), make(chan struct{}), s.conn
	s.stopWatch, s.watchDone = stop, done
	go func() {
		defer close(done)
		select {
		case <-conn.Done():
		case <-ctx.Done():
		case <-stop:
			return
		}
		_, _ = bell.Ring()
	}()
}

// pendingTick reports whether a tick rung for this incarnation waits in
// the module segment: its frame is newer than the last done frame and it was
// stamped after the handshake. The engine keeps a module's slot (and
// segment) across module restarts, so a tick it rang for a previous
// incarnation that died before finishing it is still there; running it
// would open a lease the engine has reclaimed since ("slot is not leased to
// this reader"). The engine stores the stamp before it increments the tick
// word, so a caller that loaded the tick word before this check sees the
// stamp of every tick counted in that word.
func (s *session) pendingTick() bool {
	b := s.modSeg.Data
	done, _ := layout.DoneFrame(layout.Load64(b, layout.OffMDoneFrame))
	return layout.Load64(b, layout.OffMTickFrame) > done && layout.Load64(b, layout.OffMTickStamp) >= s.joined
}

// loop runs ticks until ctx is done, MaxTicks, or the engine goes away
// (ErrEngineGone).
func (s *session) loop(ctx context.Context) error {
	b := s.modSeg.Data
	stopBeat := s.beatDuringTicks(b)
	defer stopBeat()
	last := s.tick.Load() // before pendingTick: see there
	var warned time.Time  // rate limit of the "no frame" warning
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.conn.Done():
			return ErrEngineGone
		default:
		}
		var v uint32
		var err error
		var wake uint64 // tick wake latency, 0 when the tick was already pending
		if s.pendingTick() {
			// Rung before this loop waited (e.g. right after the handshake).
			v = s.tick.Load()
		} else {
			v, err = s.tick.Wait(last, 200, 100*time.Millisecond)
			if err == nil {
				wake = 1 // never 0 for a tick that was waited for
				if now, stamp := ipc.MonoNanos(), layout.Load64(b, layout.OffMTickStamp); now > stamp {
					wake = now - stamp
				}
			}
		}
		layout.Store64(b, layout.OffMHeartbeat, uint64(time.Now().UnixNano()))
		if errors.Is(err, ipc.ErrTimeout) {
			continue
		}
		if err != nil {
			return err
		}
		last = v
		if !s.pendingTick() {
			// Our own ring (engine gone, ctx done: checked above), or a
			// previous incarnation's tick.
			continue
		}
		ws := s.tick.WakeStats()
		layout.Store64(b, layout.OffMWakeNanos, wake)
		layout.Store64(b, layout.OffMWakeWarm, ws.Warm)
		layout.Store64(b, layout.OffMWakeCold, ws.Cold)
		frame := layout.Load64(b, layout.OffMTickFrame)
		slot, dt := layout.UnpackTick(layout.Load64(b, layout.OffMTickLease))
		failed := s.runTick(frame, slot, dt, &warned)
		done := frame
		if failed {
			done |= layout.DoneFailed
		}
		layout.Store64(b, layout.OffMDoneFrame, done)
		_, _ = s.done.Ring()
		s.ticks++
		if s.opt.MaxTicks > 0 && s.ticks >= s.opt.MaxTicks {
			return nil
		}
	}
}

// warnEvery bounds the rate of per-tick warnings.
const warnEvery = time.Second

// runTick pins the tick's frame (latest for GDB, the leased slot for SoD),
// runs the module and commits its commands. It reports failure.
func (s *session) runTick(frame uint64, slot int, dt time.Duration, warned *time.Time) (failed bool) {
	var f *fsync.Frame
	var err error
	if slot < 0 {
		f, err = s.reader.Pin()
	} else if f, err = s.reader.OpenLeased(slot); err == nil && f.Number() != frame {
		// The engine leased this slot with this tick's frame: another frame
		// means the lease is not (or no longer) ours.
		err = fmt.Errorf("%w: slot %d holds frame %d, the tick is frame %d", fsync.ErrLeaseInvalid, slot, f.Number(), frame)
		_ = f.Release()
	}
	if err != nil {
		if now := time.Now(); now.Sub(*warned) >= warnEvery {
			*warned = now
			s.opt.Logger.Warn("no frame for tick", "frame", frame, "slot", slot, "err", err)
		}
		return true
	}
	s.view.f, s.view.err = f, nil
	s.cmds.begin()
	if !s.foreignChecked {
		s.skipForeignTemps(f.Number())
		s.foreignChecked = true
	}
	start := time.Now()
	limit := s.tickLimit(slot)
	s.tickBegan.Store(start.UnixNano())
	err = s.safeTick(dt)
	s.tickBegan.Store(0)
	rerr := f.Release()
	if limit > 0 && time.Since(start) > limit {
		// The engine has revoked the snapshot (its slot may have been
		// rewritten under the tick): nothing computed from it counts.
		err = fmt.Errorf("tick exceeded its runtime (%d ms): snapshot revoked", limit.Milliseconds())
		if rerr != nil {
			err = fmt.Errorf("%w (%w)", err, rerr)
		}
	} else if rerr != nil && err == nil {
		err = rerr // torn frame: what the module computed cannot be trusted
	}
	s.view.f = nil
	if err == nil && s.view.err != nil {
		err = s.view.err
	}
	if err == nil && s.cmds.err != nil {
		err = s.cmds.err
	}
	if err == nil {
		err = s.ackEvents() // the last record of the batch
	}
	if err != nil {
		s.prod.Abort()
		s.eventsRewound()
		if now := time.Now(); now.Sub(*warned) >= warnEvery {
			*warned = now
			s.opt.Logger.Warn("tick failed", "frame", frame, "err", err)
		}
		return true
	}
	s.prod.Commit()
	s.eventsCommitted()
	return false
}

// safeTick runs the module's Tick turning panics, including memory faults
// from writes into the read-only mapping, into errors.
func (s *session) safeTick(dt time.Duration) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s panicked: %v", s.spec.Name, r)
		}
	}()
	return s.m.Tick(&s.view, &s.cmds, dt)
}

// EnvInt reads an integer environment variable with a default.
func EnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// tickLimit is the runtime of a tick on slot (a slow tick's lease; 0 for a
// fast tick): the engine's, from the welcome, else the module's Spec.
func (s *session) tickLimit(slot int) time.Duration {
	if slot < 0 {
		s.tickMax.Store(0)
		return 0
	}
	d := time.Duration(s.wel.MaxRuntime)
	if d <= 0 {
		d = s.spec.MaxRuntime
	}
	s.tickMax.Store(int64(d))
	return d
}

// heartbeatEvery is how often a long tick's heartbeat is refreshed.
const heartbeatEvery = 250 * time.Millisecond

// beatDuringTicks keeps the heartbeat in b fresh while a slow tick runs,
// up to its runtime: a legitimately long tick is not taken for a hung
// module by the supervisor, while a tick that outlives its runtime (or a
// hung fast tick) stops beating. The returned function stops it.
func (s *session) beatDuringTicks(b []byte) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				began, limit := s.tickBegan.Load(), s.tickMax.Load()
				if began != 0 && limit > 0 && now.UnixNano()-began <= limit {
					layout.Store64(b, layout.OffMHeartbeat, uint64(now.UnixNano()))
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}
