package world

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/fdp-engine/fdp/layout"
)

// Command record types (the ring record type of each command).
const (
	CmdCreate  uint16 = 1 // payload: u32 temp id, u32 zero
	CmdDestroy uint16 = 2 // payload: u64 entity ref
	CmdAdd     uint16 = 3 // payload: u64 entity ref, u16 component, u16 0, u32 0 — adds the zero value
	CmdSet     uint16 = 4 // payload: u64 entity ref, u16 component, u16 0, u32 0, component bytes (a variable-size component's value: 0..MaxLen bytes)
	CmdRemove  uint16 = 5 // payload: u64 entity ref, u16 component, u16 0, u32 0
	CmdEvent   uint16 = 6 // payload: u16 event type, u16 0, u32 0, event bytes
	// CmdSetSingleton sets a singleton (not an engine-owned one).
	CmdSetSingleton uint16 = 7 // payload: u16 singleton id, u16 0, u32 0, singleton bytes
)

// TempFlag marks an entity reference as a temporary id (the low 32 bits)
// assigned by a CreateEntity earlier in the same batch.
const TempFlag = uint64(1) << 63

// TempEntity returns the entity reference of temporary id t.
func TempEntity(t uint32) Entity { return Entity(TempFlag | uint64(t)) }

// IsTemp reports whether e is a temporary reference.
func (e Entity) IsTemp() bool { return uint64(e)&TempFlag != 0 }

// Command payload sizes.
const (
	CmdCreateSize = 8
	CmdRefSize    = 8
	CmdCompHdr    = 16
	CmdEventHdr   = 8
	// CmdSingletonHdr is the header of a SetSingleton payload.
	CmdSingletonHdr = 8
)

var le = binary.LittleEndian

// EncodeCreate writes a CreateEntity payload into dst (CmdCreateSize bytes).
func EncodeCreate(dst []byte, temp uint32) { le.PutUint32(dst, temp); le.PutUint32(dst[4:], 0) }

// EncodeRef writes a DestroyEntity payload into dst (CmdRefSize bytes).
func EncodeRef(dst []byte, e Entity) { le.PutUint64(dst, uint64(e)) }

// EncodeComp writes the header of an Add/Set/Remove payload into dst
// (CmdCompHdr bytes); for Set the component bytes follow at dst[CmdCompHdr:].
func EncodeComp(dst []byte, e Entity, id ComponentID) {
	le.PutUint64(dst, uint64(e))
	le.PutUint16(dst[8:], uint16(id))
	le.PutUint16(dst[10:], 0)
	le.PutUint32(dst[12:], 0)
}

// EncodeEventHdr writes the header of a PublishEvent payload (CmdEventHdr
// bytes); the event bytes follow.
func EncodeEventHdr(dst []byte, typ EventType) {
	le.PutUint16(dst, uint16(typ))
	le.PutUint16(dst[2:], 0)
	le.PutUint32(dst[4:], 0)
}

// EncodeSingletonHdr writes the header of a SetSingleton payload
// (CmdSingletonHdr bytes); the singleton's bytes follow.
func EncodeSingletonHdr(dst []byte, id SingletonID) {
	le.PutUint16(dst, uint16(id))
	le.PutUint16(dst[2:], 0)
	le.PutUint32(dst[4:], 0)
}

// RejectReason classifies a rejected command.
type RejectReason int

// Reasons a command record is rejected.
const (
	RejectUnknownType RejectReason = iota
	RejectBadLength
	RejectUnknownComponent
	RejectWrongSize
	RejectStaleEntity
	RejectUnknownTemp
	RejectDuplicateTemp
	RejectExists
	RejectAbsent
	RejectWorldFull
	RejectReserved
	// RejectReservedEvent: a PublishEvent of an event type reserved for the
	// engine's system events (layout.IsSystemEvent), e.g. a forged
	// "created" notice.
	RejectReservedEvent
	// RejectCorruptRing counts the batches dropped whole because the ring
	// that carried them was corrupt (inconsistent indices or record
	// headers); the engine counts it with CountCorruptRing, not Apply.
	RejectCorruptRing
	// RejectEventQuota: a PublishEvent (or a CreateEntity, whose "created"
	// notice the engine publishes) beyond the module's share of the event
	// log in this batch (Playback.MaxEventBytes). Only the excess is
	// rejected: events are independent.
	RejectEventQuota
	// RejectEntityQuota: a CreateEntity while the live entities the module
	// created (World.Owned) are at its quota (Playback.MaxEntities).
	RejectEntityQuota
	// RejectBadEventAck: an event acknowledgement (layout.CmdAckEvents,
	// checked by the engine, not Apply) naming a cursor the module cannot
	// hold: beyond the committed log, misaligned, or behind its previous
	// acknowledgement.
	RejectBadEventAck
	// RejectEngineOwned: a SetSingleton of a singleton only the engine
	// sets (SingletonInfo.EngineOwned, e.g. Time).
	RejectEngineOwned
	// RejectTooLarge: a SetComponent of a variable-size component with a
	// value longer than its max length (BytesSpec.MaxLen).
	RejectTooLarge
	// RejectBadUTF8: a SetComponent of a string component whose value is
	// not valid UTF-8.
	RejectBadUTF8
	// RejectArenaFull: a SetComponent of a variable-size component whose
	// value does not fit in its chunk's arena, even compacted.
	RejectArenaFull
	NumRejectReasons
)

var rejectNames = [NumRejectReasons]string{
	"unknown_type", "bad_length", "unknown_component", "wrong_size", "stale_entity",
	"unknown_temp", "duplicate_temp", "exists", "absent", "world_full", "reserved_bits",
	"reserved_event_type", "corrupt_ring", "event_quota", "entity_quota", "bad_event_ack",
	"engine_owned", "too_large", "bad_utf8", "arena_full",
}

func (r RejectReason) String() string {
	if r >= 0 && r < NumRejectReasons {
		return rejectNames[r]
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// ErrRejected is wrapped by every playback rejection.
var ErrRejected = errors.New("fdp/world: command rejected")

// RejectError is a rejected command with its reason.
type RejectError struct {
	Reason RejectReason
	Type   uint16
	Detail error
}

func (e *RejectError) Error() string {
	if e.Detail != nil {
		return fmt.Sprintf("fdp/world: command type %d rejected (%s): %v", e.Type, e.Reason, e.Detail)
	}
	return fmt.Sprintf("fdp/world: command type %d rejected (%s)", e.Type, e.Reason)
}

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectError) Is(target error) bool { return target == ErrRejected }

// Unwrap returns the underlying world error, if any.
func (e *RejectError) Unwrap() error { return e.Detail }

// TempMapping is one temporary id resolved at playback.
type TempMapping struct {
	Temp   uint32
	Entity Entity
}

// PlaybackStats counts what a Playback applied and rejected.
type PlaybackStats struct {
	Applied  uint64
	Rejected [NumRejectReasons]uint64
}

// RejectedTotal sums the rejections.
func (s *PlaybackStats) RejectedTotal() uint64 {
	var n uint64
	for _, v := range s.Rejected {
		n += v
	}
	return n
}

// Playback validates and applies command records to a world. One Playback
// is used per module (its stats are that module's). Begin starts a batch:
// temporary ids are scoped to the batch. Every record is validated in full
// before anything of it is applied, so a record is applied whole or not at
// all. It never panics on arbitrary bytes.
type Playback struct {
	w       *World
	temps   map[uint32]Entity
	created []TempMapping
	// Stats are cumulative.
	Stats PlaybackStats
	// MaxEventSize bounds PublishEvent payloads (default
	// layout.MaxModuleEventPayload).
	MaxEventSize int
	// Owner is the owner of the entities this playback creates
	// (World.CreateOwned); NoOwner by default.
	Owner uint16
	// MaxEntities bounds the live entities Owner created (World.Owned):
	// a create beyond it is rejected with RejectEntityQuota. 0: no bound.
	MaxEntities int
	// MaxEventBytes bounds the event log bytes (layout.EventRecordSize of
	// each payload) a batch may publish: the size of the module's credit
	// bucket. An event beyond the credit is rejected with RejectEventQuota,
	// the events before it stay applied. 0: no bound.
	MaxEventBytes int
	// EventBytesPerFrame is the credit added per frame (BeginFrame), up to
	// MaxEventBytes: a module's sustained share of the log. 0: MaxEventBytes
	// (a plain per-frame quota).
	EventBytesPerFrame int
	// NoticeBytes is charged for every create (the log bytes of the
	// "created" notice the engine publishes for it); a create whose notice
	// does not fit is rejected with RejectEventQuota.
	NoticeBytes int
	// DryRun: Apply validates and counts, and changes nothing (a replay;
	// dryrun.go).
	DryRun      bool
	dry         dryState
	used        int    // event log bytes charged and not yet refilled
	charged     int    // event log bytes charged in this batch
	creditFrame uint64 // frame of the last refill
}

// NewPlayback returns a playback for w.
func NewPlayback(w *World) *Playback {
	return &Playback{w: w, temps: make(map[uint32]Entity, 64), created: make([]TempMapping, 0, 64), MaxEventSize: layout.MaxModuleEventPayload}
}

// Begin starts a new batch: temporary ids of the previous batch are
// forgotten and Created is emptied. The event credit is refilled as for
// one frame after the last batch (BeginFrame gives the frame).
func (p *Playback) Begin() { p.BeginFrame(p.creditFrame + 1) }

// BeginFrame is Begin for the batch of frame: the event credit grows by
// EventBytesPerFrame per frame since the last batch, up to MaxEventBytes
// (a new playback starts with a full bucket).
func (p *Playback) BeginFrame(frame uint64) {
	clear(p.temps)
	p.dry.reset()
	p.created = p.created[:0]
	p.charged = 0
	rate := p.EventBytesPerFrame
	if rate <= 0 {
		rate = p.MaxEventBytes
	}
	if frame > p.creditFrame && p.used > 0 {
		refill := uint64(max(rate, 0)) * min(frame-p.creditFrame, uint64(p.used)+1)
		p.used = int(uint64(p.used) - min(refill, uint64(p.used)))
	}
	p.creditFrame = frame
}

// EventBytes returns the event log bytes charged to the batch since Begin.
func (p *Playback) EventBytes() int { return p.charged }

// charge charges n event log bytes to the module's credit, or reports false
// when the credit has no room for them.
func (p *Playback) charge(n int) bool {
	if p.MaxEventBytes <= 0 {
		p.charged += n
		return true
	}
	if p.used+n > p.MaxEventBytes {
		return false
	}
	p.used += n
	p.charged += n
	return true
}

// Created returns the temporary ids resolved since Begin.
func (p *Playback) Created() []TempMapping { return p.created }

func (p *Playback) reject(typ uint16, r RejectReason, detail error) error {
	p.Stats.Rejected[r]++
	return &RejectError{Reason: r, Type: typ, Detail: detail}
}

// CountCorruptRing counts one batch dropped because its ring was corrupt
// (RejectCorruptRing): the per-module counter beside the record reasons.
func (p *Playback) CountCorruptRing() { p.Stats.Rejected[RejectCorruptRing]++ }

// resolve turns an entity reference into a live entity.
func (p *Playback) resolve(typ uint16, ref uint64) (Entity, error) {
	return p.resolveRef(typ, ref, true)
}

// resolveRef is resolve; with checkAlive false a plain handle is returned
// unchecked, for callers whose next world call checks it anyway (SetRaw
// returns ErrStale), so the hot Set path looks the entity up once.
func (p *Playback) resolveRef(typ uint16, ref uint64, checkAlive bool) (Entity, error) {
	if ref&TempFlag != 0 {
		if ref&^TempFlag > 0xffffffff {
			return 0, p.reject(typ, RejectReserved, nil)
		}
		e, ok := p.temps[uint32(ref)]
		if !ok {
			return 0, p.reject(typ, RejectUnknownTemp, fmt.Errorf("temporary id %d", uint32(ref)))
		}
		if !p.w.IsAlive(e) {
			return 0, p.reject(typ, RejectStaleEntity, ErrStale)
		}
		return e, nil
	}
	e := Entity(ref)
	if checkAlive && !p.w.IsAlive(e) {
		return 0, p.reject(typ, RejectStaleEntity, ErrStale)
	}
	return e, nil
}

func (p *Playback) component(typ uint16, payload []byte) (Entity, ComponentID, error) {
	return p.componentRef(typ, payload, true)
}

func (p *Playback) componentRef(typ uint16, payload []byte, checkAlive bool) (Entity, ComponentID, error) {
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
	e, err := p.resolveRef(typ, le.Uint64(payload), checkAlive)
	return e, ComponentID(raw), err
}

// checkCreate is the part of CmdCreate that Apply and its dry run share: the
// record's shape, the temporary id's uniqueness, and the owner's quotas given
// its owned count (the dry run adds the creations it has only pretended).
// It returns the temporary id; it changes nothing.
func (p *Playback) checkCreate(typ uint16, payload []byte, owned int) (uint32, error) {
	if len(payload) != CmdCreateSize {
		return 0, p.reject(typ, RejectBadLength, nil)
	}
	if le.Uint32(payload[4:]) != 0 {
		return 0, p.reject(typ, RejectReserved, nil)
	}
	t := le.Uint32(payload)
	if _, dup := p.temps[t]; dup {
		return 0, p.reject(typ, RejectDuplicateTemp, fmt.Errorf("temporary id %d", t))
	}
	if p.MaxEntities > 0 && owned >= p.MaxEntities {
		return 0, p.reject(typ, RejectEntityQuota, fmt.Errorf("%d live entities created, the quota is %d", owned, p.MaxEntities))
	}
	if p.MaxEventBytes > 0 && p.used+p.NoticeBytes > p.MaxEventBytes {
		return 0, p.reject(typ, RejectEventQuota, fmt.Errorf("no room for the created notice: %d of %d event bytes of credit used", p.used, p.MaxEventBytes))
	}
	return t, nil
}

// Apply validates and applies one command record. The error, if any, is a
// *RejectError (errors.Is(err, ErrRejected)); the world is then unchanged.
func (p *Playback) Apply(typ uint16, payload []byte) error {
	if p.DryRun {
		return p.validate(typ, payload)
	}
	w := p.w
	switch typ {
	case CmdCreate:
		t, err := p.checkCreate(typ, payload, w.Owned(p.Owner))
		if err != nil {
			return err
		}
		e, err := w.CreateOwned(p.Owner)
		if err != nil {
			return p.reject(typ, RejectWorldFull, err)
		}
		p.charge(p.NoticeBytes)
		p.temps[t] = e
		p.created = append(p.created, TempMapping{Temp: t, Entity: e})
	case CmdDestroy:
		if len(payload) != CmdRefSize {
			return p.reject(typ, RejectBadLength, nil)
		}
		e, err := p.resolve(typ, le.Uint64(payload))
		if err != nil {
			return err
		}
		if err := w.Destroy(e); err != nil {
			return p.reject(typ, RejectStaleEntity, err)
		}
	case CmdAdd, CmdRemove:
		if len(payload) != CmdCompHdr {
			return p.reject(typ, RejectBadLength, nil)
		}
		e, id, err := p.component(typ, payload)
		if err != nil {
			return err
		}
		if typ == CmdAdd {
			if err := w.Add(e, id); err != nil {
				return p.reject(typ, RejectExists, err)
			}
		} else if err := w.Remove(e, id); err != nil {
			return p.reject(typ, RejectAbsent, err)
		}
	case CmdSet:
		e, id, err := p.componentRef(typ, payload, false)
		if err != nil {
			return err
		}
		data := payload[CmdCompHdr:]
		if w.comps[id].maxLen != 0 {
			return p.setBytes(e, id, data)
		}
		if len(data) != w.comps[id].size {
			// A stale entity is reported as stale, whatever the size.
			if !w.IsAlive(e) {
				return p.reject(typ, RejectStaleEntity, ErrStale)
			}
			info, _ := w.reg.Info(id)
			return p.reject(typ, RejectWrongSize, fmt.Errorf("%d bytes for component %q of %d", len(data), info.Name, info.Size))
		}
		if err := w.SetRaw(e, id, data); err != nil {
			return p.reject(typ, RejectStaleEntity, err)
		}
	case CmdEvent:
		if len(payload) < CmdEventHdr || len(payload)-CmdEventHdr > p.MaxEventSize {
			return p.reject(typ, RejectBadLength, nil)
		}
		if le.Uint16(payload[2:]) != 0 || le.Uint32(payload[4:]) != 0 {
			return p.reject(typ, RejectReserved, nil)
		}
		et := le.Uint16(payload)
		if layout.IsSystemEvent(et) {
			return p.reject(typ, RejectReservedEvent, fmt.Errorf("event type %#04x is reserved for the engine (%#04x..0xffff)", et, layout.SystemEventFirst))
		}
		if !p.charge(layout.EventRecordSize(len(payload) - CmdEventHdr)) {
			return p.reject(typ, RejectEventQuota, fmt.Errorf("%d of %d event bytes of credit used, %d in this batch", p.used, p.MaxEventBytes, p.charged))
		}
		w.Emit(EventType(et), payload[CmdEventHdr:])
	case CmdSetSingleton:
		if err := p.setSingleton(payload); err != nil {
			return err
		}
	default:
		return p.reject(typ, RejectUnknownType, nil)
	}
	p.Stats.Applied++
	return nil
}

// setSingleton validates and applies a SetSingleton payload.
func (p *Playback) setSingleton(payload []byte) error {
	const typ = CmdSetSingleton
	if len(payload) < CmdSingletonHdr {
		return p.reject(typ, RejectBadLength, nil)
	}
	if le.Uint16(payload[2:]) != 0 || le.Uint32(payload[4:]) != 0 {
		return p.reject(typ, RejectReserved, nil)
	}
	raw := le.Uint16(payload)
	if int(raw) >= p.w.reg.NumSingletons() {
		return p.reject(typ, RejectUnknownComponent, fmt.Errorf("singleton id %d", raw))
	}
	id := SingletonID(raw)
	info, _ := p.w.reg.Singleton(id)
	if info.EngineOwned {
		return p.reject(typ, RejectEngineOwned, fmt.Errorf("singleton %q is set by the engine only", info.Name))
	}
	data := payload[CmdSingletonHdr:]
	if len(data) != info.Size {
		return p.reject(typ, RejectWrongSize, fmt.Errorf("%d bytes for singleton %q of %d", len(data), info.Name, info.Size))
	}
	return p.w.SetSingletonRaw(id, data) // validated: cannot fail
}

// setBytes applies a SetComponent of variable-size component id: the
// payload after the header is the value, of any length up to the
// component's max length.
func (p *Playback) setBytes(e Entity, id ComponentID, v []byte) error {
	const typ = CmdSet
	err := p.w.SetBytes(e, id, v)
	switch {
	case err == nil:
		p.Stats.Applied++
		return nil
	case errors.Is(err, ErrTooLarge):
		return p.reject(typ, RejectTooLarge, err)
	case errors.Is(err, ErrBadUTF8):
		return p.reject(typ, RejectBadUTF8, err)
	case errors.Is(err, ErrArenaFull):
		return p.reject(typ, RejectArenaFull, err)
	}
	return p.reject(typ, RejectStaleEntity, err) // ErrStale: the only other failure of a validated (e, id)
}
