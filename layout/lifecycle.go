package layout

// Lifecycle events: the engine's record of every structural change of the
// world (an entity created or destroyed, a component added to or removed
// from an entity), published in the shared event log like any event, with
// event types in the range reserved for the engine (SystemEventFirst..), so
// that no module can forge one. The engine generates a lifecycle type only
// while some module subscribed to it (the hello's "lifecycle" field,
// LifecycleKind) or wakes on it ("wake_on"): a world nobody observes pays
// one branch per structural change.
//
// Payloads (little-endian):
//
//	EventCreated, EventDestroyed   u64 entity                         (LifecycleEntitySize = 8)
//	EventAdded, EventRemoved       u64 entity, u16 component, u16 0,
//	                               u32 0                              (LifecycleComponentSize = 16)
//
// The entity is the handle generation<<32 | index: for EventDestroyed the
// handle the entity had while it was alive. A destroyed entity's components
// are reported removed (EventRemoved, in increasing component id) before
// its EventDestroyed; a created entity has no component, and each one it
// gets is an EventAdded (a Set of a component the entity lacks adds it).

import (
	"encoding/binary"
	"fmt"
)

// LifecycleEvent is the event type of a lifecycle event.
type LifecycleEvent uint16

// Lifecycle event types, in the engine's reserved range.
const (
	// LifecycleFirst is the first lifecycle event type; the four kinds
	// follow in LifecycleKind order.
	LifecycleFirst LifecycleEvent = 0xFF10
	EventCreated   LifecycleEvent = LifecycleFirst + LifecycleEvent(LifecycleCreated)
	EventDestroyed LifecycleEvent = LifecycleFirst + LifecycleEvent(LifecycleDestroyed)
	EventAdded     LifecycleEvent = LifecycleFirst + LifecycleEvent(LifecycleAdded)
	EventRemoved   LifecycleEvent = LifecycleFirst + LifecycleEvent(LifecycleRemoved)
)

// LifecycleKind is a kind of structural change, the index of its event type
// from LifecycleFirst.
type LifecycleKind uint8

// Lifecycle kinds.
const (
	LifecycleCreated LifecycleKind = iota
	LifecycleDestroyed
	LifecycleAdded
	LifecycleRemoved
	NumLifecycleKinds
)

var lifecycleNames = [NumLifecycleKinds]string{"created", "destroyed", "added", "removed"}

func (k LifecycleKind) String() string {
	if k < NumLifecycleKinds {
		return lifecycleNames[k]
	}
	return fmt.Sprintf("lifecycle(%d)", uint8(k))
}

// Event returns the event type of kind k.
func (k LifecycleKind) Event() LifecycleEvent { return LifecycleFirst + LifecycleEvent(k) }

// HasComponent reports whether events of kind k name a component (added,
// removed).
func (k LifecycleKind) HasComponent() bool { return k == LifecycleAdded || k == LifecycleRemoved }

// Kind returns the kind of lifecycle event type t; ok is false for any other
// type.
func (t LifecycleEvent) Kind() (k LifecycleKind, ok bool) {
	if t < LifecycleFirst || t >= LifecycleFirst+LifecycleEvent(NumLifecycleKinds) {
		return 0, false
	}
	return LifecycleKind(t - LifecycleFirst), true
}

func (t LifecycleEvent) String() string {
	if k, ok := t.Kind(); ok {
		return k.String()
	}
	return fmt.Sprintf("event(%#04x)", uint16(t))
}

// IsLifecycleEvent reports whether typ is a lifecycle event type.
func IsLifecycleEvent(typ uint16) bool {
	_, ok := LifecycleEvent(typ).Kind()
	return ok
}

// Lifecycle payload sizes.
const (
	LifecycleEntitySize    = 8  // created, destroyed: u64 entity
	LifecycleComponentSize = 16 // added, removed: u64 entity, u16 component, u16 0, u32 0
)

// PayloadSize returns the payload size of kind k's events.
func (k LifecycleKind) PayloadSize() int {
	if k.HasComponent() {
		return LifecycleComponentSize
	}
	return LifecycleEntitySize
}

// PutLifecycle encodes the payload of a kind k event into b (at least
// k.PayloadSize() bytes) and returns its length; comp is ignored for kinds
// without a component.
func PutLifecycle(b []byte, k LifecycleKind, entity uint64, comp uint16) int {
	binary.LittleEndian.PutUint64(b, entity)
	if !k.HasComponent() {
		return LifecycleEntitySize
	}
	binary.LittleEndian.PutUint16(b[8:], comp)
	binary.LittleEndian.PutUint16(b[10:], 0)
	binary.LittleEndian.PutUint32(b[12:], 0)
	return LifecycleComponentSize
}

// DecodeLifecycle decodes a lifecycle event of type typ: its kind, entity
// and (added, removed) component. A type that is not a lifecycle type, a
// payload of another size or non-zero reserved bytes is ErrCorrupt.
func DecodeLifecycle(typ uint16, p []byte) (k LifecycleKind, entity uint64, comp uint16, err error) {
	k, ok := LifecycleEvent(typ).Kind()
	if !ok {
		return 0, 0, 0, fmt.Errorf("%w: event type %#04x is not a lifecycle event", ErrCorrupt, typ)
	}
	if len(p) != k.PayloadSize() {
		return k, 0, 0, fmt.Errorf("%w: %s event of %d bytes, want %d", ErrCorrupt, k, len(p), k.PayloadSize())
	}
	entity = binary.LittleEndian.Uint64(p)
	if k.HasComponent() {
		if binary.LittleEndian.Uint32(p[12:]) != 0 || binary.LittleEndian.Uint16(p[10:]) != 0 {
			return k, 0, 0, fmt.Errorf("%w: %s event with non-zero reserved bytes", ErrCorrupt, k)
		}
		comp = binary.LittleEndian.Uint16(p[8:])
	}
	return k, entity, comp, nil
}

// MaxWakeEvents bounds the event types of one module's "wake_on" (the
// hello's wake_on.events).
const MaxWakeEvents = 16

// ValidWakeEvent reports whether a module may wake on event type typ: any
// type below SystemEventFirst (the simulation's and modules' events) and the
// lifecycle types; the engine's other system events (the created notices)
// are not for waking.
func ValidWakeEvent(typ uint16) bool { return !IsSystemEvent(typ) || IsLifecycleEvent(typ) }
