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
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fdp-engine/fdp/internal/logs"
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
	// instead of dropping it. A module (re)joining is due at once. 0 means
	// 1, or, with a WakeOn, only when woken; below 0 (or above
	// ipc.MaxEvery) Run refuses (ErrInvalidSpec), as the engine refuses
	// such a hello.
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
	// WakeOn (slow tier) makes the module reactive: it also runs in the
	// frame in which one of the named event types is published or one of
	// the named components changes (see WakeOn).
	WakeOn WakeOn
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
	// Tier and Every, when set (not "" and not 0), replace the module's
	// Spec.Tier and Spec.Every: the supervisor's config sets them too
	// (MainOptions reads them from $FDP_TIER and $FDP_EVERY). A negative
	// Every is invalid (ErrInvalidSpec), like an invalid Spec.Every.
	Tier  string
	Every int
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
	// good). Run returns once the engine has played back the last tick's
	// batch and seen it done (at most 2 s), so that a process that exits
	// then loses nothing.
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
// $FDP_INSTANCE (required: there is no default instance). It exits the
// process.
func Main(reg *world.Registry, m Module) { MainOptions(m, Options{Registry: reg}) }

// MainOptions is Main with options: an empty Instance is read from
// $FDP_INSTANCE (neither set: refused, exit 78), empty Name and Group from $FDP_MODULE and
// $FDP_GROUP, an empty Tier and a zero Every from $FDP_TIER and $FDP_EVERY
// (all set by the supervisor from its config; unset or empty variables
// leave the Spec's), a nil Logger logs to stderr, in
// the format $FDP_LOG_FORMAT names (NewLogger: text by default; the
// supervisor sets json); either logger gets module=<name> on every record
// of the SDK's. It exits the process: 0 after SIGTERM or SIGINT;
// layout.ExitRefused (78) with one "module refused by the engine" line when
// Run's error is a permanent refusal (Refused), so that the supervisor does
// not restart it, or with one "module refused" line when its spec is
// invalid (ErrInvalidSpec: no instance, $FDP_TIER not "fast" or "slow",
// $FDP_EVERY not a whole number 1..ipc.MaxEvery, $FDP_LOG_FORMAT not "text"
// or "json" with a nil Logger, an invalid Spec); 1 with one "module
// stopped" line on any other error.
func MainOptions(m Module, opt Options) {
	if opt.Instance == "" {
		opt.Instance = os.Getenv("FDP_INSTANCE")
	}
	if opt.Name == "" {
		opt.Name = os.Getenv("FDP_MODULE")
	}
	if opt.Group == "" {
		opt.Group = os.Getenv("FDP_GROUP")
	}
	envErr := envTierEvery(&opt)
	if envErr == nil && opt.Instance == "" {
		// No default instance: a module started by hand without one would
		// attach to whatever engine runs under the default name.
		envErr = fmt.Errorf("%w: no instance: set $FDP_INSTANCE (engine up sets it) or Options.Instance", ErrInvalidSpec)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	name := opt.Name
	if name == "" {
		name = m.Spec().Name
	}
	if opt.Logger == nil {
		log, err := NewLogger("")
		if envErr == nil {
			envErr = err
		}
		opt.Logger = log
	}
	// The SDK's records name the module, in the user's logger too.
	opt.Logger = opt.Logger.With("module", name)
	setProcessName(name)
	err := envErr
	if err == nil {
		err = Run(ctx, m, opt)
	}
	switch {
	case err == nil || errors.Is(err, context.Canceled):
	case errors.Is(err, ErrInvalidSpec):
		// Refused before any engine saw it: the same line says so.
		opt.Logger.Error("module refused: a restart cannot change it", "err", err, "exit", layout.ExitRefused)
		stop()
		os.Exit(layout.ExitRefused)
	case Refused(err):
		opt.Logger.Error("module refused by the engine: a restart cannot change it", "err", err, "exit", layout.ExitRefused)
		stop()
		os.Exit(layout.ExitRefused)
	default:
		opt.Logger.Error("module stopped", "err", err)
		stop()
		os.Exit(1)
	}
}

// Refused reports whether err (from Run) is the engine's refusal of this
// module for a reason a restart of the module cannot change: its schema
// (ipc.ErrSchemaMismatch; layout.ErrSchema: its registry does not fit the
// engine's world), its control protocol version (ipc.ErrVersionMismatch), an
// invalid hello (ipc.ErrBadHello: name, group, tier or period; a hello too
// large to send, ipc.ErrMessageTooLarge; ErrInvalidSpec, a tier or period
// Run refuses before the hello, wraps ipc.ErrBadHello too) or a peer uid the engine does not
// admit (ipc.ErrPeerCred). Run returns these at once, without waiting out
// Options.AttachTimeout.
//
// A name owned by another uid (ipc.ErrNameOwned, wire code "name_owned"),
// a mask beyond the schema (ipc.ErrBadHello) and a full module table
// (ipc.ErrModulesFull, "modules_full": every slot held by a live module)
// are permanent too: a full table frees a slot only when a module that
// holds one stops for good, and a restarted module would only take turns
// with the modules that crash (docs/ARCHITECTURE.md, "Caps"). The engine's
// other admission refusals (ipc.ErrRejected: the name already connected, a
// segment it could not create) are not: they can clear (the live holder of
// the name dies).
// Run returns them at once too; MainOptions exits 1, and a supervisor's
// restart backoff and circuit breaker stop a module refused again and
// again (with `engine up`'s default config, after 6 refusals in about
// 2 s).
func Refused(err error) bool {
	return errors.Is(err, ErrInvalidSpec) || errors.Is(err, ipc.ErrSchemaMismatch) || errors.Is(err, layout.ErrSchema) ||
		errors.Is(err, ipc.ErrVersionMismatch) || errors.Is(err, ipc.ErrBadHello) ||
		errors.Is(err, ipc.ErrMessageTooLarge) || errors.Is(err, ipc.ErrPeerCred) ||
		errors.Is(err, ipc.ErrNameOwned) || errors.Is(err, ipc.ErrModulesFull)
}

// session is one module process attached to an engine; Run replaces its
// engine-side parts when it rejoins a restarted engine.
type session struct {
	m    Module
	spec Spec
	opt  Options
	// obs are the module's lifecycle observers (Observer), observing
	// whether it registered any, sub what it subscribes to (lifecycle.go).
	obs       Observers
	observing bool
	sub       world.Lifecycle

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
	if !layout.ValidInstanceName(opt.Instance) {
		// Refused before dialling: no socket of such a name can exist, and
		// the attach timeout would only delay the same answer.
		return fmt.Errorf("%w: instance %q: want 1..%d characters of [A-Za-z0-9_-]", ErrInvalidSpec, opt.Instance, layout.InstanceNameLen-1)
	}
	if opt.AttachTimeout == 0 {
		opt.AttachTimeout = 10 * time.Second
	}
	if opt.RejoinTimeout == 0 {
		opt.RejoinTimeout = DefaultRejoinTimeout
	}
	spec := m.Spec()
	if opt.Name != "" {
		spec.Name = opt.Name
	}
	if opt.Group != "" {
		spec.Group = opt.Group
	}
	if opt.Tier != "" {
		spec.Tier = opt.Tier
	}
	if opt.Every < 0 {
		return fmt.Errorf("%w: Options.Every %d, want 1..%d (%w)", ErrInvalidSpec, opt.Every, ipc.MaxEvery, ipc.ErrBadHello)
	}
	if opt.Every != 0 {
		spec.Every = opt.Every
	}
	if spec.Every == 0 && spec.WakeOn.Empty() {
		spec.Every = 1 // the zero Spec's period: every frame (with a WakeOn: only when woken)
	}
	logOverrides(opt.Logger, m.Spec(), spec)
	if err := validSpec(&spec); err != nil {
		return err
	}
	if spec.Reads.Empty() {
		spec.Reads = opt.Registry.Mask() // see Spec.Reads
	}
	if err := shm.CheckDir(); err != nil {
		// Said first: the engine's socket is in that directory, and the
		// attach would only time out without it.
		return err
	}
	s := &session{m: m, spec: spec, opt: opt}
	if ob, ok := m.(Observer); ok {
		ob.Observe(&s.obs)
	}
	if err := checkSubscriptions(&spec, &s.obs, opt.Registry); err != nil {
		return err
	}
	s.sub = subscription(&s.obs, spec.WakeOn, opt.Registry.Mask())
	s.observing = !s.obs.Subscription().Empty()
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
		"after", logs.Round3(time.Since(lost)))
	return nil
}

// ErrInvalidSpec is returned by Run (wrapping ipc.ErrBadHello, the engine's
// code for the same hello) for a Spec, Options or environment the engine
// would refuse: a tier other than Fast and Slow, a period (Every) below 1 or
// above ipc.MaxEvery. It is a permanent refusal (Refused): Run returns it
// before it dials the engine.
var ErrInvalidSpec = errors.New("invalid module spec")

// validSpec checks what of spec the engine would refuse as an invalid hello
// and the SDK can see without it (the name and group are the engine's to
// check: their rule is the segment layout's).
func validSpec(spec *Spec) error {
	switch {
	case spec.Tier != Fast && spec.Tier != Slow:
		return fmt.Errorf("%w: tier %q, want %q or %q (%w)", ErrInvalidSpec, spec.Tier, Fast, Slow, ipc.ErrBadHello)
	case spec.Every < 0 || spec.Every > ipc.MaxEvery || spec.Every == 0 && spec.WakeOn.Empty():
		return fmt.Errorf("%w: every %d, want 1..%d (%w)", ErrInvalidSpec, spec.Every, ipc.MaxEvery, ipc.ErrBadHello)
	}
	return nil
}

// envTierEvery sets opt.Tier and opt.Every from $FDP_TIER and $FDP_EVERY
// where they are set and opt's are not. A value set but invalid is an
// error (ErrInvalidSpec), not ignored: a supervisor config that says slow
// every 5 must not run fast every 1 without a word.
func envTierEvery(opt *Options) error {
	if v := os.Getenv("FDP_TIER"); v != "" && opt.Tier == "" {
		if v != Fast && v != Slow {
			return fmt.Errorf("%w: $FDP_TIER=%q, want %q or %q (%w)", ErrInvalidSpec, v, Fast, Slow, ipc.ErrBadHello)
		}
		opt.Tier = v
	}
	if v := os.Getenv("FDP_EVERY"); v != "" && opt.Every == 0 {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > ipc.MaxEvery {
			return fmt.Errorf("%w: $FDP_EVERY=%q, want a whole number of frames 1..%d (%w)", ErrInvalidSpec, v, ipc.MaxEvery, ipc.ErrBadHello)
		}
		opt.Every = n
	}
	return nil
}

// EnvInt reads an integer environment variable with a default.
func EnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
