// Package ipc holds FDP's inter-process primitives: the lock-free
// single-producer single-consumer command rings (module -> engine), futex
// doorbells, the engine's event log and the unix-socket control plane.
package ipc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/fdp-engine/fdp/layout"
)

// Ring errors.
var (
	// ErrRingFull is returned by Reserve/Append when the record does not
	// fit into the space the consumer has released. Nothing is written.
	ErrRingFull = errors.New("fdp/ipc: ring full")
	// ErrCorruptRing wraps every consistency failure the consumer detects
	// (bad indices, bad record headers). The consumer delivers nothing from
	// a Poll that fails validation; Reset recovers by skipping to the tail.
	ErrCorruptRing = errors.New("fdp/ipc: corrupt ring")
	// ErrRecordTooLarge is returned for a payload that can never fit.
	ErrRecordTooLarge = errors.New("fdp/ipc: record too large for the ring")
	// ErrRecordType is returned for the reserved record type 0 (PAD).
	ErrRecordType = errors.New("fdp/ipc: record type 0 is reserved for padding")
)

var ringLE = binary.LittleEndian

// RingStats is a snapshot of a ring's indices and counters.
type RingStats struct {
	Capacity       uint64 // data area size in bytes
	Head, Tail     uint64 // free-running indices (tail = committed)
	RecordsWritten uint64 // records committed by the producer
	Batches        uint64 // commits that published at least one record
	Full           uint64 // reservations refused with ErrRingFull
	RecordsRead    uint64 // records delivered by the consumer
	BadRecords     uint64 // corrupt-ring detections by the consumer
	Resets         uint64 // consumer resets (data discarded)
}

// ReadRingStats reads the indices and counters of a ring region (any process
// may call it; values are loaded atomically one by one).
func ReadRingStats(region []byte) (RingStats, error) {
	c, err := ringOpen(region)
	if err != nil {
		return RingStats{}, err
	}
	return ringStats(region, c), nil
}

func ringStats(r []byte, capacity uint64) RingStats {
	return RingStats{
		Capacity:       capacity,
		Head:           layout.Load64(r, layout.RingOffHead),
		Tail:           layout.Load64(r, layout.RingOffTail),
		RecordsWritten: layout.Load64(r, layout.RingOffProdRecords),
		Batches:        layout.Load64(r, layout.RingOffProdBatches),
		Full:           layout.Load64(r, layout.RingOffProdFull),
		RecordsRead:    layout.Load64(r, layout.RingOffConsRecords),
		BadRecords:     layout.Load64(r, layout.RingOffConsBad),
		Resets:         layout.Load64(r, layout.RingOffConsResets),
	}
}

// ringOpen validates a ring region's static header and its alignment.
func ringOpen(region []byte) (uint64, error) {
	c, err := layout.DecodeRingHeader(region)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrCorruptRing, err)
	}
	if !ringAligned(region) {
		return 0, fmt.Errorf("%w: ring region is not 64-byte aligned", ErrCorruptRing)
	}
	return c, nil
}

// ringAligned reports whether the region starts on a 64-byte boundary, which
// makes every index/counter word naturally aligned for the atomic helpers.
// Invariant: only the address is inspected; nothing is dereferenced.
func ringAligned(region []byte) bool {
	return len(region) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(region)))&63 == 0
}

// Producer is the single writer of a ring. It is not safe for concurrent use;
// exactly one Producer may exist per ring at a time (the module process).
//
// Records are written in place (Reserve) or copied (Append) after the
// committed tail, invisible to the consumer until Commit publishes the whole
// batch with one atomic store of the tail. A producer that dies before
// Commit leaves nothing visible.
type Producer struct {
	region     []byte
	data       []byte // data area, exactly capacity bytes
	capacity   uint64
	mask       uint64
	maxPayload uint64 // largest payload: MaxRecordLen - RecordHeaderSize

	tail      uint64 // next write index (includes uncommitted records)
	committed uint64 // last published tail
	head      uint64 // cached consumer head; refreshed only when the ring looks full
	pending   uint64 // records written since the last commit

	records, batches, full uint64 // mirrors of the shared counters
}

// NewProducer attaches the producer to a ring region inside a mapped segment.
// It resumes at the committed tail (a restarted module continues where its
// previous incarnation last committed; uncommitted data is overwritten).
func NewProducer(region []byte) (*Producer, error) {
	c, err := ringOpen(region)
	if err != nil {
		return nil, err
	}
	tail := layout.Load64(region, layout.RingOffTail)
	head := layout.Load64(region, layout.RingOffHead)
	if err := layout.CheckRingIndices(head, tail, c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptRing, err)
	}
	return &Producer{
		region:     region,
		data:       region[layout.RingHeaderSize : layout.RingHeaderSize+int(c) : layout.RingHeaderSize+int(c)],
		capacity:   c,
		mask:       c - 1,
		maxPayload: layout.MaxRecordLen(c) - layout.RecordHeaderSize,
		tail:       tail,
		committed:  tail,
		head:       head,
		records:    layout.Load64(region, layout.RingOffProdRecords),
		batches:    layout.Load64(region, layout.RingOffProdBatches),
		full:       layout.Load64(region, layout.RingOffProdFull),
	}, nil
}

// Region returns the ring region the producer writes (its header words:
// layout.RingOffHead tells how far the consumer has taken the records).
func (p *Producer) Region() []byte { return p.region }

// MaxPayload returns the largest payload a single record may carry.
func (p *Producer) MaxPayload() int { return int(p.maxPayload) }

// Reserve appends a record of type typ with an n-byte payload to the current
// batch and returns the payload slice to fill in place (it aliases shared
// memory; fill it before Commit and do not keep it afterwards). It does not
// allocate. It returns ErrRingFull when the consumer has not released enough
// space (nothing is written, the Full counter is incremented),
// ErrRecordTooLarge when n > MaxPayload() and ErrRecordType for type 0.
func (p *Producer) Reserve(typ uint16, n int) ([]byte, error) {
	// Fast path: a valid record that fits before the end of the data area
	// and into the space the cached head says is released. uint64(n) of a
	// negative n is huge, so it fails the maxPayload test and goes to
	// reserveSlow, which reports the error.
	rl := (uint64(n) + layout.RecordHeaderSize + layout.RecordAlign - 1) &^ (layout.RecordAlign - 1)
	off := p.tail & p.mask
	if typ != layout.RecordTypePad && uint64(n) <= p.maxPayload && rl <= p.capacity-off && p.tail+rl-p.head <= p.capacity {
		ringLE.PutUint64(p.data[off:], uint64(rl)|uint64(typ)<<32|(rl-layout.RecordHeaderSize-uint64(n))<<48)
		p.tail += rl
		p.pending++
		s, e := off+layout.RecordHeaderSize, off+layout.RecordHeaderSize+uint64(n)
		return p.data[s:e:e], nil
	}
	return p.reserveSlow(typ, n)
}

// reserveSlow is Reserve for everything but the fast path: argument errors,
// a record that needs a PAD to the end of the data area first, and a ring
// that looks full with the cached head.
func (p *Producer) reserveSlow(typ uint16, n int) ([]byte, error) {
	if typ == layout.RecordTypePad {
		return nil, ErrRecordType
	}
	if n < 0 || uint64(n) > p.maxPayload {
		return nil, ErrRecordTooLarge
	}
	rl := (uint64(n) + layout.RecordHeaderSize + layout.RecordAlign - 1) &^ (layout.RecordAlign - 1)
	off := p.tail & p.mask
	room := p.capacity - off // > 0 and a multiple of 8
	need := rl
	if room < rl {
		need += room // PAD to the end of the data area, then the record at 0
	}
	// tail-head is the number of unreleased bytes. If the cached head says
	// the ring is full, reload it. A garbage head (ahead of our tail, or too
	// far behind) makes the difference wrap or exceed capacity and reads as
	// "full": the producer never overwrites what it cannot prove released.
	if p.tail+need-p.head > p.capacity {
		p.head = layout.Load64(p.region, layout.RingOffHead)
		if p.tail+need-p.head > p.capacity {
			p.full++
			layout.Store64(p.region, layout.RingOffProdFull, p.full)
			p.PublishStats()
			return nil, ErrRingFull
		}
	}
	d := p.data
	if room < rl {
		ringLE.PutUint64(d[off:], layout.PackRecordHeader(uint32(room), layout.RecordTypePad, 0))
		off = 0
	}
	ringLE.PutUint64(d[off:], layout.PackRecordHeader(uint32(rl), typ, uint16(rl-layout.RecordHeaderSize-uint64(n))))
	p.tail += need
	p.pending++
	s := off + layout.RecordHeaderSize
	return d[s : s+uint64(n) : s+uint64(n)], nil
}

// Append copies payload into a new record of type typ in the current batch.
// Errors as for Reserve.
func (p *Producer) Append(typ uint16, payload []byte) error {
	buf, err := p.Reserve(typ, len(payload))
	if err != nil {
		return err
	}
	copy(buf, payload)
	return nil
}

// Commit publishes every record reserved since the last Commit or Abort with
// ONE atomic store of the tail. The store is a release: every byte written
// into the batch before it is visible to a consumer that loads the new tail
// (Go's sync/atomic operations are sequentially consistent, which implies
// release/acquire). The producer's counters are updated after the tail.
// Commit of an empty batch does nothing.
func (p *Producer) Commit() {
	if p.pending == 0 {
		return
	}
	layout.Store64(p.region, layout.RingOffTail, p.tail)
	p.committed = p.tail
	p.records += p.pending
	p.pending = 0
	p.batches++
	if p.batches%ringStatsEvery == 0 {
		p.PublishStats()
	}
}

// ringStatsEvery is how often (in commits) the producer's counters are
// published to shared memory. Each publication is an extra atomic store;
// doing it every time would cost the unbatched path more than the tail store
// itself. (The consumer stores its records-read counter on every poll that
// delivered records: it polls once per frame.)
const ringStatsEvery = 64

// PublishStats stores the producer's counters into the ring header, for
// inspection (`engine dump`). Commit does it every ringStatsEvery commits; a
// producer that commits rarely (the module SDK: once per tick) calls it after
// each commit, so that the figures are current.
func (p *Producer) PublishStats() {
	layout.Store64(p.region, layout.RingOffProdRecords, p.records)
	layout.Store64(p.region, layout.RingOffProdBatches, p.batches)
}

// Abort drops every record reserved since the last Commit. They were never
// visible to the consumer.
func (p *Producer) Abort() {
	p.tail = p.committed
	p.pending = 0
}

// Pending returns the number of records reserved but not yet committed.
func (p *Producer) Pending() int { return int(p.pending) }

// Stats publishes the producer's counters and returns a snapshot of the
// ring's indices and counters.
func (p *Producer) Stats() RingStats {
	p.PublishStats()
	return ringStats(p.region, p.capacity)
}

// Consumer is the single reader of a ring (the engine). It is not safe for
// concurrent use.
//
// The consumer never trusts the producer: indices and every record header
// are validated before anything is delivered, and it never panics whatever
// bytes the ring holds. Payload slices alias shared memory that a misbehaving
// producer could still modify; handlers must validate payload contents.
type Consumer struct {
	region   []byte
	data     []byte
	capacity uint64
	mask     uint64
	maxRec   uint64
	head     uint64 // the consumer is the only writer of the shared head

	records, bad, resets uint64

	// Rate limit of the warnings about this ring's corruptions (see
	// CorruptWarning): when the last one was due and the bad count then.
	warnedAt  time.Time
	warnedBad uint64

	// hdrs holds the header words of the first records of the current Poll
	// as its validation pass read and checked them. The delivery pass frames
	// those records from this private copy: it needs no second validation,
	// and a producer that rewrites a header after the check cannot change
	// what is delivered. Records past the cache are validated again.
	hdrs [ringHdrCache]uint64
}

// ringHdrCache is the number of record headers a Poll keeps from its
// validation pass (2 KiB per consumer).
const ringHdrCache = 256

// NewConsumer attaches the consumer to a ring region inside a mapped
// segment. Only the static header is validated here; inconsistent indices
// are reported by Pending and Poll (ErrCorruptRing) and cleared by Reset.
func NewConsumer(region []byte) (*Consumer, error) {
	c, err := ringOpen(region)
	if err != nil {
		return nil, err
	}
	bad := layout.Load64(region, layout.RingOffConsBad)
	return &Consumer{
		region:    region,
		data:      region[layout.RingHeaderSize : layout.RingHeaderSize+int(c) : layout.RingHeaderSize+int(c)],
		capacity:  c,
		mask:      c - 1,
		maxRec:    layout.MaxRecordLen(c),
		head:      layout.Load64(region, layout.RingOffHead),
		records:   layout.Load64(region, layout.RingOffConsRecords),
		bad:       bad,
		resets:    layout.Load64(region, layout.RingOffConsResets),
		warnedBad: bad,
	}, nil
}

// ringQuick reports whether the header word w of the record at data offset
// off, with rem committed bytes from there to the tail, is a well-formed
// non-PAD record: the common case, checked inline. Everything else goes
// through ringSlow for the precise verdict.
func ringQuick(w, off, rem, capacity, maxRec uint64) bool {
	l, fl := w&0xffffffff, w>>48
	return w>>32&0xffff != 0 && l&7 == 0 && l-8 <= maxRec-8 && l <= capacity-off && l <= rem && fl <= 7 && fl <= l-8
}

// ringSlow validates the record at index pos (8-aligned, before tail) with
// layout.DecodeRecordHeader and the tail bound. It returns the record's
// total length, type and the payload bounds [s, e) in the data area.
func (c *Consumer) ringSlow(pos, tail uint64) (length uint64, typ uint16, s, e uint64, err error) {
	off := pos & c.mask
	l32, t, fl, err := layout.DecodeRecordHeader(c.data, int(off), c.capacity)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	l := uint64(l32)
	if l > tail-pos {
		return 0, 0, 0, 0, fmt.Errorf("record at index %d: length %d runs past the committed tail %d", pos, l, tail)
	}
	return l, t, off + layout.RecordHeaderSize, off + l - uint64(fl&layout.RecordFlagPadMask), nil
}

// ringCorrupt counts one corrupt-ring detection (BadRecords) and returns err
// wrapped in ErrCorruptRing.
func (c *Consumer) ringCorrupt(err error) error {
	c.bad++
	layout.Store64(c.region, layout.RingOffConsBad, c.bad)
	return fmt.Errorf("%w: %w", ErrCorruptRing, err)
}

// Poll delivers every committed record between the consumer's head and the
// producer's tail, in order, to fn (PAD records are skipped), then releases
// their space with one atomic store of the head. It returns the number of
// records delivered.
//
// Validation comes first: the indices and every record header up to the tail
// are checked before the first record is delivered. On any inconsistency
// nothing is delivered, nothing is released, the BadRecords counter is
// incremented and an error wrapping ErrCorruptRing is returned; call Reset
// to discard the ring's contents. Delivery frames the first 256 records from
// the headers as validated; if a misbehaving producer rewrites a later
// committed header during delivery, Poll stops at the changed record with
// ErrCorruptRing, releasing what was delivered.
//
// If fn returns an error, Poll stops: the records delivered so far, including
// the failing one, are released and fn's error is returned unchanged.
//
// The payload slice aliases the ring; it is valid only during the call.
func (c *Consumer) Poll(fn func(typ uint16, payload []byte) error) (n int, err error) {
	// Acquire: loading the tail (atomic) orders every read of the batch
	// after the producer's writes that preceded its release store.
	tail := layout.Load64(c.region, layout.RingOffTail)
	head := c.head
	if tail == head && head%layout.RecordAlign == 0 {
		return 0, nil
	}
	if err := layout.CheckRingIndices(head, tail, c.capacity); err != nil {
		return 0, c.ringCorrupt(err)
	}
	// Invariant for both loops: pos is 8-aligned (head is, every length is
	// a multiple of 8), so off <= capacity-8 and the header read is in range.
	data, mask, capacity, maxRec := c.data, c.mask, c.capacity, c.maxRec
	hdrs := &c.hdrs
	k := 0 // records (PADs included) seen by the validation pass
	for pos := head; pos != tail; k++ {
		off := pos & mask
		w := ringLE.Uint64(data[off : off+8])
		l := w & 0xffffffff
		if !ringQuick(w, off, tail-pos, capacity, maxRec) {
			var err error
			if l, _, _, _, err = c.ringSlow(pos, tail); err != nil {
				return 0, c.ringCorrupt(err)
			}
		}
		if k < ringHdrCache {
			hdrs[k] = w
		}
		pos += l
	}
	pos := head
	for i := 0; pos != tail; i++ {
		off := pos & mask
		var w, l, s, e uint64
		var typ uint16
		if i < ringHdrCache {
			// Checked by the validation pass above (a PAD's length reaches
			// exactly the end of the data area, any other record fits
			// before the end and before the tail).
			w = hdrs[i]
			l, typ, s, e = w&0xffffffff, uint16(w>>32), off+layout.RecordHeaderSize, off+(w&0xffffffff)-w>>48
		} else {
			w = ringLE.Uint64(data[off : off+8])
			l, typ, s, e = w&0xffffffff, uint16(w>>32), off+layout.RecordHeaderSize, off+(w&0xffffffff)-w>>48
			if !ringQuick(w, off, tail-pos, capacity, maxRec) {
				var rerr error
				if l, typ, s, e, rerr = c.ringSlow(pos, tail); rerr != nil {
					err = c.ringCorrupt(fmt.Errorf("record at index %d changed during delivery: %w", pos, rerr))
					break
				}
			}
		}
		pos += l
		if typ == layout.RecordTypePad {
			continue
		}
		n++
		if ferr := fn(typ, data[s:e:e]); ferr != nil {
			err = ferr
			break
		}
	}
	c.release(pos, n)
	return n, err
}

// release stores the new head (one atomic store: the space becomes reusable
// by the producer only after every read of it above) and the records-read
// counter. The counter is stored on every poll that delivered records (one
// poll per frame and module in the engine), so that a reader of the segment
// (`engine dump`) sees what was consumed.
func (c *Consumer) release(pos uint64, n int) {
	if pos == c.head {
		return
	}
	c.head = pos
	layout.Store64(c.region, layout.RingOffHead, pos)
	if n > 0 {
		c.records += uint64(n)
		layout.Store64(c.region, layout.RingOffConsRecords, c.records)
	}
}

// Reset discards everything committed and not yet consumed: head = tail.
// The engine uses it to recover from ErrCorruptRing and to reclaim the ring
// of a dead module (whose uncommitted records were never visible anyway).
//
// A tail that is not 8-byte aligned (only a misbehaving producer writes one)
// is first rounded down to a multiple of 8 with a compare-and-swap on the
// tail word, so that the ring is consistent again and the next Poll sees
// only what the producer commits afterwards. Reset fails (ErrCorruptRing,
// counted) only if the producer changed the tail to another unaligned value
// in between; the next Pending or Poll reports it again.
func (c *Consumer) Reset() error {
	tail := layout.Load64(c.region, layout.RingOffTail)
	if tail%layout.RecordAlign != 0 {
		fixed := tail &^ (layout.RecordAlign - 1)
		// ORDER(ring-reset): seq-cst CAS on the producer's tail word; it
		// fails only if the producer stored a new tail since our load, and
		// then that tail is used if it is aligned.
		if !layout.CAS64(c.region, layout.RingOffTail, tail, fixed) {
			fixed = layout.Load64(c.region, layout.RingOffTail)
			if fixed%layout.RecordAlign != 0 {
				return c.ringCorrupt(fmt.Errorf("tail %d not %d-byte aligned and changing, ring cannot be reset now", fixed, layout.RecordAlign))
			}
		}
		tail = fixed
	}
	c.head = tail
	// ORDER(ring-head): seq-cst store; pairs with the producer's load of the
	// head in reserveSlow (space before it is free).
	layout.Store64(c.region, layout.RingOffHead, tail)
	c.resets++
	layout.Store64(c.region, layout.RingOffConsResets, c.resets)
	return nil
}

// Pending returns the number of committed bytes not yet consumed (PAD
// records included). Inconsistent indices (a tail not 8-byte aligned, before
// the head, or more than the capacity ahead of it) are a corrupt ring: the
// error wraps ErrCorruptRing, the detection is counted (BadRecords) and the
// caller should Reset the ring; nothing else ever reports such a ring, since
// there is nothing to Poll.
func (c *Consumer) Pending() (int, error) {
	// ORDER(ring-tail): seq-cst load; pairs with the producer's commit.
	tail := layout.Load64(c.region, layout.RingOffTail)
	if tail == c.head && tail%layout.RecordAlign == 0 {
		return 0, nil
	}
	if err := layout.CheckRingIndices(c.head, tail, c.capacity); err != nil {
		return 0, c.ringCorrupt(err)
	}
	return int(tail - c.head), nil
}

// Len returns the number of committed bytes not yet consumed (including PAD
// records), or 0 if the indices are inconsistent; unlike Pending it neither
// reports nor counts an inconsistency.
func (c *Consumer) Len() int {
	tail := layout.Load64(c.region, layout.RingOffTail)
	if layout.CheckRingIndices(c.head, tail, c.capacity) != nil {
		return 0
	}
	return int(tail - c.head)
}

// CorruptWarning rate-limits the warnings about this ring's corruptions.
// Call it after a detection (an ErrCorruptRing from Pending, Poll or
// Reset): it reports whether a warning is due at now (the first one, then
// at most one per interval) and, when it is, how many detections since the
// previous warning were not warned about.
func (c *Consumer) CorruptWarning(now time.Time, interval time.Duration) (due bool, suppressed uint64) {
	if !c.warnedAt.IsZero() && now.Sub(c.warnedAt) < interval {
		return false, 0
	}
	if c.bad > c.warnedBad {
		suppressed = c.bad - c.warnedBad - 1
	}
	c.warnedAt, c.warnedBad = now, c.bad
	return true, suppressed
}

// Stats publishes the consumer's counters and returns a snapshot of the
// ring's indices and counters.
func (c *Consumer) Stats() RingStats {
	layout.Store64(c.region, layout.RingOffConsRecords, c.records)
	return ringStats(c.region, c.capacity)
}
