package host

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"runtime/debug"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// Module states.
const (
	StateJoined  = "joined"
	StateDead    = "dead"
	StateBroken  = "breaker-open"
	StateRunning = "running"
)

// DoneFailed is layout.DoneFailed, kept for existing callers.
const DoneFailed = layout.DoneFailed

// ModuleStats are per-module counters.
type ModuleStats struct {
	Runs, Late, Failures, Rejected, Applied, Skipped, Deaths, Joins, BreakerTrips uint64
	LagFrames                                                                     uint64
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
	State string
	Stats ModuleStats

	seg     *shm.Segment
	lm      *layout.Module
	cons    *ipc.Consumer
	tick    *ipc.Doorbell
	done    *ipc.Doorbell
	play    *world.Playback
	lastRun uint64 // frame of the last dispatch
	// waiting: no tick was dispatched to this incarnation yet. A slow
	// module that (re)joins is due at once instead of waiting for the next
	// frame that is a multiple of Every (up to a whole period, e.g. 100 ms
	// at every 6 frames of 60 Hz, after an engine restart).
	waiting      bool
	busy         bool // dispatched and not done yet
	failStreak   int
	breakerUntil time.Time
	probing      bool
	holdSlot     int        // slow tier: slot leased for the running tick (-1 none)
	snapMask     world.Mask // components of the last snapshot leased to it
	tickStart    time.Time  // when the running tick was rung
	maxRuntime   time.Duration
	overran      bool      // the running slow tick passed maxRuntime (counted once)
	diedAt       time.Time // when the engine took the module for dead
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
	if extra := h.Mask &^ uint64(e.allMask); extra != 0 {
		e.BadMasks++
		return ipc.Welcome{}, fmt.Errorf("component mask %#x names components beyond the schema's %d (bits %#x)",
			h.Mask, e.w.Registry().Len(), extra)
	}
	if m == nil {
		if len(e.mods) >= layout.MaxModules {
			// The table is full: the slot of the module that died first
			// goes to the new name.
			if m = e.reuseDeadSlot(); m == nil {
				e.ModulesRefused++
				return ipc.Welcome{}, errTooManyModules(layout.MaxModules)
			}
		} else {
			m = &Module{Slot: len(e.mods), holdSlot: -1}
		}
		m.Name, m.UID, m.play = h.Name, peer.UID, world.NewPlayback(e.w)
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
	m.Tier, m.Every, m.Mask, m.Group = h.Tier, h.Every, world.Mask(h.Mask), groupKey(h)
	m.PID = peer.PID
	m.maxRuntime, m.overran = e.slowTickLimit(h), false
	m.pidStart, _ = shm.ProcStartTime(peer.PID) // 0 if it is gone already: then it reads as dead
	// The module's reader and holder id is its slot. A pin a previous
	// incarnation left in the segment is cleared (and is not watched: the
	// engine watches a pin only during a tick it rang).
	e.pub.UnwatchPin(m.Slot)
	e.pub.ReleaseHolderAll(m.Slot)
	m.State, m.busy, m.failStreak, m.probing, m.holdSlot = StateJoined, false, 0, false, -1
	m.waiting = true
	m.Stats.Joins++
	if e.guard(func() {
		layout.Store64(m.seg.Data, layout.OffMPin, 0)
		_ = m.cons.Reset()
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
	seg, err := shm.Create(name, g.TotalSize)
	if err != nil {
		return err
	}
	tier := uint32(0)
	if h.Tier == ipc.TierSlow {
		tier = 1
	}
	info := layout.ModuleInfo{Slot: uint32(m.Slot), Name: h.Name, Tier: tier, Frequency: uint32(h.Every), Mask: h.Mask}
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
// process of another uid (Engine.NameRefused).
var ErrNameOwned = errors.New("a name is owned by the uid that registered it first")

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
	m.Stats.Deaths++
	e.log.Info("module died; leases and ring reclaimed", "module", m.Name, "slot", m.Slot, "pid", m.PID)
	if m.cons != nil {
		e.guard(func() { _ = m.cons.Reset() })
	}
}

// mayRun reports whether m may get a tick now (breaker logic), without
// side effects.
func (m *Module) mayRun(now time.Time) bool {
	switch m.State {
	case StateDead:
		return false
	case StateBroken:
		return !now.Before(m.breakerUntil)
	}
	return true
}

// available is mayRun for a tick about to be dispatched: a module whose
// breaker is open gets it as its one probe tick.
func (m *Module) available(now time.Time) bool {
	if !m.mayRun(now) {
		return false
	}
	if m.State == StateBroken {
		m.probing = true
	}
	return true
}

// ring gives m its tick (lease slot, -1 for a fast tick). It reports
// false when m's segment faulted (m is dead then).
func (e *Engine) ring(m *Module, slot int) bool {
	return !e.guard(func() { e.ringTick(m, slot) })
}

func (e *Engine) ringTick(m *Module, slot int) {
	dt := time.Duration(e.frame-m.lastRun) * e.period
	if m.lastRun == 0 {
		dt = e.period * time.Duration(m.Every)
	}
	b := m.seg.Data
	// The lease word before the frame word: a module checks for a pending
	// tick by comparing the tick frame with its done frame (e.g. after a
	// wait timed out), so once it sees the new frame it must also see the
	// new lease, not the previous tick's (released) slot.
	layout.Store64(b, layout.OffMTickLease, layout.PackTick(slot, dt))
	layout.Store64(b, layout.OffMTickFrame, e.frame)
	m.lastRun, m.busy, m.holdSlot, m.waiting = e.frame, true, slot, false
	m.tickStart, m.overran = time.Now(), false
	m.Stats.Runs++
	if slot < 0 {
		// A fast tick pins the latest frame: watch the module's pin word
		// until the tick is done (checkDone). Before the ring, so the pin
		// the module stores after it is scanned by every later claim.
		_ = e.pub.WatchPin(m.Slot, b, layout.OffMPin)
	}
	layout.Store64(b, layout.OffMTickStamp, ipc.MonoNanos())
	_, _ = m.tick.Ring()
}

// prewake wakes every fast module that this frame will tick and that sleeps
// on its tick bell, without ringing it (ipc.Doorbell.Prewake). Waking a
// sleeping process costs tens of microseconds on a VM whose idle vCPU halts;
// done ahead of the tick (see Step and Config.PrewakeEarlyMax), the wake-up
// overlaps the engine's own work, and the module polls its bell (its warm
// spin) until the tick is rung. Slow modules run at most every few frames on
// snapshots: they are not pre-woken; nor are fast modules beyond
// Config.PrewakeMax. The checks mirror dispatch without its side effects.
// Called with mu held.
func (e *Engine) prewake(now time.Time) {
	n := 0
	for _, m := range e.mods {
		if n >= e.cfg.PrewakeMax {
			return
		}
		if m.Tier != ipc.TierFast || !m.mayRun(now) {
			continue
		}
		e.guard(func() {
			if m.busy && layout.Load64(m.seg.Data, layout.OffMDoneFrame)&^layout.DoneFailed < m.lastRun {
				return // still running its previous tick: not asleep on the bell
			}
			n++ // counted whether it slept or not: it will run this frame
			if ok, _ := m.tick.Prewake(); ok {
				m.Stats.Prewoken++
			}
		})
	}
}

// dispatch rings fast modules every frame and slow modules on their
// frequency, leasing one snapshot per convoy group. Called with mu held.
func (e *Engine) dispatch(now time.Time) int {
	n := 0
	// Finish bookkeeping of modules that completed since the last frame.
	for _, m := range e.mods {
		if m.busy {
			e.checkDone(m)
		}
	}
	// Slow ticks past their runtime lose their snapshot before any new
	// snapshot is taken.
	e.revokeOverruns(now)
	for _, m := range e.mods {
		if m.Tier != ipc.TierFast || !m.available(now) {
			continue
		}
		if m.busy {
			m.Stats.Skipped++
			m.Stats.LagFrames = e.frame - m.lastRun
			continue
		}
		if e.ring(m, -1) {
			n++
		}
	}
	// Slow tier: group the due, idle members of each convoy.
	var done uint64 // modules handled (bit per slot)
	for i, m := range e.mods {
		if m.Tier != ipc.TierSlow || done&(1<<uint(i)) != 0 {
			continue
		}
		var members uint64
		var mask world.Mask
		var holders uint64
		for j := i; j < len(e.mods); j++ {
			x := e.mods[j]
			if x.Tier != ipc.TierSlow || x.Group != m.Group {
				continue
			}
			done |= 1 << uint(j)
			if (e.frame%uint64(x.Every) != 0 && !x.waiting) || !x.available(now) {
				continue
			}
			if x.busy {
				x.Stats.Skipped++
				x.Stats.LagFrames = e.frame - x.lastRun
				continue
			}
			members |= 1 << uint(j)
			mask |= x.Mask
			holders |= 1 << uint(x.Slot)
		}
		if members == 0 {
			continue
		}
		var slot int
		var st fsync.SnapshotStats
		var err error
		// The snapshot's claim scans the pins watched in module segments
		// (see Step's publish).
		for e.guard(func() { slot, st, err = e.pub.Snapshot(e.frame, mask, holders) }) {
		}
		if errors.Is(err, fsync.ErrNoFreeSlot) && e.dropOverduePins(time.Now()) > 0 {
			// Pins of fast ticks past their limit held the slots: retry.
			for e.guard(func() { slot, st, err = e.pub.Snapshot(e.frame, mask, holders) }) {
			}
		}
		if err != nil {
			for mm := members; mm != 0; mm &= mm - 1 {
				e.mods[bits.TrailingZeros64(mm)].Stats.Skipped++
			}
			e.snapshotRefused(m.Group, bits.OnesCount64(members), err, now)
			continue
		}
		e.Snapshots++
		e.SnapBytes += uint64(st.BytesCopied)
		for mm := members; mm != 0; mm &= mm - 1 {
			x := e.mods[bits.TrailingZeros64(mm)]
			if x.State == StateDead {
				continue // faulted since: its lease was released
			}
			x.snapMask = mask
			if e.ring(x, slot) {
				n++
			}
		}
	}
	return n
}

// checkDone completes a module's tick if its done frame has caught up. A
// module whose segment faulted is dead, and its tick done.
func (e *Engine) checkDone(m *Module) (done bool) {
	if e.guard(func() { done = e.checkTick(m) }) {
		return true
	}
	return done
}

func (e *Engine) checkTick(m *Module) bool {
	d := layout.Load64(m.seg.Data, layout.OffMDoneFrame)
	if d&^layout.DoneFailed < m.lastRun {
		return false
	}
	if d&^layout.DoneFailed > m.lastRun {
		// No module finishes a tick it was not given: a done frame beyond
		// the tick's is not the module's own (another process of the
		// engine's uid wrote into its segment; a module under another uid
		// cannot). It may have overwritten the module's real done, so
		// waiting for one could wait forever: the word is repaired to the
		// tick's frame (the module's next tick is then pending for it as
		// usual), the forgery counted, and the tick taken as done.
		layout.CAS64(m.seg.Data, layout.OffMDoneFrame, d, m.lastRun)
		m.Stats.BadDone++
		d = m.lastRun
	}
	m.busy = false
	e.pub.UnwatchPin(m.Slot) // the tick is over: its pin holds nothing
	if m.Tier == ipc.TierFast {
		// The module stored its wake latency for this tick before running
		// it (0: it found the tick pending and did not wait). It is the
		// module's word: an implausible value (above MaxWakeReport) is
		// counted and ignored.
		switch w := layout.Load64(m.seg.Data, layout.OffMWakeNanos); {
		case w == 0:
		case w > uint64(MaxWakeReport):
			e.BadWakeReports++
		default:
			e.WakeHist.Record(time.Duration(w))
		}
	}
	switch {
	case m.overran:
		// Counted as a failure when the engine revoked its lease.
		m.overran = false
	case d&layout.DoneFailed != 0:
		e.countFailure(m, time.Now())
	default:
		m.failStreak = 0
		if m.State == StateBroken {
			e.log.Info("circuit breaker closed", "module", m.Name)
		}
		m.State = StateRunning
	}
	m.probing = false
	if m.holdSlot >= 0 {
		// The tick is done: the engine ends the module's lease (a module's
		// release writes nothing).
		_ = e.pub.ReleaseHolder(m.holdSlot, m.Slot)
		m.holdSlot = -1
	}
	return true
}

// MaxWakeReport bounds the tick wake latency a module may report (its own
// word in its segment); a larger one is counted in BadWakeReports and
// ignored.
const MaxWakeReport = time.Second

// reclaimSlots runs when a publish found no free slot: it drops slot state
// that no live reader holds. Lease holders in the engine's memory are kept
// only for modules in a tick on that slot; a fast module's pin is unwatched
// when its tick has lasted more than the pin limit (dropOverduePins; it may
// read torn frames then, which its Release detects); external reader entries of dead
// processes, and pins in entries nobody owns, are cleared. Called with mu
// held.
func (e *Engine) reclaimSlots() int {
	n := e.pub.RetainHolders(func(s int) uint64 {
		var live uint64
		for _, m := range e.mods {
			if m.State != StateDead && m.busy && m.holdSlot == s {
				live |= 1 << uint(m.Slot)
			}
		}
		return live
	})
	n += e.dropOverduePins(time.Now())
	n += fsync.ReclaimDeadReaders(e.segs.Leases.Data, e.pub.LeasesLayout())
	e.ReclaimedReaders += uint64(n)
	// Visible, at most once per second: what held the slots.
	if now := time.Now(); now.Sub(e.noSlotWarned) >= time.Second {
		e.log.Warn("publish found no free frame slot", "frame", e.frame, "skipped_total", e.pub.Skipped,
			"suppressed", e.noSlotHeld, "reclaimed", n, "leased_slots", e.pub.LeasedSlots(),
			"watched_pins", bits.OnesCount64(e.pub.WatchedPins()))
		e.noSlotWarned, e.noSlotHeld = now, 0
	} else {
		e.noSlotHeld++
	}
	return n
}

// StuckTick was how long a fast module's tick kept its pin honoured while no
// slot was free. Pins are now honoured for at most the engine's pin limit
// (max(4×FastDeadline, 3 frame periods), see Engine.dropOverduePins); the
// constant is kept for callers and bounds nothing.
const StuckTick = time.Second

// waitFast waits for the fast modules dispatched this frame until the
// deadline. It returns how many were late.
func (e *Engine) waitFast(deadline time.Time) int {
	late := 0
	for _, m := range e.mods {
		if m.Tier != ipc.TierFast || !m.busy || m.lastRun != e.frame {
			continue
		}
		e.guard(func() {
			for !e.checkTick(m) {
				last := m.done.Load()
				if e.checkTick(m) || e.closing[m.Slot].Load() == int64(m.PID) {
					return // done, or dead: its death is handled after the wait
				}
				left := time.Until(deadline)
				if left <= 0 {
					m.Stats.Late++
					late++
					return
				}
				if _, err := m.done.Wait(last, 64, left); err != nil && !errors.Is(err, ipc.ErrTimeout) {
					return
				}
			}
		})
	}
	return late
}

// playback applies every committed command batch in module order. A ring
// whose indices or record headers are inconsistent (a module can write
// anything into its own segment) is counted (the module's corrupt_ring
// reject reason and the ring's bad counter), reset, and warned about at most
// once per second per module with the number of detections not logged.
func (e *Engine) playback() (applied, rejected int) {
	for _, m := range e.mods {
		if m.State == StateDead {
			continue
		}
		e.guard(func() {
			a, r := e.playModule(m)
			applied += a
			rejected += r
		})
	}
	return applied, rejected
}

// playModule plays back m's committed batch. Its segment's size is checked
// first (fstat): a ring the module truncated is found before any of its
// records is applied.
func (e *Engine) playModule(m *Module) (applied, rejected int) {
	pending, err := m.cons.Pending()
	if err == nil && pending == 0 {
		return 0, 0
	}
	if detail, shrunk := e.segmentShrunk(m); shrunk {
		e.moduleFaulted(m, detail)
		return 0, 0
	}
	// Quotas (Config.MaxEventBytesPerModule, MaxEntitiesPerModule): the
	// event credit grows per frame, and the entities the module creates
	// are owned by its name (host/quota.go).
	m.play.Owner = e.ownerOf(m.Name)
	m.play.MaxEntities = max(e.cfg.MaxEntitiesPerModule, 0)
	m.play.EventBytesPerFrame = max(e.cfg.MaxEventBytesPerModule, 0)
	m.play.MaxEventBytes = EventBurstFrames * m.play.EventBytesPerFrame
	m.play.NoticeBytes = layout.EventRecordSize(layout.SystemEventCreatedSize)
	m.play.BeginFrame(e.frame)
	before := m.play.Stats
	if err == nil {
		_, err = m.cons.Poll(func(typ uint16, payload []byte) error {
			_ = m.play.Apply(typ, payload)
			return nil
		})
	}
	if err != nil {
		// A corrupt ring: its batch is dropped (nothing of it was
		// applied, unless a header changed during the delivery).
		m.play.CountCorruptRing()
		if rerr := m.cons.Reset(); rerr != nil {
			err = fmt.Errorf("%w; reset failed: %w", err, rerr)
		}
		if due, suppressed := m.cons.CorruptWarning(time.Now(), time.Second); due {
			e.log.Warn("corrupt command ring reset", "module", m.Name, "slot", m.Slot, "pid", m.PID,
				"err", err, "suppressed", suppressed)
		}
	}
	a := int(m.play.Stats.Applied - before.Applied)
	r := int(m.play.Stats.RejectedTotal() - before.RejectedTotal())
	m.Stats.Applied += uint64(a)
	m.Stats.Rejected += uint64(r)
	applied, rejected = a, r
	for _, c := range m.play.Created() {
		binary.LittleEndian.PutUint32(e.created[0:], uint32(m.Slot))
		binary.LittleEndian.PutUint32(e.created[4:], c.Temp)
		binary.LittleEndian.PutUint64(e.created[8:], uint64(c.Entity))
		e.w.Emit(world.EventType(layout.SystemEventCreated), e.created[:])
	}
	return applied, rejected
}

// ModuleInfo is a snapshot of a module's state for reporting.
type ModuleInfo struct {
	Slot              int
	Name, Tier, State string
	Every, PID        int
	Group             string
	SnapshotMask      world.Mask // union mask of the last snapshot it got (slow tier)
	Stats             ModuleStats
	// Wake: how the current process's tick wake-ups went, as it counted
	// them in its segment (warm: seen while polling; cold: from FUTEX_WAIT).
	Wake                  ipc.WakeStats
	PlaybackRejectReasons map[string]uint64
}

// Modules returns a snapshot of the module table.
func (e *Engine) Modules() []ModuleInfo {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]ModuleInfo, 0, len(e.mods))
	for _, m := range e.mods {
		mi := ModuleInfo{Slot: m.Slot, Name: m.Name, Tier: m.Tier, State: m.State, Every: m.Every, PID: m.PID, Group: m.Group, SnapshotMask: m.snapMask, Stats: m.Stats,
			PlaybackRejectReasons: map[string]uint64{}}
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
