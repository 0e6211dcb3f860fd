package host

// Playback: each module's committed command batch, validated and applied at
// the end of the frame.

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

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
	m.play.DryRun = e.replay != nil // a replay changes nothing (host/replay.go)
	before := m.play.Stats
	fwd := e.forward != nil
	e.fwdBuf = e.fwdBuf[:0]
	rec := e.rec
	if rec != nil && rec.closed {
		rec = nil
	}
	if rec != nil {
		rec.batchStart(m)
	}
	if err == nil {
		_, err = m.cons.Poll(func(typ uint16, payload []byte) error {
			if fwd && typ != layout.CmdAckEvents {
				e.fwdBuf = AppendRemoteCommand(e.fwdBuf, typ, payload)
			}
			if rec != nil {
				rec.addCommand(typ, payload) // the batch verbatim, acknowledgements included
			}
			if typ == layout.CmdAckEvents {
				// Not a command: the events the batch's tick consumed
				// (host/evack.go), applied with the batch.
				_ = e.takeEventAck(m, payload)
				return nil
			}
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
	if fwd && err == nil && len(e.fwdBuf) > 0 {
		e.forward(ForwardBatch{Module: m.Name, Slot: m.Slot, PID: m.PID, PIDStart: m.pidStart, Frame: e.frame, Commands: e.fwdBuf})
	}
	a := int(m.play.Stats.Applied - before.Applied)
	r := int(m.play.Stats.RejectedTotal() - before.RejectedTotal())
	m.Stats.Applied += uint64(a)
	m.Stats.Rejected += uint64(r)
	applied, rejected = a, r
	if rec != nil {
		rec.batchEnd(a, r)
	}
	for _, c := range m.play.Created() {
		binary.LittleEndian.PutUint32(e.created[0:], uint32(m.Slot))
		binary.LittleEndian.PutUint32(e.created[4:], c.Temp)
		binary.LittleEndian.PutUint64(e.created[8:], uint64(c.Entity))
		e.w.Emit(world.EventType(layout.SystemEventCreated), e.created[:])
	}
	return applied, rejected
}
