package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Record framing (docs/LAYOUT.md, "Frame-delta stream"): every record is a
// 32-byte head and a payload of the head's stored length.
//
//	0  [4]u8 magic "FDPR"
//	4  u8    kind (Kind)
//	5  u8    codec (Codec)
//	6  u16   flags, 0
//	8  u32   stored length L: the payload bytes that follow the head
//	12 u32   raw length: the payload after decompression (= L for CodecNone)
//	16 u64   frame number (0 for the header and the index)
//	24 u32   CRC-32C of the L stored bytes
//	28 u32   CRC-32C of head bytes [0, 28)
const (
	// HeadSize is the size of a record head.
	HeadSize = 32
	// Magic opens every record.
	Magic = "FDPR"
	// StreamVersion is the version of the stream format in the header
	// record; a reader refuses another. 2: the header carries the schema's
	// field table (layout 4).
	StreamVersion = 2
	// MaxRawBytes bounds a record's raw payload (a keyframe of the largest
	// world this machine records; a decoder allocates no more than this for
	// one record).
	MaxRawBytes = 1 << 30
	// TrailerSize is the size of the file trailer after the index record:
	// u64 offset of the index record, then TrailerMagic.
	TrailerSize = 16
	// TrailerMagic closes a file whose recording ended cleanly.
	TrailerMagic = "FDPRTAIL"
)

// Kind is a record's kind.
type Kind uint8

// Record kinds.
const (
	KindHeader   Kind = 1 // the world schema: first record of a stream
	KindKeyframe Kind = 2 // a whole frame: a decoder can start here
	KindDelta    Kind = 3 // what changed since the previous frame record
	KindIndex    Kind = 4 // the frame index: last record of a file
)

func (k Kind) String() string {
	switch k {
	case KindHeader:
		return "header"
	case KindKeyframe:
		return "keyframe"
	case KindDelta:
		return "delta"
	case KindIndex:
		return "index"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Codec is the compression of a record's payload.
type Codec uint8

// Codecs.
const (
	CodecNone Codec = 0
	CodecZstd Codec = 1 // one zstd frame (RFC 8878) per record
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// Errors of the decoder; every error wraps one of them.
var (
	// ErrCorrupt: bytes that are not a valid record (bad magic, checksum,
	// length, or a payload that does not fit the schema).
	ErrCorrupt = errors.New("corrupt recording")
	// ErrTruncated: the data ends inside a record.
	ErrTruncated = errors.New("truncated recording")
	// ErrVersion: a stream of another version.
	ErrVersion = errors.New("unsupported recording version")
	// ErrBase: a delta applied to an image that is not at its base.
	ErrBase = errors.New("delta does not apply to this image")
)

var (
	le     = binary.LittleEndian
	crcTab = crc32.MakeTable(crc32.Castagnoli)
)

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

// Head is a decoded record head.
type Head struct {
	Kind      Kind
	Codec     Codec
	Stored    uint32 // payload bytes after the head
	Raw       uint32 // payload bytes after decompression
	Frame     uint64
	StoredCRC uint32
}

// Size returns the bytes of the whole record: head and stored payload.
func (h Head) Size() int64 { return HeadSize + int64(h.Stored) }

// AppendRecord appends a record of kind k with the stored payload stored
// (raw bytes before compression with codec) to dst.
func AppendRecord(dst []byte, k Kind, codec Codec, frame uint64, stored []byte, raw int) []byte {
	var h [HeadSize]byte
	copy(h[:4], Magic)
	h[4], h[5] = byte(k), byte(codec)
	le.PutUint32(h[8:], uint32(len(stored)))
	le.PutUint32(h[12:], uint32(raw))
	le.PutUint64(h[16:], frame)
	le.PutUint32(h[24:], crc32.Checksum(stored, crcTab))
	le.PutUint32(h[28:], crc32.Checksum(h[:28], crcTab))
	dst = append(dst, h[:]...)
	return append(dst, stored...)
}

// ParseHead decodes and checks a record head (magic, head checksum, kind,
// codec, flags, lengths). The payload's checksum is checked by
// CheckPayload.
func ParseHead(b []byte) (Head, error) {
	if len(b) < HeadSize {
		return Head{}, fmt.Errorf("%w: %d bytes of a %d-byte record head", ErrTruncated, len(b), HeadSize)
	}
	if string(b[:4]) != Magic {
		return Head{}, corrupt("record magic %q, want %q", b[:4], Magic)
	}
	if got, want := le.Uint32(b[28:]), crc32.Checksum(b[:28], crcTab); got != want {
		return Head{}, corrupt("record head checksum %#08x, want %#08x", got, want)
	}
	h := Head{Kind: Kind(b[4]), Codec: Codec(b[5]), Stored: le.Uint32(b[8:]), Raw: le.Uint32(b[12:]),
		Frame: le.Uint64(b[16:]), StoredCRC: le.Uint32(b[24:])}
	switch {
	case h.Kind < KindHeader || h.Kind > KindIndex:
		return h, corrupt("unknown record %s", h.Kind)
	case h.Codec > CodecZstd:
		return h, corrupt("%s record: unknown %s", h.Kind, h.Codec)
	case le.Uint16(b[6:]) != 0:
		return h, corrupt("%s record: flags %#x", h.Kind, le.Uint16(b[6:]))
	case h.Raw > MaxRawBytes || h.Stored > MaxRawBytes:
		return h, corrupt("%s record of %d bytes (at most %d)", h.Kind, max(h.Raw, h.Stored), MaxRawBytes)
	case h.Codec == CodecNone && h.Raw != h.Stored:
		return h, corrupt("%s record: raw length %d of an uncompressed payload of %d", h.Kind, h.Raw, h.Stored)
	case (h.Kind == KindHeader || h.Kind == KindIndex) && h.Frame != 0:
		return h, corrupt("%s record with frame %d", h.Kind, h.Frame)
	}
	return h, nil
}

// CheckPayload checks the stored payload of a record against its head.
func (h Head) CheckPayload(stored []byte) error {
	if len(stored) != int(h.Stored) {
		return fmt.Errorf("%w: %s record of frame %d: %d of %d payload bytes", ErrTruncated, h.Kind, h.Frame, len(stored), h.Stored)
	}
	if got := crc32.Checksum(stored, crcTab); got != h.StoredCRC {
		return corrupt("%s record of frame %d: payload checksum %#08x, want %#08x", h.Kind, h.Frame, got, h.StoredCRC)
	}
	return nil
}

// pad8 rounds n up to a multiple of 8.
func pad8(n int) int { return (n + 7) &^ 7 }

// appendPad appends b and zeros up to a multiple of 8 bytes of b.
func appendPad(dst, b []byte) []byte {
	dst = append(dst, b...)
	var z [8]byte
	return append(dst, z[:pad8(len(b))-len(b)]...)
}
