package record_test

import (
	"bytes"
	"testing"

	"github.com/fdp-engine/fdp/record"
)

// fuzzSeeds records a few frames of a small live world (keyframes and
// deltas, with events and a batch) and returns the header and the raw
// payloads with their kinds.
func fuzzSeeds(t testing.TB) (*record.Header, []record.Kind, [][]byte) {
	l := newLive(t, 16, 8, 40, 11)
	hdr, err := record.NewHeader(l.lw, 1, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	cp := record.NewCapturer(l.lw, 4)
	var kinds []record.Kind
	var raws [][]byte
	for i := 0; i < 6; i++ {
		l.step(0.2)
		s := l.publish()
		raw, info, err := cp.Capture(nil, s, []record.Event{{Type: 3, Frame: l.frame, Payload: []byte("hello")}},
			[]record.Batch{{Module: "ai", Slot: 1, PID: 7, Seq: uint64(i), Applied: 2, Commands: make([]byte, 16)}})
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, info.Kind)
		raws = append(raws, raw)
	}
	return hdr, kinds, raws
}

// FuzzDecodeFrame: any payload decoded as a keyframe or a delta and
// applied to an image at the seed keyframe either is refused, leaving the
// image exactly as it was (R3), or applies; never a panic.
func FuzzDecodeFrame(f *testing.F) {
	hdr, kinds, raws := fuzzSeeds(f)
	for i, raw := range raws {
		f.Add(byte(kinds[i]), raw)
	}
	base, err := record.DecodeFrame(kinds[0], raws[0], hdr)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, kind byte, payload []byte) {
		im := record.NewImage(hdr)
		if err := im.Apply(base); err != nil {
			t.Fatal(err)
		}
		before := digest(im)
		fr, err := record.DecodeFrame(record.Kind(kind), payload, hdr)
		if err != nil {
			return
		}
		if err := im.Apply(fr); err != nil && digest(im) != before {
			t.Fatalf("a refused frame changed the image: %v", err)
		}
		for c := 0; c < int(im.Chunks); c++ {
			im.ChunkRecords(c)
		}
	})
}

// FuzzReader: any file read with NewReader (header, index or scan, every
// frame read and applied) gives errors, never a panic.
func FuzzReader(f *testing.F) {
	hdr, kinds, raws := fuzzSeeds(f)
	for _, codec := range []record.Codec{record.CodecNone, record.CodecZstd} {
		file := record.AppendRecord(nil, record.KindHeader, record.CodecNone, 0, hdr.Encode(), len(hdr.Encode()))
		var ix []record.IndexEntry
		for i, raw := range raws {
			stored := raw
			if codec == record.CodecZstd {
				stored = zstdCompress(raw)
			}
			ix = append(ix, record.IndexEntry{Frame: uint64(i + 1), Offset: int64(len(file)), Kind: kinds[i], Stored: uint32(len(stored)), Raw: uint32(len(raw))})
			file = record.AppendRecord(file, kinds[i], codec, frameOf(raw), stored, len(raw))
			ix[i].Frame = frameOf(raw)
		}
		f.Add(bytes.Clone(file))
		ip := record.EncodeIndex(ix)
		end := len(file)
		file = record.AppendRecord(file, record.KindIndex, record.CodecNone, 0, ip, len(ip))
		file = append(file, trailer(end)...)
		f.Add(file)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := record.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		im := record.NewImage(rd.Header())
		for i := range rd.Index() {
			fr, err := rd.Frame(i)
			if err != nil {
				continue
			}
			_ = im.Apply(fr)
		}
		if n := len(rd.Index()); n > 0 {
			_, _ = rd.Seek(record.NewImage(rd.Header()), n-1)
		}
	})
}
