package record

import (
	"errors"
	"fmt"
	"os"
	gosync "sync"
	"sync/atomic"
	"syscall"

	"github.com/klauspost/compress/zstd"
)

// WriterOptions configure a Writer. Zero values take the defaults.
type WriterOptions struct {
	// Codec compresses frame payloads (default CodecZstd; CodecNone
	// stores them as they are). A payload that does not shrink is stored
	// uncompressed whatever the codec.
	Codec Codec
	// Level is the zstd level (default zstd.SpeedFastest).
	Level zstd.EncoderLevel
	// QueueFrames and QueueBytes bound the queue between TryEnqueue and
	// the file (defaults 64 frames and 256 MiB of raw payload).
	QueueFrames int
	QueueBytes  int64
	// Uncompressed forces CodecNone (Codec's zero value is CodecNone, so
	// the default needs a separate switch).
	Uncompressed bool
	// Overwrite lets Create replace an existing file, but only a recording
	// or an empty file (CheckOverwrite); without it an existing file is
	// refused (ErrExists), so a new recording never destroys the last.
	Overwrite bool
}

// IndexEntry is one frame record of a file (the index record's entries).
type IndexEntry struct {
	Frame  uint64
	Offset int64 // of the record's head in the file
	Kind   Kind  // KindKeyframe or KindDelta
	Stored uint32
	Raw    uint32
}

// Size returns the bytes of the record in the file, head included.
func (e IndexEntry) Size() int64 { return HeadSize + int64(e.Stored) }

// WriterStats are a Writer's counters.
type WriterStats struct {
	Enqueued  uint64 // frames accepted by TryEnqueue
	Dropped   uint64 // frames refused by TryEnqueue (queue full, or the writer failed) and noted by NoteDropped
	Written   uint64 // frame records in the file
	Keyframes uint64 // of those, keyframes
	RawBytes  uint64 // raw payload bytes of the frames written
	FileBytes uint64 // bytes of the file (header record included)
	Queued    int    // frames in the queue now
}

type item struct {
	kind  Kind
	frame uint64
	raw   []byte
}

// Writer writes a recording file: the header record at Create, frame
// records from a goroutine that compresses and writes what TryEnqueue
// queued, and the index record and trailer at Close. Each record is
// written with one write(2): a process killed at any point leaves a file
// whose records up to the last complete one read back (Open rebuilds the
// index).
type Writer struct {
	f      *os.File
	path   string
	opt    WriterOptions
	q      chan item
	free   chan []byte
	qbytes atomic.Int64
	done   chan struct{}
	qmu    gosync.Mutex // TryEnqueue against Close
	closed bool

	enq, dropped, written, keys, raw, file atomic.Uint64
	failed                                 atomic.Bool
	errMu                                  gosync.Mutex
	err                                    error

	// Writer goroutine only.
	index []IndexEntry
	off   int64
	enc   *zstd.Encoder
	buf   []byte
}

// Create creates (or truncates) the file at path, mode 0600, writes the
// header record and starts the writer goroutine.
func Create(path string, h *Header, opt WriterOptions) (*Writer, error) {
	if opt.QueueFrames <= 0 {
		opt.QueueFrames = 64
	}
	if opt.QueueBytes <= 0 {
		opt.QueueBytes = 256 << 20
	}
	if opt.Uncompressed {
		opt.Codec = CodecNone
	} else if opt.Codec == CodecNone {
		opt.Codec = CodecZstd
	}
	if opt.Level == 0 {
		opt.Level = zstd.SpeedFastest
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() && !fi.IsDir() {
		flags = os.O_WRONLY // a FIFO or a device: nothing to overwrite
	} else if opt.Overwrite {
		if err := CheckOverwrite(path); err != nil {
			return nil, err
		}
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%w: %s", ErrExists, path)
	}
	if err != nil {
		return nil, err
	}
	w := &Writer{f: f, path: path, opt: opt, q: make(chan item, opt.QueueFrames), free: make(chan []byte, opt.QueueFrames),
		done: make(chan struct{})}
	if opt.Codec == CodecZstd {
		if w.enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(opt.Level), zstd.WithEncoderConcurrency(1)); err != nil {
			f.Close()
			return nil, err
		}
	}
	hp := h.Encode()
	rec := AppendRecord(nil, KindHeader, CodecNone, 0, hp, len(hp))
	if _, err := f.Write(rec); err != nil {
		f.Close()
		return nil, fmt.Errorf("recording %s: %w", path, err)
	}
	w.off = int64(len(rec))
	w.file.Store(uint64(w.off))
	go w.run()
	return w, nil
}

// Path returns the file's path.
func (w *Writer) Path() string { return w.path }

// TryEnqueue queues the raw payload of a frame record of kind k (a
// Capture's output) for writing, without blocking. The writer owns raw
// from then on. It returns false, and counts the frame dropped, when the
// queue is full (QueueFrames or QueueBytes) or the writer has failed: the
// caller then calls Capturer.Rewind, since the next delta must not be based
// on a frame the file lacks. Safe for one producer at a time, and against a
// Close on another goroutine (false from then on).
func (w *Writer) TryEnqueue(k Kind, frame uint64, raw []byte) bool {
	w.qmu.Lock() // against a Close on another goroutine: no send on a closed queue
	defer w.qmu.Unlock()
	if w.failed.Load() || w.closed || (k != KindKeyframe && k != KindDelta) ||
		w.qbytes.Load()+int64(len(raw)) > w.opt.QueueBytes && len(w.q) > 0 {
		w.dropped.Add(1)
		return false
	}
	select {
	case w.q <- item{kind: k, frame: frame, raw: raw}:
		w.qbytes.Add(int64(len(raw)))
		w.enq.Add(1)
		return true
	default:
		w.dropped.Add(1)
		return false
	}
}

// NoteDropped counts a frame the caller could not even capture (the
// previous capture was still running), so that every frame not recorded
// is in Stats().Dropped.
func (w *Writer) NoteDropped() { w.dropped.Add(1) }

// Buffer returns a buffer of a written frame to capture the next one into
// (nil when none is free): the recorder reuses its memory.
func (w *Writer) Buffer() []byte {
	select {
	case b := <-w.free:
		return b[:0]
	default:
		return nil
	}
}

// Stats returns the writer's counters (safe from any goroutine).
func (w *Writer) Stats() WriterStats {
	return WriterStats{Enqueued: w.enq.Load(), Dropped: w.dropped.Load(), Written: w.written.Load(), Keyframes: w.keys.Load(),
		RawBytes: w.raw.Load(), FileBytes: w.file.Load(), Queued: len(w.q)}
}

// Err returns the first write error (the writer stops writing at it).
func (w *Writer) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

func (w *Writer) fail(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = fmt.Errorf("recording %s: %w", w.path, err)
	}
	w.errMu.Unlock()
	w.failed.Store(true)
}

func (w *Writer) run() {
	defer close(w.done)
	for it := range w.q {
		w.qbytes.Add(-int64(len(it.raw)))
		if !w.failed.Load() {
			if err := w.write(it); err != nil {
				w.fail(err)
			}
		}
		select {
		case w.free <- it.raw:
		default:
		}
	}
}

func (w *Writer) write(it item) error {
	if len(it.raw) > MaxRawBytes {
		return fmt.Errorf("frame %d: a payload of %d bytes (at most %d)", it.frame, len(it.raw), MaxRawBytes)
	}
	stored, codec := it.raw, CodecNone
	if w.enc != nil {
		w.buf = w.enc.EncodeAll(it.raw, w.buf[:0])
		if len(w.buf) < len(it.raw) {
			stored, codec = w.buf, CodecZstd
		}
	}
	rec := AppendRecord(make([]byte, 0, HeadSize+len(stored)), it.kind, codec, it.frame, stored, len(it.raw))
	if _, err := w.f.Write(rec); err != nil {
		return err
	}
	w.index = append(w.index, IndexEntry{Frame: it.frame, Offset: w.off, Kind: it.kind, Stored: uint32(len(stored)), Raw: uint32(len(it.raw))})
	w.off += int64(len(rec))
	w.written.Add(1)
	if it.kind == KindKeyframe {
		w.keys.Add(1)
	}
	w.raw.Add(uint64(len(it.raw)))
	w.file.Store(uint64(w.off))
	return nil
}

// Close writes what is queued, then the index record and the trailer, and
// closes the file. It returns the first error of the writer.
func (w *Writer) Close() error {
	w.qmu.Lock()
	if w.closed {
		w.qmu.Unlock()
		return errors.New("recording: closed twice")
	}
	w.closed = true
	close(w.q)
	w.qmu.Unlock()
	<-w.done
	if w.enc != nil {
		w.enc.Close()
	}
	if w.Err() == nil {
		ip := EncodeIndex(w.index)
		rec := AppendRecord(nil, KindIndex, CodecNone, 0, ip, len(ip))
		var tr [TrailerSize]byte
		le.PutUint64(tr[:], uint64(w.off))
		copy(tr[8:], TrailerMagic)
		rec = append(rec, tr[:]...)
		if _, err := w.f.Write(rec); err != nil {
			w.fail(err)
		} else {
			w.off += int64(len(rec))
			w.file.Store(uint64(w.off))
		}
	}
	if err := w.f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) { // EINVAL: a pipe or socket, nothing to sync
		w.fail(err)
	}
	if err := w.f.Close(); err != nil {
		w.fail(err)
	}
	return w.Err()
}

// Index payload: u32 entries n, u32 0, then n entries of 32 bytes:
// u64 frame, u64 offset, u32 stored length, u32 raw length, u8 kind, 7 x 0.
const indexEntry = 32

// EncodeIndex returns the payload of an index record.
func EncodeIndex(ix []IndexEntry) []byte {
	b := make([]byte, 8+indexEntry*len(ix))
	le.PutUint32(b, uint32(len(ix)))
	for i, e := range ix {
		o := 8 + indexEntry*i
		le.PutUint64(b[o:], e.Frame)
		le.PutUint64(b[o+8:], uint64(e.Offset))
		le.PutUint32(b[o+16:], e.Stored)
		le.PutUint32(b[o+20:], e.Raw)
		b[o+24] = byte(e.Kind)
	}
	return b
}

// DecodeIndex decodes an index record's payload; the entries must be frame
// records in file order after the header record and before end (the
// index record's offset), each starting where the previous one ends.
func DecodeIndex(b []byte, first, end int64) ([]IndexEntry, error) {
	if len(b) < 8 || le.Uint32(b[4:]) != 0 {
		return nil, corrupt("index of %d bytes", len(b))
	}
	n := int(le.Uint32(b))
	if n != (len(b)-8)/indexEntry || len(b) != 8+indexEntry*n {
		return nil, corrupt("index of %d entries in %d bytes", n, len(b))
	}
	ix := make([]IndexEntry, n)
	off := first
	for i := range ix {
		o := 8 + indexEntry*i
		e := IndexEntry{Frame: le.Uint64(b[o:]), Offset: int64(le.Uint64(b[o+8:])), Stored: le.Uint32(b[o+16:]), Raw: le.Uint32(b[o+20:]), Kind: Kind(b[o+24])}
		for _, x := range b[o+25 : o+32] {
			if x != 0 {
				return nil, corrupt("index entry %d: reserved bytes", i)
			}
		}
		switch {
		case e.Kind != KindKeyframe && e.Kind != KindDelta:
			return nil, corrupt("index entry %d: a %s", i, e.Kind)
		case e.Offset != off || e.Offset+e.Size() > end:
			return nil, corrupt("index entry %d: offset %d, want %d (records end at %d)", i, e.Offset, off, end)
		case i > 0 && e.Frame <= ix[i-1].Frame:
			return nil, corrupt("index entry %d: frame %d after frame %d", i, e.Frame, ix[i-1].Frame)
		}
		off += e.Size()
		ix[i] = e
	}
	if off != end {
		return nil, corrupt("index covers records to %d, the index record is at %d", off, end)
	}
	return ix, nil
}
