package host

import (
	"fmt"
	"runtime"
	"time"
)

// A module can truncate its own segment (ftruncate through the descriptor
// of its welcome) or punch a hole in it and fill the shm directory: the
// engine's next access to the segment then faults (SIGBUS). Every engine
// access to a module segment runs on a goroutine with
// debug.SetPanicOnFault (the frame loop, Step; the control plane's admit
// and onClose; Modules, Idle) and inside guard, which turns a fault whose
// address lies in a module segment's mapping into that module's death
// (moduleFaulted) and lets the caller go on with the other modules. A fault
// anywhere else is not recovered here (Run ends with an error naming the
// segment).

// guard runs f, one operation on module segments, and reports whether it
// faulted in a module segment (the module is dead then).
func (e *Engine) guard(f func()) (faulted bool) {
	defer e.catchModuleFault(&faulted)
	f()
	return false
}

// catchModuleFault is deferred by guard: it recovers a memory fault in a
// module segment, marks that module faulted and sets *faulted. Any other
// panic is raised again. Called with mu held.
func (e *Engine) catchModuleFault(faulted *bool) {
	r := recover()
	if r == nil {
		return
	}
	m := e.faultModule(r)
	if m == nil {
		panic(r)
	}
	e.moduleFaulted(m, "")
	*faulted = true
}

// faultModule returns the module whose segment holds the address of the
// memory fault r, or nil when r is not a fault in a module segment.
func (e *Engine) faultModule(r any) *Module {
	if _, ok := r.(runtime.Error); !ok {
		return nil
	}
	f, ok := r.(interface{ Addr() uintptr })
	if !ok {
		return nil
	}
	addr := f.Addr()
	for _, m := range e.mods {
		if m != nil && m.seg.Contains(addr) {
			return m
		}
	}
	return nil
}

// moduleFaulted handles a module whose segment the engine can no longer
// use (truncated, or a punched page the full shm directory cannot back):
// it is counted (ModuleStats.SegmentFaults) and logged at most once per
// second, its connection is closed, its leases and pin released, and its
// segment unlinked and unmapped; it is dead, and a rejoin gets a new
// segment. Called with mu held.
func (e *Engine) moduleFaulted(m *Module, detail string) {
	m.Stats.SegmentFaults++
	e.SegmentFaults++
	if now := time.Now(); now.Sub(e.faultWarned) >= time.Second {
		if detail == "" {
			detail = "memory fault"
		}
		e.log.Warn("module disconnected: its segment was truncated or punched", "module", m.Name, "slot", m.Slot,
			"pid", m.PID, "detail", detail, "suppressed", e.faultHeld)
		e.faultWarned, e.faultHeld = now, 0
	} else {
		e.faultHeld++
	}
	e.pub.UnwatchPin(m.Slot)
	e.pub.ReleaseHolderAll(m.Slot)
	if m.State != StateDead {
		m.Stats.Deaths++
	}
	m.State, m.busy, m.holdSlot = StateDead, false, -1
	e.dropSegment(m)
	if e.ctl != nil {
		e.ctl.Disconnect(m.Slot)
	}
}

// dropSegment unlinks and unmaps m's segment. onClose rings the done bell
// from a control-plane goroutine: bellMu makes sure that no ring is under
// way on the mapping being removed. Called with mu held.
func (e *Engine) dropSegment(m *Module) {
	e.bellMu.Lock()
	e.doneBell[m.Slot].Store(nil)
	e.bellMu.Unlock()
	e.pub.UnwatchPin(m.Slot)
	if m.seg != nil {
		_ = m.seg.Unlink()
		_ = m.seg.Close()
	}
	m.seg, m.lm, m.cons, m.tick, m.done = nil, nil, nil, nil, nil
}

// segmentShrunk reports, by fstat, whether m's segment file is now shorter
// than its mapping (the module truncated it). Checked before a playback, so
// that a truncated ring is found before any of its records is applied.
func (e *Engine) segmentShrunk(m *Module) (string, bool) {
	size, err := m.seg.FileSize()
	if err != nil || size >= int64(len(m.seg.Data)) {
		return "", false
	}
	return fmt.Sprintf("file is %d bytes, mapped %d", size, len(m.seg.Data)), true
}
