package record

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/klauspost/compress/zstd"
)

// Reader reads a recording file: its header, its frame index (the index
// record at the end, or, when the file has none or a damaged one, rebuilt
// by scanning the records from the start to the first damaged or
// incomplete one) and its frames.
type Reader struct {
	r       io.ReaderAt
	size    int64
	closer  io.Closer
	h       *Header
	first   int64 // offset of the first frame record
	index   []IndexEntry
	damage  error
	rebuilt bool
	dec     *zstd.Decoder
	free    chan []byte // recycled payload buffers (buffer, recycle)
}

// Open opens the recording at path (see NewReader).
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	r, err := NewReader(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.closer = f
	return r, nil
}

// NewReader reads the header record and the frame index of the size bytes
// of ra. A file whose header record is damaged is an error; damage after
// it is not: the frames before it are readable, and Damage says what
// stopped the scan.
func NewReader(ra io.ReaderAt, size int64) (*Reader, error) {
	r := &Reader{r: ra, size: size, free: make(chan []byte, 16)}
	hd, err := r.head(0)
	if err != nil {
		return nil, fmt.Errorf("header record: %w", err)
	}
	if hd.Kind != KindHeader || hd.Codec != CodecNone {
		return nil, corrupt("the first record is a %s (%s), not the uncompressed header", hd.Kind, hd.Codec)
	}
	if r.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(4), zstd.WithDecoderMaxMemory(MaxRawBytes)); err != nil {
		return nil, err
	}
	_, payload, err := r.record(0)
	if err != nil {
		r.dec.Close()
		return nil, fmt.Errorf("header record: %w", err)
	}
	if r.h, err = DecodeHeader(payload); err != nil {
		r.dec.Close()
		return nil, err
	}
	r.first = hd.Size()
	if !r.readIndex() {
		r.rebuilt = true
		r.scan()
	}
	return r, nil
}

// Close closes the file of Open.
func (r *Reader) Close() error {
	if r.dec != nil {
		r.dec.Close()
	}
	if r.closer != nil {
		return r.closer.Close()
	}
	return nil
}

// Header returns the stream header.
func (r *Reader) Header() *Header { return r.h }

// Index returns the frame records in file order (frame numbers increase).
func (r *Reader) Index() []IndexEntry { return r.index }

// Size returns the file's size.
func (r *Reader) Size() int64 { return r.size }

// Rebuilt reports whether the index was rebuilt by a scan (the file has no
// valid index record: its recorder was killed, or the end is damaged).
func (r *Reader) Rebuilt() bool { return r.rebuilt }

// Damage returns what ended the scan of a file without a valid index
// (ErrTruncated: the file ends inside a record; ErrCorrupt: a record does
// not check), or nil when the records end cleanly. The frames of Index are
// those before it.
func (r *Reader) Damage() error { return r.damage }

// Keyframes returns the positions in Index of the keyframes.
func (r *Reader) Keyframes() []int {
	var out []int
	for i, e := range r.index {
		if e.Kind == KindKeyframe {
			out = append(out, i)
		}
	}
	return out
}

// head reads and checks the record head at off.
func (r *Reader) head(off int64) (Head, error) {
	var b [HeadSize]byte
	n, err := r.r.ReadAt(b[:], off)
	if n < HeadSize {
		if err == nil || errors.Is(err, io.EOF) {
			return Head{}, fmt.Errorf("%w: %d bytes of a record head at offset %d", ErrTruncated, n, off)
		}
		return Head{}, err
	}
	h, err := ParseHead(b[:])
	if err != nil {
		return h, fmt.Errorf("at offset %d: %w", off, err)
	}
	if off+h.Size() > r.size {
		return h, fmt.Errorf("%w: %s record of frame %d at offset %d needs %d bytes, the file has %d", ErrTruncated, h.Kind, h.Frame, off, h.Size(), r.size-off)
	}
	return h, nil
}

// record reads the record at off and returns its head and raw payload
// (decompressed, checksum checked).
func (r *Reader) record(off int64) (Head, []byte, error) {
	h, err := r.head(off)
	if err != nil {
		return h, nil, err
	}
	stored := r.buffer(int(h.Stored))
	if _, err := r.r.ReadAt(stored, off+HeadSize); err != nil {
		r.recycle(stored)
		return h, nil, fmt.Errorf("%w: %s record at offset %d: %v", ErrTruncated, h.Kind, off, err)
	}
	if err := h.CheckPayload(stored); err != nil {
		r.recycle(stored)
		return h, nil, fmt.Errorf("at offset %d: %w", off, err)
	}
	if h.Codec == CodecNone {
		return h, stored, nil
	}
	raw, err := r.decompress(h, stored)
	r.recycle(stored)
	return h, raw, err
}

// buffer returns a buffer of n bytes, a recycled one when one is big
// enough (replay reads frames of similar sizes again and again: fresh ones
// cost their zeroing and the collector's time).
func (r *Reader) buffer(n int) []byte {
	for i := 0; i < 4; i++ {
		select {
		case b := <-r.free:
			if cap(b) >= n {
				return b[:n]
			}
		default:
			return make([]byte, n)
		}
	}
	return make([]byte, n)
}

// recycle gives b back for reuse by buffer (dropped when the list is
// full).
func (r *Reader) recycle(b []byte) {
	if b == nil {
		return
	}
	select {
	case r.free <- b[:0]:
	default:
	}
}

// Recycle gives the payload buffer of a frame of Frame or Stream back to
// the reader, for the records read next: f and every slice of it must not
// be used afterwards (an Image that applied it holds copies).
func (r *Reader) Recycle(f *Frame) {
	if f != nil {
		r.recycle(f.buf)
		f.buf = nil
	}
}

func (r *Reader) decompress(h Head, stored []byte) ([]byte, error) {
	if h.Codec == CodecNone {
		return stored, nil
	}
	// Not h.Raw up front: a damaged head may claim up to MaxRawBytes for a
	// few stored bytes; the decoder grows the buffer to what it produces.
	out, err := r.dec.DecodeAll(stored, r.buffer(min(int(h.Raw), 64<<10+16*len(stored)))[:0])
	if err != nil {
		return nil, corrupt("%s record of frame %d: zstd: %v", h.Kind, h.Frame, err)
	}
	if len(out) != int(h.Raw) {
		return nil, corrupt("%s record of frame %d: %d bytes after decompression, the head says %d", h.Kind, h.Frame, len(out), h.Raw)
	}
	return out, nil
}

// readIndex reads the trailer and the index record it names; false when
// there is none or it does not check (then the file is scanned).
func (r *Reader) readIndex() bool {
	if r.size < r.first+HeadSize+TrailerSize {
		return false
	}
	var tr [TrailerSize]byte
	if _, err := r.r.ReadAt(tr[:], r.size-TrailerSize); err != nil || string(tr[8:]) != TrailerMagic {
		return false
	}
	off := int64(le.Uint64(tr[:]))
	if off < r.first || off > r.size-TrailerSize-HeadSize {
		return false
	}
	h, payload, err := r.record(off)
	if err != nil || h.Kind != KindIndex || off+h.Size() != r.size-TrailerSize {
		return false
	}
	ix, err := DecodeIndex(payload, r.first, off)
	if err != nil {
		return false
	}
	r.index = ix
	return true
}

// scan rebuilds the index from the records, checking each one's head and
// payload checksum, up to the end, an index record, or the first damage.
func (r *Reader) scan() {
	off := r.first
	for off < r.size {
		h, err := r.head(off)
		if err == nil {
			stored := make([]byte, h.Stored)
			if _, rerr := r.r.ReadAt(stored, off+HeadSize); rerr != nil {
				err = fmt.Errorf("%w: at offset %d: %v", ErrTruncated, off, rerr)
			} else if err = h.CheckPayload(stored); err != nil {
				err = fmt.Errorf("at offset %d: %w", off, err)
			}
		}
		switch {
		case err != nil:
		case h.Kind == KindIndex:
			return // the records end here (the index itself did not check against the trailer)
		case h.Kind != KindKeyframe && h.Kind != KindDelta:
			err = corrupt("a %s record at offset %d", h.Kind, off)
		case len(r.index) > 0 && h.Frame <= r.index[len(r.index)-1].Frame:
			err = corrupt("frame %d at offset %d after frame %d", h.Frame, off, r.index[len(r.index)-1].Frame)
		}
		if err != nil {
			r.damage = err
			return
		}
		r.index = append(r.index, IndexEntry{Frame: h.Frame, Offset: off, Kind: h.Kind, Stored: h.Stored, Raw: h.Raw})
		off += h.Size()
	}
}

// Payload returns the raw payload of frame record i of the index.
func (r *Reader) Payload(i int) ([]byte, error) {
	if i < 0 || i >= len(r.index) {
		return nil, fmt.Errorf("frame record %d of %d", i, len(r.index))
	}
	e := r.index[i]
	h, raw, err := r.record(e.Offset)
	if err != nil {
		return nil, err
	}
	if h.Kind != e.Kind || h.Frame != e.Frame || h.Stored != e.Stored || h.Raw != e.Raw {
		return nil, corrupt("record at offset %d is %s of frame %d, the index says %s of frame %d", e.Offset, h.Kind, h.Frame, e.Kind, e.Frame)
	}
	return raw, nil
}

// Frame reads and decodes frame record i of the index.
func (r *Reader) Frame(i int) (*Frame, error) {
	raw, err := r.Payload(i)
	if err != nil {
		return nil, err
	}
	f, err := DecodeFrame(r.index[i].Kind, raw, r.h)
	if err != nil {
		r.recycle(raw)
		return nil, err
	}
	f.buf = raw
	if f.Frame != r.index[i].Frame {
		return nil, corrupt("record of frame %d holds frame %d", r.index[i].Frame, f.Frame)
	}
	return f, nil
}

// Find returns the position in Index of the last frame record at or
// before frame; false when frame is before the first one.
func (r *Reader) Find(frame uint64) (int, bool) {
	i := sort.Search(len(r.index), func(i int) bool { return r.index[i].Frame > frame })
	return i - 1, i > 0
}

// Seek sets im (an image of this stream's header) to the frame record at
// position i of the index: it applies the nearest keyframe at or before i
// and the deltas after it up to i. It returns the frames applied.
func (r *Reader) Seek(im *Image, i int) (int, error) {
	if i < 0 || i >= len(r.index) {
		return 0, fmt.Errorf("frame record %d of %d", i, len(r.index))
	}
	k := i
	for k >= 0 && r.index[k].Kind != KindKeyframe {
		k--
	}
	if k < 0 {
		return 0, fmt.Errorf("%w: no keyframe at or before frame %d", ErrBase, r.index[i].Frame)
	}
	// An image already between the keyframe and the target (a replay
	// stepping or seeking forward) needs only the deltas after it; if it
	// was not built from this stream, the first delta's base check refuses
	// it and the seek starts from the keyframe.
	if p, ok := r.Find(im.Frame); im.Valid && ok && r.index[p].Frame == im.Frame && p >= k && p <= i {
		if p == i {
			return 0, nil
		}
		if n, err := r.apply(im, p+1, i); err == nil {
			return n, nil
		}
	}
	return r.apply(im, k, i)
}

// apply applies the frame records [from, to] to im.
func (r *Reader) apply(im *Image, from, i int) (int, error) {
	k := from
	st := r.Stream(k, i+1, 0, 0)
	defer st.Close()
	for n := 0; ; n++ {
		f, _, err := st.Next()
		if err == io.EOF {
			return n, nil
		}
		if err == nil {
			err = im.Apply(f)
			r.Recycle(f)
		}
		if err != nil {
			return n, err
		}
	}
}

// SeekFrame is Seek to the last frame record at or before frame.
func (r *Reader) SeekFrame(im *Image, frame uint64) (int, error) {
	i, ok := r.Find(frame)
	if !ok {
		return 0, fmt.Errorf("frame %d is before the recording's first frame", frame)
	}
	return r.Seek(im, i)
}
