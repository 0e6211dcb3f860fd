package ipc

// The event log's reader side: cursors, bounded reads, and the intact check
// that keeps a reader from delivering a record the writer overwrote (the
// protocol is described in eventlog.go).

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/fdp-engine/fdp/layout"
)

// EventCursor is a reader's position in the log: the next sequence number it
// expects and the logical byte position of that record. The zero value reads
// from the very first event.
type EventCursor struct {
	Seq uint64
	Pos uint64
}

// EventReaderStats are a reader's private counters.
type EventReaderStats struct {
	Events    uint64 // events delivered
	Bytes     uint64 // payload bytes delivered
	Overruns  uint64 // Read calls that reported an overrun
	Lost      uint64 // events lost to overruns, total
	Corrupt   uint64 // Read calls that failed validation
	TornReads uint64 // records found overwritten after copying (counted within overruns)
}

// EventReader follows an events segment. It never writes into the segment
// (which a module maps read-only). Not safe for concurrent use.
type EventReader struct {
	b          []byte
	area       []byte
	capacity   uint64
	maxPayload int
	scratch    []byte
	batch      [evlogBatch]evlogMeta
	fence      atomic.Uint64
	stats      EventReaderStats
	// testHookIntact, when set (tests only), runs in evlogWalk right
	// before each intact check: a test writes there what a concurrent
	// writer could have written during the copy.
	testHookIntact func()
}

// NewEventReader attaches a reader to an events segment.
func NewEventReader(seg []byte) (*EventReader, error) {
	ev, err := evlogOpen(seg)
	if err != nil {
		return nil, err
	}
	return &EventReader{
		b: seg, area: ev.Area(), capacity: uint64(ev.Capacity), maxPayload: ev.MaxPayload,
		scratch: make([]byte, max(ev.MaxPayload, 64<<10)),
	}, nil
}

// Tail returns a cursor at the committed end: reading from it yields only
// events committed later.
func (r *EventReader) Tail() EventCursor {
	s, p := evlogPair(r.b, layout.OffECommitGen, layout.OffECommitPairs)
	return EventCursor{Seq: s, Pos: p}
}

// Oldest returns a cursor at the oldest event still available.
func (r *EventReader) Oldest() EventCursor {
	s, p := evlogPair(r.b, layout.OffEOldestGen, layout.OffEOldestPairs)
	return EventCursor{Seq: s, Pos: p}
}

// Stats returns the reader's counters.
func (r *EventReader) Stats() EventReaderStats { return r.stats }

func (r *EventReader) evlogCorrupt(format string, a ...any) error {
	r.stats.Corrupt++
	return fmt.Errorf("%w: %s", ErrEventLogCorrupt, fmt.Sprintf(format, a...))
}

// Read delivers every committed event from cur on to fn, in sequence order,
// and advances cur past them. The payload slice is only valid during the
// call. If the writer overwrote events the reader had not read yet, Read
// skips to the oldest event still available and returns how many events
// were lost (overrun > 0); it never skips silently and never delivers a torn
// record. It does not allocate. It is ReadUpTo without a frame bound.
func (r *EventReader) Read(cur *EventCursor, fn func(seq, frame uint64, typ uint16, payload []byte)) (overrun uint64, err error) {
	return r.ReadUpTo(cur, math.MaxUint64, fn)
}

// ReadUpTo is Read bounded by frame: it delivers the committed events from
// cur on whose frame is at most maxFrame and stops at the first event of a
// later frame, which it leaves undelivered with cur on it; the next read
// starts there. A module reads up to the frame its view shows (every event
// of frames <= N is committed before frame N is published), so each tick
// gets the events of the frames it sees, each once. An overrun is reported
// as by Read: the count may include events of frames beyond maxFrame (they
// are lost all the same).
func (r *EventReader) ReadUpTo(cur *EventCursor, maxFrame uint64, fn func(seq, frame uint64, typ uint16, payload []byte)) (overrun uint64, err error) {
	if cur.Seq == 0 {
		*cur = EventCursor{Seq: 1}
	}
	cseq, cpos := evlogPair(r.b, layout.OffECommitGen, layout.OffECommitPairs)
	defer func() {
		if overrun > 0 {
			r.stats.Overruns++
			r.stats.Lost += overrun
		}
	}()
	for {
		// Is the cursor still inside the intact part of the log?
		oseq, opos := evlogPair(r.b, layout.OffEOldestGen, layout.OffEOldestPairs)
		if cur.Pos < opos {
			if oseq < cur.Seq {
				return overrun, r.evlogCorrupt("oldest {seq %d, pos %d} behind cursor {seq %d, pos %d}", oseq, opos, cur.Seq, cur.Pos)
			}
			overrun += oseq - cur.Seq
			*cur = EventCursor{Seq: oseq, Pos: opos}
		}
		if cur.Pos >= cpos {
			if cur.Pos > cpos && cur.Pos != opos {
				return overrun, fmt.Errorf("%w: cursor {seq %d, pos %d}, committed {seq %d, pos %d}", ErrEventCursor, cur.Seq, cur.Pos, cseq, cpos)
			}
			if cur.Pos == cpos && cur.Seq != cseq {
				return overrun, r.evlogCorrupt("cursor seq %d at the committed end, which has seq %d", cur.Seq, cseq)
			}
			return overrun, nil
		}
		if cpos-cur.Pos > r.capacity || cur.Pos%layout.EventAlign != 0 {
			return overrun, r.evlogCorrupt("cursor position %d and committed end %d more than one lap (%d bytes) apart", cur.Pos, cpos, r.capacity)
		}
		end, err := r.evlogWalk(cur, cpos, maxFrame, fn)
		if err != nil {
			return overrun, err
		}
		switch end {
		case evlogStopped:
			return overrun, nil
		case evlogAtEnd:
			if cur.Seq != cseq {
				return overrun, r.evlogCorrupt("reached committed end at seq %d, commit says %d", cur.Seq, cseq)
			}
			return overrun, nil
		}
		r.stats.TornReads++
		// Loop: the reload of the oldest pair reports the overrun.
	}
}

// evlogEnd is how a walk ended.
type evlogEnd int

const (
	evlogAtEnd   evlogEnd = iota // reached the committed end
	evlogStopped                 // stopped at a record of a frame beyond the bound
	evlogTorn                    // the writer overwrote the records being copied
)

// evlogIntact reports whether logical position pos is still intact, after
// ordering every earlier load (the record copy) before the check.
func (r *EventReader) evlogIntact(pos uint64) bool {
	// Atomic read-modify-write on reader-private memory: a barrier that keeps
	// the preceding plain loads of shared memory before the load of the
	// oldest pair (needed on weakly ordered CPUs; free of cost on amd64
	// beyond the locked add). ORDER(evlog-oldest): pairs with the writer's
	// atomic add of the oldest generation before it overwrites records.
	r.fence.Add(1)
	_, opos := evlogPair(r.b, layout.OffEOldestGen, layout.OffEOldestPairs)
	return pos >= opos
}

// evlogWalk delivers records from cur to cpos in batches: it copies up to
// evlogBatch records into the scratch buffer, then checks once that the
// first of them (hence all: they lie at or after it) is still intact, then
// delivers them. It ends at cpos (evlogAtEnd), at the first record whose
// frame is beyond maxFrame (evlogStopped: cur is left on it), or when the
// writer overwrote the records being copied (evlogTorn: nothing of that
// batch was delivered and cur is where the batch began).
func (r *EventReader) evlogWalk(cur *EventCursor, cpos, maxFrame uint64, fn func(seq, frame uint64, typ uint16, payload []byte)) (evlogEnd, error) {
	for cur.Pos < cpos {
		pos, seq := cur.Pos, cur.Seq
		nb, used := 0, 0
		var bad error
		stop := false
		phys := pos % r.capacity // one division per batch; phys tracks pos below
		for pos < cpos && nb < len(r.batch) {
			left := r.capacity - phys
			if left < layout.EventRecordHeader {
				pos += left
				phys = 0
				continue
			}
			rec, derr := layout.DecodeEventRecord(r.area, int(phys), r.maxPayload)
			if derr != nil {
				bad = fmt.Errorf("record at position %d: %w", pos, derr)
				break
			}
			if rec.IsPad() {
				pos += left
				phys = 0
				continue
			}
			if rec.Seq != seq {
				bad = fmt.Errorf("record at position %d has seq %d, want %d", pos, rec.Seq, seq)
				break
			}
			if rec.Frame > maxFrame {
				stop = true // pos, seq: the first record not delivered
				break
			}
			n := int(rec.Len)
			size := uint64(layout.EventRecordSize(n))
			if size > cpos-pos {
				bad = fmt.Errorf("record %d at position %d runs past the committed end %d", rec.Seq, pos, cpos)
				break
			}
			if used+n > len(r.scratch) {
				break
			}
			o := int(phys) + layout.EventRecordHeader
			copy(r.scratch[used:used+n], r.area[o:o+n])
			r.batch[nb] = evlogMeta{seq: rec.Seq, frame: rec.Frame, typ: rec.Type, off: uint32(used), n: uint32(n)}
			nb++
			used += n
			seq++
			pos += size
			if phys += size; phys == r.capacity {
				phys = 0
			}
		}
		if r.testHookIntact != nil {
			r.testHookIntact()
		}
		// Invariant: everything this batch acts on (the headers and payloads
		// of the records it delivers, the header whose frame made it stop,
		// the header that failed validation) lies at logical positions
		// >= cur.Pos, the batch's start. The writer publishes an oldest
		// position > q (with the full barrier of the oldest generation's
		// atomic add) before it stores any byte over logical position q, and
		// the fence in evlogIntact orders all those loads before the reload
		// of the oldest pair. So if cur.Pos is still >= the oldest position
		// after them, no byte they read had been overwritten: the delivery,
		// the stop (never taken on a torn frame number) and the corruption
		// verdict all rest on the records the writer committed. If not, the
		// batch is dropped whole and the caller reports the overrun.
		if !r.evlogIntact(cur.Pos) {
			return evlogTorn, nil
		}
		for i := range r.batch[:nb] {
			m := &r.batch[i]
			r.stats.Events++
			r.stats.Bytes += uint64(m.n)
			fn(m.seq, m.frame, m.typ, r.scratch[m.off:m.off+m.n])
		}
		cur.Seq, cur.Pos = seq, pos
		if bad != nil {
			return evlogAtEnd, r.evlogCorrupt("%v", bad)
		}
		if stop {
			return evlogStopped, nil
		}
	}
	return evlogAtEnd, nil
}

// evlogBatch is the number of records copied between two intact checks.
const evlogBatch = 128

// evlogMeta describes one record copied into the reader's scratch buffer.
type evlogMeta struct {
	seq, frame uint64
	typ        uint16
	off, n     uint32
}
