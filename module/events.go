package module

// A module's events: what View.Events delivers in a tick, the temporary ids
// the engine resolved for it, and the acknowledgement that makes a tick's
// events part of its committed batch (layout.CmdAckEvents).

import (
	"encoding/binary"
	"errors"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// errEventsOutsideTick: View.Events called while no tick runs (the view
// shows no frame).
var errEventsOutsideTick = errors.New("events read outside a tick")

// Events delivers, in order, the events of the frames up to the one the
// view shows (View.Frame) that no earlier successful tick of this module
// was given: none of a later frame, none twice, none skipped (every event
// of a frame is in the log before the frame is published). The events a
// tick reads are acknowledged with its command batch, atomically: a tick
// that fails, or whose process dies before it commits, acknowledges
// nothing, and its events are delivered again to the next tick, of this
// process or of the module's next one (which resumes where the engine saw
// the last acknowledgement). overrun > 0 reports events lost because the
// module fell more than the event log's capacity behind; it is never
// silent, and it may count events of frames after the view's (lost all the
// same). Engine-internal events (temporary-id mappings) are consumed here
// and exposed through Created. Lifecycle events (world.EventCreated, ...)
// are delivered only as the module subscribed to them (its observers, or a
// Spec.WakeOn on their type); a module with observers gets them in its
// observers first, before Tick (see Observers), and Events then delivers
// that read's events.
func (v *View) Events(fn func(seq, frame uint64, typ uint16, payload []byte)) (overrun uint64, err error) {
	if v.f == nil {
		return 0, errEventsOutsideTick
	}
	if v.buf.on {
		// The module's observers read them before Tick (lifecycle.go).
		return v.replay(fn)
	}
	v.created = v.created[:0]
	return v.read(fn)
}

// read is the tick's read of its events, up to the view's frame: the
// created notices go to Created, the lifecycle events the module did not
// subscribe to (another module did) are skipped, the others go to fn.
func (v *View) read(fn func(seq, frame uint64, typ uint16, payload []byte)) (overrun uint64, err error) {
	return v.events.ReadUpTo(&v.cursor, v.f.Number(), func(seq, frame uint64, typ uint16, payload []byte) {
		if typ == layout.SystemEventCreated {
			if t, e, ok := createdNotice(payload, v.slot); ok {
				v.created = append(v.created, world.TempMapping{Temp: t, Entity: e})
			}
			return
		}
		if layout.IsLifecycleEvent(typ) && !v.wants(typ, payload) {
			return
		}
		if fn != nil {
			fn(seq, frame, typ, payload)
		}
	})
}

// Created returns the temporary ids of this module resolved by the engine,
// as seen by the last Events call. In the first ticks after a restart it may
// also name temporary ids of the module's previous process (creations of
// its last batches): every one of them is below the ids this process uses
// (see session.skipForeignTemps).
func (v *View) Created() []world.TempMapping { return v.created }

// createdNotice decodes a SystemEventCreated payload for module slot.
func createdNotice(p []byte, slot uint32) (temp uint32, e world.Entity, ok bool) {
	if len(p) != layout.SystemEventCreatedSize || binary.LittleEndian.Uint32(p) != slot {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint32(p[4:]), world.Entity(binary.LittleEndian.Uint64(p[8:])), true
}

// eventAck is the SDK's side of the event acknowledgement: the cursor the
// last committed batch acknowledged, and the reader's counters then.
type eventAck struct {
	cursor ipc.EventCursor
	stats  ipc.EventReaderStats
}

// ackEvents appends the acknowledgement of the events the tick read to its
// batch (right before the commit), if it read any: the cursor, and the
// events delivered and lost since the last acknowledgement. A full ring
// fails the tick (ErrCommandsFull), like any command that does not fit.
func (s *session) ackEvents() error {
	cur := s.view.cursor
	if cur == s.ack.cursor {
		return nil
	}
	b, err := s.prod.Reserve(layout.CmdAckEvents, layout.AckEventsSize)
	if err != nil {
		if errors.Is(err, ipc.ErrRingFull) {
			err = ErrCommandsFull
		}
		return err
	}
	st := s.view.events.Stats()
	layout.PutAckEvents(b, layout.AckEvents{Seq: cur.Seq, Pos: cur.Pos,
		Delivered: st.Events - s.ack.stats.Events, Lost: st.Lost - s.ack.stats.Lost})
	return nil
}

// eventsCommitted records that the tick's batch, with its acknowledgement,
// was committed.
func (s *session) eventsCommitted() {
	s.ack = eventAck{cursor: s.view.cursor, stats: s.view.events.Stats()}
}

// eventsRewound undoes a failed tick's reads: its batch, acknowledgement
// included, was dropped, so the next tick reads the same events again.
func (s *session) eventsRewound() {
	s.view.cursor, s.view.created = s.ack.cursor, s.view.created[:0]
	s.view.buf.reset()
	s.ack.stats = s.view.events.Stats() // what the failed tick read is not counted
}

// skipForeignTemps runs before the first tick of an attach. A created
// notice for this module's slot in the events of frames up to that tick's
// is not of this process: batches of the module's previous process (or of
// the slot's previous module) are played back only before the engine
// admits this one, so their notices are of frames up to the first tick's,
// while this process's own come after its first batch. Their temporary ids
// mean nothing here, so this process numbers its own above all of them:
// Created never maps one of its temporary ids to another process's entity.
func (s *session) skipForeignTemps(frame uint64) {
	c := s.view.cursor
	_, _ = s.view.events.ReadUpTo(&c, frame, func(_, _ uint64, typ uint16, p []byte) {
		if t, _, ok := createdNotice(p, s.view.slot); ok && typ == layout.SystemEventCreated {
			s.cmds.nextTemp = max(s.cmds.nextTemp, t)
		}
	})
	s.ack.stats = s.view.events.Stats() // the scan delivers nothing
}
