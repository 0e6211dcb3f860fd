package record

import (
	"bytes"
	"fmt"

	"github.com/fdp-engine/fdp/layout"
)

// Header is the stream's header record: the world schema and geometry
// parameters (enough to place every byte of a frame: layout.WorldGeometry),
// and what a player needs to know about the recording.
//
// Payload (little-endian):
//
//	0   u32 stream version (StreamVersion)
//	4   u32 flags, 0
//	8   u64 created, Unix ns
//	16  u64 schema hash (docs/LAYOUT.md "Schema hash"; checked against the tables below)
//	24  u64 frame period, ns (the recorded engine's; 0 unknown)
//	32  u32 chunk capacity K
//	36  u32 max chunks M
//	40  u32 components C
//	44  u32 singletons NS
//	48  u32 keyframe interval (0: only the first frame is a keyframe)
//	52  u32 instance name length (0..31)
//	56  [32]u8 instance name, NUL padded
//	88  C x 56: [32]u8 name NUL padded, u32 size, u32 align, u64 fingerprint, u32 max length, u32 arena bytes per entity
//	..  NS x 56: [32]u8 name NUL padded, u32 size, u32 align, u64 fingerprint, u32 flags, u32 0
//	..  u32 field entries F, u32 field table bytes FT, then FT bytes: the
//	    field table of the schema, as the world segment's section 9 holds it
//	    (layout.FieldTable; docs/LAYOUT.md "Field table")
type Header struct {
	Created       int64 // Unix ns
	FramePeriod   uint64
	KeyframeEvery uint32
	Instance      string
	// Geometry is derived from the schema (slot count 2: slots are not part
	// of a recording); Components and Singletons are the schema.
	Geometry *layout.WorldGeometry
}

const (
	headerFixed = 88
	headerEntry = 56
)

// NewHeader returns the header of a recording of world segment lw.
func NewHeader(lw *layout.World, created int64, framePeriod uint64, keyframeEvery uint32) (*Header, error) {
	g, err := geometryOf(lw.Components, lw.Singletons, lw.ChunkCapacity, lw.MaxChunks)
	if err != nil {
		return nil, err
	}
	return &Header{Created: created, FramePeriod: framePeriod, KeyframeEvery: keyframeEvery, Instance: lw.Header.Instance, Geometry: g}, nil
}

func geometryOf(comps []layout.ComponentDesc, singles []layout.SingletonDesc, capc, maxChunks int) (*layout.WorldGeometry, error) {
	return layout.ComputeWorldGeometry(layout.WorldParams{Instance: "record", Slots: 2, ChunkCapacity: capc, MaxChunks: maxChunks,
		Components: comps, Singletons: singles})
}

// SchemaHash returns the schema hash of the recorded world.
func (h *Header) SchemaHash() uint64 { return h.Geometry.SchemaHash() }

// Encode returns the header record's payload.
func (h *Header) Encode() []byte {
	g := h.Geometry
	ft, nf := layout.FieldTable(g.Components, g.Singletons)
	b := make([]byte, headerFixed+headerEntry*(len(g.Components)+len(g.Singletons))+8+len(ft))
	le.PutUint32(b[0:], StreamVersion)
	le.PutUint64(b[8:], uint64(h.Created))
	le.PutUint64(b[16:], g.SchemaHash())
	le.PutUint64(b[24:], h.FramePeriod)
	le.PutUint32(b[32:], uint32(g.ChunkCapacity))
	le.PutUint32(b[36:], uint32(g.MaxChunks))
	le.PutUint32(b[40:], uint32(len(g.Components)))
	le.PutUint32(b[44:], uint32(len(g.Singletons)))
	le.PutUint32(b[48:], h.KeyframeEvery)
	inst := h.Instance
	if len(inst) > 31 {
		inst = inst[:31]
	}
	le.PutUint32(b[52:], uint32(len(inst)))
	copy(b[56:88], inst)
	o := headerFixed
	for _, c := range g.Components {
		copy(b[o:o+32], c.Name)
		le.PutUint32(b[o+32:], c.Size)
		le.PutUint32(b[o+36:], c.Align)
		le.PutUint64(b[o+40:], c.Fingerprint)
		le.PutUint32(b[o+48:], c.MaxLen)
		le.PutUint32(b[o+52:], c.PerEntity)
		o += headerEntry
	}
	for _, s := range g.Singletons {
		copy(b[o:o+32], s.Name)
		le.PutUint32(b[o+32:], s.Size)
		le.PutUint32(b[o+36:], s.Align)
		le.PutUint64(b[o+40:], s.Fingerprint)
		le.PutUint32(b[o+48:], s.Flags)
		o += headerEntry
	}
	le.PutUint32(b[o:], uint32(nf))
	le.PutUint32(b[o+4:], uint32(len(ft)))
	copy(b[o+8:], ft)
	return b
}

// name decodes a NUL-padded name field: no byte after the first NUL.
func name(b []byte) (string, error) {
	n := bytes.IndexByte(b, 0)
	if n < 0 {
		n = len(b)
	}
	if bytes.ContainsFunc(b[n:], func(r rune) bool { return r != 0 }) {
		return "", fmt.Errorf("bytes after the NUL of name %q", b[:n])
	}
	return string(b[:n]), nil
}

// DecodeHeader decodes and validates a header record's payload: the
// version, the schema (every field layout.ComputeWorldGeometry checks) and
// that the schema hash matches the tables.
func DecodeHeader(b []byte) (*Header, error) {
	if len(b) < headerFixed {
		return nil, corrupt("header of %d bytes (at least %d)", len(b), headerFixed)
	}
	if v := le.Uint32(b[0:]); v != StreamVersion {
		return nil, fmt.Errorf("%w: stream version %d, this reader knows %d", ErrVersion, v, StreamVersion)
	}
	if f := le.Uint32(b[4:]); f != 0 {
		return nil, corrupt("header flags %#x", f)
	}
	nc, ns := le.Uint32(b[40:]), le.Uint32(b[44:])
	if nc > layout.MaxComponents || ns > layout.MaxSingletons {
		return nil, corrupt("header: %d components, %d singletons (at most %d and %d)", nc, ns, layout.MaxComponents, layout.MaxSingletons)
	}
	tables := headerFixed + headerEntry*int(nc+ns)
	if len(b) < tables+8 {
		return nil, corrupt("header of %d bytes, its %d components and %d singletons need %d and the field table", len(b), nc, ns, tables+8)
	}
	nf, ft := le.Uint32(b[tables:]), le.Uint32(b[tables+4:])
	if want := uint64(tables) + 8 + uint64(ft); uint64(len(b)) != want || ft%64 != 0 {
		return nil, corrupt("header of %d bytes, with a field table of %d bytes (a multiple of 64) it is %d", len(b), ft, want)
	}
	il := le.Uint32(b[52:])
	if il > 31 {
		return nil, corrupt("header: instance name of %d bytes", il)
	}
	inst, err := name(b[56:88])
	if err != nil || len(inst) != int(il) {
		return nil, corrupt("header: instance name field (length %d)", il)
	}
	comps := make([]layout.ComponentDesc, nc)
	o := headerFixed
	for i := range comps {
		n, err := name(b[o : o+32])
		if err != nil {
			return nil, corrupt("header: component %d: %v", i, err)
		}
		comps[i] = layout.ComponentDesc{Name: n, Size: le.Uint32(b[o+32:]), Align: le.Uint32(b[o+36:]),
			Fingerprint: le.Uint64(b[o+40:]), MaxLen: le.Uint32(b[o+48:]), PerEntity: le.Uint32(b[o+52:])}
		o += headerEntry
	}
	singles := make([]layout.SingletonDesc, ns)
	for i := range singles {
		n, err := name(b[o : o+32])
		if err != nil {
			return nil, corrupt("header: singleton %d: %v", i, err)
		}
		if le.Uint32(b[o+52:]) != 0 {
			return nil, corrupt("header: singleton %q: reserved bytes", n)
		}
		singles[i] = layout.SingletonDesc{Name: n, Size: le.Uint32(b[o+32:]), Align: le.Uint32(b[o+36:]),
			Fingerprint: le.Uint64(b[o+40:]), Flags: le.Uint32(b[o+48:])}
		o += headerEntry
	}
	if err := layout.DecodeFieldTable(b[tables+8:], int(min(nf, uint32(len(b)))), comps, singles); err != nil {
		return nil, corrupt("header: %v", err)
	}
	g, err := geometryOf(comps, singles, int(le.Uint32(b[32:])), int(le.Uint32(b[36:])))
	if err != nil {
		return nil, corrupt("header: %v", err)
	}
	if got, _ := layout.FieldTable(comps, singles); !bytes.Equal(got, b[tables+8:]) {
		return nil, corrupt("header: the field table is not in its canonical form")
	}
	if got := le.Uint64(b[16:]); got != g.SchemaHash() {
		return nil, corrupt("header: schema hash %#x, the tables hash to %#x", got, g.SchemaHash())
	}
	return &Header{Created: int64(le.Uint64(b[8:])), FramePeriod: le.Uint64(b[24:]), KeyframeEvery: le.Uint32(b[48:]),
		Instance: inst, Geometry: g}, nil
}
