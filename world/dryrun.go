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
// event emitted, no created notice listed. Within a batch, what the
// batch's earlier records would have done is kept aside (an overlay of the
// entities they created, destroyed, or gave or stripped of components), so
// that every record gets the verdict a real playback would give it
// (world/dryrun_test.go compares them).

// dryEnt is an entity as the batch's earlier records left it.
type dryEnt struct {
	alive bool
	mask  Mask
	owned bool // owned by the playback's Owner
}

// dryState is the overlay of a dry-run batch (reset by BeginFrame).
type dryState struct {
	ents            map[Entity]dryEnt
	created, killed int // entities the batch created, destroyed
	owned           int // change of the Owner's live entities
}

func (d *dryState) reset() {
	clear(d.ents)
	d.created, d.killed, d.owned = 0, 0, 0
}

// dryLookup is the entity e as the batch left it.
func (p *Playback) dryLookup(e Entity) dryEnt {
	if de, ok := p.dry.ents[e]; ok {
		return de
	}
	if !p.w.IsAlive(e) {
		return dryEnt{}
	}
	return dryEnt{alive: true, mask: p.w.Mask(e), owned: p.w.Owner(e) == p.Owner && p.Owner != NoOwner}
}

func (p *Playback) drySet(e Entity, de dryEnt) {
	if p.dry.ents == nil {
		p.dry.ents = map[Entity]dryEnt{}
	}
	p.dry.ents[e] = de
}

// validate is Apply for a dry run.
func (p *Playback) validate(typ uint16, payload []byte) error {
	w := p.w
	switch typ {
	case CmdCreate:
		t, err := p.checkCreate(typ, payload, w.Owned(p.Owner)+p.dry.owned)
		if err != nil {
			return err
		}
		if w.Count()+p.dry.created-p.dry.killed >= w.MaxEntities() {
			return p.reject(typ, RejectWorldFull, fmt.Errorf("%w: %d entities", ErrWorldFull, w.MaxEntities()))
		}
		p.charge(p.NoticeBytes)
		e := Entity(TempFlag | uint64(t)) // the overlay's name for it: never a real entity
		p.temps[t] = e
		p.drySet(e, dryEnt{alive: true, owned: true})
		p.dry.created++
		p.dry.owned++
	case CmdDestroy:
		if len(payload) != CmdRefSize {
			return p.reject(typ, RejectBadLength, nil)
		}
		e, de, err := p.dryResolve(typ, le.Uint64(payload))
		if err != nil {
			return err
		}
		p.drySet(e, dryEnt{})
		p.dry.killed++
		if de.owned {
			p.dry.owned--
		}
	case CmdAdd, CmdRemove:
		if len(payload) != CmdCompHdr {
			return p.reject(typ, RejectBadLength, nil)
		}
		e, de, id, err := p.dryComponent(typ, payload)
		if err != nil {
			return err
		}
		if has := de.mask.Has(id); typ == CmdAdd && has {
			return p.reject(typ, RejectExists, ErrExists)
		} else if typ == CmdRemove && !has {
			return p.reject(typ, RejectAbsent, ErrAbsent)
		}
		if typ == CmdAdd {
			de.mask = de.mask.Or(MaskOf(id))
		} else {
			de.mask = de.mask.AndNot(MaskOf(id))
		}
		p.drySet(e, de)
	case CmdSet:
		e, de, id, err := p.dryComponent(typ, payload)
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
		de.mask = de.mask.Or(MaskOf(id)) // a Set adds the component if absent
		p.drySet(e, de)
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

// dryResolve is resolve for a dry run, through the batch's overlay.
func (p *Playback) dryResolve(typ uint16, ref uint64) (Entity, dryEnt, error) {
	e := Entity(ref)
	if ref&TempFlag != 0 {
		if ref&^TempFlag > 0xffffffff {
			return 0, dryEnt{}, p.reject(typ, RejectReserved, nil)
		}
		t, ok := p.temps[uint32(ref)]
		if !ok {
			return 0, dryEnt{}, p.reject(typ, RejectUnknownTemp, fmt.Errorf("temporary id %d", uint32(ref)))
		}
		e = t
	}
	de := p.dryLookup(e)
	if !de.alive {
		return 0, dryEnt{}, p.reject(typ, RejectStaleEntity, ErrStale)
	}
	return e, de, nil
}

// dryComponent is component for a dry run.
func (p *Playback) dryComponent(typ uint16, payload []byte) (Entity, dryEnt, ComponentID, error) {
	if len(payload) < CmdCompHdr {
		return 0, dryEnt{}, 0, p.reject(typ, RejectBadLength, nil)
	}
	if le.Uint16(payload[10:]) != 0 || le.Uint32(payload[12:]) != 0 {
		return 0, dryEnt{}, 0, p.reject(typ, RejectReserved, nil)
	}
	raw := le.Uint16(payload[8:])
	if int(raw) >= p.w.reg.Len() {
		return 0, dryEnt{}, 0, p.reject(typ, RejectUnknownComponent, fmt.Errorf("component id %d", raw))
	}
	e, de, err := p.dryResolve(typ, le.Uint64(payload))
	return e, de, ComponentID(raw), err
}
