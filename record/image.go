package record

import (
	"bytes"
	"fmt"

	"github.com/fdp-engine/fdp/layout"
)

// Image is the state of a published slot rebuilt from a stream: what a
// keyframe sets and a delta updates. Replay builds a world from it
// (world.SetChunkData with ChunkRecords, RestoreColumn with Column,
// RestoreSingleton with Singleton) or compares it with a slot
// (CompareSlot).
type Image struct {
	h *Header
	// Valid is false until a keyframe was applied.
	Valid    bool
	Frame    uint64
	Version  uint64
	PubNanos uint64
	Chunks   uint32
	Entities uint32
	Alive    uint32
	Mask     [layout.MaxMaskWords]uint64
	chunks   []chunkImage
	sval     [][]byte
	sver     []uint64
}

type chunkImage struct {
	structVer   uint64
	rows, alive uint32
	records     []byte   // K x R
	vers        []uint64 // per component: 0 = never published
	cols        [][]byte // per component: the column span (K x size + arena); nil until a version is set
}

// NewImage returns an empty image of the stream of header h.
func NewImage(h *Header) *Image {
	g := h.Geometry
	im := &Image{h: h, sval: make([][]byte, len(g.Singletons)), sver: make([]uint64, len(g.Singletons))}
	for i, s := range g.Singletons {
		im.sval[i] = make([]byte, s.Size)
	}
	return im
}

// Header returns the image's stream header.
func (im *Image) Header() *Header { return im.h }

func (im *Image) chunk(c int) *chunkImage {
	for len(im.chunks) <= c {
		g := im.h.Geometry
		im.chunks = append(im.chunks, chunkImage{records: make([]byte, g.ChunkCapacity*g.RecordSize),
			vers: make([]uint64, len(g.Components)), cols: make([][]byte, len(g.Components))})
	}
	return &im.chunks[c]
}

// Apply applies a decoded frame (DecodeFrame): a keyframe replaces the
// image; a delta must have the image's version as its base and its mask.
// Everything is checked before anything changes (R3): on an error the
// image is as it was.
func (im *Image) Apply(f *Frame) error {
	if err := im.check(f); err != nil {
		return err
	}
	g := im.h.Geometry
	if f.Kind == KindKeyframe {
		for c := range im.chunks {
			ch := &im.chunks[c]
			ch.structVer, ch.rows, ch.alive = 0, 0, 0
			clear(ch.records)
			clear(ch.vers)
			for k := range ch.cols {
				clear(ch.cols[k])
			}
		}
		clear(im.sver)
		for i := range im.sval {
			clear(im.sval[i])
		}
	}
	for c := int(f.Chunks); c < len(im.chunks); c++ { // chunks no longer in use read as never published
		ch := &im.chunks[c]
		ch.structVer, ch.rows, ch.alive = 0, 0, 0
		clear(ch.records)
		clear(ch.vers)
		for k := range ch.cols {
			clear(ch.cols[k])
		}
	}
	for _, cr := range f.ChunkRecs {
		ch := im.chunk(int(cr.Chunk))
		ch.structVer, ch.rows, ch.alive = cr.StructVersion, cr.Rows, cr.Alive
		n := copy(ch.records, cr.Records)
		clear(ch.records[n:])
	}
	for _, col := range f.Columns {
		ch := im.chunk(int(col.Chunk))
		k := int(col.Component)
		if ch.cols[k] == nil {
			ch.cols[k] = make([]byte, g.ChunkCapacity*int(g.Components[k].Size)+g.ArenaSize(k))
		}
		n := copy(ch.cols[k], col.Data)
		clear(ch.cols[k][n:])
		ch.vers[k] = col.Version
	}
	for _, s := range f.Singletons {
		copy(im.sval[s.ID], s.Value)
		im.sver[s.ID] = s.Version
	}
	im.Valid = true
	im.Frame, im.Version, im.PubNanos = f.Frame, f.Version, f.PubNanos
	im.Chunks, im.Entities, im.Alive, im.Mask = f.Chunks, f.Entities, f.Alive, f.Mask
	return nil
}

// check is Apply's validation: the delta's base, mask and chunk rows
// against the image, and the alive counts of the result.
func (im *Image) check(f *Frame) error {
	if f.Kind != KindKeyframe && f.Kind != KindDelta {
		return corrupt("a %s is not a frame", f.Kind)
	}
	K := uint64(im.h.Geometry.ChunkCapacity)
	rowsOf := func(c int, entities uint32) uint32 {
		if uint64(entities) <= uint64(c)*K {
			return 0
		}
		return uint32(min(K, uint64(entities)-uint64(c)*K))
	}
	if f.Kind == KindDelta {
		switch {
		case !im.Valid:
			return fmt.Errorf("%w: delta of frame %d before any keyframe", ErrBase, f.Frame)
		case f.Base != im.Version:
			return fmt.Errorf("%w: delta of frame %d has base version %d, the image is at version %d (frame %d): a frame record is missing",
				ErrBase, f.Frame, f.Base, im.Version, im.Frame)
		case f.Mask != im.Mask:
			return corrupt("delta of frame %d: slot mask %s, the image's is %s", f.Frame, layout.FormatMask(f.Mask), layout.FormatMask(im.Mask))
		}
	}
	// Alive and rows per chunk after the frame: the chunk entries', else
	// the image's (which must then have the rows the high-water gives).
	alive := uint64(0)
	next := 0
	for c := 0; c < int(f.Chunks); c++ {
		if next < len(f.ChunkRecs) && int(f.ChunkRecs[next].Chunk) == c {
			alive += uint64(f.ChunkRecs[next].Alive)
			next++
			continue
		}
		if f.Kind == KindKeyframe || c >= int(im.Chunks) || c >= len(im.chunks) {
			return corrupt("%s of frame %d: chunk %d is new and has no entry", f.Kind, f.Frame, c)
		}
		ch := &im.chunks[c]
		if ch.rows != rowsOf(c, f.Entities) {
			return corrupt("delta of frame %d: chunk %d has %d rows, the high-water mark %d gives %d, and no entry", f.Frame, c, ch.rows, f.Entities, rowsOf(c, f.Entities))
		}
		alive += uint64(ch.alive)
	}
	if alive != uint64(f.Alive) {
		return corrupt("%s of frame %d: %d alive in its chunks, the header says %d", f.Kind, f.Frame, alive, f.Alive)
	}
	return nil
}

// ChunkRecords returns the ChunkCapacity entity records of chunk c
// (world.SetChunkData's input) and the chunk's structural version.
func (im *Image) ChunkRecords(c int) ([]layout.EntityRecord, uint64) {
	g := im.h.Geometry
	out := make([]layout.EntityRecord, g.ChunkCapacity)
	if c < 0 || c >= int(im.Chunks) {
		return out, 0
	}
	ch := &im.chunks[c]
	for i := range out {
		out[i] = layout.DecodeRecord(ch.records[i*g.RecordSize:], g.MaskWords)
	}
	return out, ch.structVer
}

// ChunkInfo returns chunk c's rows, alive count and structural version.
func (im *Image) ChunkInfo(c int) (rows, alive uint32, structVersion uint64) {
	if c < 0 || c >= int(im.Chunks) {
		return 0, 0, 0
	}
	ch := &im.chunks[c]
	return ch.rows, ch.alive, ch.structVer
}

// RecordBytes returns chunk c's records in their wire form (K x R bytes;
// aliases the image).
func (im *Image) RecordBytes(c int) []byte {
	if c < 0 || c >= int(im.Chunks) {
		return nil
	}
	return im.chunks[c].records
}

// Column returns component k's column span in chunk c (K x size bytes and
// the arena: world.RestoreColumn's input; aliases the image) and its
// version; nil and 0 when the column was never published.
func (im *Image) Column(c, k int) ([]byte, uint64) {
	if c < 0 || c >= int(im.Chunks) || k < 0 || k >= len(im.h.Geometry.Components) || im.chunks[c].vers[k] == 0 {
		return nil, 0
	}
	return im.chunks[c].cols[k], im.chunks[c].vers[k]
}

// Singleton returns singleton i's value (aliases the image) and version
// (0: never set).
func (im *Image) Singleton(i int) ([]byte, uint64) {
	if i < 0 || i >= len(im.sval) {
		return nil, 0
	}
	return im.sval[i], im.sver[i]
}

// CompareSlot compares the image with slot s of world segment lw (of the
// same schema), which the caller holds stable (leased or pinned): every
// slot header field a frame records, the version words, records and
// columns of every chunk in use and every singleton, byte for byte. Arena
// bytes are compared where the handle of a row whose record is alive and
// names the component points (the rest of an arena is unreachable, and not
// recorded). It returns the first
// difference.
func (im *Image) CompareSlot(lw *layout.World, s int) error {
	g := im.h.Geometry
	if lw.SchemaHash() != g.SchemaHash() || lw.ChunkCapacity != g.ChunkCapacity {
		return fmt.Errorf("slot of another schema")
	}
	b := lw.B
	so := lw.SlotOff(s)
	si := lw.ReadSlotInfo(s)
	type field struct {
		name      string
		got, want uint64
	}
	for _, f := range []field{{"frame", si.Frame, im.Frame}, {"version", si.Version, im.Version}, {"publish ns", si.PubNanos, im.PubNanos},
		{"chunks", uint64(si.Chunks), uint64(im.Chunks)}, {"high-water", uint64(si.Entities), uint64(im.Entities)},
		{"alive", uint64(si.Alive), uint64(im.Alive)}} {
		if f.got != f.want {
			return fmt.Errorf("frame %d: slot %s %d, image %d", im.Frame, f.name, f.got, f.want)
		}
	}
	if si.Mask != im.Mask {
		return fmt.Errorf("frame %d: slot mask %s, image %s", im.Frame, layout.FormatMask(si.Mask), layout.FormatMask(im.Mask))
	}
	for i := range g.Singletons {
		v := le.Uint64(b[so+layout.SlotSingletons+8*i:])
		if v != im.sver[i] {
			return fmt.Errorf("frame %d: singleton %q version: slot %d, image %d", im.Frame, g.Singletons[i].Name, v, im.sver[i])
		}
		o := so + lw.SingletonOff[i]
		if v != 0 && !bytes.Equal(b[o:o+int(g.Singletons[i].Size)], im.sval[i]) {
			return fmt.Errorf("frame %d: singleton %q value differs", im.Frame, g.Singletons[i].Name)
		}
	}
	for c := 0; c < int(im.Chunks); c++ {
		ch := &im.chunks[c]
		co := lw.ChunkOff(s, c)
		if sv := le.Uint64(b[co+layout.ChunkStructVersion:]); sv != ch.structVer {
			return fmt.Errorf("frame %d chunk %d: structural version: slot %d, image %d", im.Frame, c, sv, ch.structVer)
		}
		if r, a := le.Uint32(b[co+layout.ChunkRows:]), le.Uint32(b[co+layout.ChunkAlive:]); r != ch.rows || a != ch.alive {
			return fmt.Errorf("frame %d chunk %d: rows/alive: slot %d/%d, image %d/%d", im.Frame, c, r, a, ch.rows, ch.alive)
		}
		for j := 0; j < g.MaskWords; j++ {
			if m := le.Uint64(b[co+layout.ChunkRecordMaskOff(j):]); m != im.Mask[j] {
				return fmt.Errorf("frame %d chunk %d: record mask word %d: slot %#x, image %#x", im.Frame, c, j, m, im.Mask[j])
			}
		}
		eo, ee := lw.EntityRange(s, c)
		if !bytes.Equal(b[eo:ee], ch.records) {
			return fmt.Errorf("frame %d chunk %d: entity records differ", im.Frame, c)
		}
		for k := range g.Components {
			if im.Mask[k/64]&(1<<(k%64)) == 0 {
				continue
			}
			v := le.Uint64(b[lw.ChunkVersionOff(s, c, k):])
			if v != ch.vers[k] {
				return fmt.Errorf("frame %d chunk %d component %q: version: slot %d, image %d", im.Frame, c, g.Components[k].Name, v, ch.vers[k])
			}
			if v == 0 {
				continue
			}
			o, e := lw.ColumnRange(s, c, k)
			col := ch.cols[k]
			if !bytes.Equal(b[o:e], col[:e-o]) {
				return fmt.Errorf("frame %d chunk %d component %q: column differs", im.Frame, c, g.Components[k].Name)
			}
			if !g.Components[k].VarSize() {
				continue
			}
			ao, _ := lw.ArenaRange(s, c, k)
			arena := col[e-o:]
			for r := 0; r < int(ch.rows); r++ {
				if !rowHas(ch.records[r*g.RecordSize:], k) {
					continue // a handle of another row is unspecified
				}
				h := layout.DecodeHandle(col[r*layout.BytesHandleSize:])
				if !h.Valid(len(arena), g.Components[k].MaxLen) {
					continue
				}
				if !bytes.Equal(b[ao+int(h.Off):ao+int(h.Off+h.Len)], arena[h.Off:h.Off+h.Len]) {
					return fmt.Errorf("frame %d chunk %d component %q row %d: value differs", im.Frame, c, g.Components[k].Name, r)
				}
			}
		}
	}
	return nil
}
