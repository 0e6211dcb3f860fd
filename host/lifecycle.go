package host

// Lifecycle subscriptions and reactive modules.
//
// Lifecycle events: the world records a structural change as an event only
// for the kinds (and components) some module subscribed to, in its hello's
// "lifecycle" object or by waking on a lifecycle type ("wake_on"): the
// union of every module's subscription is the world's (World.SetLifecycle),
// recomputed at each admission. A module keeps its subscription after it
// died, until its slot goes to another name or it rejoins with another one:
// the engine keeps its acknowledged event cursor for its next process, which
// gets the changes of the module's downtime like its other events. Changes
// made while nobody subscribed to their kind are never generated.
//
// Wakes: a slow module with a wake_on is woken in frame F when an event of
// one of its types was appended to the log in F (they are captured before
// F's publish) or a chunk version of one of its components moved between
// the publish of F-1 and that of F (the world's version after F-1's
// publish, World.ComponentsChanged). A wake is pending until the module is
// dispatched: at once if it is idle, else at the first frame it is idle
// (dispatch), so a wake while busy is delayed, never lost, and a module
// runs at most once per frame however many wakes it got.

import (
	"fmt"
	"math"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// moduleSubs is a module's subscription and wake conditions, from its hello.
type moduleSubs struct {
	lifecycle  world.Lifecycle // its hello's, and the lifecycle types it wakes on
	wakeEvents []uint16
	wakeComps  world.Mask
	// woken: a wake condition was met and the module has not been
	// dispatched since.
	woken bool
}

// wakes reports whether the module has a wake_on.
func (s *moduleSubs) wakes() bool { return len(s.wakeEvents) > 0 || !s.wakeComps.Empty() }

// wakeWatch is the engine's side of the wakes: which event types some
// module wakes on, which of them the frame's events had, and the world's
// position after the last publish, from which component changes count.
type wakeWatch struct {
	active bool         // some module has a wake_on
	types  [1024]uint64 // event types woken on (bit t%64 of word t/64)
	seen   [1024]uint64 // of those, the ones appended in this frame
	words  []uint16     // the words of seen that are not zero
	comps  world.Mask   // components woken on
	epoch  uint64       // World.Epoch after the last dispatch's publish
	ver    uint64       // World.Version then
	buf    []int32      // scratch of World.ComponentsChanged
}

// saw notes that an event of type t was appended to the log this frame.
func (w *wakeWatch) saw(t uint16) {
	bit := uint64(1) << (t & 63)
	if w.types[t>>6]&bit == 0 {
		return
	}
	if w.seen[t>>6] == 0 {
		w.words = append(w.words, t>>6) // cap 1024: never grows
	}
	w.seen[t>>6] |= bit
}

func (w *wakeWatch) wasSeen(t uint16) bool { return w.seen[t>>6]&(1<<(t&63)) != 0 }

// subscriptions decodes and checks h's lifecycle and wake_on against the
// schema (ipc checked the rest); a component beyond it is an invalid hello.
func (e *Engine) subscriptions(h ipc.Hello) (moduleSubs, error) {
	var s moduleSubs
	bad := func(field string, m world.Mask) error {
		return fmt.Errorf("%w: %s names %s, beyond the schema's %d",
			ipc.ErrBadHello, field, m.AndNot(e.allMask).Named(), e.w.Registry().Len())
	}
	if l := h.Lifecycle; l != nil {
		added, _ := ipc.MaskWords(l.Added) // lengths checked by ipc
		removed, _ := ipc.MaskWords(l.Removed)
		s.lifecycle = world.Lifecycle{Created: l.Created, Destroyed: l.Destroyed, Added: added, Removed: removed}
		if !world.Mask(added).AndNot(e.allMask).Empty() {
			return s, bad("lifecycle.added", added)
		}
		if !world.Mask(removed).AndNot(e.allMask).Empty() {
			return s, bad("lifecycle.removed", removed)
		}
	}
	if wk := h.WakeOn; wk != nil {
		comps, _ := ipc.MaskWords(wk.Components)
		if !world.Mask(comps).AndNot(e.allMask).Empty() {
			return s, bad("wake_on.components", comps)
		}
		s.wakeComps = comps
		s.wakeEvents = append([]uint16(nil), wk.Events...)
		for _, t := range wk.Events {
			// Waking on a lifecycle type needs the events generated: it
			// subscribes the module to the type (of every component).
			switch k, _ := layout.LifecycleEvent(t).Kind(); {
			case !layout.IsLifecycleEvent(t):
			case k == layout.LifecycleCreated:
				s.lifecycle.Created = true
			case k == layout.LifecycleDestroyed:
				s.lifecycle.Destroyed = true
			case k == layout.LifecycleAdded:
				s.lifecycle.Added = e.allMask
			case k == layout.LifecycleRemoved:
				s.lifecycle.Removed = e.allMask
			}
		}
	}
	return s, nil
}

// refreshSubscriptions sets the world's lifecycle subscription and the wake
// watch to the union of every module's (dead ones too: see the file
// comment). Called with mu held, between frames (admission).
func (e *Engine) refreshSubscriptions() {
	var l world.Lifecycle
	w := &e.wake
	w.types, w.comps, w.active = [1024]uint64{}, world.Mask{}, false
	for _, m := range e.mods {
		l = l.Or(m.lifecycle)
		if !m.wakes() {
			continue
		}
		w.active = true
		w.comps = w.comps.Or(m.wakeComps)
		for _, t := range m.wakeEvents {
			w.types[t>>6] |= 1 << (t & 63)
		}
	}
	if w.words == nil {
		w.words = make([]uint16, 0, len(w.seen))
	}
	if w.ver == 0 {
		// Before the first frame: what the world holds now is not a change
		// (wakeModules moves the watch every frame from then on).
		w.epoch, w.ver = e.w.Epoch(), e.w.Version()
	}
	e.w.SetLifecycle(l)
}

// wakeModules marks the slow modules whose wake condition this frame met
// (their wake is pending until dispatched) and moves the watch to the next
// frame. Called by dispatch, after the frame's publish and before any
// snapshot. Allocates nothing.
func (e *Engine) wakeModules() {
	w := &e.wake
	if w.active {
		var changed world.Mask
		if !w.comps.Empty() {
			changed, w.buf = e.w.ComponentsChanged(w.comps, w.epoch, w.ver, w.buf)
		}
		for _, m := range e.mods {
			if m.woken || m.State == StateDead || !m.wakes() {
				continue
			}
			if !m.wakeComps.And(changed).Empty() {
				m.woken = true
				continue
			}
			for _, t := range m.wakeEvents {
				if w.wasSeen(t) {
					m.woken = true
					break
				}
			}
		}
	}
	for _, j := range w.words {
		w.seen[j] = 0
	}
	w.words = w.words[:0]
	w.epoch, w.ver = e.w.Epoch(), e.w.Version()
}

// nextDue is the frame at which m is next due for a regular tick after one
// dispatched in frame f: never for a module of Every 0 (it runs only when
// woken; ipc refuses every 0 without a wake_on).
func (m *Module) nextDue(f uint64) uint64 {
	if m.Every <= 0 {
		return math.MaxUint64
	}
	return f + uint64(m.Every)
}
