package record_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/fdp-engine/fdp/record"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// TestDecodeFrameRejects: each rule of docs/LAYOUT.md "Frame-delta
// stream", "Validation", broken once in a valid keyframe or delta (built
// from a live capture), is refused with ErrCorrupt; and Apply refuses a
// delta before a keyframe or on another base (ErrBase), with another mask,
// or leaving a new chunk without an entry, without changing the image.
func TestDecodeFrameRejects(t *testing.T) {
	l := newLive(t, 16, 16, 60, 8)
	hdr, err := record.NewHeader(l.lw, 1, 1, 0)
	require.NoError(t, err)
	cp := record.NewCapturer(l.lw, 0)
	cp.SetKeyframeBudget(0)
	l.step(0.2)
	require.NoError(t, world.SetSingleton(l.w, Wind{X: 1}))
	raw, _, err := cp.Capture(nil, l.publish(), []record.Event{{Type: 1, Payload: []byte("x")}}, nil)
	require.NoError(t, err)
	key, err := record.DecodeFrame(record.KindKeyframe, raw, hdr)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		l.step(0.3)
	}
	for {
		e, err := l.w.Create() // a new chunk
		require.NoError(t, err)
		if int(e.Index())/16 >= int(key.Chunks) {
			break
		}
	}
	require.NoError(t, world.SetSingleton(l.w, Wind{X: 2}))
	raw, info, err := cp.Capture(nil, l.publish(), nil, nil)
	require.NoError(t, err)
	require.Equal(t, record.KindDelta, info.Kind)
	delta, err := record.DecodeFrame(record.KindDelta, raw, hdr)
	require.NoError(t, err)
	require.NotEmpty(t, delta.ChunkRecs)
	require.NotEmpty(t, delta.Columns)
	require.NotEmpty(t, key.Singletons)

	clone := func(f *record.Frame) *record.Frame {
		g, err := record.DecodeFrame(f.Kind, record.AppendFrame(nil, f), hdr)
		require.NoError(t, err)
		return g
	}
	R := hdr.Geometry.RecordSize
	cases := []struct {
		name string
		base *record.Frame
		bad  func(f *record.Frame)
		raw  func(b []byte) []byte
	}{
		{"flags", key, nil, func(b []byte) []byte { b[44] = 1; return b }},
		{"reserved", key, nil, func(b []byte) []byte { b[100] = 1; return b }},
		{"version 0", key, func(f *record.Frame) { f.Version = 0 }, nil},
		{"keyframe with a base", key, func(f *record.Frame) { f.Base = 1 }, nil},
		{"delta base above V", delta, func(f *record.Frame) { f.Base = f.Version + 1 }, nil},
		{"delta base 0", delta, func(f *record.Frame) { f.Base = 0 }, nil},
		{"chunks above M", key, func(f *record.Frame) { f.Chunks = uint32(hdr.Geometry.MaxChunks + 1) }, nil},
		{"high-water beyond the chunks", key, func(f *record.Frame) { f.Entities = f.Chunks*16 + 1 }, nil},
		{"chunks not ceil(high-water/K)", key, func(f *record.Frame) { f.Entities -= 16 }, nil},
		{"alive above high-water", key, func(f *record.Frame) { f.Alive = f.Entities + 1 }, nil},
		{"mask beyond C", key, func(f *record.Frame) { f.Mask[1] = 1 }, nil},
		{"keyframe missing a chunk", key, func(f *record.Frame) { f.ChunkRecs = f.ChunkRecs[1:] }, nil},
		{"chunk entries out of order", key, func(f *record.Frame) { f.ChunkRecs[0], f.ChunkRecs[1] = f.ChunkRecs[1], f.ChunkRecs[0] }, nil},
		{"rows not from the high-water", key, func(f *record.Frame) { f.ChunkRecs[0].Rows--; f.ChunkRecs[0].Records = f.ChunkRecs[0].Records[R:] }, nil},
		{"structural version above V", key, func(f *record.Frame) { f.ChunkRecs[0].StructVersion = f.Version + 1 }, nil},
		{"delta structural version not above B", delta, func(f *record.Frame) { f.ChunkRecs[0].StructVersion = f.Base }, nil},
		{"record flags", key, func(f *record.Frame) { f.ChunkRecs[0].Records[4] |= 2 }, nil},
		{"record generation 0", key, func(f *record.Frame) { clear(f.ChunkRecs[0].Records[0:4]) }, nil},
		{"dead record with components", key, func(f *record.Frame) {
			binary.LittleEndian.PutUint32(f.ChunkRecs[0].Records[4:], 0)
			f.ChunkRecs[0].Alive--
			f.Alive--
		}, nil},
		{"record beyond the slot mask", key, func(f *record.Frame) {
			f.Mask[0] = 1 // Position only
			f.Columns = nil
		}, nil},
		{"chunk alive count", key, func(f *record.Frame) { f.ChunkRecs[0].Alive++ }, nil},
		{"column outside the mask", key, func(f *record.Frame) { f.Columns[0].Component = 30 }, nil},
		{"columns out of order", key, func(f *record.Frame) { f.Columns[0], f.Columns[1] = f.Columns[1], f.Columns[0] }, nil},
		{"column length", key, func(f *record.Frame) { f.Columns[0].Data = f.Columns[0].Data[:8] }, nil},
		{"column version 0", key, func(f *record.Frame) { f.Columns[0].Version = 0 }, nil},
		{"singleton size", key, func(f *record.Frame) { f.Singletons[0].Value = append(f.Singletons[0].Value, 0) }, nil},
		{"singleton id", key, func(f *record.Frame) { f.Singletons[0].ID = uint16(len(hdr.Geometry.Singletons)) }, nil},
		{"event too long", key, func(f *record.Frame) { f.Events[0].Payload = make([]byte, 1<<20+1) }, nil},
		{"bytes after the entries", key, nil, func(b []byte) []byte { return append(b, make([]byte, 8)...) }},
		{"padding not zero", key, nil, func(b []byte) []byte {
			i := bytes.Index(b, []byte("x"))
			b[i+1] = 1
			return b
		}},
	}
	for _, tc := range cases {
		f := clone(tc.base)
		if tc.bad != nil {
			tc.bad(f)
		}
		b := record.AppendFrame(nil, f)
		if tc.raw != nil {
			b = tc.raw(b)
		}
		_, err := record.DecodeFrame(tc.base.Kind, b, hdr)
		require.ErrorIs(t, err, record.ErrCorrupt, tc.name)
	}
	require.NotEmpty(t, delta.Singletons, "the delta sets the time")

	// Apply.
	im := record.NewImage(hdr)
	require.ErrorIs(t, im.Apply(delta), record.ErrBase, "no keyframe yet")
	require.NoError(t, im.Apply(key))
	before := digest(im)
	d := clone(delta)
	d.Mask[0] &^= 1 << 3
	require.ErrorIs(t, im.Apply(d), record.ErrCorrupt, "another mask")
	d = clone(delta)
	d.ChunkRecs = d.ChunkRecs[:len(d.ChunkRecs)-1] // the new chunk's entry
	require.Error(t, im.Apply(d), "a new chunk without an entry")
	require.Equal(t, before, digest(im), "a refused frame changes nothing")
	require.NoError(t, im.Apply(delta))
	after := digest(im)
	require.ErrorIs(t, im.Apply(delta), record.ErrBase, "the image is no longer at the delta's base")
	require.Equal(t, after, digest(im))
}
