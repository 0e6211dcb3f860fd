package module

// Lifecycle observers and reactive modules: what a module registers
// (Observers, Spec.WakeOn), the subscription its hello carries, and the
// delivery of the lifecycle events to its observers.
//
// Delivery. A module with observers has its tick's events read before Tick
// runs: the lifecycle events go to its observers, in log order, and every
// event the tick may see (lifecycle ones included) is kept for View.Events,
// which then delivers them from that copy. It is the same read as
// View.Events' (ReadUpTo the view's frame, from the module's cursor) and the
// same acknowledgement, with the tick's batch: observers get each lifecycle
// event of the frames up to the view's once per committed tick, none of a
// later frame; a tick that fails (or whose process dies before its commit)
// commits nothing, and its events go to the observers of the next tick
// again. A lifecycle event the module did not subscribe to (the log is
// shared: another module may have) is delivered neither to its observers
// nor by View.Events.
//
// Resync. The log a module reads is its engine's: a new engine (after a
// crash, a SIGKILL, a restart) starts a new one at the module's admission,
// so the changes between the module's last committed tick with the old
// engine and its admission by the new one are never delivered. Nor does a
// new process of the module have the state its predecessor built. Both
// start a new attach, whose first tick has View.LastTick ok=false: there the
// OnResync functions run, before any observer, and the tick's lifecycle
// events (all of frames up to the view's, which the view already shows) go
// to no observer (View.Events still has them); the next ticks get those of
// the later frames. A failed resync tick commits nothing: the next tick
// resyncs again.

import (
	"fmt"
	"slices"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// Observer is implemented by a module that observes lifecycle events. Run
// calls Observe once, before it joins the engine; what it registers is the
// module's subscription (carried in its hello): the engine generates a kind
// of lifecycle event only while some module subscribed to it.
type Observer interface {
	Observe(o *Observers)
}

// Observers holds a module's lifecycle observers. Each runs, in the tick,
// before Tick, for each event of its kind (and component) of the frames up
// to the view's that no committed tick got, in log order; with several for
// the same event, in the order they were registered. The entity is the
// handle: for OnDestroyed the one it had while alive (View.IsAlive is false
// for it in the view's frame), and for the others it may be dead again by
// the view's frame too (destroyed in a later frame). A destroyed entity's
// components are reported removed (OnRemoved) before it is reported
// destroyed; a created entity has no component, and each one it gets, a
// Set of a component it lacks included, is reported added.
type Observers struct {
	resync             []func(*View)
	created, destroyed []func(world.Entity)
	added, removed     [][]func(world.Entity) // per component id
}

// OnResync registers fn to rebuild, from the view, what the module derives
// from its observers, when their continuity is broken: fn runs on the first
// tick of each attach (View.LastTick ok=false: the process's first tick,
// the first after an engine restart or a reconnection), before the
// observers, which then get none of that tick's events (the view already
// shows their changes), and from the next tick each change of a later frame
// once. Without it, a model built from the observers misses the changes of
// the frames no engine delivered (after an engine restart: those between
// the module's last committed tick and its admission by the new engine)
// and, in a new process, everything before its join.
func (o *Observers) OnResync(fn func(v *View)) { o.resync = append(o.resync, fn) }

// OnCreated registers fn for the entities created.
func (o *Observers) OnCreated(fn func(e world.Entity)) { o.created = append(o.created, fn) }

// OnDestroyed registers fn for the entities destroyed.
func (o *Observers) OnDestroyed(fn func(e world.Entity)) { o.destroyed = append(o.destroyed, fn) }

// OnAdded registers fn for the additions of component c to an entity.
func (o *Observers) OnAdded(c world.ComponentID, fn func(e world.Entity)) {
	o.added = o.register(o.added, c, fn)
}

// OnRemoved registers fn for the removals of component c from an entity,
// its destruction included.
func (o *Observers) OnRemoved(c world.ComponentID, fn func(e world.Entity)) {
	o.removed = o.register(o.removed, c, fn)
}

func (o *Observers) register(by [][]func(world.Entity), c world.ComponentID, fn func(world.Entity)) [][]func(world.Entity) {
	if int(c) >= len(by) {
		by = slices.Grow(by, int(c)+1-len(by))[:int(c)+1]
	}
	by[c] = append(by[c], fn)
	return by
}

// Subscription returns the lifecycle events the observers need.
func (o *Observers) Subscription() world.Lifecycle {
	l := world.Lifecycle{Created: len(o.created) > 0, Destroyed: len(o.destroyed) > 0}
	for c, fns := range o.added {
		if len(fns) > 0 {
			l.Added = l.Added.With(world.ComponentID(c))
		}
	}
	for c, fns := range o.removed {
		if len(fns) > 0 {
			l.Removed = l.Removed.With(world.ComponentID(c))
		}
	}
	return l
}

// call runs the observers of a decoded lifecycle event.
func (o *Observers) call(k layout.LifecycleKind, e world.Entity, c world.ComponentID) {
	var fns []func(world.Entity)
	switch k {
	case layout.LifecycleCreated:
		fns = o.created
	case layout.LifecycleDestroyed:
		fns = o.destroyed
	case layout.LifecycleAdded:
		if int(c) < len(o.added) {
			fns = o.added[c]
		}
	case layout.LifecycleRemoved:
		if int(c) < len(o.removed) {
			fns = o.removed[c]
		}
	}
	for _, fn := range fns {
		fn(e)
	}
}

// WakeOn names what wakes a slow module besides its period (Spec.Every):
// the module runs in the frame in which an event of one of Events is
// published, or in which a chunk version of one of Components moves (a
// write of the component, its addition or removal, in any chunk: chunk
// granularity), at most once per frame and never while its previous tick
// runs (a wake then runs it at the first frame it is idle: delayed, never
// lost). With a WakeOn, Every 0 means only when woken (and once at its
// join); Every N > 0 runs it also every N frames. Its view shows the frame
// of the wake (or a later one) and View.Events has the events that woke it.
type WakeOn struct {
	// Events are event types (at most layout.MaxWakeEvents): the
	// simulation's or modules' (below layout.SystemEventFirst), or the
	// lifecycle types (world.EventCreated, ...), which subscribe the module
	// to those events (of every component, for added and removed).
	Events []world.EventType
	// Components are components whose changes wake the module.
	Components world.Mask
}

// Empty reports whether w names nothing.
func (w WakeOn) Empty() bool { return len(w.Events) == 0 && w.Components.Empty() }

// wire returns w as the hello's wake_on (nil when empty).
func (w WakeOn) wire() *ipc.WakeOnSub {
	if w.Empty() {
		return nil
	}
	s := &ipc.WakeOnSub{Components: ipc.PutMaskWords(w.Components)}
	for _, t := range w.Events {
		s.Events = append(s.Events, uint16(t))
	}
	return s
}

// subscription is what a module with observers obs and spec's WakeOn
// subscribes to, as the engine computes it from its hello: the observers'
// kinds, and each lifecycle type it wakes on, for every component of reg.
func subscription(obs *Observers, w WakeOn, all world.Mask) world.Lifecycle {
	l := obs.Subscription()
	for _, t := range w.Events {
		switch k, ok := layout.LifecycleEvent(t).Kind(); {
		case !ok:
		case k == layout.LifecycleCreated:
			l.Created = true
		case k == layout.LifecycleDestroyed:
			l.Destroyed = true
		case k == layout.LifecycleAdded:
			l.Added = all
		case k == layout.LifecycleRemoved:
			l.Removed = all
		}
	}
	return l
}

// lifecycleWire returns l as the hello's lifecycle (nil when empty).
func lifecycleWire(l world.Lifecycle) *ipc.LifecycleSub {
	if l.Empty() {
		return nil
	}
	return &ipc.LifecycleSub{Created: l.Created, Destroyed: l.Destroyed,
		Added: ipc.PutMaskWords(l.Added), Removed: ipc.PutMaskWords(l.Removed)}
}

// checkSubscriptions refuses (ErrInvalidSpec) observers and a WakeOn the
// engine would refuse: components beyond the registry, and what the control
// plane checks of a hello's subscriptions (ipc.ValidSubscriptions: wake_on
// of a fast module, a reserved event type, too many types, a type named
// twice).
func checkSubscriptions(spec *Spec, obs *Observers, reg *world.Registry) error {
	all := reg.Mask()
	sub := obs.Subscription()
	if out := sub.Added.Or(sub.Removed).Or(spec.WakeOn.Components).AndNot(all); !out.Empty() {
		return fmt.Errorf("%w: observers or WakeOn name %s, beyond the registry's %d (%w)", ErrInvalidSpec, out.Named(), reg.Len(), ipc.ErrBadHello)
	}
	h := ipc.Hello{Tier: spec.Tier, WakeOn: spec.WakeOn.wire(), Lifecycle: lifecycleWire(sub)}
	if err := ipc.ValidSubscriptions(&h); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	return nil
}

// eventBuf is the copy of a tick's events the observers' read keeps for
// View.Events; reused across ticks.
type eventBuf struct {
	recs    []bufEvent
	arena   []byte
	overrun uint64
	err     error
	on      bool // this tick's events were read into it
}

type bufEvent struct {
	seq, frame uint64
	typ        uint16
	off, n     int
}

func (b *eventBuf) reset() {
	b.recs, b.arena, b.overrun, b.err, b.on = b.recs[:0], b.arena[:0], 0, nil, false
}

// observe reads the tick's events (up to the view's frame) before Tick:
// the lifecycle events go to the observers, every event is kept for
// View.Events. A read error (a corrupt log) fails the tick.
func (v *View) observe() error {
	b := &v.buf
	b.reset()
	v.created = v.created[:0]
	b.on = true
	resync := v.since == 0 && len(v.obs.resync) > 0 // a new attach's first tick not yet committed
	for _, fn := range v.obs.resync {
		if !resync {
			break
		}
		fn(v)
	}
	b.overrun, b.err = v.read(func(seq, frame uint64, typ uint16, p []byte) {
		if !resync && layout.IsLifecycleEvent(typ) {
			// read delivers only well-formed ones the module subscribed to.
			k, e, c, _ := layout.DecodeLifecycle(typ, p)
			v.obs.call(k, world.Entity(e), world.ComponentID(c))
		}
		b.recs = append(b.recs, bufEvent{seq: seq, frame: frame, typ: typ, off: len(b.arena), n: len(p)})
		b.arena = append(b.arena, p...)
	})
	return b.err
}

// replay delivers the events observe kept, once.
func (v *View) replay(fn func(seq, frame uint64, typ uint16, payload []byte)) (uint64, error) {
	b := &v.buf
	ov, err := b.overrun, b.err
	if fn != nil {
		for _, r := range b.recs {
			fn(r.seq, r.frame, r.typ, b.arena[r.off:r.off+r.n:r.off+r.n])
		}
	}
	b.recs, b.arena, b.overrun, b.err = b.recs[:0], b.arena[:0], 0, nil
	return ov, err
}

// wants reports whether the module subscribed to lifecycle event (typ, p)
// (typ is a lifecycle type). A malformed one (only the engine writes them)
// is nobody's.
func (v *View) wants(typ uint16, p []byte) bool {
	k, _, c, err := layout.DecodeLifecycle(typ, p)
	return err == nil && v.sub.Has(k, world.ComponentID(c))
}
