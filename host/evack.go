package host

// Event acknowledgements: the event cursor a module's committed batch
// acknowledged (layout.CmdAckEvents), kept by the engine across the
// module's restarts and handed to each new process of the module in its
// segment, so that events are delivered to the module's ticks exactly once
// (or reported lost as an overrun) whatever process runs them.
//
// Module.evAck belongs to the module's record in the engine: a module new
// to this engine, and a slot reused for another name (reuseDeadSlot makes a
// new record), start at the end of the log's last commit when they are
// admitted; an engine restart makes a new event log and a new module table.

import (
	"fmt"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// writeEventAck writes m's acknowledged event cursor into its (new)
// segment's event line, before the welcome. A module that has none yet (its
// first admission) gets the end of the last commit: it reads the events
// committed from its admission on, and so does its next process if this
// one dies before it acknowledges any.
func (e *Engine) writeEventAck(m *Module) {
	if m.evAck.Seq == 0 {
		m.evAck = e.evw.Committed()
	}
	// ORDER(evack): stored before the welcome is sent; the module loads
	// them after it received the welcome (the socket orders the two).
	layout.Store64(m.seg.Data, layout.OffMAckSeq, m.evAck.Seq)
	layout.Store64(m.seg.Data, layout.OffMAckPos, m.evAck.Pos)
}

// rejectBadAck is the reason a refused acknowledgement is counted under,
// beside the module's command rejections (ModuleInfo.PlaybackRejectReasons).
const rejectBadAck = world.RejectBadEventAck

// takeEventAck handles a CmdAckEvents record of m's batch at playback. The
// record is the module's word: its cursor must be one a reader of this log
// can hold (ipc.EventWriter.CheckCursor: nothing beyond the committed end,
// aligned, on a record) and must not go back behind the previous one. A
// valid one becomes m.evAck and its counts are added to m's statistics; a
// refused one changes nothing, is counted (rejectBadAck) and returned.
func (e *Engine) takeEventAck(m *Module, payload []byte) error {
	a, err := layout.DecodeAckEvents(payload)
	c := ipc.EventCursor{Seq: a.Seq, Pos: a.Pos}
	if err == nil {
		err = e.evw.CheckCursor(c)
	}
	if err == nil && (c.Seq < m.evAck.Seq || c.Pos < m.evAck.Pos) {
		err = fmt.Errorf("%w: cursor {seq %d, pos %d} behind the previous acknowledgement {seq %d, pos %d}",
			ipc.ErrEventCursor, c.Seq, c.Pos, m.evAck.Seq, m.evAck.Pos)
	}
	if err != nil {
		m.play.Stats.Rejected[rejectBadAck]++
		return &world.RejectError{Reason: rejectBadAck, Type: layout.CmdAckEvents, Detail: err}
	}
	m.evAck = c
	m.Stats.EventsDelivered += a.Delivered
	m.Stats.EventsLost += a.Lost
	return nil
}
