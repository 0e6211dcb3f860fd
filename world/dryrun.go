package world

import (
	"fmt"
	"unicode/utf8"

	"github.com/fdp-engine/fdp/layout"
)

// Dry-run playback: a replay publishes a recording, which commands must not
// change, yet a module's commands are still validated and counted so that
// a module under a debugger gets the same rejections it would get live
// (host's replay). With Playback.DryRun set, Apply checks a record as it
// would be checked against the world as it is and counts it (Stats.Applied
// for a valid one, Stats.Rejected by reason otherwise), and changes nothing:
// no entity is created or destroyed, no component or singleton written, no
// event emitted, no created notice listed. Within a batch, a temporary id a
// create gave stands for an entity that does not exist in the world: the
// later records naming it are checked for their form only.

// dryEntity is what a dry-run create maps its temporary id to.
const dryEntity = Entity(^uint64(0) &^ TempFlag)

// validate is Apply for a dry run.
func (p *Playback) validate(typ uint16, payload []byte) error {
	w := p.w
	switch typ {
	case CmdCreate:
		if len(payload) != CmdCreateSize {
			return p.reject(typ, RejectBadLength, nil)
		}
		if le.Uint32(payload[4:]) != 0 {
			return p.reject(typ, RejectReserved, nil)
		}
		t := le.Uint32(payload)
		if _, dup := p.temps[t]; dup {
			return p.reject(typ, RejectDuplicateTemp, fmt.Errorf("temporary id %d", t))
		}
		if p.MaxEntities > 0 && w.Owned(p.Owner) >= p.MaxEntities {
			return p.reject(typ, RejectEntityQuota, fmt.Errorf("%d live entities created, the quota is %d", w.Owned(p.Owner), p.MaxEntities))
		}
		if w.Count() >= w.MaxEntities() {
			return p.reject(typ, RejectWorldFull, fmt.Errorf("%w: %d entities", ErrWorldFull, w.MaxEntities()))
		}
		p.temps[t] = dryEntity
	case CmdDestroy:
		if len(payload) != CmdRefSize {
			return p.reject(typ, RejectBadLength, nil)
		}
		if _, err := p.dryResolve(typ, le.Uint64(payload)); err != nil {
			return err
		}
	case CmdAdd, CmdRemove:
		if len(payload) != CmdCompHdr {
			return p.reject(typ, RejectBadLength, nil)
		}
		e, id, err := p.dryComponent(typ, payload)
		if err != nil || e == dryEntity {
			return p.dryDone(err)
		}
		if has := w.Has(e, id); typ == CmdAdd && has {
			return p.reject(typ, RejectExists, ErrExists)
		} else if typ == CmdRemove && !has {
			return p.reject(typ, RejectAbsent, ErrAbsent)
		}
	case CmdSet:
		e, id, err := p.dryComponent(typ, payload)
		if err != nil {
			return err
		}
		data, c := payload[CmdCompHdr:], &w.comps[id]
		switch {
		case c.maxLen != 0 && len(data) > c.maxLen:
			return p.reject(typ, RejectTooLarge, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(data), c.maxLen))
		case c.maxLen != 0 && c.kind == KindString && !utf8.Valid(data):
			return p.reject(typ, RejectBadUTF8, ErrBadUTF8)
		case c.maxLen == 0 && len(data) != c.size:
			info, _ := w.reg.Info(id)
			return p.reject(typ, RejectWrongSize, fmt.Errorf("%d bytes for component %q of %d", len(data), info.Name, info.Size))
		}
		_ = e
	case CmdEvent:
		if len(payload) < CmdEventHdr || len(payload)-CmdEventHdr > p.MaxEventSize {
			return p.reject(typ, RejectBadLength, nil)
		}
		if le.Uint16(payload[2:]) != 0 || le.Uint32(payload[4:]) != 0 {
			return p.reject(typ, RejectReserved, nil)
		}
		if et := le.Uint16(payload); layout.IsSystemEvent(et) {
			return p.reject(typ, RejectReservedEvent, fmt.Errorf("event type %#04x is reserved for the engine (%#04x..0xffff)", et, layout.SystemEventFirst))
		}
		if !p.charge(layout.EventRecordSize(len(payload) - CmdEventHdr)) {
			return p.reject(typ, RejectEventQuota, fmt.Errorf("%d of %d event bytes of credit used, %d in this batch", p.used, p.MaxEventBytes, p.charged))
		}
	case CmdSetSingleton:
		if len(payload) < CmdSingletonHdr {
			return p.reject(typ, RejectBadLength, nil)
		}
		if le.Uint16(payload[2:]) != 0 || le.Uint32(payload[4:]) != 0 {
			return p.reject(typ, RejectReserved, nil)
		}
		raw := le.Uint16(payload)
		if int(raw) >= w.reg.NumSingletons() {
			return p.reject(typ, RejectUnknownComponent, fmt.Errorf("singleton id %d", raw))
		}
		info, _ := w.reg.Singleton(SingletonID(raw))
		if info.EngineOwned {
			return p.reject(typ, RejectEngineOwned, fmt.Errorf("singleton %q is set by the engine only", info.Name))
		}
		if n := len(payload) - CmdSingletonHdr; n != info.Size {
			return p.reject(typ, RejectWrongSize, fmt.Errorf("%d bytes for singleton %q of %d", n, info.Name, info.Size))
		}
	default:
		return p.reject(typ, RejectUnknownType, nil)
	}
	p.Stats.Applied++
	return nil
}

// dryDone counts a valid record, or returns err.
func (p *Playback) dryDone(err error) error {
	if err == nil {
		p.Stats.Applied++
	}
	return err
}

// dryResolve is resolve for a dry run: a temporary id of this batch's
// creates stands for an entity that does not exist (dryEntity).
func (p *Playback) dryResolve(typ uint16, ref uint64) (Entity, error) {
	if ref&TempFlag != 0 && ref&^TempFlag <= 0xffffffff {
		if e, ok := p.temps[uint32(ref)]; ok && e == dryEntity {
			return e, nil
		}
	}
	return p.resolveRef(typ, ref, true)
}

// dryComponent is component for a dry run.
func (p *Playback) dryComponent(typ uint16, payload []byte) (Entity, ComponentID, error) {
	if len(payload) < CmdCompHdr {
		return 0, 0, p.reject(typ, RejectBadLength, nil)
	}
	if le.Uint16(payload[10:]) != 0 || le.Uint32(payload[12:]) != 0 {
		return 0, 0, p.reject(typ, RejectReserved, nil)
	}
	raw := le.Uint16(payload[8:])
	if int(raw) >= p.w.reg.Len() {
		return 0, 0, p.reject(typ, RejectUnknownComponent, fmt.Errorf("component id %d", raw))
	}
	e, err := p.dryResolve(typ, le.Uint64(payload))
	return e, ComponentID(raw), err
}
