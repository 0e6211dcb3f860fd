package remote

// The messages of the frame stream on NATS (docs/ARCHITECTURE.md "Beyond
// one machine", "On the wire").
//
// One captured frame is one unit: a keyframe unit is the stream's header
// record (the world schema, record.DecodeHeader) followed by the keyframe
// record; a delta unit is the delta record alone. Records are those of a
// recording file (docs/LAYOUT.md "Frame-delta stream": head with CRC-32C,
// zstd payload with its own CRC-32C). A unit larger than the connection's
// max payload is sent as consecutive parts; every message carries the
// headers below. A receiver keeps a unit only when all its parts arrived in
// order; anything else is dropped whole (never half a frame).

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/fdp-engine/fdp/record"
	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
)

const (
	hdrFrame = "Fdp-Frame" // the unit's frame number
	hdrKind  = "Fdp-Kind"  // "key" or "delta"
	hdrPart  = "Fdp-Part"  // "i/n", i from 1
	hdrSeq   = "Fdp-Seq"   // key stream: frame stream sequence of the keyframe's first part
	kindKey  = "key"
	kindDel  = "delta"
)

// partHeadroom is what a part leaves of the max payload for headers.
const partHeadroom = 4 << 10

// splitUnit returns the messages of one unit.
func splitUnit(subject string, frame uint64, key bool, unit []byte, maxPayload int) []*nats.Msg {
	size := max(maxPayload-partHeadroom, 1<<10)
	n := max(1, (len(unit)+size-1)/size)
	kind := kindDel
	if key {
		kind = kindKey
	}
	msgs := make([]*nats.Msg, 0, n)
	for i := 0; i < n; i++ {
		end := min(len(unit), (i+1)*size)
		m := nats.NewMsg(subject)
		m.Data = unit[i*size : end]
		m.Header.Set(hdrFrame, strconv.FormatUint(frame, 10))
		m.Header.Set(hdrKind, kind)
		m.Header.Set(hdrPart, strconv.Itoa(i+1)+"/"+strconv.Itoa(n))
		msgs = append(msgs, m)
	}
	return msgs
}

// assembler puts parts back together.
type assembler struct {
	buf   []byte
	frame uint64
	next  int // part expected next (1: a new unit)
	n     int
}

// errPart: a part out of order (a unit lost parts); it is dropped.
var errPart = errors.New("unit part out of order")

// add takes one message; it returns the whole unit when its last part came.
func (a *assembler) add(h nats.Header, data []byte) (unit []byte, frame uint64, key bool, err error) {
	frame, err = strconv.ParseUint(h.Get(hdrFrame), 10, 64)
	if err != nil {
		return nil, 0, false, fmt.Errorf("frame message without a frame number: %w", err)
	}
	var i, n int
	if _, err := fmt.Sscanf(h.Get(hdrPart), "%d/%d", &i, &n); err != nil || i < 1 || i > n {
		return nil, 0, false, fmt.Errorf("frame %d: bad part %q", frame, h.Get(hdrPart))
	}
	key = h.Get(hdrKind) == kindKey
	if i == 1 {
		a.buf, a.frame, a.next, a.n = a.buf[:0], frame, 1, n
	}
	if i != a.next || n != a.n || frame != a.frame {
		a.next = 0
		return nil, frame, key, fmt.Errorf("%w: frame %d part %d/%d", errPart, frame, i, n)
	}
	a.buf = append(a.buf, data...)
	a.next++
	if i < n {
		return nil, frame, key, nil
	}
	a.next = 0
	return a.buf, frame, key, nil
}

// codec compresses and decompresses record payloads.
type codec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

func newCodec() *codec {
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(record.MaxRawBytes))
	return &codec{enc: enc, dec: dec}
}

// appendRecord appends raw as a zstd record of kind k.
func (c *codec) appendRecord(dst []byte, k record.Kind, frame uint64, raw []byte) []byte {
	stored := c.enc.EncodeAll(raw, nil)
	return record.AppendRecord(dst, k, record.CodecZstd, frame, stored, len(raw))
}

// nextRecord parses the record at the start of b: its head, its raw
// payload, and the bytes after it.
func (c *codec) nextRecord(b []byte) (record.Head, []byte, []byte, error) {
	h, err := record.ParseHead(b)
	if err != nil {
		return h, nil, nil, err
	}
	if int64(len(b)) < h.Size() {
		return h, nil, nil, fmt.Errorf("%w: %s record of frame %d: %d of %d bytes", record.ErrTruncated, h.Kind, h.Frame, len(b), h.Size())
	}
	stored := b[record.HeadSize:h.Size()]
	if err := h.CheckPayload(stored); err != nil {
		return h, nil, nil, err
	}
	raw := stored
	if h.Codec == record.CodecZstd {
		if raw, err = c.dec.DecodeAll(stored, make([]byte, 0, h.Raw)); err != nil {
			return h, nil, nil, fmt.Errorf("%w: %s record of frame %d: zstd: %v", record.ErrCorrupt, h.Kind, h.Frame, err)
		}
	}
	if len(raw) != int(h.Raw) {
		return h, nil, nil, fmt.Errorf("%w: %s record of frame %d: %d raw bytes, head says %d", record.ErrCorrupt, h.Kind, h.Frame, len(raw), h.Raw)
	}
	return h, raw, b[h.Size():], nil
}

// decodeUnit decodes one unit: the header (keyframe units) and the frame.
func (c *codec) decodeUnit(unit []byte, hdr *record.Header) (*record.Header, *record.Frame, error) {
	h, raw, rest, err := c.nextRecord(unit)
	if err != nil {
		return nil, nil, err
	}
	if h.Kind == record.KindHeader {
		if hdr, err = record.DecodeHeader(raw); err != nil {
			return nil, nil, err
		}
		if h, raw, rest, err = c.nextRecord(rest); err != nil {
			return nil, nil, err
		}
	}
	if hdr == nil {
		return nil, nil, fmt.Errorf("%s record of frame %d before any header", h.Kind, h.Frame)
	}
	if len(rest) != 0 {
		return nil, nil, fmt.Errorf("%w: %d bytes after the frame record of frame %d", record.ErrCorrupt, len(rest), h.Frame)
	}
	if h.Kind != record.KindKeyframe && h.Kind != record.KindDelta {
		return nil, nil, fmt.Errorf("%w: %s record in a frame unit", record.ErrCorrupt, h.Kind)
	}
	f, err := record.DecodeFrame(h.Kind, raw, hdr)
	if err != nil {
		return nil, nil, err
	}
	if f.Frame != h.Frame {
		return nil, nil, fmt.Errorf("%w: record head of frame %d holds frame %d", record.ErrCorrupt, h.Frame, f.Frame)
	}
	return hdr, f, nil
}

// Encoder compresses captured frame payloads into records as the bridge
// does (benchmarks measure the bridge's cost per frame with it).
type Encoder struct{ c *codec }

// NewEncoder returns an encoder.
func NewEncoder() *Encoder { return &Encoder{c: newCodec()} }

// AppendRecord appends raw, a captured payload of kind k, as a zstd record.
func (e *Encoder) AppendRecord(dst []byte, k record.Kind, frame uint64, raw []byte) []byte {
	return e.c.appendRecord(dst, k, frame, raw)
}
