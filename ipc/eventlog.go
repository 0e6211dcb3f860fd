package ipc

// Shared-memory event log: one writer (the engine), many readers (modules,
// mapping the segment read-only). Byte layout in layout/events.go.
//
// Protocol
//
//   - Positions are logical byte offsets that only grow; physical offset =
//     position % capacity. The writer keeps (seq, pos) of its write end and
//     (oldSeq, oldPos) of the oldest record still intact.
//   - Append: before writing bytes that reach logical position end, the writer
//     drops the oldest records until oldPos >= end-capacity and publishes the
//     new oldest pair with an atomic add on the oldest generation (a full
//     barrier: the later plain stores of the record bytes cannot become
//     visible before it). Only then does it write the record.
//   - Commit: the writer stores the commit pair {next seq, end pos} into the
//     inactive half of the double buffer and then stores the commit
//     generation: one release store per frame publishes every record of the
//     frame at once.
//   - Read: a reader snapshots the commit pair once, then walks records from
//     its cursor up to the committed end. Each record is copied into the
//     reader's private buffer, then a barrier (atomic add on a reader-local
//     counter) orders the copy before a reload of the oldest pair; if the
//     record's position is now below the oldest position the copy may be torn:
//     the reader reports an overrun (exact count: oldest seq - cursor seq) and
//     resumes at the oldest record. Only a record that is still intact after
//     the copy and passes validation is delivered; a record that fails
//     validation while intact is corruption: error + counter.
//   - Frame-bounded read (ReadUpTo): the walk also stops at the first record
//     whose frame is beyond the bound, without delivering it, and leaves the
//     cursor on it. The decision to stop rests on that record's header, so
//     the header is covered by the same intact check as the records
//     delivered before it (see evlogWalk). Every event of frame N is
//     committed before the engine publishes frame N, so a reader that holds
//     frame N and reads up to N gets every event of frames <= N exactly once
//     and none of a later frame.

import (
	"errors"
	"fmt"
	"time"

	"github.com/fdp-engine/fdp/layout"
)

// Event log errors.
var (
	// ErrEventTooLarge is returned by Append for a payload above capacity/4.
	ErrEventTooLarge = errors.New("fdp/ipc: event payload too large")
	// ErrEventLogCorrupt is returned by Read when an intact record or the
	// published positions fail validation.
	ErrEventLogCorrupt = errors.New("fdp/ipc: event log corrupt")
	// ErrEventCursor is returned by Read for a cursor that is ahead of the
	// writer (a cursor from another log, or from before an engine restart),
	// and by EventWriter.CheckCursor for a cursor no reader of the log can
	// hold.
	ErrEventCursor = errors.New("fdp/ipc: event cursor ahead of the log")
	// ErrEventSegment is returned by the constructors for an unusable segment.
	ErrEventSegment = errors.New("fdp/ipc: bad events segment")
)

func evlogOpen(seg []byte) (*layout.Events, error) {
	ev, err := layout.DecodeEvents(seg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEventSegment, err)
	}
	if !ev.WordsAligned() {
		return nil, fmt.Errorf("%w: segment not 8-byte aligned", ErrEventSegment)
	}
	return ev, nil
}

// evlogPair reads a consistent {seq, pos} pair published behind generation
// word genOff with its two halves at pairsOff.
func evlogPair(b []byte, genOff, pairsOff int) (seq, pos uint64) {
	for {
		// ORDER(evlog-pair): seq-cst loads of the generation around the
		// pair's; pair with the writer's stores of the inactive half before
		// its store (commit) or atomic add (oldest) of the generation: an
		// unchanged generation means the half read was not being rewritten.
		g := layout.Load64(b, genOff)
		o := pairsOff + int(g&1)*layout.EventPairSize
		seq = layout.Load64(b, o)
		pos = layout.Load64(b, o+8)
		if layout.Load64(b, genOff) == g {
			return seq, pos
		}
	}
}

// EventWriterStats are the writer's counters (also published in the segment).
type EventWriterStats struct {
	Events   uint64 // events committed
	Bytes    uint64 // payload bytes committed
	Commits  uint64 // frames published
	Dropped  uint64 // events overwritten (oldest seq - 1)
	Rejected uint64 // appends rejected
}

// EventWriter appends events to an events segment. It is used by a single
// goroutine of a single process (the engine).
type EventWriter struct {
	b          []byte
	area       []byte
	capacity   uint64
	maxPayload int

	seq, pos       uint64 // next seq and write end (uncommitted included)
	cseq, cpos     uint64 // next seq and end of the last commit
	phys           uint64 // pos % capacity
	oldSeq, oldPos uint64 // oldest record still intact
	commitGen      uint64
	lastFrame      uint64

	pendEvents, pendBytes uint64
	stats                 EventWriterStats
}

// NewEventWriter attaches a writer to an initialised (ready) events segment
// mapped read-write. It resumes after the last commit of a previous writer;
// events a dead writer appended but never committed are discarded.
func NewEventWriter(seg []byte) (*EventWriter, error) {
	ev, err := evlogOpen(seg)
	if err != nil {
		return nil, err
	}
	w := &EventWriter{b: seg, area: ev.Area(), capacity: uint64(ev.Capacity), maxPayload: ev.MaxPayload}
	w.commitGen = layout.Load64(seg, layout.OffECommitGen)
	cseq, cpos := evlogPair(seg, layout.OffECommitGen, layout.OffECommitPairs)
	oseq, opos := evlogPair(seg, layout.OffEOldestGen, layout.OffEOldestPairs)
	if cseq == 0 || oseq == 0 || cpos%layout.EventAlign != 0 || opos%layout.EventAlign != 0 {
		return nil, fmt.Errorf("%w: commit {%d,%d} oldest {%d,%d}", ErrEventLogCorrupt, cseq, cpos, oseq, opos)
	}
	w.seq, w.pos, w.oldSeq, w.oldPos = cseq, cpos, oseq, opos
	w.cseq, w.cpos = cseq, cpos
	switch {
	case opos <= cpos:
		if cpos-opos > w.capacity || oseq > cseq {
			return nil, fmt.Errorf("%w: commit {%d,%d} oldest {%d,%d}", ErrEventLogCorrupt, cseq, cpos, oseq, opos)
		}
	default:
		// A previous writer dropped records beyond its last commit: restart
		// at the oldest position so that readers see the dropped events as
		// an overrun, never as a silent gap.
		if oseq < cseq {
			return nil, fmt.Errorf("%w: commit {%d,%d} oldest {%d,%d}", ErrEventLogCorrupt, cseq, cpos, oseq, opos)
		}
		w.seq, w.pos = oseq, opos
	}
	w.phys = w.pos % w.capacity
	w.stats = EventWriterStats{
		Events:   layout.Load64(seg, layout.OffEStatEvents),
		Bytes:    layout.Load64(seg, layout.OffEStatBytes),
		Commits:  layout.Load64(seg, layout.OffEStatCommits),
		Rejected: layout.Load64(seg, layout.OffEStatReject),
	}
	return w, nil
}

// MaxPayload returns the largest payload Append accepts.
func (w *EventWriter) MaxPayload() int { return w.maxPayload }

// Append writes one event of frame into the log. It becomes visible to
// readers at the next Commit. It never allocates.
func (w *EventWriter) Append(frame uint64, typ uint16, payload []byte) error {
	if len(payload) > w.maxPayload {
		w.stats.Rejected++
		layout.Store64(w.b, layout.OffEStatReject, w.stats.Rejected)
		return fmt.Errorf("%w: %d bytes, the limit is %d (a quarter of the %d-byte log)",
			ErrEventTooLarge, len(payload), w.maxPayload, w.capacity)
	}
	size := uint64(layout.EventRecordSize(len(payload)))
	phys := w.phys
	skip := uint64(0)
	if w.capacity-phys < size {
		skip = w.capacity - phys
	}
	w.evlogMakeRoom(w.pos + skip + size)
	if skip > 0 {
		if skip >= layout.EventRecordHeader {
			layout.PutEventRecord(w.area, int(phys), layout.EventRecord{Len: uint32(skip - layout.EventRecordHeader)})
		}
		w.pos += skip
		phys = 0
	}
	o := int(phys)
	layout.PutEventRecord(w.area, o, layout.EventRecord{Seq: w.seq, Frame: frame, Type: typ, Len: uint32(len(payload))})
	n := copy(w.area[o+layout.EventRecordHeader:], payload)
	clear(w.area[o+layout.EventRecordHeader+n : o+int(size)])
	w.seq++
	w.pos += size
	if w.phys = phys + size; w.phys == w.capacity {
		w.phys = 0
	}
	w.lastFrame = frame
	w.pendEvents++
	w.pendBytes += uint64(len(payload))
	return nil
}

// evlogMakeRoom drops the oldest records until everything before logical
// position end-capacity is gone (plus some slack, never past the write end),
// and publishes the new oldest pair before
// the caller overwrites those bytes.
func (w *EventWriter) evlogMakeRoom(end uint64) {
	if end <= w.capacity || w.oldPos >= end-w.capacity {
		return
	}
	// Drop an extra 1/16 of the log at once so that the oldest pair (and its
	// barrier) is published about 16 times per lap, not once per append.
	need := min(end-w.capacity+w.capacity/evlogDropSlack, w.pos)
	for w.oldPos < need && w.oldPos < w.pos {
		phys := w.oldPos % w.capacity
		left := w.capacity - phys
		if left < layout.EventRecordHeader {
			w.oldPos += left
			continue
		}
		// The area is written only by this writer: the header is trusted.
		r, err := layout.DecodeEventRecord(w.area, int(phys), w.maxPayload)
		if err != nil || r.IsPad() {
			w.oldPos += left
			continue
		}
		w.oldPos += uint64(layout.EventRecordSize(int(r.Len)))
		w.oldSeq++
	}
	// Skip padding so that the oldest position names a real record (or the
	// write end).
	for w.oldPos < w.pos {
		phys := w.oldPos % w.capacity
		left := w.capacity - phys
		if left >= layout.EventRecordHeader && layout.Load64(w.area, int(phys)) != 0 {
			break
		}
		w.oldPos += left
	}
	g := layout.Load64(w.b, layout.OffEOldestGen)
	o := layout.OffEOldestPairs + int((g+1)&1)*layout.EventPairSize
	layout.Store64(w.b, o, w.oldSeq)
	layout.Store64(w.b, o+8, w.oldPos)
	// ORDER(evlog-oldest): atomic add, a full barrier: the record bytes
	// stored after this cannot be observed before the new oldest pair;
	// pairs with the reader's fence and reload in evlogIntact.
	layout.Add64(w.b, layout.OffEOldestGen, 1)
}

// evlogDropSlack: the writer drops capacity/evlogDropSlack bytes more than it
// needs when it makes room.
const evlogDropSlack = 16

// Commit publishes every event appended since the previous Commit with one
// atomic store. A commit with nothing new is a no-op.
func (w *EventWriter) Commit() {
	if w.pendEvents == 0 {
		return
	}
	w.stats.Events += w.pendEvents
	w.stats.Bytes += w.pendBytes
	w.stats.Commits++
	w.pendEvents, w.pendBytes = 0, 0
	o := layout.OffECommitPairs + int((w.commitGen+1)&1)*layout.EventPairSize
	layout.Store64(w.b, o, w.seq)
	layout.Store64(w.b, o+8, w.pos)
	w.cseq, w.cpos = w.seq, w.pos
	w.commitGen++
	// ORDER(evlog-commit): seq-cst store, the publication of every record
	// appended before it; pairs with the reader's load in evlogPair.
	layout.Store64(w.b, layout.OffECommitGen, w.commitGen)
	layout.Store64(w.b, layout.OffEStatEvents, w.stats.Events)
	layout.Store64(w.b, layout.OffEStatBytes, w.stats.Bytes)
	layout.Store64(w.b, layout.OffEStatCommits, w.stats.Commits)
	layout.Store64(w.b, layout.OffEStatFrame, w.lastFrame)
	layout.Store64(w.b, layout.OffEStatNanos, uint64(time.Now().UnixNano()))
}

// NextSeq returns the sequence number the next appended event will get.
func (w *EventWriter) NextSeq() uint64 { return w.seq }

// Committed returns the cursor at the end of the last commit: a reader
// starting there gets every event committed later (as from
// EventReader.Tail, but read from the writer's own state).
func (w *EventWriter) Committed() EventCursor { return EventCursor{Seq: w.cseq, Pos: w.cpos} }

// CheckCursor reports (nil) whether c is a cursor a reader of this log can
// hold after a Read: the start of a committed record, or the committed end,
// either possibly behind padding, or a position the writer has dropped
// already with a sequence number not beyond the oldest record's (a reader
// there reports the difference as an overrun). Anything else is
// ErrEventCursor. The engine checks a module's acknowledged cursor
// (layout.CmdAckEvents) with it before it hands the cursor to the module's
// next process. It reads only the writer's own state and area (trusted),
// and checks against the committed state: a cursor a reader took between an
// Append that dropped records and the Commit passes once that commit is
// done. It looks at one record, not at the whole lap: a position inside a
// record whose bytes there read as a header of that sequence number passes
// too (only a forged cursor can be there, and only the reader that starts
// from it, which then finds the log corrupt, is affected).
func (w *EventWriter) CheckCursor(c EventCursor) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: cursor {seq %d, pos %d}: %s", ErrEventCursor, c.Seq, c.Pos, fmt.Sprintf(format, a...))
	}
	switch {
	case c.Seq == 0:
		return bad("sequence numbers start at 1")
	case c.Pos%layout.EventAlign != 0:
		return bad("position not %d-byte aligned", layout.EventAlign)
	case c.Seq > w.cseq || c.Pos > w.cpos:
		return bad("beyond the committed end {seq %d, pos %d}", w.cseq, w.cpos)
	case c.Pos < w.oldPos:
		// Dropped already: Read reports oldSeq - c.Seq lost events.
		if c.Seq > w.oldSeq {
			return bad("behind the oldest record {seq %d, pos %d} with a later sequence number", w.oldSeq, w.oldPos)
		}
		return nil
	}
	// The reader's walk from c, without delivering: padding is skipped,
	// the first record must carry c.Seq.
	for pos := c.Pos; pos < w.cpos; {
		phys := pos % w.capacity
		left := w.capacity - phys
		if left < layout.EventRecordHeader {
			pos += left
			continue
		}
		r, err := layout.DecodeEventRecord(w.area, int(phys), w.maxPayload)
		if err != nil {
			return bad("no record there: %v", err)
		}
		if r.IsPad() {
			pos += left
			continue
		}
		if r.Seq != c.Seq {
			return bad("the record there has seq %d", r.Seq)
		}
		return nil
	}
	if c.Seq != w.cseq {
		return bad("at the committed end, whose seq is %d", w.cseq)
	}
	return nil
}

// Stats returns the writer's counters.
func (w *EventWriter) Stats() EventWriterStats {
	s := w.stats
	s.Dropped = w.oldSeq - 1
	return s
}
