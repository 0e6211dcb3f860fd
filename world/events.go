package world

// EventType identifies the kind of an event.
type EventType uint16

// Event is an event emitted during the current frame.
type Event struct {
	Type    EventType
	Payload []byte
}

type eventRec struct {
	typ      EventType
	off, len int
}

// eventBuffer is the per-frame event buffer: payloads are copied into one
// reused arena so that the steady state does not allocate.
type eventBuffer struct {
	recs  []eventRec
	arena []byte
	out   []Event
}

// Emit appends an event to the frame's buffer; payload is copied.
func (w *World) Emit(typ EventType, payload []byte) {
	b := &w.events
	b.recs = append(b.recs, eventRec{typ: typ, off: len(b.arena), len: len(payload)})
	b.arena = append(b.arena, payload...)
}

// FrameEvents returns the events emitted since the last ClearEvents, in
// emission order. The returned slice and payloads are owned by the world
// and valid until the next Emit or ClearEvents.
func (w *World) FrameEvents() []Event {
	b := &w.events
	b.out = b.out[:0]
	for _, r := range b.recs {
		b.out = append(b.out, Event{Type: r.typ, Payload: b.arena[r.off : r.off+r.len : r.off+r.len]})
	}
	return b.out
}

// ClearEvents empties the frame's event buffer (keeping its memory).
func (w *World) ClearEvents() {
	b := &w.events
	b.recs, b.arena, b.out = b.recs[:0], b.arena[:0], b.out[:0]
}
