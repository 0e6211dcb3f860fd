package host

import (
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
)

// State is a module's state as the engine sees it. It is the statistics
// block's state word (layout.ModuleState), so that `engine dump` shows the
// same names.
type State = layout.ModuleState

// Module states.
const (
	// StateJoined: admitted, no tick completed yet.
	StateJoined = layout.ModuleJoined
	// StateRunning: its last tick succeeded.
	StateRunning = layout.ModuleRunning
	// StateBroken: its circuit breaker is open.
	StateBroken = layout.ModuleBreakerOpen
	// StateDead: its connection ended or its segment faulted; the slot is
	// kept for a restart.
	StateDead = layout.ModuleDead
	// StateLeft: shown (ModuleInfo, the statistics block) for a module
	// whose process ended after saying it was leaving: a clean stop, not a
	// death. Internally the module is StateDead with left set.
	StateLeft = layout.ModuleLeft
)

// DoneFailed is layout.DoneFailed, kept for existing callers.
const DoneFailed = layout.DoneFailed

// ModuleStats are per-module counters.
type ModuleStats struct {
	Runs, Late, Failures, Rejected, Applied, Skipped, Deaths, Joins, BreakerTrips uint64
	// LagFrames is how many frames the engine advanced between the frame
	// of the module's last completed tick and the frame in which it saw the
	// tick done (0: done within its own frame, the fast tier on time);
	// LagMax the largest.
	LagFrames, LagMax uint64
	// Snapshots counts the snapshots leased to the module (slow tier),
	// CatchUps those it got apart from its convoy group: it was busy when
	// its group was dispatched, or joined a group that has a phase (see
	// docs/ARCHITECTURE.md, "Scheduling").
	Snapshots, CatchUps uint64
	// Prewoken counts the pre-wakes that found the module asleep on its
	// tick bell and woke it (fast tier only).
	Prewoken uint64
	// BadDone counts done frames beyond the tick the engine gave (ignored).
	BadDone uint64
	// SegmentFaults counts the times the module was disconnected because
	// its segment faulted under the engine or was found truncated (the
	// module truncated it, or punched a hole the shm directory could not
	// fill again).
	SegmentFaults uint64
	// Overruns counts slow ticks that ran longer than their runtime
	// (Spec.MaxRuntime or Config.MaxSlowTick), each also a failure;
	// Revoked the snapshot leases the engine ended for them.
	Overruns, Revoked uint64
	// PinsDropped counts fast ticks whose pin the engine stopped honouring
	// because the tick outlasted the pin limit while a slot was needed.
	PinsDropped uint64
	// EventsDelivered and EventsLost are what the module's acknowledgements
	// (layout.CmdAckEvents) report: events its ticks were given, and events
	// it lost to overruns of the event log.
	EventsDelivered, EventsLost uint64
	// Wakes counts the ticks dispatched to a slow module with a pending
	// wake (Spec.WakeOn: an event type or component it watches), whether
	// or not its period was due too.
	Wakes uint64
}

// Module is the engine's record of a module process. Its slot survives the
// process: a restarted module with the same name gets the same slot.
type Module struct {
	Slot     int
	Name     string
	Tier     string
	Every    int
	Mask     world.Mask
	Group    string
	PID      int
	pidStart uint64 // start time of PID (clock ticks since boot), read at admission
	// UID owns the name: the uid (SO_PEERCRED) of the process that first
	// registered it. Only processes of that uid may join under the name for
	// the engine's lifetime.
	UID   uint32
	State State
	Stats ModuleStats

	seg     *shm.Segment
	lm      *layout.Module
	cons    *ipc.Consumer
	tick    *ipc.Doorbell
	done    *ipc.Doorbell
	play    *world.Playback
	lastRun uint64 // frame of the last dispatch
	// next is the first frame at which the module is due for a regular
	// tick (host/dispatch.go, "due"): the frame of its last regular
	// dispatch plus Every, or 0 (at once) for a module that (re)joined.
	// owed: a slow module whose convoy group was dispatched while it was
	// busy (or that joined a group with a phase) gets a catch-up tick as
	// soon as it is idle, without moving next.
	next         uint64
	owed         bool
	busy         bool // dispatched and not done yet
	failStreak   int
	breakerUntil time.Time
	probing      bool
	holdSlot     int        // slow tier: slot leased for the running tick (-1 none)
	batchSeq     uint64     // batches played back (the recorder's batch sequence numbers)
	snapMask     world.Mask // components of the last snapshot leased to it
	tickStart    time.Time  // when the running tick was rung
	maxRuntime   time.Duration
	overran      bool      // the running slow tick passed maxRuntime (counted once)
	diedAt       time.Time // when the engine took the module for dead
	left         bool      // dead after saying it was leaving: shown as StateLeft
	// evAck is the event cursor acknowledged by the module's last played
	// batch, kept across its restarts (host/evack.go).
	evAck ipc.EventCursor
	// moduleSubs: its lifecycle subscription and wake_on (host/lifecycle.go).
	moduleSubs
	// tickHist: tick durations from the ring to the done seen.
	tickHist Histogram
	tickLast time.Duration
	// statsDirty: the statistics block of the segment is behind (written
	// at the end of the frame, writeModStats); statsWritten is what the
	// engine last wrote there (flushModStats compares with it).
	statsDirty   bool
	statsWritten layout.ModStats
}

func groupKey(h ipc.Hello) string {
	if h.Group == "solo" {
		return "solo:" + h.Name
	}
	if h.Group != "" {
		return "group:" + h.Group
	}
	return fmt.Sprintf("auto:%s/%d", h.Tier, h.Every)
}

// admit is the control-plane handler: it registers (or re-registers) a
// module and creates its segment.
func (e *Engine) admit(h ipc.Hello, peer ipc.PeerCred) (ipc.Welcome, error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	e.mu.Lock()
	defer e.mu.Unlock()
	var m *Module
	if uid, ok := e.nameOwners[h.Name]; ok && uid != peer.UID {
		// The name's slot may have been reused for another name (see
		// reuseDeadSlot): its owner is still its first uid.
		e.NameRefused++
		return ipc.Welcome{}, fmt.Errorf("module name %q belongs to uid %d, the peer (pid %d) is uid %d (%w)",
			h.Name, uid, peer.PID, peer.UID, ErrNameOwned)
	}
	for _, x := range e.mods {
		if x != nil && x.Name == h.Name {
			if x.UID != peer.UID {
				// A name is owned by the uid that registered it first, for
				// the engine's lifetime: a module of another uid cannot
				// take the slot (and what the engine attributes to it) of
				// a dead module.
				e.NameRefused++
				return ipc.Welcome{}, fmt.Errorf("module name %q belongs to uid %d, the peer (pid %d) is uid %d (%w)",
					h.Name, x.UID, peer.PID, peer.UID, ErrNameOwned)
			}
			if x.State != StateDead && e.incarnationGone(x) {
				// A restarted module can connect before the frame loop has
				// handled its predecessor's death (or before the control
				// plane has even seen that connection close): reclaim the
				// dead incarnation now rather than refuse the new one.
				e.reclaim(x)
			}
			if x.State != StateDead {
				return ipc.Welcome{}, fmt.Errorf("module %q is already connected (pid %d)", h.Name, x.PID)
			}
			m = x
		}
	}
	reads, _ := h.ReadMask() // ipc validated MaskExt's length
	if world.Mask(reads).Empty() {
		// A module that declares no components reads all of them (the
		// SDK's Spec.Reads rule, also for clients in other languages).
		reads = e.allMask
		h.SetReadMask(reads)
	}
	if extra := world.Mask(reads).AndNot(e.allMask); !extra.Empty() {
		e.BadMasks++
		return ipc.Welcome{}, fmt.Errorf("%w: component mask %v names %s, beyond the schema's %d",
			ipc.ErrBadHello, world.Mask(reads), extra.Named(), e.w.Registry().Len())
	}
	subs, err := e.subscriptions(h)
	if err != nil {
		e.BadMasks++
		return ipc.Welcome{}, err
	}
	if m == nil {
		if len(e.mods) >= e.cfg.MaxModules {
			// The table is full: the slot of the module that died first
			// goes to the new name. With none, the refusal is at once
			// and permanent (ipc.ErrModulesFull; docs/ARCHITECTURE.md,
			// "Caps").
			if m = e.reuseDeadSlot(); m == nil {
				e.ModulesRefused++
				return ipc.Welcome{}, errTooManyModules(e.cfg.MaxModules)
			}
		} else {
			m = &Module{Slot: len(e.mods), holdSlot: -1}
		}
		m.Name, m.UID, m.play = h.Name, peer.UID, world.NewPlayback(e.w)
		// A module's event payload is bounded by the module limit and by
		// the log's own (a quarter of its capacity): one rule, checked at
		// playback (bad_length), so nothing the playback accepts is
		// refused by the log afterwards (docs/PROTOCOL.md, "Limits").
		m.play.MaxEventSize = min(layout.MaxModuleEventPayload, e.evw.MaxPayload())
		if err := e.createModuleSegment(m, h); err != nil {
			// A reused slot stays dead and empty (first to reuse again).
			m.State, m.diedAt = StateDead, time.Time{}
			return ipc.Welcome{}, err
		}
		if m.Slot == len(e.mods) {
			e.mods = append(e.mods, m)
		}
		if len(e.nameOwners) < maxNameOwners {
			e.nameOwners[h.Name] = peer.UID
		}
	} else {
		// A rejoin gets a new segment: the previous incarnation may have
		// truncated its segment or punched holes in it, and nothing in it
		// survives a death anyway (its ring is discarded, its pin cleared).
		e.dropSegment(m)
		if err := e.createModuleSegment(m, h); err != nil {
			return ipc.Welcome{}, err
		}
	}
	e.doneBell[m.Slot].Store(m.done)
	files, err := e.moduleFiles(m)
	if err != nil {
		return ipc.Welcome{}, err
	}
	m.Tier, m.Every, m.Mask, m.Group = h.Tier, h.Every, reads, groupKey(h)
	m.moduleSubs = subs
	e.refreshSubscriptions()
	m.PID = peer.PID
	m.maxRuntime, m.overran = e.slowTickLimit(h), false
	m.pidStart, _ = shm.ProcStartTime(peer.PID) // 0 if it is gone already: then it reads as dead
	// The module's reader and holder id is its slot. A pin a previous
	// incarnation left in the segment is cleared (and is not watched: the
	// engine watches a pin only during a tick it rang).
	e.pub.UnwatchPin(m.Slot)
	e.pub.ReleaseHolderAll(m.Slot)
	m.State, m.busy, m.failStreak, m.probing, m.holdSlot, m.left = StateJoined, false, 0, false, -1, false
	e.joinPhase(m)
	m.Stats.Joins++
	if e.guard(func() {
		// (The ring is new and empty, head = tail = 0: it needs no reset,
		// and its resets counter reads 0 until the engine discards data.)
		layout.Store64(m.seg.Data, layout.OffMPin, 0)
		e.writeEventAck(m)
		e.writeModStats(m)
	}) {
		return ipc.Welcome{}, fmt.Errorf("module %q: its new segment faulted before the welcome", h.Name)
	}
	e.log.Info("module joined", "module", m.Name, "slot", m.Slot, "pid", m.PID, "tier", m.Tier, "every", m.Every, "group", m.Group)
	return ipc.Welcome{
		Slot: m.Slot,
		Segments: ipc.SegmentNames{
			World:  e.segs.World.Name,
			Events: e.evSeg.Name,
			Module: m.seg.Name,
		},
		ConvoyGroup: m.Slot,
		FramePeriod: int64(e.period),
		MaxRuntime:  int64(m.maxRuntime),
		Files:       files,
	}, nil
}

// moduleFiles opens the descriptors a welcome passes (ipc.WelcomeFD*
// order): the world and the event log read-only, so that the module can map
// them only PROT_READ and cannot truncate them, and its own segment
// read-write. Each is a new open file description (shm.Segment.Reopen),
// never the engine's own, which holds the creator lock.
func (e *Engine) moduleFiles(m *Module) ([]*os.File, error) {
	files := make([]*os.File, 0, ipc.WelcomeFDs)
	for _, o := range []struct {
		seg      *shm.Segment
		writable bool
	}{{e.segs.World, false}, {e.evSeg, false}, {m.seg, true}} {
		f, err := o.seg.Reopen(o.writable)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

func (e *Engine) createModuleSegment(m *Module, h ipc.Hello) error {
	g, err := layout.ComputeModuleGeometry(e.cfg.RingBytes)
	if err != nil {
		return err
	}
	name := layout.ModuleSegmentName(e.cfg.Instance, m.Slot)
	// The module's segment comes from the directory the world grows in:
	// it must leave the room the publish's two copies may still need at
	// the world's largest (as a snapshot must), or a world that grows
	// after modules joined stops publishing (found from outside).
	if err := e.segs.World.NeedSpace(g.TotalSize + int(e.pub.PublishReserve())); err != nil {
		return fmt.Errorf("module segment: %w", err)
	}
	seg, err := shm.Create(name, g.TotalSize)
	if err != nil {
		return err
	}
	tier := uint32(layout.ModuleTierFast)
	if h.Tier == ipc.TierSlow {
		tier = layout.ModuleTierSlow
	}
	reads, _ := h.ReadMask() // validated by the caller
	info := layout.ModuleInfo{Slot: uint32(m.Slot), Name: h.Name, Tier: tier, Frequency: uint32(h.Every), Mask: reads, Group: h.Group}
	if err := layout.EncodeModule(seg.Data, g, e.header(), info); err != nil {
		seg.Unlink()
		seg.Close()
		return err
	}
	layout.MarkReady(seg.Data)
	lm, err := layout.DecodeModule(seg.Data)
	if err == nil {
		m.cons, err = ipc.NewConsumer(lm.Ring())
	}
	if err == nil {
		m.tick, err = ipc.NewDoorbell(seg.Data, layout.OffMTick, layout.OffMTickNeedWake)
	}
	if err == nil {
		m.done, err = ipc.NewDoorbell(seg.Data, layout.OffMDone, layout.OffMDoneNeedWake)
	}
	if err != nil {
		seg.Unlink()
		seg.Close()
		return err
	}
	m.seg, m.lm = seg, lm
	return nil
}

// incarnationGone reports whether the process registered for m has ended:
// its connection closed, or the process (pid and start time) is gone.
func (e *Engine) incarnationGone(m *Module) bool {
	return e.closing[m.Slot].Load() == int64(m.PID) || !shm.ProcessAlive(uint32(m.PID), m.pidStart)
}

// onClose runs on a control-plane goroutine when a module's connection
// ends: the module is dead (or exited). The frame loop reclaims it.
func (e *Engine) onClose(slot, pid int) {
	if slot < 0 || slot >= layout.MaxModules {
		return
	}
	e.deathMu.Lock()
	e.deaths = append(e.deaths, death{slot: slot, pid: pid})
	e.deathMu.Unlock()
	e.closing[slot].Store(int64(pid))
	e.bellMu.RLock()
	defer e.bellMu.RUnlock()
	if d := e.doneBell[slot].Load(); d != nil {
		ringDone(d) // wake a frame waiting for this module
	}
}

// ringDone rings a dead module's done bell from a control-plane goroutine.
// The module may have truncated its segment: a fault is ignored here (the
// frame loop finds it and drops the segment, see moduleFaulted).
func ringDone(d *ipc.Doorbell) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
		}
	}()
	_, _ = d.Ring()
}

// ErrNameOwned refuses a hello whose module name was registered by a
// process of another uid (Engine.NameRefused); the module gets the wire
// code "name_owned".
var ErrNameOwned = ipc.ErrNameOwned

// NamesRefused returns how many hellos were refused because their module
// name belongs to another uid (ErrNameOwned).
func (e *Engine) NamesRefused() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.NameRefused
}

// death is a closed control connection.
type death struct{ slot, pid int }

// ModuleDied reclaims a module known to be dead (e.g. reaped by the
// supervisor) by pid. It is safe to call more than once.
func (e *Engine) ModuleDied(pid int) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // reclaim resets the ring (see guard)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range e.mods {
		if m != nil && m.PID == pid && m.State != StateDead {
			e.reclaim(m)
		}
	}
}

// shownState is the state reported for m: StateLeft for a module that
// stopped cleanly, else its state.
func (m *Module) shownState() State {
	if m.State == StateDead && m.left {
		return StateLeft
	}
	return m.State
}

// handleDeaths reclaims modules whose connection closed. Called with mu held.
func (e *Engine) handleDeaths() {
	e.deathMu.Lock()
	defer e.deathMu.Unlock()
	for _, d := range e.deaths {
		// A late notice about an earlier incarnation of the slot (another
		// pid) must not kill the module that rejoined since.
		if d.slot < len(e.mods) && e.mods[d.slot].State != StateDead && e.mods[d.slot].PID == d.pid {
			e.reclaim(e.mods[d.slot])
		}
	}
	e.deaths = e.deaths[:0]
}

// reclaim stops watching a dead module's pin, releases its leases and
// resets its ring, discarding its commands. Its slot is kept for a restart.
func (e *Engine) reclaim(m *Module) {
	e.pub.UnwatchPin(m.Slot)
	e.pub.ReleaseHolderAll(m.Slot)
	m.State, m.busy, m.holdSlot, m.diedAt = StateDead, false, -1, time.Now()
	// A process that said it was leaving (its own word: it can only
	// speak for itself) stopped cleanly: not a death in any summary.
	m.left = false
	if m.seg != nil {
		e.guard(func() { m.left = layout.Load64(m.seg.Data, layout.OffMLeaving) != 0 })
	}
	m.statsDirty = true
	if m.left {
		e.log.Info("module left; leases and ring reclaimed", "module", m.Name, "slot", m.Slot, "pid", m.PID)
	} else {
		m.Stats.Deaths++
		e.log.Info("module died; leases and ring reclaimed", "module", m.Name, "slot", m.Slot, "pid", m.PID)
	}
	if m.cons != nil {
		e.guard(func() { _ = m.cons.Reset() })
	}
}

// ModuleInfo is a snapshot of a module's state for reporting.
type ModuleInfo struct {
	Slot         int
	Name, Tier   string
	State        State
	Every, PID   int
	Group        string
	SnapshotMask world.Mask // union mask of the last snapshot it got (slow tier)
	Stats        ModuleStats
	// Wake: how the current process's tick wake-ups went, as it counted
	// them in its segment (warm: seen while polling; cold: from FUTEX_WAIT).
	Wake                  ipc.WakeStats
	PlaybackRejectReasons map[string]uint64
	// Ticks is how many ticks the engine saw done; TickP50, TickP99
	// (bucket upper bounds, within 2x) and TickMax their durations from the
	// engine's ring to the done it saw.
	Ticks                     uint64
	TickP50, TickP99, TickMax time.Duration
}

// Modules returns a snapshot of the module table.
func (e *Engine) Modules() []ModuleInfo {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]ModuleInfo, 0, len(e.mods))
	for _, m := range e.mods {
		mi := ModuleInfo{Slot: m.Slot, Name: m.Name, Tier: m.Tier, State: m.shownState(), Every: m.Every, PID: m.PID, Group: m.Group, SnapshotMask: m.snapMask, Stats: m.Stats,
			PlaybackRejectReasons: map[string]uint64{}, Ticks: m.tickHist.Count(), TickP50: m.tickHist.Percentile(50),
			TickP99: m.tickHist.Percentile(99), TickMax: m.tickHist.Max()}
		if m.seg != nil {
			if e.guard(func() {
				mi.Wake = ipc.WakeStats{Warm: layout.Load64(m.seg.Data, layout.OffMWakeWarm), Cold: layout.Load64(m.seg.Data, layout.OffMWakeCold)}
			}) {
				mi.State, mi.Stats = m.State, m.Stats
			}
		}
		for r, n := range m.play.Stats.Rejected {
			if n > 0 {
				mi.PlaybackRejectReasons[world.RejectReason(r).String()] = n
			}
		}
		out = append(out, mi)
	}
	return out
}
