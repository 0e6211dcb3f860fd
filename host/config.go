package host

// The engine's configuration: every knob with its default, and the checks
// New applies before it creates anything.

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/fdp-engine/fdp/layout"
)

// Config configures an Engine.
type Config struct {
	Instance     string
	FrameRate    int           // frames per second of Run; default 60
	FastDeadline time.Duration // how long a frame waits for fast modules; default 4 ms
	// Slots is the number of frame slots: the frames the publish and the
	// snapshots held can use at once. A slot holds shared memory only for
	// what it holds (SlotIdle, ShmLimit), so slots are cheap. Default 32.
	Slots         int
	EventLogBytes int // default 1 MiB
	RingBytes     int // per-module command ring; default 1 MiB
	// MaxEventBytesPerModule is a module's share of the event log per
	// frame: the log bytes (record headers included) of the events its
	// batches publish, and of the "created" notices of its creates. It is a
	// credit that grows by this much per frame and is saved for at most
	// EventBurstFrames frames (one frame's batch may use up to
	// EventBurstFrames times it). Records beyond the credit are rejected
	// (world.RejectEventQuota), the rest of the batch is applied. Default
	// EventLogBytes/64: one module at its full rate fills the log in about
	// 60 frames (64 less the EventBurstFrames of credit it may have saved;
	// about 1 s at 60 Hz), so a reader that reads every 30 frames loses
	// nothing to it. Negative: no quota.
	MaxEventBytesPerModule int
	// MaxEntitiesPerModule bounds the live entities a module created (an
	// entity stops counting when anyone destroys it; counted per module
	// name, across the module's deaths and restarts): creates beyond it are
	// rejected (world.RejectEntityQuota). Default a quarter of the world's
	// free capacity when the engine starts (world.World.MaxEntities minus
	// its live entities: the simulation's own are not the modules' to
	// take). Negative: no quota.
	MaxEntitiesPerModule int
	// Breaker: MaxFailures consecutive failures open a module's breaker;
	// after BreakerReset it gets one probe tick.
	MaxFailures  int
	BreakerReset time.Duration
	// NoPrewake turns off the pre-wake of fast modules (see
	// Engine.prewake); their ticks then wake them from FUTEX_WAIT.
	NoPrewake bool
	// PrewakeEarlyMax: when the last frame's simulation and publish together
	// took less, fast modules are pre-woken at the start of the frame, else
	// just before the publish. Default DefaultPrewakeEarlyMax.
	PrewakeEarlyMax time.Duration
	// PrewakeMax bounds how many fast modules are pre-woken per frame (the
	// first in slot order): pollers beyond the cores the engine does not use
	// only take turns with each other and with the engine. Default
	// runtime.NumCPU()-1, at least 1.
	PrewakeMax int
	// AllowUIDs are uids besides the engine's own whose processes may join
	// as modules (ipc.ControlConfig.AllowUIDs: the socket then is mode 0666
	// and admission is by SO_PEERCRED).
	AllowUIDs []uint32
	// MaxSlowTick is how long a slow tick (and its snapshot lease) may run
	// when the module's hello asks for no MaxRuntime (module.Spec.MaxRuntime).
	// Default 0: 10 periods of the module (Every frames), at least 1 s.
	// Always at most MaxSlowTickLimit.
	MaxSlowTick time.Duration
	// ShmLimit bounds the bytes of the world segment that hold memory: the
	// latest frame, the spare copy the next publish takes, and the snapshots
	// held (each the size of its components). A snapshot that would pass it
	// is refused (counted and logged as a refusal); it always leaves room for
	// the two copies the publish needs at the world's largest, so it must be
	// at least that (New says how much). 0: no bound but the file system's
	// room, where a full file system refuses the same way.
	ShmLimit int64
	// SlotIdle: a slot that was neither written nor held for this long gives
	// its memory back (a trim); the latest and the spare copy never do.
	// Default 2 s; negative: never.
	SlotIdle time.Duration
	// MaxModules bounds the modules attached at once (live or dead with
	// their slot kept for a restart): a hello beyond it, when every slot
	// is held by a live module, is refused at once with ipc.ErrModulesFull
	// (wire code "modules_full"), a permanent refusal. Default and bound
	// layout.MaxModules (256).
	MaxModules int
	// Readers is the number of entries of the external reader table (the
	// leases segment): tools and tests of the engine's uid that read
	// frames without being modules (fsync.Attach) claim one each; the
	// one beyond gets fsync.ErrNoReaderSlot at once. Modules do not use
	// it. Default layout.DefaultReaders (64), bound
	// [layout.MinReaders, layout.MaxReaders] (1..1024): the engine scans
	// every entry's pin at each slot claim.
	Readers int
	// Record configures the flight recorder (host/recorder.go); a zero
	// Record.File: none.
	Record RecordConfig
	Logger *slog.Logger
}

func (c *Config) defaults() {
	// Only zero means "the default": a negative value is refused by
	// validate, not silently replaced.
	if c.FrameRate == 0 {
		c.FrameRate = 60
	}
	if c.FastDeadline == 0 {
		c.FastDeadline = 4 * time.Millisecond
	}
	if c.Slots == 0 {
		c.Slots = 32
	}
	if c.SlotIdle == 0 {
		c.SlotIdle = 2 * time.Second
	}
	if c.EventLogBytes == 0 {
		c.EventLogBytes = 1 << 20
	}
	if c.RingBytes == 0 {
		c.RingBytes = 1 << 20
	}
	if c.MaxEventBytesPerModule == 0 {
		c.MaxEventBytesPerModule = c.EventLogBytes / 64
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = 5
	}
	if c.BreakerReset == 0 {
		c.BreakerReset = time.Second
	}
	if c.PrewakeEarlyMax == 0 {
		c.PrewakeEarlyMax = DefaultPrewakeEarlyMax
	}
	if c.PrewakeMax == 0 {
		c.PrewakeMax = max(runtime.NumCPU()-1, 1)
	}
	if c.MaxModules == 0 {
		c.MaxModules = layout.MaxModules
	}
	if c.Readers == 0 {
		c.Readers = layout.DefaultReaders
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Record.File != "" {
		c.Record.defaults()
	}
}

// DefaultConfig returns the configuration New runs with when every field is
// left zero, except Instance (required) and MaxEntitiesPerModule (0: a
// quarter of the world's free capacity, known only with the world).
func DefaultConfig() Config {
	var c Config
	c.defaults()
	return c
}

// MaxFrameRate bounds Config.FrameRate (a frame period of at least 100 µs).
const MaxFrameRate = 10_000

// validate rejects a configuration New cannot run (defaults filled in).
func (c *Config) validate() error {
	switch {
	case c.FrameRate < 1 || c.FrameRate > MaxFrameRate:
		return fmt.Errorf("%w: frame rate %d, want 1..%d", ErrConfig, c.FrameRate, MaxFrameRate)
	case c.FastDeadline < 0 || c.PrewakeEarlyMax < 0 || c.PrewakeMax < 0:
		return fmt.Errorf("%w: negative FastDeadline (%v), PrewakeEarlyMax (%v) or PrewakeMax (%d)", ErrConfig, c.FastDeadline, c.PrewakeEarlyMax, c.PrewakeMax)
	case !layout.ValidInstanceName(c.Instance):
		return fmt.Errorf("%w: instance name %q: 1..%d bytes of [A-Za-z0-9_-]", ErrConfig, c.Instance, layout.InstanceNameLen-1)
	case c.RingBytes < 0 || !layout.ValidRingCapacity(uint64(c.RingBytes)):
		// Checked here, not at the first module's join: every hello would
		// be refused for it.
		return fmt.Errorf("%w: RingBytes %d must be a power of two in [%d,%d]", ErrConfig, c.RingBytes, layout.MinRingCapacity, layout.MaxRingCapacity)
	case c.Slots < 2 || c.Slots > layout.MaxSlots:
		return fmt.Errorf("%w: %d frame slots, want 2..%d", ErrConfig, c.Slots, layout.MaxSlots)
	case c.MaxFailures < 1:
		return fmt.Errorf("%w: MaxFailures %d, want at least 1", ErrConfig, c.MaxFailures)
	case c.BreakerReset < 0 || c.MaxSlowTick < 0:
		return fmt.Errorf("%w: negative BreakerReset or MaxSlowTick", ErrConfig)
	case c.ShmLimit < 0:
		return fmt.Errorf("%w: negative ShmLimit %d", ErrConfig, c.ShmLimit)
	case c.MaxModules < 1 || c.MaxModules > layout.MaxModules:
		return fmt.Errorf("%w: MaxModules %d, want 1..%d", ErrConfig, c.MaxModules, layout.MaxModules)
	case c.Readers < layout.MinReaders || c.Readers > layout.MaxReaders:
		return fmt.Errorf("%w: %d external readers, want %d..%d", ErrConfig, c.Readers, layout.MinReaders, layout.MaxReaders)
	}
	if err := c.Record.validate(); err != nil {
		return err
	}
	if _, err := layout.ComputeEventsGeometry(c.EventLogBytes); err != nil {
		return fmt.Errorf("%w: EventLogBytes: %w", ErrConfig, err)
	}
	return nil
}

// ErrConfig is wrapped by New's refusals of a configuration.
var ErrConfig = errors.New("invalid engine configuration")

// DefaultPrewakeEarlyMax is the longest lead the engine gives a pre-wake by
// default (Config.PrewakeEarlyMax). It is half of module.DefaultWarmSpin, so
// that a pre-woken module is still polling when its tick comes.
const DefaultPrewakeEarlyMax = time.Millisecond
