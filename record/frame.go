package record

import (
	"fmt"
	"unicode/utf8"

	"github.com/fdp-engine/fdp/layout"
)

// Frame is one decoded keyframe or delta. Its byte slices alias the
// payload it was decoded from.
type Frame struct {
	Kind Kind // KindKeyframe or KindDelta
	// Slot header fields of the recorded frame.
	Frame    uint64
	Version  uint64 // the slot version V
	Base     uint64 // a delta's base: the Version of the frame record before it (0 for a keyframe)
	PubNanos uint64
	Chunks   uint32
	Entities uint32 // high-water mark
	Alive    uint32
	Mask     [layout.MaxMaskWords]uint64
	// What changed (a keyframe: everything the slot holds).
	ChunkRecs  []ChunkRec
	Columns    []Column
	Singletons []Singleton
	// What happened in the frame: the caller's, recorded verbatim.
	Events  []Event
	Batches []Batch

	buf []byte // the payload the slices alias (Reader.Recycle)
}

// ChunkRec is a chunk's header fields and its entity records (Rows
// records of layout.RecordSize bytes; the records beyond Rows are zero).
type ChunkRec struct {
	Chunk, Rows, Alive uint32
	StructVersion      uint64
	Records            []byte
}

// Column is a component's column of one chunk: ChunkCapacity values (a
// variable-size component: ChunkCapacity handles and a prefix of the arena
// that holds every value the handle of a row whose record is alive and
// names the component points at; the rest of the arena reads as zero).
type Column struct {
	Chunk     uint32
	Component uint16
	Version   uint64
	Data      []byte
}

// Singleton is a singleton's value and version.
type Singleton struct {
	ID      uint16
	Version uint64
	Value   []byte
}

// Event is an event published in the frame.
type Event struct {
	Type    uint16
	Frame   uint64
	Payload []byte
}

// Batch is a command batch the engine applied in the frame.
type Batch struct {
	Module      string
	Slot        uint16 // module slot
	PID         uint32
	Incarnation uint64
	Seq         uint64 // the batch's sequence number
	Applied     uint32 // records applied
	Rejected    uint32 // records rejected
	Commands    []byte // the raw ring records (docs/LAYOUT.md "Command ring")
}

// Frame payload (little-endian; every entry starts 8-aligned):
//
//	0   u64 frame            8  u64 version V      16 u64 base version (0: keyframe)
//	24  u64 publish Unix ns  32 u32 chunks         36 u32 high-water    40 u32 alive   44 u32 flags 0
//	48  4 x u64 slot mask
//	80  u32 chunk entries  84 u32 column entries  88 u32 singleton entries  92 u32 event entries
//	96  u32 batch entries  100 u32 0
//	104 entries, in this order:
//	chunk:     u32 chunk, u32 rows, u32 alive, u32 0, u64 struct version, rows x R bytes of records
//	column:    u32 chunk, u16 component, u16 0, u64 version, u32 length, u32 0, bytes (padded to 8)
//	singleton: u16 id, u16 0, u32 length, u64 version, bytes (padded to 8)
//	event:     u16 type, u16 0, u32 length, u64 frame, bytes (padded to 8)
//	batch:     u16 module slot, u16 name length, u32 pid, u64 incarnation, u64 seq, u32 applied,
//	           u32 rejected, u32 command bytes, u32 0, name (padded to 8), commands (padded to 8)
const (
	frameFixed    = 104
	chunkEntry    = 24
	columnEntry   = 24
	singleEntry   = 16
	eventEntry    = 16
	batchEntry    = 40
	maxEventBytes = 1 << 20
	maxModuleName = 255
)

// frameHead writes the fixed part of a frame payload into b[:frameFixed].
func frameHead(b []byte, f *Frame) {
	le.PutUint64(b[0:], f.Frame)
	le.PutUint64(b[8:], f.Version)
	le.PutUint64(b[16:], f.Base)
	le.PutUint64(b[24:], f.PubNanos)
	le.PutUint32(b[32:], f.Chunks)
	le.PutUint32(b[36:], f.Entities)
	le.PutUint32(b[40:], f.Alive)
	le.PutUint32(b[44:], 0)
	for j, m := range f.Mask {
		le.PutUint64(b[48+8*j:], m)
	}
	le.PutUint32(b[80:], uint32(len(f.ChunkRecs)))
	le.PutUint32(b[84:], uint32(len(f.Columns)))
	le.PutUint32(b[88:], uint32(len(f.Singletons)))
	le.PutUint32(b[92:], uint32(len(f.Events)))
	le.PutUint32(b[96:], uint32(len(f.Batches)))
	le.PutUint32(b[100:], 0)
}

func appendChunkRec(dst []byte, c uint32, rows, alive uint32, sv uint64, recs []byte) []byte {
	var e [chunkEntry]byte
	le.PutUint32(e[0:], c)
	le.PutUint32(e[4:], rows)
	le.PutUint32(e[8:], alive)
	le.PutUint64(e[16:], sv)
	return append(append(dst, e[:]...), recs...)
}

func appendColumn(dst []byte, c uint32, k uint16, ver uint64, data []byte) []byte {
	var e [columnEntry]byte
	le.PutUint32(e[0:], c)
	le.PutUint16(e[4:], k)
	le.PutUint64(e[8:], ver)
	le.PutUint32(e[16:], uint32(len(data)))
	return appendPad(append(dst, e[:]...), data)
}

func appendSingleton(dst []byte, id uint16, ver uint64, v []byte) []byte {
	var e [singleEntry]byte
	le.PutUint16(e[0:], id)
	le.PutUint32(e[4:], uint32(len(v)))
	le.PutUint64(e[8:], ver)
	return appendPad(append(dst, e[:]...), v)
}

func appendEvents(dst []byte, evs []Event) []byte {
	for _, ev := range evs {
		var e [eventEntry]byte
		le.PutUint16(e[0:], ev.Type)
		le.PutUint32(e[4:], uint32(len(ev.Payload)))
		le.PutUint64(e[8:], ev.Frame)
		dst = appendPad(append(dst, e[:]...), ev.Payload)
	}
	return dst
}

func appendBatches(dst []byte, bs []Batch) []byte {
	for _, bt := range bs {
		var e [batchEntry]byte
		le.PutUint16(e[0:], bt.Slot)
		le.PutUint16(e[2:], uint16(len(bt.Module)))
		le.PutUint32(e[4:], bt.PID)
		le.PutUint64(e[8:], bt.Incarnation)
		le.PutUint64(e[16:], bt.Seq)
		le.PutUint32(e[24:], bt.Applied)
		le.PutUint32(e[28:], bt.Rejected)
		le.PutUint32(e[32:], uint32(len(bt.Commands)))
		dst = append(dst, e[:]...)
		dst = appendPad(dst, []byte(bt.Module))
		dst = appendPad(dst, bt.Commands)
	}
	return dst
}

// AppendFrame appends the payload of f to dst (the encoder of a Frame
// value; Capture encodes from a slot directly). It does not validate f:
// DecodeFrame does.
func AppendFrame(dst []byte, f *Frame) []byte {
	o := len(dst)
	dst = append(dst, make([]byte, frameFixed)...)
	frameHead(dst[o:], f)
	for _, c := range f.ChunkRecs {
		dst = appendChunkRec(dst, c.Chunk, c.Rows, c.Alive, c.StructVersion, c.Records)
	}
	for _, c := range f.Columns {
		dst = appendColumn(dst, c.Chunk, c.Component, c.Version, c.Data)
	}
	for _, s := range f.Singletons {
		dst = appendSingleton(dst, s.ID, s.Version, s.Value)
	}
	return appendBatches(appendEvents(dst, f.Events), f.Batches)
}

// decoder walks a payload; every take checks the bounds first.
type decoder struct {
	b   []byte
	off int
	ctx string // "keyframe of frame N"
}

func (d *decoder) take(n int, what string) ([]byte, error) {
	if n < 0 || n > len(d.b)-d.off {
		return nil, corrupt("%s: %s of %d bytes at payload offset %d: only %d left", d.ctx, what, n, d.off, len(d.b)-d.off)
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p, nil
}

func (d *decoder) padded(n int, what string) ([]byte, error) {
	p, err := d.take(pad8(n), what)
	if err != nil {
		return nil, err
	}
	for _, x := range p[n:] {
		if x != 0 {
			return nil, corrupt("%s: %s at payload offset %d: padding not zero", d.ctx, what, d.off-len(p))
		}
	}
	return p[:n], nil
}

// DecodeFrame decodes and validates the raw payload of a frame record of
// kind k against the stream's header h: every count, length, index and
// version is checked (see docs/LAYOUT.md, "Frame-delta stream",
// "Validation"), so an Image can apply the frame without further checks
// of its shape. The Frame's slices alias payload.
func DecodeFrame(k Kind, payload []byte, h *Header) (*Frame, error) {
	if k != KindKeyframe && k != KindDelta {
		return nil, corrupt("a %s record is not a frame", k)
	}
	g := h.Geometry
	if len(payload) < frameFixed {
		return nil, corrupt("%s of %d bytes (at least %d)", k, len(payload), frameFixed)
	}
	b := payload
	f := &Frame{Kind: k, Frame: le.Uint64(b[0:]), Version: le.Uint64(b[8:]), Base: le.Uint64(b[16:]), PubNanos: le.Uint64(b[24:]),
		Chunks: le.Uint32(b[32:]), Entities: le.Uint32(b[36:]), Alive: le.Uint32(b[40:])}
	for j := range f.Mask {
		f.Mask[j] = le.Uint64(b[48+8*j:])
	}
	nch, ncol, nsg, nev, nb := le.Uint32(b[80:]), le.Uint32(b[84:]), le.Uint32(b[88:]), le.Uint32(b[92:]), le.Uint32(b[96:])
	K := uint64(g.ChunkCapacity)
	bad := func(format string, a ...any) (*Frame, error) {
		return nil, corrupt("%s of frame %d: %s", k, f.Frame, fmt.Sprintf(format, a...))
	}
	switch {
	case le.Uint32(b[44:]) != 0 || le.Uint32(b[100:]) != 0:
		return bad("reserved fields not zero")
	case f.Version == 0:
		return bad("version 0")
	case k == KindKeyframe && f.Base != 0:
		return bad("base version %d", f.Base)
	case k == KindDelta && (f.Base == 0 || f.Base > f.Version):
		return bad("base version %d, version %d", f.Base, f.Version)
	case int(f.Chunks) > g.MaxChunks:
		return bad("%d chunks (at most %d)", f.Chunks, g.MaxChunks)
	case uint64(f.Entities) > uint64(f.Chunks)*K || (uint64(f.Entities)+K-1)/K != uint64(f.Chunks):
		return bad("high-water %d in %d chunks of %d", f.Entities, f.Chunks, K)
	case f.Alive > f.Entities:
		return bad("%d alive of %d", f.Alive, f.Entities)
	case layout.MaskBeyond(f.Mask, len(g.Components)) != [layout.MaxMaskWords]uint64{}:
		return bad("slot mask %s names unregistered components", layout.FormatMask(f.Mask))
	case k == KindKeyframe && nch != f.Chunks:
		return bad("%d chunk entries of %d chunks", nch, f.Chunks)
	case nch > f.Chunks || uint64(ncol) > uint64(f.Chunks)*uint64(len(g.Components)) || int(nsg) > len(g.Singletons):
		return bad("%d chunk, %d column, %d singleton entries", nch, ncol, nsg)
	case uint64(nch)*chunkEntry+uint64(ncol)*columnEntry+uint64(nsg)*singleEntry+uint64(nev)*eventEntry+uint64(nb)*batchEntry > uint64(len(b)):
		return bad("%d chunk, %d column, %d singleton, %d event, %d batch entries do not fit in %d bytes", nch, ncol, nsg, nev, nb, len(b))
	}
	inRange := func(v uint64) bool { return v > f.Base && v <= f.Version }
	d := &decoder{b: b, off: frameFixed, ctx: fmt.Sprintf("%s of frame %d", k, f.Frame)}
	R := g.RecordSize
	f.ChunkRecs = make([]ChunkRec, nch)
	for i := range f.ChunkRecs {
		e, err := d.take(chunkEntry, "chunk entry")
		if err != nil {
			return nil, err
		}
		c := ChunkRec{Chunk: le.Uint32(e[0:]), Rows: le.Uint32(e[4:]), Alive: le.Uint32(e[8:]), StructVersion: le.Uint64(e[16:])}
		switch {
		case le.Uint32(e[12:]) != 0:
			return bad("chunk entry %d: reserved field", i)
		case c.Chunk >= f.Chunks || (i > 0 && c.Chunk <= f.ChunkRecs[i-1].Chunk) || (k == KindKeyframe && c.Chunk != uint32(i)):
			return bad("chunk entry %d names chunk %d (chunks %d, in increasing order)", i, c.Chunk, f.Chunks)
		case uint64(c.Rows) != min(K, uint64(f.Entities)-uint64(c.Chunk)*K):
			return bad("chunk %d: %d rows, the high-water mark %d gives %d", c.Chunk, c.Rows, f.Entities, min(K, uint64(f.Entities)-uint64(c.Chunk)*K))
		case !inRange(c.StructVersion):
			return bad("chunk %d: structural version %d not in (%d, %d]", c.Chunk, c.StructVersion, f.Base, f.Version)
		}
		if c.Records, err = d.take(int(c.Rows)*R, "entity records"); err != nil {
			return nil, err
		}
		if err := checkRecords(c, g.MaskWords, &f.Mask); err != nil {
			return bad("%v", err)
		}
		f.ChunkRecs[i] = c
	}
	f.Columns = make([]Column, ncol)
	for i := range f.Columns {
		e, err := d.take(columnEntry, "column entry")
		if err != nil {
			return nil, err
		}
		c := Column{Chunk: le.Uint32(e[0:]), Component: le.Uint16(e[4:]), Version: le.Uint64(e[8:])}
		n := int(le.Uint32(e[16:]))
		kk := int(c.Component)
		key := uint64(c.Chunk)<<16 | uint64(c.Component)
		switch {
		case le.Uint16(e[6:]) != 0 || le.Uint32(e[20:]) != 0:
			return bad("column entry %d: reserved fields", i)
		case c.Chunk >= f.Chunks || kk >= len(g.Components) || f.Mask[kk/64]&(1<<(kk%64)) == 0:
			return bad("column entry %d: chunk %d component %d (chunks %d, mask %s)", i, c.Chunk, kk, f.Chunks, layout.FormatMask(f.Mask))
		case i > 0 && key <= uint64(f.Columns[i-1].Chunk)<<16|uint64(f.Columns[i-1].Component):
			return bad("column entry %d: chunk %d component %d out of order", i, c.Chunk, kk)
		case !inRange(c.Version):
			return bad("chunk %d component %d: version %d not in (%d, %d]", c.Chunk, kk, c.Version, f.Base, f.Version)
		}
		cd := g.Components[kk]
		fixed := g.ChunkCapacity * int(cd.Size)
		if cd.VarSize() {
			if n < fixed || n > fixed+g.ArenaSize(kk) || (n-fixed)%8 != 0 {
				return bad("chunk %d component %q: column of %d bytes, want %d handles and an arena prefix of at most %d, a multiple of 8", c.Chunk, cd.Name, n, fixed/8, g.ArenaSize(kk))
			}
		} else if n != fixed {
			return bad("chunk %d component %q: column of %d bytes, want %d", c.Chunk, cd.Name, n, fixed)
		}
		if c.Data, err = d.padded(n, "column"); err != nil {
			return nil, err
		}
		f.Columns[i] = c
	}
	f.Singletons = make([]Singleton, nsg)
	for i := range f.Singletons {
		e, err := d.take(singleEntry, "singleton entry")
		if err != nil {
			return nil, err
		}
		s := Singleton{ID: le.Uint16(e[0:]), Version: le.Uint64(e[8:])}
		n := le.Uint32(e[4:])
		switch {
		case le.Uint16(e[2:]) != 0:
			return bad("singleton entry %d: reserved field", i)
		case int(s.ID) >= len(g.Singletons) || (i > 0 && s.ID <= f.Singletons[i-1].ID):
			return bad("singleton entry %d: id %d (singletons %d, in increasing order)", i, s.ID, len(g.Singletons))
		case n != g.Singletons[s.ID].Size:
			return bad("singleton %q: %d bytes, want %d", g.Singletons[s.ID].Name, n, g.Singletons[s.ID].Size)
		case !inRange(s.Version):
			return bad("singleton %q: version %d not in (%d, %d]", g.Singletons[s.ID].Name, s.Version, f.Base, f.Version)
		}
		if s.Value, err = d.padded(int(n), "singleton"); err != nil {
			return nil, err
		}
		f.Singletons[i] = s
	}
	f.Events = make([]Event, nev)
	for i := range f.Events {
		e, err := d.take(eventEntry, "event entry")
		if err != nil {
			return nil, err
		}
		ev := Event{Type: le.Uint16(e[0:]), Frame: le.Uint64(e[8:])}
		n := le.Uint32(e[4:])
		if le.Uint16(e[2:]) != 0 || n > maxEventBytes {
			return bad("event entry %d: reserved field or %d bytes (at most %d)", i, n, maxEventBytes)
		}
		if ev.Payload, err = d.padded(int(n), "event"); err != nil {
			return nil, err
		}
		f.Events[i] = ev
	}
	f.Batches = make([]Batch, nb)
	for i := range f.Batches {
		e, err := d.take(batchEntry, "batch entry")
		if err != nil {
			return nil, err
		}
		bt := Batch{Slot: le.Uint16(e[0:]), PID: le.Uint32(e[4:]), Incarnation: le.Uint64(e[8:]), Seq: le.Uint64(e[16:]),
			Applied: le.Uint32(e[24:]), Rejected: le.Uint32(e[28:])}
		nl, nc := int(le.Uint16(e[2:])), int(le.Uint32(e[32:]))
		if le.Uint32(e[36:]) != 0 || nl > maxModuleName {
			return bad("batch entry %d: reserved field or a module name of %d bytes", i, nl)
		}
		nm, err := d.padded(nl, "module name")
		if err != nil {
			return nil, err
		}
		if !utf8.Valid(nm) {
			return bad("batch entry %d: module name is not UTF-8", i)
		}
		bt.Module = string(nm)
		if bt.Commands, err = d.padded(nc, "commands"); err != nil {
			return nil, err
		}
		f.Batches[i] = bt
	}
	if d.off != len(b) {
		return bad("%d bytes after the last entry", len(b)-d.off)
	}
	return f, nil
}

// checkRecords checks a chunk entry's records (the frame invariants
// record_flags, record_gen, record_slot_mask, dead_record, chunk_alive of
// docs/LAYOUT.md "Frame invariants").
func checkRecords(c ChunkRec, words int, mask *[layout.MaxMaskWords]uint64) error {
	R := layout.RecordSize(words)
	alive := uint32(0)
	for i := 0; i < int(c.Rows); i++ {
		r := layout.DecodeRecord(c.Records[i*R:], words)
		switch {
		case r.Flags&^layout.FlagAlive != 0:
			return fmt.Errorf("chunk %d row %d: flags %#x", c.Chunk, i, r.Flags)
		case r.Gen == 0:
			return fmt.Errorf("chunk %d row %d: generation 0 below the high-water mark", c.Chunk, i)
		}
		if r.Flags&layout.FlagAlive == 0 {
			if r.Mask != ([layout.MaxMaskWords]uint64{}) {
				return fmt.Errorf("chunk %d row %d: dead record names components", c.Chunk, i)
			}
			continue
		}
		alive++
		for j := range r.Mask {
			if r.Mask[j]&^mask[j] != 0 {
				return fmt.Errorf("chunk %d row %d: record mask beyond the slot mask", c.Chunk, i)
			}
		}
	}
	if alive != c.Alive {
		return fmt.Errorf("chunk %d: %d alive records, the entry says %d", c.Chunk, alive, c.Alive)
	}
	return nil
}
