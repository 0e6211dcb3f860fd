package world

// Lifecycle events: the world records its structural changes (an entity
// created or destroyed, a component added or removed) as events of the
// frame's event buffer (Emit), in the order they happen, whoever makes them:
// the simulation, command playback, anything calling Create, Destroy, Add,
// Set, SetRaw or Remove. It records only the kinds (and, for added and
// removed, the components) of its Lifecycle subscription, which the engine
// sets to what its modules observe; with none, a structural change costs
// one predictable branch. Recording appends to the event buffer's reused
// arena: nothing is allocated once it has grown to a frame's needs.
//
// Payloads are layout's (layout/lifecycle.go). A destroyed entity's
// components are recorded removed, in increasing id, before it is recorded
// destroyed; Set of a component the entity lacks records it added.

import (
	"math/bits"

	"github.com/fdp-engine/fdp/layout"
)

// Lifecycle event types (layout.LifecycleEvent) as world event types.
const (
	EventCreated   = EventType(layout.EventCreated)
	EventDestroyed = EventType(layout.EventDestroyed)
	EventAdded     = EventType(layout.EventAdded)
	EventRemoved   = EventType(layout.EventRemoved)
)

// String names the lifecycle types ("created", ...) and formats any other
// type as "event(0x0002)".
func (t EventType) String() string { return layout.LifecycleEvent(t).String() }

// Lifecycle says which structural changes a world records as lifecycle
// events. The zero value records none.
type Lifecycle struct {
	Created, Destroyed bool
	// Added and Removed are the components whose additions and removals
	// are recorded.
	Added, Removed Mask
}

// Or returns the changes recorded by l or o.
func (l Lifecycle) Or(o Lifecycle) Lifecycle {
	return Lifecycle{Created: l.Created || o.Created, Destroyed: l.Destroyed || o.Destroyed,
		Added: l.Added.Or(o.Added), Removed: l.Removed.Or(o.Removed)}
}

// Empty reports whether l records nothing.
func (l Lifecycle) Empty() bool { return l == Lifecycle{} }

// Has reports whether l records kind k (of component id, for added and
// removed).
func (l Lifecycle) Has(k layout.LifecycleKind, id ComponentID) bool {
	switch k {
	case layout.LifecycleCreated:
		return l.Created
	case layout.LifecycleDestroyed:
		return l.Destroyed
	case layout.LifecycleAdded:
		return l.Added.Has(id)
	case layout.LifecycleRemoved:
		return l.Removed.Has(id)
	}
	return false
}

// SetLifecycle sets which structural changes the world records from now on
// (components beyond the registry are ignored). Changes made while a kind
// was not recorded are never recorded later.
func (w *World) SetLifecycle(l Lifecycle) {
	all := maskUpTo(len(w.comps))
	l.Added, l.Removed = l.Added.And(all), l.Removed.And(all)
	w.lc = l
}

// Lifecycle returns what the world records (SetLifecycle).
func (w *World) Lifecycle() Lifecycle { return w.lc }

// entityAt is the handle of row's entity in ch (record r).
func (w *World) entityAt(ch *chunk, r []uint64, row int) Entity {
	return MakeEntity(uint32(int(ch.index)<<w.shift|row), recGen(r))
}

// recordLifecycle appends a lifecycle event of kind k to the frame's event
// buffer. Callers check the subscription first (the branch a world nobody
// observes pays).
func (w *World) recordLifecycle(k layout.LifecycleKind, e Entity, id ComponentID) {
	var p [layout.LifecycleComponentSize]byte
	n := layout.PutLifecycle(p[:], k, uint64(e), uint16(id))
	w.Emit(EventType(k.Event()), p[:n])
}

// recordRemovals records the removal of every component of mask words m
// (a destroyed entity's) that the subscription names, in increasing id.
func (w *World) recordRemovals(e Entity, m []uint64) {
	for j, word := range m {
		for word &= w.lc.Removed[j]; word != 0; word &= word - 1 {
			w.recordLifecycle(layout.LifecycleRemoved, e, ComponentID(64*j+bits.TrailingZeros64(word)))
		}
	}
}

// ComponentsChanged returns the components of m that a write stamped at
// version v or later in some chunk, given the dirty epoch that was open
// when v became the version writes stamp (Epoch() then): the components
// whose chunk versions moved since a copy sealed just before. The engine
// uses it to wake the modules that watch a component (host: WakeOn). It
// visits the chunks touched since (ChangedChunks) or, when those epochs are
// gone, every chunk; buf is scratch for ChangedChunks, returned for reuse.
func (w *World) ComponentsChanged(m Mask, epoch, v uint64, buf []int32) (Mask, []int32) {
	m = m.And(maskUpTo(len(w.comps)))
	var out Mask
	if m.Empty() {
		return out, buf
	}
	check := func(ch *chunk) bool {
		for j, word := range m {
			for word &^= out[j]; word != 0; word &= word - 1 {
				b := bits.TrailingZeros64(word)
				if ch.vers[64*j+b] >= v {
					out[j] |= 1 << b
				}
			}
		}
		return out == m
	}
	ok := false
	if epoch > 0 {
		buf, ok = w.ChangedChunks(epoch-1, len(w.chunks), buf[:0])
	}
	if !ok {
		for _, ch := range w.chunks {
			if check(ch) {
				break
			}
		}
		return out, buf
	}
	for _, c := range buf {
		if check(w.chunks[c]) {
			break
		}
	}
	return out, buf
}
