package world

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// Payload builders for the tests (they use the exported encoders).

func cmdCreate(temp uint32) []byte {
	b := make([]byte, CmdCreateSize)
	EncodeCreate(b, temp)
	return b
}

func cmdRef(e Entity) []byte {
	b := make([]byte, CmdRefSize)
	EncodeRef(b, e)
	return b
}

func cmdComp(e Entity, id ComponentID) []byte {
	b := make([]byte, CmdCompHdr)
	EncodeComp(b, e, id)
	return b
}

func cmdCompRaw(e Entity, raw uint16) []byte {
	b := cmdComp(e, 0)
	binary.LittleEndian.PutUint16(b[8:], raw)
	return b
}

func cmdSet(e Entity, id ComponentID, data []byte) []byte {
	return append(cmdComp(e, id), data...)
}

func cmdEvent(typ EventType, data []byte) []byte {
	b := make([]byte, CmdEventHdr, CmdEventHdr+len(data))
	EncodeEventHdr(b, typ)
	return append(b, data...)
}

func posBytes(p Position) []byte {
	b := make([]byte, 12)
	binary.LittleEndian.PutUint32(b, math.Float32bits(p.X))
	binary.LittleEndian.PutUint32(b[4:], math.Float32bits(p.Y))
	binary.LittleEndian.PutUint32(b[8:], math.Float32bits(p.Z))
	return b
}

func hpBytes(h Health) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, uint32(h.HP))
	binary.LittleEndian.PutUint32(b[4:], uint32(h.Max))
	return b
}

// worldSnap is a deep copy of everything observable about a world.
type worldSnap struct {
	Count, HighWater, NumChunks int
	Version                     uint64
	StructVers                  []uint64
	CompVers                    [][]uint64
	Alive                       []int
	Recs                        [][]layout.EntityRecord
	Cols                        [][][]byte
	Events                      []Event
	Singletons                  [][]byte
	SingletonVers               []uint64
}

func snapshot(w *World) worldSnap {
	s := worldSnap{Count: w.Count(), HighWater: w.HighWater(), NumChunks: w.NumChunks(), Version: w.Version()}
	for c := 0; c < w.MaxChunks(); c++ {
		s.StructVers = append(s.StructVers, w.ChunkStructVersion(c))
		s.Alive = append(s.Alive, w.ChunkAlive(c))
		s.Recs = append(s.Recs, append([]layout.EntityRecord(nil), w.ChunkRecords(c)...))
		var vers []uint64
		var cols [][]byte
		for id := 0; id < w.Registry().Len(); id++ {
			vers = append(vers, w.ChunkComponentVersion(c, ComponentID(id)))
			cols = append(cols, append([]byte(nil), w.ChunkColumn(c, ComponentID(id))...))
		}
		s.CompVers = append(s.CompVers, vers)
		s.Cols = append(s.Cols, cols)
	}
	for _, ev := range w.FrameEvents() {
		s.Events = append(s.Events, Event{Type: ev.Type, Payload: append([]byte(nil), ev.Payload...)})
	}
	for i := 0; i < w.NumSingletons(); i++ {
		v, _ := w.SingletonRaw(SingletonID(i))
		s.Singletons = append(s.Singletons, append([]byte(nil), v...))
		s.SingletonVers = append(s.SingletonVers, w.SingletonVersion(SingletonID(i)))
	}
	return s
}

func cmdSingleton(id uint16, data []byte) []byte {
	b := make([]byte, CmdSingletonHdr, CmdSingletonHdr+len(data))
	EncodeSingletonHdr(b, SingletonID(id))
	binary.LittleEndian.PutUint16(b, id)
	return append(b, data...)
}

// checkInvariants verifies the world's bookkeeping against its records.
func checkInvariants(t testing.TB, w *World) {
	t.Helper()
	alive := 0
	valid := w.Registry().Mask()
	for c := 0; c < w.NumChunks(); c++ {
		recs := w.ChunkRecords(c)
		inChunk := 0
		for i := 0; i < w.ChunkRows(c); i++ {
			r := recs[i]
			if r.Flags&layout.FlagAlive != 0 {
				inChunk++
				if r.Gen == 0 || !Mask(r.Mask).AndNot(valid).Empty() {
					t.Fatalf("chunk %d row %d: bad alive record %+v", c, i, r)
				}
			} else if r.Mask != ([4]uint64{}) {
				t.Fatalf("chunk %d row %d: dead record with mask %v", c, i, Mask(r.Mask))
			}
		}
		if inChunk != w.ChunkAlive(c) {
			t.Fatalf("chunk %d: %d alive records, ChunkAlive %d", c, inChunk, w.ChunkAlive(c))
		}
		alive += inChunk
	}
	if alive != w.Count() {
		t.Fatalf("Count %d, alive records %d", w.Count(), alive)
	}
	checkArena(t, w) // varsize.go: A1, A2
}

func TestPlaybackAppliesEveryCommand(t *testing.T) {
	f := newFixture(t, 16, 2)
	w := f.w
	old, err := w.Create()
	require.NoError(t, err)
	require.NoError(t, Set(w, old, f.hp, Health{HP: 1, Max: 2}))
	victim, err := w.Create()
	require.NoError(t, err)
	v := w.Advance()

	p := NewPlayback(w)
	p.Begin()
	recs := []struct {
		typ     uint16
		payload []byte
	}{
		{CmdCreate, cmdCreate(10)},
		{CmdCreate, cmdCreate(0xffffffff)}, // largest temp id
		{CmdSet, cmdSet(TempEntity(10), f.pos, posBytes(Position{1, 2, 3}))},
		{CmdAdd, cmdComp(TempEntity(10), f.vel)},
		{CmdSet, cmdSet(TempEntity(10), f.hp, hpBytes(Health{HP: 7, Max: 9}))},
		{CmdRemove, cmdComp(TempEntity(10), f.hp)},
		{CmdAdd, cmdComp(TempEntity(0xffffffff), f.hp)},
		{CmdDestroy, cmdRef(TempEntity(0xffffffff))},
		// Real handles work too.
		{CmdSet, cmdSet(old, f.pos, posBytes(Position{4, 5, 6}))},
		{CmdRemove, cmdComp(old, f.hp)},
		{CmdAdd, cmdComp(old, f.vel)},
		{CmdDestroy, cmdRef(victim)},
		{CmdEvent, cmdEvent(42, []byte("boom"))},
		{CmdEvent, cmdEvent(43, nil)},
	}
	for i, r := range recs {
		require.NoError(t, p.Apply(r.typ, r.payload), "record %d", i)
	}
	require.Equal(t, uint64(len(recs)), p.Stats.Applied)
	require.Zero(t, p.Stats.RejectedTotal())

	created := p.Created()
	require.Len(t, created, 2)
	require.Equal(t, uint32(10), created[0].Temp)
	require.Equal(t, uint32(0xffffffff), created[1].Temp)
	e1, e2 := created[0].Entity, created[1].Entity
	require.NotEqual(t, e1, e2)
	require.False(t, e1.IsTemp())

	require.True(t, w.IsAlive(e1))
	pos, ok := Get[Position](w, e1, f.pos)
	require.True(t, ok)
	require.Equal(t, Position{1, 2, 3}, pos)
	vel, ok := Get[Velocity](w, e1, f.vel)
	require.True(t, ok)
	require.Equal(t, Velocity{}, vel, "Add sets the zero value")
	require.False(t, w.Has(e1, f.hp), "hp was removed")
	require.Equal(t, MaskOf(f.pos, f.vel), w.Mask(e1))

	require.False(t, w.IsAlive(e2), "temp 0xffffffff was destroyed")
	require.False(t, w.IsAlive(victim))

	require.True(t, w.IsAlive(old))
	pos, ok = Get[Position](w, old, f.pos)
	require.True(t, ok)
	require.Equal(t, Position{4, 5, 6}, pos)
	require.Equal(t, MaskOf(f.pos, f.vel), w.Mask(old))

	require.Equal(t, 2, w.Count()) // old + e1
	checkInvariants(t, w)
	// Everything was stamped with the frame version.
	require.Equal(t, v, w.ChunkStructVersion(0))
	require.Equal(t, v, w.ChunkComponentVersion(0, f.pos))
	require.Equal(t, v, w.ChunkComponentVersion(0, f.hp))

	require.Equal(t, []Event{{42, []byte("boom")}, {43, []byte{}}}, w.FrameEvents())
}

func TestPlaybackTempScopedToBatch(t *testing.T) {
	f := newFixture(t, 16, 1)
	w := f.w
	p := NewPlayback(w)
	p.Begin()
	require.NoError(t, p.Apply(CmdCreate, cmdCreate(1)))
	first := p.Created()[0].Entity

	p.Begin()
	require.Empty(t, p.Created())
	err := p.Apply(CmdSet, cmdSet(TempEntity(1), f.pos, posBytes(Position{1, 1, 1})))
	var re *RejectError
	require.ErrorAs(t, err, &re)
	require.Equal(t, RejectUnknownTemp, re.Reason)
	require.Equal(t, uint64(1), p.Stats.Rejected[RejectUnknownTemp])
	require.False(t, w.Has(first, f.pos))

	// The same temp id may be reused in the new batch: a new entity.
	require.NoError(t, p.Apply(CmdCreate, cmdCreate(1)))
	require.Len(t, p.Created(), 1)
	second := p.Created()[0].Entity
	require.NotEqual(t, first, second)
	require.NoError(t, p.Apply(CmdAdd, cmdComp(TempEntity(1), f.vel)))
	require.True(t, w.Has(second, f.vel))
	require.False(t, w.Has(first, f.vel))
	require.Equal(t, 2, w.Count())
}

// TestPlaybackSeedsScenario: one CreateEntity in frame 1, an empty batch in
// frame 2: the world still holds exactly one entity.
func TestPlaybackSeedsScenario(t *testing.T) {
	f := newFixture(t, 16, 1)
	w := f.w
	p := NewPlayback(w)

	w.Advance()
	p.Begin()
	require.NoError(t, p.Apply(CmdCreate, cmdCreate(0)))
	require.Len(t, p.Created(), 1)
	e := p.Created()[0].Entity
	require.Equal(t, 1, w.Count())

	w.Advance()
	p.Begin()
	require.Empty(t, p.Created())
	require.Equal(t, 1, w.Count())
	require.True(t, w.IsAlive(e))
	require.Equal(t, uint64(1), p.Stats.Applied)
	require.Zero(t, p.Stats.RejectedTotal())
	checkInvariants(t, w)
}

// rejectCase is one command that must be rejected. prep may change the
// world or the batch before the snapshot is taken.
type rejectCase struct {
	name    string
	prep    func(t *testing.T, rf *rejectFixture)
	typ     uint16
	payload func(rf *rejectFixture) []byte
	reason  RejectReason
	detail  error // if non-nil, errors.Is(err, detail) must hold
}

type rejectFixture struct {
	*fixture
	p    *Playback
	live Entity // alive, has Position {1,2,3}
	dead Entity // destroyed handle
}

func newRejectFixture(t *testing.T) *rejectFixture {
	f := newFixture(t, 16, 1)
	rf := &rejectFixture{fixture: f, p: NewPlayback(f.w)}
	var err error
	rf.live, err = f.w.Create()
	require.NoError(t, err)
	require.NoError(t, Set(f.w, rf.live, f.pos, Position{1, 2, 3}))
	rf.dead, err = f.w.Create()
	require.NoError(t, err)
	require.NoError(t, f.w.Destroy(rf.dead))
	f.w.Emit(1, []byte("pre"))
	// Every stamp so far is older than the current version: a rejected
	// command that stamped anything would be visible.
	f.w.Advance()
	rf.p.Begin()
	return rf
}

func withReserved(b []byte, off int, v byte) []byte {
	b[off] = v
	return b
}

func rejectCases() []rejectCase {
	constant := func(b []byte) func(*rejectFixture) []byte { return func(*rejectFixture) []byte { return b } }
	var cs []rejectCase
	add := func(c rejectCase) { cs = append(cs, c) }

	// Unknown types.
	for _, typ := range []uint16{0, 8, 0x100, 0xffff} {
		add(rejectCase{name: fmt.Sprintf("unknown_type/%d", typ), typ: typ, payload: constant(cmdCreate(1)), reason: RejectUnknownType})
	}

	// Bad lengths, per command type.
	for _, n := range []int{0, 4, 7, 9, 16} {
		add(rejectCase{name: fmt.Sprintf("bad_length/create/%d", n), typ: CmdCreate,
			payload: constant(make([]byte, n)), reason: RejectBadLength})
	}
	for _, n := range []int{0, 7, 9, 16} {
		add(rejectCase{name: fmt.Sprintf("bad_length/destroy/%d", n), typ: CmdDestroy,
			payload: func(rf *rejectFixture) []byte {
				return append(cmdRef(rf.live), make([]byte, 8)...)[:n]
			}, reason: RejectBadLength})
	}
	for _, typ := range []uint16{CmdAdd, CmdRemove} {
		for _, n := range []int{0, 8, 15, 17, 28} {
			add(rejectCase{name: fmt.Sprintf("bad_length/%d/%d", typ, n), typ: typ,
				payload: func(rf *rejectFixture) []byte {
					return append(cmdComp(rf.live, rf.vel), make([]byte, 12)...)[:n]
				}, reason: RejectBadLength})
		}
	}
	for _, n := range []int{0, 8, 15} {
		add(rejectCase{name: fmt.Sprintf("bad_length/set/%d", n), typ: CmdSet,
			payload: func(rf *rejectFixture) []byte { return cmdSet(rf.live, rf.pos, posBytes(Position{9, 9, 9}))[:n] },
			reason:  RejectBadLength})
	}
	for _, n := range []int{0, 7} {
		add(rejectCase{name: fmt.Sprintf("bad_length/event/%d", n), typ: CmdEvent,
			payload: constant(cmdEvent(3, nil)[:n]), reason: RejectBadLength})
	}
	add(rejectCase{name: "bad_length/event/too_big", typ: CmdEvent,
		payload: constant(cmdEvent(3, make([]byte, 4097))), reason: RejectBadLength})

	// Unknown components.
	for _, raw := range []uint16{4, 63, 64, 255, 256, 0xffff} {
		for _, typ := range []uint16{CmdAdd, CmdRemove} {
			add(rejectCase{name: fmt.Sprintf("unknown_component/%d/%d", typ, raw), typ: typ,
				payload: func(rf *rejectFixture) []byte { return cmdCompRaw(rf.live, raw) },
				reason:  RejectUnknownComponent})
		}
		add(rejectCase{name: fmt.Sprintf("unknown_component/set/%d", raw), typ: CmdSet,
			payload: func(rf *rejectFixture) []byte { return append(cmdCompRaw(rf.live, raw), make([]byte, 12)...) },
			reason:  RejectUnknownComponent})
	}

	// Wrong sizes.
	for _, n := range []int{0, 8, 11, 13, 24} {
		add(rejectCase{name: fmt.Sprintf("wrong_size/pos/%d", n), typ: CmdSet,
			payload: func(rf *rejectFixture) []byte { return cmdSet(rf.live, rf.pos, make([]byte, n)) },
			reason:  RejectWrongSize})
	}
	add(rejectCase{name: "wrong_size/hp/12", typ: CmdSet,
		payload: func(rf *rejectFixture) []byte { return cmdSet(rf.live, rf.hp, make([]byte, 12)) },
		reason:  RejectWrongSize})

	// Variable-size values: too long (the label's max length is 40), not
	// UTF-8 (a string component), and a chunk's arena full (16 entities
	// of 16 bytes each: 256 bytes, of which 10 other entities take 240:
	// no room for the live entity's 40).
	for _, n := range []int{41, 64, 4096} {
		add(rejectCase{name: fmt.Sprintf("too_large/%d", n), typ: CmdSet,
			payload: func(rf *rejectFixture) []byte { return cmdSet(rf.live, rf.label, make([]byte, n)) }, reason: RejectTooLarge, detail: ErrTooLarge})
	}
	for _, v := range []string{"\xff", "ab\xc3", "\xed\xa0\x80"} {
		add(rejectCase{name: fmt.Sprintf("bad_utf8/%x", v), typ: CmdSet,
			payload: func(rf *rejectFixture) []byte { return cmdSet(rf.live, rf.label, []byte(v)) }, reason: RejectBadUTF8, detail: ErrBadUTF8})
	}
	add(rejectCase{name: "arena_full", typ: CmdSet, reason: RejectArenaFull, detail: ErrArenaFull,
		payload: func(rf *rejectFixture) []byte { return cmdSet(rf.live, rf.label, make([]byte, 40)) },
		prep: func(t *testing.T, rf *rejectFixture) {
			for i := 0; i < 10; i++ {
				e, err := rf.w.Create()
				require.NoError(t, err)
				require.NoError(t, rf.w.SetString(e, rf.label, strings.Repeat("x", 24)))
			}
			rf.w.Advance() // the rejected write must not stamp
		}})
	add(rejectCase{name: "stale/set_bytes", typ: CmdSet, reason: RejectStaleEntity, detail: ErrStale,
		payload: func(rf *rejectFixture) []byte { return cmdSet(rf.dead, rf.label, make([]byte, 100)) }})

	// Singletons: short, reserved bits, unknown ids, wrong sizes, and the
	// engine's own (Time, id 0, whatever the bytes).
	for _, n := range []int{0, 4, 7} {
		add(rejectCase{name: fmt.Sprintf("bad_length/singleton/%d", n), typ: CmdSetSingleton,
			payload: constant(cmdSingleton(1, make([]byte, 8))[:n]), reason: RejectBadLength})
	}
	for _, off := range []int{2, 3, 4, 7} {
		add(rejectCase{name: fmt.Sprintf("reserved_bits/singleton/%d", off), typ: CmdSetSingleton,
			payload: constant(withReserved(cmdSingleton(1, make([]byte, 8)), off, 1)), reason: RejectReserved})
	}
	for _, raw := range []uint16{2, 63, 255, 256, 0xffff} {
		add(rejectCase{name: fmt.Sprintf("unknown_component/singleton/%d", raw), typ: CmdSetSingleton,
			payload: constant(cmdSingleton(raw, make([]byte, 8))), reason: RejectUnknownComponent})
	}
	for _, n := range []int{0, 4, 7, 9, 24} {
		add(rejectCase{name: fmt.Sprintf("wrong_size/singleton/%d", n), typ: CmdSetSingleton,
			payload: constant(cmdSingleton(1, make([]byte, n))), reason: RejectWrongSize})
	}
	for _, n := range []int{24, 0, 8} {
		add(rejectCase{name: fmt.Sprintf("engine_owned/time/%d", n), typ: CmdSetSingleton,
			payload: constant(cmdSingleton(0, make([]byte, n))), reason: RejectEngineOwned})
	}

	// Stale entities, for every command taking a reference.
	stale := []struct {
		name string
		ref  func(rf *rejectFixture) Entity
	}{
		{"destroyed", func(rf *rejectFixture) Entity { return rf.dead }},
		{"null", func(*rejectFixture) Entity { return 0 }},
		{"never_issued", func(*rejectFixture) Entity { return MakeEntity(5, 1) }},
		{"beyond_chunks", func(*rejectFixture) Entity { return MakeEntity(1<<20, 1) }},
		{"gen_ahead", func(rf *rejectFixture) Entity { return MakeEntity(rf.live.Index(), rf.live.Gen()+1) }},
		{"gen_zero", func(rf *rejectFixture) Entity { return MakeEntity(rf.live.Index(), 0) }},
	}
	for _, s := range stale {
		add(rejectCase{name: "stale/destroy/" + s.name, typ: CmdDestroy,
			payload: func(rf *rejectFixture) []byte { return cmdRef(s.ref(rf)) }, reason: RejectStaleEntity, detail: ErrStale})
		add(rejectCase{name: "stale/add/" + s.name, typ: CmdAdd,
			payload: func(rf *rejectFixture) []byte { return cmdComp(s.ref(rf), rf.vel) }, reason: RejectStaleEntity, detail: ErrStale})
		add(rejectCase{name: "stale/remove/" + s.name, typ: CmdRemove,
			payload: func(rf *rejectFixture) []byte { return cmdComp(s.ref(rf), rf.pos) }, reason: RejectStaleEntity, detail: ErrStale})
		add(rejectCase{name: "stale/set/" + s.name, typ: CmdSet,
			payload: func(rf *rejectFixture) []byte { return cmdSet(s.ref(rf), rf.pos, posBytes(Position{7, 7, 7})) },
			reason:  RejectStaleEntity, detail: ErrStale})
	}
	// A temp id whose entity was destroyed earlier in the batch.
	destroyTemp := func(t *testing.T, rf *rejectFixture) {
		require.NoError(t, rf.p.Apply(CmdCreate, cmdCreate(3)))
		require.NoError(t, rf.p.Apply(CmdDestroy, cmdRef(TempEntity(3))))
	}
	add(rejectCase{name: "stale/temp/destroy", prep: destroyTemp, typ: CmdDestroy,
		payload: constant(cmdRef(TempEntity(3))), reason: RejectStaleEntity, detail: ErrStale})
	add(rejectCase{name: "stale/temp/set", prep: destroyTemp, typ: CmdSet,
		payload: func(rf *rejectFixture) []byte { return cmdSet(TempEntity(3), rf.pos, posBytes(Position{})) },
		reason:  RejectStaleEntity, detail: ErrStale})

	// Unknown temps.
	add(rejectCase{name: "unknown_temp/destroy", typ: CmdDestroy, payload: constant(cmdRef(TempEntity(99))), reason: RejectUnknownTemp})
	add(rejectCase{name: "unknown_temp/add", typ: CmdAdd,
		payload: func(rf *rejectFixture) []byte { return cmdComp(TempEntity(0), rf.vel) }, reason: RejectUnknownTemp})
	add(rejectCase{name: "unknown_temp/remove", typ: CmdRemove,
		payload: func(rf *rejectFixture) []byte { return cmdComp(TempEntity(99), rf.pos) }, reason: RejectUnknownTemp})
	add(rejectCase{name: "unknown_temp/set", typ: CmdSet,
		payload: func(rf *rejectFixture) []byte { return cmdSet(TempEntity(99), rf.pos, posBytes(Position{})) },
		reason:  RejectUnknownTemp})

	// Duplicate temp (also after the first one was destroyed).
	add(rejectCase{name: "duplicate_temp", typ: CmdCreate, payload: constant(cmdCreate(5)), reason: RejectDuplicateTemp,
		prep: func(t *testing.T, rf *rejectFixture) { require.NoError(t, rf.p.Apply(CmdCreate, cmdCreate(5))) }})
	add(rejectCase{name: "duplicate_temp/destroyed", prep: destroyTemp, typ: CmdCreate, payload: constant(cmdCreate(3)),
		reason: RejectDuplicateTemp})

	// Exists / absent.
	add(rejectCase{name: "exists", typ: CmdAdd,
		payload: func(rf *rejectFixture) []byte { return cmdComp(rf.live, rf.pos) }, reason: RejectExists, detail: ErrExists})
	add(rejectCase{name: "absent", typ: CmdRemove,
		payload: func(rf *rejectFixture) []byte { return cmdComp(rf.live, rf.hp) }, reason: RejectAbsent, detail: ErrAbsent})

	// World full (capacity 16, one chunk): fill it.
	add(rejectCase{name: "world_full", typ: CmdCreate, payload: constant(cmdCreate(77)), reason: RejectWorldFull, detail: ErrWorldFull,
		prep: func(t *testing.T, rf *rejectFixture) {
			for i := 0; rf.w.Count() < rf.w.MaxEntities(); i++ {
				require.NoError(t, rf.p.Apply(CmdCreate, cmdCreate(uint32(100+i))))
			}
		}})

	// Reserved bits.
	add(rejectCase{name: "reserved/create", typ: CmdCreate, payload: constant(withReserved(cmdCreate(1), 7, 0x80)), reason: RejectReserved})
	for _, off := range []int{10, 11, 12, 15} {
		for _, typ := range []uint16{CmdAdd, CmdRemove} {
			add(rejectCase{name: fmt.Sprintf("reserved/%d/hdr%d", typ, off), typ: typ,
				payload: func(rf *rejectFixture) []byte { return withReserved(cmdComp(rf.live, rf.hp), off, 1) },
				reason:  RejectReserved})
		}
		add(rejectCase{name: fmt.Sprintf("reserved/set/hdr%d", off), typ: CmdSet,
			payload: func(rf *rejectFixture) []byte {
				return withReserved(cmdSet(rf.live, rf.pos, posBytes(Position{8, 8, 8})), off, 1)
			}, reason: RejectReserved})
	}
	for _, off := range []int{2, 3, 4, 7} {
		add(rejectCase{name: fmt.Sprintf("reserved/event/hdr%d", off), typ: CmdEvent,
			payload: constant(withReserved(cmdEvent(3, []byte{1}), off, 1)), reason: RejectReserved})
	}
	// Event types reserved for the engine's system events (a forged
	// "created" notice among them), with and without a payload.
	for _, et := range []EventType{EventType(layout.SystemEventFirst), 0xFF80, EventType(layout.SystemEventCreated)} {
		add(rejectCase{name: fmt.Sprintf("reserved_event_type/%#x", uint16(et)), typ: CmdEvent,
			payload: constant(cmdEvent(et, make([]byte, layout.SystemEventCreatedSize))), reason: RejectReservedEvent})
		add(rejectCase{name: fmt.Sprintf("reserved_event_type/%#x/empty", uint16(et)), typ: CmdEvent,
			payload: constant(cmdEvent(et, nil)), reason: RejectReservedEvent})
	}
	// Temp references with bits 32..62 set.
	tempCreated := func(t *testing.T, rf *rejectFixture) { require.NoError(t, rf.p.Apply(CmdCreate, cmdCreate(1))) }
	for _, bit := range []uint{32, 47, 62} {
		ref := TempEntity(1) | Entity(1)<<bit
		add(rejectCase{name: fmt.Sprintf("reserved/temp/destroy/bit%d", bit), prep: tempCreated, typ: CmdDestroy,
			payload: constant(cmdRef(ref)), reason: RejectReserved})
		add(rejectCase{name: fmt.Sprintf("reserved/temp/add/bit%d", bit), prep: tempCreated, typ: CmdAdd,
			payload: func(rf *rejectFixture) []byte { return cmdComp(ref, rf.vel) }, reason: RejectReserved})
		add(rejectCase{name: fmt.Sprintf("reserved/temp/set/bit%d", bit), prep: tempCreated, typ: CmdSet,
			payload: func(rf *rejectFixture) []byte { return cmdSet(ref, rf.pos, posBytes(Position{})) }, reason: RejectReserved})
	}
	// Quotas: an event, or the created notice of a create, beyond the
	// batch's event bytes; a create beyond the owner's live entities.
	eventQuota := func(t *testing.T, rf *rejectFixture) {
		rf.p.MaxEventBytes, rf.p.NoticeBytes = layout.EventRecordSize(8), layout.EventRecordSize(8)
		require.NoError(t, rf.p.Apply(CmdEvent, cmdEvent(3, make([]byte, 8))))
	}
	add(rejectCase{name: "event_quota/event", prep: eventQuota, typ: CmdEvent,
		payload: constant(cmdEvent(3, []byte{1})), reason: RejectEventQuota})
	add(rejectCase{name: "event_quota/create", prep: eventQuota, typ: CmdCreate,
		payload: constant(cmdCreate(9)), reason: RejectEventQuota})
	add(rejectCase{name: "entity_quota", typ: CmdCreate, prep: func(t *testing.T, rf *rejectFixture) {
		rf.p.Owner, rf.p.MaxEntities = 1, 1
		require.NoError(t, rf.p.Apply(CmdCreate, cmdCreate(1)))
	}, payload: constant(cmdCreate(2)), reason: RejectEntityQuota})
	return cs
}

func TestPlaybackRejects(t *testing.T) {
	seen := map[RejectReason]bool{}
	for _, c := range rejectCases() {
		t.Run(c.name, func(t *testing.T) {
			rf := newRejectFixture(t)
			if c.prep != nil {
				c.prep(t, rf)
			}
			w, p := rf.w, rf.p
			payload := c.payload(rf)
			before := snapshot(w)
			stats := p.Stats
			created := append([]TempMapping{}, p.Created()...)
			livePos, _ := Get[Position](w, rf.live, rf.pos)

			err := p.Apply(c.typ, payload)

			require.Error(t, err)
			require.ErrorIs(t, err, ErrRejected)
			var re *RejectError
			require.ErrorAs(t, err, &re)
			require.Equal(t, c.reason, re.Reason, "error: %v", err)
			require.Equal(t, c.typ, re.Type)
			if c.detail != nil {
				require.ErrorIs(t, err, c.detail)
			}
			msg := err.Error()
			require.True(t, strings.HasPrefix(msg, "fdp/world: "), msg)
			require.Contains(t, msg, c.reason.String())

			want := stats
			want.Rejected[c.reason]++
			require.Equal(t, want, p.Stats, "exactly one counter incremented")

			require.Equal(t, before, snapshot(w), "world changed by a rejected command")
			require.Equal(t, created, append([]TempMapping{}, p.Created()...))
			pos, ok := Get[Position](w, rf.live, rf.pos)
			require.True(t, ok)
			require.Equal(t, livePos, pos)
			checkInvariants(t, w)
		})
		seen[c.reason] = true
	}
	for r := RejectReason(0); r < NumRejectReasons; r++ {
		if r == RejectCorruptRing || r == RejectBadEventAck {
			continue // counted by the engine (a whole batch; an event ack), never by Apply
		}
		require.True(t, seen[r], "no case for %v", r)
	}
}

// TestPlaybackEventBelowReservedRange: the last type below the reserved
// range is an ordinary event.
func TestPlaybackEventBelowReservedRange(t *testing.T) {
	rf := newRejectFixture(t)
	require.NoError(t, rf.p.Apply(CmdEvent, cmdEvent(EventType(layout.SystemEventFirst-1), []byte{1})))
	evs := rf.w.FrameEvents()
	require.NotEmpty(t, evs)
	require.Equal(t, Event{EventType(layout.SystemEventFirst - 1), []byte{1}}, evs[len(evs)-1])
}

// TestCountCorruptRing: the engine's per-module count of batches dropped
// with a corrupt ring is a reject reason like the others.
func TestCountCorruptRing(t *testing.T) {
	rf := newRejectFixture(t)
	before := rf.p.Stats.RejectedTotal()
	rf.p.CountCorruptRing()
	rf.p.CountCorruptRing()
	require.Equal(t, uint64(2), rf.p.Stats.Rejected[RejectCorruptRing])
	require.Equal(t, before+2, rf.p.Stats.RejectedTotal())
	require.Equal(t, "corrupt_ring", RejectCorruptRing.String())
	require.Equal(t, "reserved_event_type", RejectReservedEvent.String())
}

func TestRejectReasonString(t *testing.T) {
	names := map[string]bool{}
	for r := RejectReason(0); r < NumRejectReasons; r++ {
		s := r.String()
		require.NotEmpty(t, s)
		require.False(t, names[s], "duplicate name %q", s)
		names[s] = true
	}
	require.Equal(t, fmt.Sprintf("reason(%d)", int(NumRejectReasons)), NumRejectReasons.String())
	require.Equal(t, "reason(-1)", RejectReason(-1).String())
	e := &RejectError{Reason: RejectBadLength, Type: 9}
	require.Equal(t, "fdp/world: command type 9 rejected (bad_length)", e.Error())
	require.NoError(t, e.Unwrap())
	require.False(t, errors.Is(e, ErrStale))
}

// TestPlaybackRejectedRecordsDontBreakBatch: rejections in the middle of a
// batch leave later valid records working.
func TestPlaybackRejectedRecordsDontBreakBatch(t *testing.T) {
	f := newFixture(t, 16, 1)
	w := f.w
	p := NewPlayback(w)
	p.Begin()
	require.NoError(t, p.Apply(CmdCreate, cmdCreate(1)))
	require.Error(t, p.Apply(CmdSet, cmdSet(TempEntity(1), f.pos, []byte{1, 2, 3})))
	require.Error(t, p.Apply(CmdCreate, cmdCreate(1)))
	require.NoError(t, p.Apply(CmdSet, cmdSet(TempEntity(1), f.pos, posBytes(Position{3, 2, 1}))))
	e := p.Created()[0].Entity
	pos, ok := Get[Position](w, e, f.pos)
	require.True(t, ok)
	require.Equal(t, Position{3, 2, 1}, pos)
	require.Equal(t, uint64(2), p.Stats.Applied)
	require.Equal(t, uint64(2), p.Stats.RejectedTotal())
	require.Equal(t, uint64(1), p.Stats.Rejected[RejectWrongSize])
	require.Equal(t, uint64(1), p.Stats.Rejected[RejectDuplicateTemp])
}

func TestPlaybackMaxEventSize(t *testing.T) {
	f := newFixture(t, 16, 1)
	p := NewPlayback(f.w)
	p.MaxEventSize = 4
	require.NoError(t, p.Apply(CmdEvent, cmdEvent(1, []byte{1, 2, 3, 4})))
	err := p.Apply(CmdEvent, cmdEvent(1, []byte{1, 2, 3, 4, 5}))
	var re *RejectError
	require.ErrorAs(t, err, &re)
	require.Equal(t, RejectBadLength, re.Reason)
	require.Equal(t, []Event{{1, []byte{1, 2, 3, 4}}}, f.w.FrameEvents())
}

// TestPlaybackZeroAllocs: the steady-state apply paths do not allocate.
func TestPlaybackZeroAllocs(t *testing.T) {
	f := newFixture(t, 64, 4)
	w := f.w
	p := NewPlayback(w)
	e, err := w.Create()
	require.NoError(t, err)
	set := cmdSet(e, f.pos, posBytes(Position{1, 2, 3}))
	addVel := cmdComp(e, f.vel)
	rmVel := cmdComp(e, f.vel)
	ev := cmdEvent(5, []byte{1, 2, 3})
	create := [4][]byte{cmdCreate(1), cmdCreate(2), cmdCreate(3), cmdCreate(4)}
	var destroy [4][]byte
	var setTemp [4][]byte
	for i := range destroy {
		destroy[i] = cmdRef(TempEntity(uint32(i + 1)))
		setTemp[i] = cmdSet(TempEntity(uint32(i+1)), f.hp, hpBytes(Health{HP: int32(i)}))
	}
	fail := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	batch := func() {
		p.Begin()
		fail(p.Apply(CmdSet, set))
		fail(p.Apply(CmdAdd, addVel))
		fail(p.Apply(CmdRemove, rmVel))
		fail(p.Apply(CmdEvent, ev))
		for i := range create {
			fail(p.Apply(CmdCreate, create[i]))
			fail(p.Apply(CmdSet, setTemp[i]))
		}
		for i := range destroy {
			fail(p.Apply(CmdDestroy, destroy[i]))
		}
		w.ClearEvents()
	}
	batch() // warm the free queue, maps and event buffer
	require.Zero(t, testing.AllocsPerRun(50, batch))
	require.Equal(t, 1, w.Count())
}

// decodeFuzzRecords splits data into records: u16 type, u8 length, payload
// (at most 256 records, to keep executions fast).
func decodeFuzzRecords(data []byte, fn func(typ uint16, payload []byte)) {
	for i := 0; i < 256 && len(data) >= 3; i++ {
		typ := binary.LittleEndian.Uint16(data)
		n := int(data[2])
		data = data[3:]
		if n > len(data) {
			n = len(data)
		}
		fn(typ, data[:n])
		data = data[n:]
	}
}

func encodeFuzzRecord(dst []byte, typ uint16, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, typ)
	dst = append(dst, byte(len(payload)))
	return append(dst, payload...)
}

// FuzzPlayback applies arbitrary record sequences to a small world (two
// chunks of 16, entities 0..3 pre-created, entity 3 destroyed). No input
// panics; after every record the world's invariants hold, a rejection
// changes nothing, an accepted record changes Count only as its type says,
// and the stats account for every record. batch starts a new batch every
// batch%8+1 records.
func FuzzPlayback(f *testing.F) {
	f.Add(fuzzSeedValid(), uint8(7))
	f.Add(fuzzSeedCreateThenEmpty(), uint8(0))
	f.Add(encodeFuzzRecord(nil, CmdSet, cmdSet(MakeEntity(0, 1), 0, make([]byte, 12))), uint8(0))
	f.Add(encodeFuzzRecord(nil, CmdDestroy, cmdRef(MakeEntity(3, 1))), uint8(0))
	f.Add([]byte{}, uint8(0))
	f.Add([]byte{0xff, 0xff, 0xff, 1, 2, 3}, uint8(3))
	f.Add(encodeFuzzRecord(encodeFuzzRecord(nil, CmdSetSingleton, cmdSingleton(1, make([]byte, 8))), CmdSetSingleton, cmdSingleton(0, make([]byte, 40))), uint8(1))
	// Variable-size values: one that fits, one too long, one not UTF-8.
	f.Add(encodeFuzzRecord(encodeFuzzRecord(encodeFuzzRecord(nil, CmdSet, cmdSet(MakeEntity(0, 1), 3, []byte("héllo"))),
		CmdSet, cmdSet(MakeEntity(1, 1), 3, make([]byte, 41))), CmdSet, cmdSet(MakeEntity(2, 1), 3, []byte{0xc3})), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, batch uint8) {
		fx := newFixture(t, 16, 2)
		w := fx.w
		for i := 0; i < 4; i++ {
			e, err := w.Create()
			if err != nil {
				t.Fatal(err)
			}
			if err := Set(w, e, fx.pos, Position{X: float32(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Destroy(MakeEntity(3, 1)); err != nil {
			t.Fatal(err)
		}
		w.Advance()
		p := NewPlayback(w)
		p.MaxEventSize = 64
		p.Begin()
		every := int(batch%8) + 1
		calls := uint64(0)
		decodeFuzzRecords(data, func(typ uint16, payload []byte) {
			if calls%uint64(every) == 0 {
				p.Begin()
			}
			calls++
			before := snapshot(w)
			stats := p.Stats
			nCreated := len(p.Created())
			err := p.Apply(typ, payload)
			checkInvariants(t, w)
			if err != nil {
				var re *RejectError
				if !errors.As(err, &re) || !errors.Is(err, ErrRejected) {
					t.Fatalf("error %v (%T) is not a *RejectError", err, err)
				}
				if re.Reason < 0 || re.Reason >= NumRejectReasons || re.Type != typ {
					t.Fatalf("bad reject error %+v", re)
				}
				want := stats
				want.Rejected[re.Reason]++
				if p.Stats != want {
					t.Fatalf("stats %+v, want %+v", p.Stats, want)
				}
				if w.Count() != before.Count {
					t.Fatalf("rejected record changed Count %d -> %d", before.Count, w.Count())
				}
				if nc := len(p.Created()); nc != nCreated {
					t.Fatalf("rejected record changed Created %d -> %d", nCreated, nc)
				}
				after := snapshot(w)
				if !equalSnap(before, after) {
					t.Fatalf("rejected record (type %d, %v) changed the world", typ, err)
				}
				return
			}
			if p.Stats.Applied != stats.Applied+1 || p.Stats.RejectedTotal() != stats.RejectedTotal() {
				t.Fatalf("stats %+v after applied record, before %+v", p.Stats, stats)
			}
			delta := 0
			switch typ {
			case CmdCreate:
				delta = 1
				if len(p.Created()) != nCreated+1 {
					t.Fatal("create did not record its mapping")
				}
				if m := p.Created()[nCreated]; !w.IsAlive(m.Entity) || m.Temp != binary.LittleEndian.Uint32(payload) {
					t.Fatalf("bad mapping %+v", m)
				}
			case CmdDestroy:
				delta = -1
			case CmdSet:
				e, id := Entity(binary.LittleEndian.Uint64(payload)), ComponentID(binary.LittleEndian.Uint16(payload[8:]))
				if v, ok := w.GetBytes(e, id); w.Kind(id) != KindFixed && e&Entity(TempFlag) == 0 && (!ok || !bytes.Equal(v, payload[CmdCompHdr:])) {
					t.Fatalf("accepted set of %v's %d to %q: it holds %q (%v)", e, id, payload[CmdCompHdr:], v, ok)
				}
			case CmdAdd, CmdRemove, CmdEvent:
			case CmdSetSingleton:
				v, ok := w.SingletonRaw(SingletonID(binary.LittleEndian.Uint16(payload)))
				if !ok || !bytes.Equal(v, payload[CmdSingletonHdr:]) || w.SingletonVersion(SingletonID(payload[0])) != w.Version() {
					t.Fatalf("accepted SetSingleton %x: singleton %x (set %v)", payload, v, ok)
				}
			default:
				t.Fatalf("unknown type %d accepted", typ)
			}
			if w.Count() != before.Count+delta {
				t.Fatalf("type %d: Count %d -> %d", typ, before.Count, w.Count())
			}
		})
		if p.Stats.Applied+p.Stats.RejectedTotal() != calls {
			t.Fatalf("stats %+v do not account for %d records", p.Stats, calls)
		}
	})
}

func equalSnap(a, b worldSnap) bool { return reflect.DeepEqual(a, b) }

func fuzzSeedValid() []byte {
	var d []byte
	d = encodeFuzzRecord(d, CmdCreate, cmdCreate(1))
	d = encodeFuzzRecord(d, CmdSet, cmdSet(TempEntity(1), 0, make([]byte, 12)))
	d = encodeFuzzRecord(d, CmdAdd, cmdComp(TempEntity(1), 1))
	d = encodeFuzzRecord(d, CmdSet, cmdSet(TempEntity(1), 2, make([]byte, 8)))
	d = encodeFuzzRecord(d, CmdRemove, cmdComp(TempEntity(1), 2))
	d = encodeFuzzRecord(d, CmdAdd, cmdComp(MakeEntity(1, 1), 2))
	d = encodeFuzzRecord(d, CmdDestroy, cmdRef(MakeEntity(2, 1)))
	d = encodeFuzzRecord(d, CmdEvent, cmdEvent(9, []byte("x")))
	d = encodeFuzzRecord(d, CmdDestroy, cmdRef(TempEntity(1)))
	return d
}

func fuzzSeedCreateThenEmpty() []byte {
	return encodeFuzzRecord(nil, CmdCreate, cmdCreate(0))
}

// cmdBench16 is a 16-byte component.
type cmdBench16 struct{ A, B uint64 }

// BenchmarkPlayback1000Set applies 1000 pre-encoded SetComponent records of
// a 16-byte component per op. Target: <= 50 us per 1000 commands, 0 allocs.
// The baseline "x-memcpy" compares with copying the same 1000 payloads'
// component bytes (16 KB) into a column in the same run.
func BenchmarkPlayback1000Set(b *testing.B) {
	const n = 1000
	r := NewRegistry()
	if _, err := Register[Position](r, "Position"); err != nil {
		b.Fatal(err)
	}
	id, err := Register[cmdBench16](r, "Bench16")
	if err != nil {
		b.Fatal(err)
	}
	w, err := New(r, Config{ChunkCapacity: 1024, MaxChunks: 2})
	if err != nil {
		b.Fatal(err)
	}
	payloads := make([][]byte, n)
	for i := range payloads {
		e, err := w.Create()
		if err != nil {
			b.Fatal(err)
		}
		data := make([]byte, 16)
		binary.LittleEndian.PutUint64(data, uint64(i))
		binary.LittleEndian.PutUint64(data[8:], uint64(2*i))
		// Scatter the targets so they are not written in index order.
		payloads[(i*7)%n] = cmdSet(e, id, data)
	}
	p := NewPlayback(w)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		p.Begin()
		for _, pl := range payloads {
			if err := p.Apply(CmdSet, pl); err != nil {
				b.Fatal(err)
			}
		}
	}
	apply := time.Since(start)
	b.StopTimer()
	if p.Stats.Applied != uint64(b.N)*n {
		b.Fatalf("applied %d", p.Stats.Applied)
	}
	dst := make([]byte, n*16)
	start = time.Now()
	for i := 0; i < b.N; i++ {
		for j, pl := range payloads {
			copy(dst[j*16:], pl[CmdCompHdr:])
		}
	}
	base := time.Since(start)
	b.ReportMetric(float64(apply.Nanoseconds())/float64(b.N)/1000, "us/1000cmd")
	if base > 0 {
		b.ReportMetric(float64(apply)/float64(base), "x-memcpy")
	}
}
