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
	Name  string
	Tier  string     // Fast or Slow
	Every int        // run every N engine frames (1 = every frame)
	Reads world.Mask // components the module reads (its SoD snapshot holds these)
	// Group overrides automatic convoy grouping (same tier + Every): modules
	// with the same Group share snapshots; "solo" never shares.
	Group string
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
	// AttachTimeout bounds the wait for the engine to come up (default 10 s).
	AttachTimeout time.Duration
	// MaxTicks stops Run after that many ticks (0 = until ctx is done or the
	// engine goes away).
	MaxTicks int
	// WarmSpin is how long a fast-tier module polls its tick bell after the
	// engine pre-wakes it (ahead of the tick: at the start of the frame, or
	// before its publish), so that the tick reaches a running process
	// instead of waking a sleeping one. Default DefaultWarmSpin; negative
	// turns it off. Slow-tier modules are not pre-woken and do not poll.
	WarmSpin time.Duration
}

// DefaultWarmSpin bounds the polling after a pre-wake. The engine pre-wakes
// at most 1 ms before the tick (the engine's default Config.PrewakeEarlyMax), or else just
// before its publish (p99 about 0.5 ms for the 100K-entity demo world); a
// tick that comes later finds the module asleep again and wakes it as usual.
const DefaultWarmSpin = 2 * time.Millisecond

// ErrEngineGone is returned by Run when the engine's control connection ends.
var ErrEngineGone = errors.New("fdp/module: engine went away")

// Main runs m in this process until the engine goes away or SIGTERM/SIGINT,
// reading the instance from $FDP_INSTANCE (default "demo"). It exits the
// process.
func Main(reg *world.Registry, m Module) {
	inst := os.Getenv("FDP_INSTANCE")
	if inst == "" {
		inst = "demo"
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("module", m.Spec().Name)
	err := Run(ctx, m, Options{Instance: inst, Registry: reg, Logger: log})
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("module stopped", "err", err)
		os.Exit(1)
	}
}

// session is one module process attached to an engine.
type session struct {
	m      Module
	spec   Spec
	opt    Options
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
}

func (s *session) close() {
	if s.conn != nil {
		s.conn.Close()
	}
	if s.reader != nil {
		s.reader.Close()
	}
	if s.modSeg != nil {
		s.modSeg.Close()
	}
	if s.evSeg != nil {
		s.evSeg.Close()
	}
}

// Run attaches m to the engine of opt.Instance and runs its ticks.
func Run(ctx context.Context, m Module, opt Options) error {
	if opt.Registry == nil {
		return fmt.Errorf("fdp/module: Options.Registry is required")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opt.AttachTimeout == 0 {
		opt.AttachTimeout = 10 * time.Second
	}
	spec := m.Spec()
	if spec.Every < 1 {
		spec.Every = 1
	}
	s := &session{m: m, spec: spec, opt: opt}
	defer s.close()
	if err := s.attach(ctx); err != nil {
		return err
	}
	return s.loop(ctx)
}

func (s *session) attach(ctx context.Context) error {
	deadline := time.Now().Add(s.opt.AttachTimeout)
	backoff := 5 * time.Millisecond
	var err error
	for {
		s.reader, err = fsync.Attach(s.opt.Instance, fsync.AttachOptions{Name: s.spec.Name, Registry: s.opt.Registry})
		if err == nil {
			// Re-attach after an engine restart: segments left by a dead
			// engine are still in place until the new engine removes them;
			// a reader of those would read a frozen world. Wait for the
			// live engine's segments instead.
			if !s.readerLive() {
				s.reader.Close()
				s.reader = nil
				err = errStaleSegments
			} else {
				break
			}
		}
		// Missing or still-initialising segments: the engine is starting.
		if errors.Is(err, layout.ErrSchema) || time.Now().After(deadline) {
			return fmt.Errorf("fdp/module: attach to %q: %w", s.opt.Instance, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
	var names []string
	for _, c := range s.opt.Registry.Components() {
		names = append(names, c.Name)
	}
	hello := ipc.Hello{
		Name: s.spec.Name, Tier: s.spec.Tier, Every: s.spec.Every, Mask: uint64(s.spec.Reads), Components: names,
		SchemaHash: s.opt.Registry.SchemaHash(), PID: os.Getpid(), Group: s.spec.Group, ReaderEntry: s.reader.Entry(),
	}
	for {
		s.conn, s.wel, err = ipc.Dial(s.opt.Instance, hello, 2*time.Second)
		if err == nil && !s.readerCurrent() {
			// The engine that welcomed us is not the one whose segments we
			// mapped (it restarted between our attach and our handshake):
			// start over with its segments.
			s.conn.Close()
			s.reader.Close()
			s.conn, s.reader = nil, nil
			if time.Now().After(deadline) {
				return fmt.Errorf("fdp/module: attach to %q: %w", s.opt.Instance, errStaleSegments)
			}
			return s.attach(ctx)
		}
		if err == nil {
			break
		}
		if errors.Is(err, ipc.ErrSchemaMismatch) || errors.Is(err, ipc.ErrVersionMismatch) || errors.Is(err, ipc.ErrRejected) || time.Now().After(deadline) {
			return fmt.Errorf("fdp/module: handshake with %q: %w", s.opt.Instance, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
	if s.modSeg, err = shm.Open(s.wel.Segments.Module, true); err != nil {
		return err
	}
	lm, err := layout.DecodeModule(s.modSeg.Data)
	if err != nil {
		return err
	}
	if s.prod, err = ipc.NewProducer(lm.Ring()); err != nil {
		return err
	}
	if s.tick, err = ipc.NewDoorbell(s.modSeg.Data, layout.OffMTick, layout.OffMTickNeedWake); err != nil {
		return err
	}
	if s.spec.Tier == Fast {
		warm := s.opt.WarmSpin
		if warm == 0 {
			warm = DefaultWarmSpin
		}
		s.tick.SetWarmSpin(warm) // negative: off
	}
	if s.done, err = ipc.NewDoorbell(s.modSeg.Data, layout.OffMDone, layout.OffMDoneNeedWake); err != nil {
		return err
	}
	if s.evSeg, err = shm.Open(s.wel.Segments.Events, false); err != nil {
		return err
	}
	evr, err := ipc.NewEventReader(s.evSeg.Data)
	if err != nil {
		return err
	}
	s.view = View{events: evr, cursor: evr.Tail(), slot: uint32(s.wel.Slot)}
	s.cmds = Commands{p: s.prod}
	b := s.modSeg.Data
	layout.Store32(b, layout.OffMPID, uint32(os.Getpid()))
	layout.Store64(b, layout.OffMStartTime, shm.SelfStartTime())
	layout.Store64(b, layout.OffMHeartbeat, uint64(time.Now().UnixNano()))
	s.opt.Logger.Info("attached", "instance", s.opt.Instance, "slot", s.wel.Slot, "tier", s.spec.Tier, "every", s.spec.Every)
	return nil
}

// errStaleSegments: the instance's segments were left by a dead engine.
var errStaleSegments = errors.New("segments of a dead engine (waiting for the new engine)")

// readerLive reports whether the creator of the mapped world segment is
// alive (a restart of the engine leaves the dead one's segments in place
// until the new engine removes them).
func (s *session) readerLive() bool {
	h := s.reader.Layout().Header
	return shm.ProcessAlive(h.CreatorPID, h.CreatorTime)
}

// readerCurrent reports whether the world segment now at the instance's
// path is the one the reader mapped (same creator and creation time).
func (s *session) readerCurrent() bool {
	seg, err := shm.Open(shm.SegmentName(s.opt.Instance, fsync.WorldSegment), false)
	if err != nil {
		return false
	}
	defer seg.Close()
	h, err := layout.DecodeHeader(seg.Data)
	if err != nil {
		return false
	}
	m := s.reader.Layout().Header
	return h.CreatorPID == m.CreatorPID && h.CreatorTime == m.CreatorTime && h.CreatedNano == m.CreatedNano
}

func (s *session) loop(ctx context.Context) error {
	b := s.modSeg.Data
	last := s.tick.Load()
	ticks := 0
	for {
		// A tick rung before this loop started waiting (e.g. right after the
		// handshake) is pending when its frame is newer than the last done.
		pending := layout.Load64(b, layout.OffMTickFrame) > layout.Load64(b, layout.OffMDoneFrame)&^layout.DoneFailed
		var v uint32
		var err error
		var wake uint64 // tick wake latency, 0 when the tick was already pending
		if pending {
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
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.conn.Done():
				return ErrEngineGone
			default:
				continue
			}
		}
		if err != nil {
			return err
		}
		last = v
		ws := s.tick.WakeStats()
		layout.Store64(b, layout.OffMWakeNanos, wake)
		layout.Store64(b, layout.OffMWakeWarm, ws.Warm)
		layout.Store64(b, layout.OffMWakeCold, ws.Cold)
		frame := layout.Load64(b, layout.OffMTickFrame)
		slot, dt := layout.UnpackTick(layout.Load64(b, layout.OffMTickLease))
		failed := s.runTick(frame, slot, dt)
		done := frame
		if failed {
			done |= layout.DoneFailed
		}
		layout.Store64(b, layout.OffMDoneFrame, done)
		_, _ = s.done.Ring()
		ticks++
		if s.opt.MaxTicks > 0 && ticks >= s.opt.MaxTicks {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.conn.Done():
			return ErrEngineGone
		default:
		}
	}
}

// runTick pins the tick's frame (latest for GDB, the leased slot for SoD),
// runs the module and commits its commands. It reports failure.
func (s *session) runTick(frame uint64, slot int, dt time.Duration) (failed bool) {
	var f *fsync.Frame
	var err error
	if slot < 0 {
		f, err = s.reader.Pin()
	} else {
		f, err = s.reader.OpenLeased(slot)
	}
	if err != nil {
		s.opt.Logger.Warn("no frame for tick", "frame", frame, "err", err)
		return true
	}
	s.view.f = f
	s.cmds.begin()
	err = s.safeTick(dt)
	if rerr := f.Release(); rerr != nil && err == nil {
		err = rerr // torn frame: what the module computed cannot be trusted
	}
	s.view.f = nil
	if err == nil && s.cmds.err != nil {
		err = s.cmds.err
	}
	if err != nil {
		s.prod.Abort()
		s.opt.Logger.Warn("tick failed", "frame", frame, "err", err)
		return true
	}
	s.prod.Commit()
	return false
}

// safeTick runs the module's Tick turning panics, including memory faults
// from writes into the read-only mapping, into errors.
func (s *session) safeTick(dt time.Duration) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("fdp/module: %s panicked: %v", s.spec.Name, r)
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
