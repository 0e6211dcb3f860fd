// Package audit proves published frames exact: it checks a frame slot of a
// world segment against every invariant a complete publish establishes
// (Slot, Latest), and, in tests, compares a slot byte for byte with the live
// world it was published from (Compare).
//
// The auditor only reads the segment. It copies a slot privately under the
// plain seqlock rule (seq even, copy, seq unchanged) and checks the copy, so
// it works on a live engine's segment mapped read-only without a pin, and on
// the segment of a crashed engine. A slot being written, or rewritten during
// the copy, is not an inconsistency: the audit returns ErrRetry.
//
// The invariants are listed in docs/LAYOUT.md ("Frame invariants"); each
// check below carries the invariant it tests as a comment.
package audit

import (
	"errors"
	"fmt"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// Errors of Slot, Latest and Compare.
var (
	// ErrRetry: the slot was being written (odd seq) or was rewritten while
	// it was copied; nothing was checked. Read again.
	ErrRetry = errors.New("slot was being written or was rewritten during the read; read again")
	// ErrEmpty: the slot holds no frame: never published (seq 0), or
	// trimmed (version 0 at an even seq: its memory was given back).
	ErrEmpty = errors.New("slot was never published")
	// ErrNothingPublished: the segment's latest word is 0.
	ErrNothingPublished = errors.New("nothing published yet")
	// ErrArgs: the arguments do not describe a slot of a decoded segment.
	ErrArgs = errors.New("invalid audit arguments")
)

// MaxProblems bounds the problems kept in a Report; the others are counted
// in Report.Dropped.
const MaxProblems = 64

// Kind classifies a broken invariant.
type Kind uint8

// Kinds of problems. The comment of each names the invariant it breaks.
const (
	// KindLatestWord: the latest word names a slot beyond the slot count, or
	// a slot that was never published.
	KindLatestWord Kind = iota + 1
	// KindLatestTorn: the latest slot was odd, or rewritten during the read,
	// while the latest word did not change (the engine never writes the
	// latest slot).
	KindLatestTorn
	// KindLatestFrame: the latest slot's frame differs from the latest
	// word's frame.
	KindLatestFrame
	// KindHeaderBounds: chunks > max chunks, entities > chunks × capacity, or
	// alive > entities (layout.ValidateSlotInfo).
	KindHeaderBounds
	// KindSlotMask: the slot mask names components beyond the schema.
	KindSlotMask
	// KindChunkCount: chunks != ceil(entities / chunk capacity).
	KindChunkCount
	// KindSlotVersion: a published slot has version 0 (world versions start
	// at 1).
	KindSlotVersion
	// KindRows: a chunk's rows != min(capacity, entities − chunk × capacity).
	KindRows
	// KindRowsSum: the chunks' rows do not add up to the header's entities.
	KindRowsSum
	// KindChunkAlive: a chunk's alive count != its records with the alive
	// flag.
	KindChunkAlive
	// KindAliveSum: the chunks' alive counts do not add up to the header's
	// alive count.
	KindAliveSum
	// KindStructVersion: a chunk in use has structural version 0 (its
	// records were never published).
	KindStructVersion
	// KindVersionAhead: a chunk's structural or component version is above
	// the slot's version.
	KindVersionAhead
	// KindRecordFlags: a record has flags other than the alive flag.
	KindRecordFlags
	// KindRecordGen: a record below the high-water mark has generation 0
	// (every issued index has a generation >= 1, alive or dead).
	KindRecordGen
	// KindRecordMask: an alive record names components beyond the schema.
	KindRecordMask
	// KindDeadRecord: a dead record still names components.
	KindDeadRecord
	// KindBeyondHighWater: a record at or above the high-water mark is not
	// all zero (its index was never issued).
	KindBeyondHighWater
	// KindColumnVersion: an alive record has a component of the slot mask
	// whose column version in the chunk is 0 (the column was never
	// published).
	KindColumnVersion
	// KindRecordSlotMask: an alive record names a component of the schema
	// that is not in the slot mask (records carry their entity's mask & the
	// slot mask: a reader would take a column the slot did not sync for
	// this frame's).
	KindRecordSlotMask
	// KindChunkRecordMask: a chunk in use says its records were filtered
	// with another mask than the slot's (layout.ChunkRecordMask).
	KindChunkRecordMask
	// KindBytesHandle: an alive record names a variable-size component of
	// the slot mask whose handle lies outside the chunk's arena, is longer
	// than the component's max length, or has an offset that is not a
	// multiple of 8 (layout/varsize.go).
	KindBytesHandle
	// KindBytesOverlap: two values of a variable-size component in one
	// chunk's arena overlap.
	KindBytesOverlap
	// KindBytesUTF8: a value of a string component is not valid UTF-8.
	KindBytesUTF8
	numKinds
)

var kindNames = [numKinds]string{
	"", "latest_word", "latest_torn", "latest_frame", "header_bounds", "slot_mask", "chunk_count", "slot_version",
	"rows", "rows_sum", "chunk_alive", "alive_sum", "struct_version", "version_ahead", "record_flags",
	"record_gen", "record_mask", "dead_record", "beyond_high_water", "column_version", "record_slot_mask",
	"chunk_record_mask", "bytes_handle", "bytes_overlap", "bytes_utf8",
}

func (k Kind) String() string {
	if k > 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MarshalText makes a Kind its name in JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a Kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	for i := Kind(1); i < numKinds; i++ {
		if kindNames[i] == string(b) {
			*k = i
			return nil
		}
	}
	return fmt.Errorf("unknown problem kind %q", b)
}

// Problem is one broken invariant of one slot.
type Problem struct {
	Kind      Kind   `json:"kind"`
	Slot      int    `json:"slot"`
	Chunk     int    `json:"chunk"`     // -1: not about one chunk
	Row       int    `json:"row"`       // -1: not about one record
	Component int    `json:"component"` // -1: not about one component
	Detail    string `json:"detail"`
}

func (p Problem) String() string {
	s := fmt.Sprintf("%s: slot %d", p.Kind, p.Slot)
	if p.Chunk >= 0 {
		s += fmt.Sprintf(" chunk %d", p.Chunk)
	}
	if p.Row >= 0 {
		s += fmt.Sprintf(" row %d", p.Row)
	}
	if p.Component >= 0 {
		s += fmt.Sprintf(" component %d", p.Component)
	}
	return s + ": " + p.Detail
}

// Report is the result of auditing one slot.
type Report struct {
	Slot     int             `json:"slot"`
	Info     layout.SlotInfo `json:"info"` // the header of the audited copy
	Problems []Problem       `json:"problems"`
	Dropped  int             `json:"dropped"` // problems beyond MaxProblems, not kept
}

// OK reports whether the slot satisfies every invariant.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Has reports whether the report holds a problem of kind k.
func (r *Report) Has(k Kind) bool {
	for _, p := range r.Problems {
		if p.Kind == k {
			return true
		}
	}
	return false
}

func (r *Report) add(k Kind, chunk, row, comp int, format string, a ...any) {
	if len(r.Problems) >= MaxProblems {
		r.Dropped++
		return
	}
	r.Problems = append(r.Problems, Problem{Kind: k, Slot: r.Slot, Chunk: chunk, Row: row, Component: comp, Detail: fmt.Sprintf(format, a...)})
}

func checkArgs(b []byte, lw *layout.World) error {
	if lw == nil || lw.WorldGeometry == nil {
		return fmt.Errorf("%w: no decoded world segment", ErrArgs)
	}
	if len(b) < lw.TotalSize {
		return fmt.Errorf("%w: %d bytes, the segment has %d", ErrArgs, len(b), lw.TotalSize)
	}
	return nil
}

// Slot audits slot s of the world segment b (decoded as lw, e.g. by
// layout.DecodeWorld(b)). It returns ErrRetry when the slot is being
// written or was rewritten during the read, ErrEmpty when it was never
// published; otherwise a Report whose Problems list every broken invariant.
func Slot(b []byte, lw *layout.World, s int) (Report, error) {
	if err := checkArgs(b, lw); err != nil {
		return Report{Slot: s}, err
	}
	if s < 0 || s >= lw.Slots {
		return Report{Slot: s}, fmt.Errorf("%w: slot %d of %d", ErrArgs, s, lw.Slots)
	}
	priv, q, err := readSlot(b, lw, s)
	if err != nil {
		return Report{Slot: s}, err
	}
	return check(lw, s, q, priv), nil
}

// Latest audits the latest frame of the segment: the slot the latest word
// names, checked as Slot does, plus the latest word itself. It returns
// ErrNothingPublished before the first publish and ErrRetry when the engine
// published a newer frame during the read (the latest slot itself is never
// rewritten while it is the latest: if it was, that is a problem).
func Latest(b []byte, lw *layout.World) (Report, error) {
	if err := checkArgs(b, lw); err != nil {
		return Report{Slot: -1}, err
	}
	// ORDER(latest): the engine stores latest after the slot's seq became
	// even; loading latest first, then the seq, then latest again brackets
	// the copy: an unchanged latest means the slot was the latest throughout.
	l1 := load64(b, layout.OffWLatest)
	frame, s, ok := layout.UnpackLatest(l1)
	if !ok {
		return Report{Slot: -1}, ErrNothingPublished
	}
	rep := Report{Slot: s}
	if s >= lw.Slots {
		// Invariant: the latest word names a slot of the segment.
		rep.add(KindLatestWord, -1, -1, -1, "latest word %#x names slot %d of %d", l1, s, lw.Slots)
		return rep, nil
	}
	priv, q, err := readSlot(b, lw, s)
	if l2 := load64(b, layout.OffWLatest); l2 != l1 {
		return rep, ErrRetry
	}
	switch {
	case errors.Is(err, ErrEmpty):
		if q := load64(b, lw.SlotOff(s)+layout.SlotSeq); q != 0 {
			// Invariant: the latest slot is a complete frame (version >=
			// 1); version 0 is a trimmed slot, which is never the latest.
			rep.add(KindSlotVersion, -1, -1, -1, "latest slot %d (seq %d) has version 0", s, q)
			return rep, nil
		}
		// Invariant: latest is stored only after a complete publish.
		rep.add(KindLatestWord, -1, -1, -1, "latest word names slot %d, which was never published", s)
		return rep, nil
	case errors.Is(err, ErrRetry):
		// Invariant: the engine never writes into the latest slot.
		rep.add(KindLatestTorn, -1, -1, -1, "slot %d was being written or rewritten while it was the latest (frame %d)", s, frame)
		return rep, nil
	case err != nil:
		return rep, err
	}
	rep = check(lw, s, q, priv)
	// Invariant: the latest slot holds the frame the latest word names.
	if rep.Info.Frame != frame {
		rep.add(KindLatestFrame, -1, -1, -1, "slot holds frame %d, the latest word says %d", rep.Info.Frame, frame)
	}
	return rep, nil
}

// slotSeq returns the even seq of the slot at off when it holds a frame:
// ErrEmpty when it holds none (never published: seq 0; or trimmed: an even
// seq and version 0, layout/backing.go, where a complete frame's version is
// >= 1), ErrRetry while it is being written. The seq is loaded again after
// the version, so that a slot being refilled is not taken for trimmed.
func slotSeq(b []byte, off int) (uint64, error) {
	// ORDER(seqlock): pairs with the publisher's claim (seq odd) and its
	// final store (seq even).
	q := load64(b, off+layout.SlotSeq)
	switch {
	case q == 0:
		return 0, ErrEmpty
	case q&1 != 0:
		return 0, ErrRetry
	case load64(b, off+layout.SlotVersion) == 0:
		if load64(b, off+layout.SlotSeq) == q {
			return 0, ErrEmpty
		}
		return 0, ErrRetry
	}
	return q, nil
}

// readSlot copies slot s (its header and the chunk blocks in use) privately
// under the seqlock rule and returns the copy and the even seq it is
// consistent with.
func readSlot(b []byte, lw *layout.World, s int) ([]byte, uint64, error) {
	off := lw.SlotOff(s)
	// ORDER(seqlock): pairs with the publisher's claim (seq odd) and its
	// final store (seq even); the copy is trusted only if seq is unchanged.
	q, err := slotSeq(b, off)
	if err != nil {
		return nil, 0, err
	}
	chunks := int(le.Uint32(b[off+layout.SlotChunks:]))
	n := min(max(chunks, 0), lw.MaxChunks)
	mask := world.Mask(layout.GetSplitMask(b, off, layout.SlotMaskOff)).And(schemaMask(lw.WorldGeometry))
	priv := make([]byte, lw.ChunksOff+n*lw.ChunkStride)
	// Only what a reader may read (layout/backing.go, B2): the header and
	// the singleton area (the slot's head), and per chunk its header,
	// records and the columns of the slot mask. The rest may be holes,
	// which a read through the mapping would allocate; it stays zero in the
	// copy (check claims nothing of it).
	copy(priv, b[off:off+lw.ChunksOff])
	for c := 0; c < n; c++ {
		co, _ := lw.EntityRange(s, c)
		co -= lw.EntityOff
		po := co - off
		copy(priv[po:po+lw.EntityOff+lw.ChunkCapacity*lw.RecordSize], b[co:])
		for k := range mask.IDs() {
			lo, hi := lw.ColumnSpan(s, c, int(k)) // with a variable-size component's arena
			copy(priv[lo-off:hi-off], b[lo:hi])
		}
	}
	if testHookAfterCopy != nil {
		testHookAfterCopy()
	}
	if q2 := load64(b, off+layout.SlotSeq); q2 != q {
		return nil, 0, ErrRetry
	}
	return priv, q, nil
}

// testHookAfterCopy runs between the copy and the seq re-check (tests only).
var testHookAfterCopy func()

// schemaMask is the mask of the segment's components.
func schemaMask(g *layout.WorldGeometry) world.Mask { return layout.SchemaMask(len(g.Components)) }

// check audits the private copy priv of slot s (consistent at seq q).
func check(lw *layout.World, s int, q uint64, priv []byte) Report {
	// A view of the copy with the segment's geometry: slot 0 at offset 0.
	g := *lw.WorldGeometry
	g.Slots, g.SlotsOff = 1, 0
	v := &layout.World{B: priv, Header: lw.Header, WorldGeometry: &g}
	info := v.ReadSlotInfo(0)
	info.Seq = q
	rep := Report{Slot: s, Info: info}
	schema := schemaMask(&g)
	slotMask := world.Mask(info.Mask)
	K := g.ChunkCapacity

	// Invariant: the slot mask names only components of the schema (its
	// words beyond the world's W are zero).
	if !slotMask.AndNot(schema).Empty() {
		rep.add(KindSlotMask, -1, -1, -1, "slot mask %v names components beyond the %d of the schema", slotMask, len(g.Components))
	}
	// Invariant: chunks <= max chunks, entities <= chunks × capacity,
	// alive <= entities (the reader's header validation).
	hi := info
	hi.Mask = slotMask.And(schema)
	if err := lw.ValidateSlotInfo(hi); err != nil {
		rep.add(KindHeaderBounds, -1, -1, -1, "%v", err)
	}
	// Invariant: chunks in use = ceil(entities / capacity) (World.NumChunks).
	if want := (uint64(info.Entities) + uint64(K) - 1) / uint64(K); uint64(info.Chunks) != want {
		rep.add(KindChunkCount, -1, -1, -1, "%d chunks for %d entities of %d per chunk, want %d", info.Chunks, info.Entities, K, want)
	}
	// Invariant: world versions start at 1, so a published slot's is >= 1.
	if info.Version == 0 {
		rep.add(KindSlotVersion, -1, -1, -1, "published slot (seq %d) has version 0", q)
	}

	// Invariant (S1): every singleton version in the slot is <= the slot's
	// version (the fill copied it after the seal).
	for i, sd := range g.Singletons {
		if sv := le.Uint64(priv[v.SingletonVersionOff(0, i):]); sv > info.Version {
			rep.add(KindVersionAhead, -1, -1, -1, "singleton %d (%q) version %d above the slot version %d", i, sd.Name, sv, info.Version)
		}
	}

	n := (len(priv) - g.ChunksOff) / g.ChunkStride
	var sumRows, sumAlive uint64
	for c := 0; c < n; c++ {
		co := v.ChunkOff(0, c)
		sv := le.Uint64(priv[co+layout.ChunkStructVersion:])
		rows := le.Uint32(priv[co+layout.ChunkRows:])
		alive := le.Uint32(priv[co+layout.ChunkAlive:])
		sumRows += uint64(rows)
		sumAlive += uint64(alive)
		// Invariant: rows of chunk c = min(capacity, entities − c × capacity)
		// (World.ChunkRows).
		wantRows := min(max(int64(info.Entities)-int64(c)*int64(K), 0), int64(K))
		if int64(rows) != wantRows {
			rep.add(KindRows, c, -1, -1, "%d rows, the header's %d entities give %d", rows, info.Entities, wantRows)
		}
		// Invariant: a chunk in use was created by a Create, which stamps its
		// structural version (>= 1), so its records were published.
		if sv == 0 {
			rep.add(KindStructVersion, c, -1, -1, "chunk in use with structural version 0")
		}
		// Invariant: every version in the slot is <= the slot's version (the
		// version the copy was taken at).
		if sv > info.Version {
			rep.add(KindVersionAhead, c, -1, -1, "structural version %d above the slot version %d", sv, info.Version)
		}
		// Invariant: a fill writes every chunk in use's records filtered
		// with the slot's mask, or finds them filtered with it already.
		// All MaxMaskWords words: those beyond W are never written (zero).
		var rm world.Mask
		for j := range rm {
			rm[j] = le.Uint64(priv[co+layout.ChunkRecordMaskOff(j):])
		}
		if rm != slotMask {
			rep.add(KindChunkRecordMask, c, -1, -1, "records filtered with mask %v, the slot mask is %v", rm, slotMask)
		}
		cvers := make([]uint64, len(g.Components))
		for k := range g.Components {
			cvers[k] = le.Uint64(priv[v.ChunkVersionOff(0, c, k):])
			if cvers[k] > info.Version {
				rep.add(KindVersionAhead, c, -1, k, "column version %d above the slot version %d", cvers[k], info.Version)
			}
		}
		eo, _ := v.EntityRange(0, c)
		var count uint32
		var colReported world.Mask
		for r := 0; r < K; r++ {
			rec := layout.DecodeRecord(priv[eo+r*g.RecordSize:], g.MaskWords)
			gen, flags, mask := rec.Gen, rec.Flags, world.Mask(rec.Mask)
			if int64(c)*int64(K)+int64(r) >= int64(info.Entities) {
				// Invariant: indices at or above the high-water mark were
				// never issued: their records are all zero.
				if gen != 0 || flags != 0 || !mask.Empty() {
					rep.add(KindBeyondHighWater, c, r, -1, "record above the high-water mark %d: gen %d flags %#x mask %v", info.Entities, gen, flags, mask)
				}
				continue
			}
			// Invariant: the alive flag is the only record flag.
			if flags&^layout.FlagAlive != 0 {
				rep.add(KindRecordFlags, c, r, -1, "unknown record flags %#x", flags)
			}
			// Invariant: every issued index has a generation >= 1 (Create
			// starts at 1, Destroy wraps to 1).
			if gen == 0 {
				rep.add(KindRecordGen, c, r, -1, "record below the high-water mark with generation 0 (flags %#x)", flags)
			}
			if flags&layout.FlagAlive == 0 {
				// Invariant: Destroy clears the mask of a dead record.
				if !mask.Empty() {
					rep.add(KindDeadRecord, c, r, -1, "dead record with components %v", mask)
				}
				continue
			}
			count++
			// Invariant: an alive record names only components of the schema.
			if !mask.AndNot(schema).Empty() {
				rep.add(KindRecordMask, c, r, -1, "record mask %v names components beyond the %d of the schema", mask, len(g.Components))
			}
			// Invariant: a record carries its entity's mask & the slot mask:
			// it names no component whose column the slot did not sync.
			if out := mask.And(schema).AndNot(slotMask); !out.Empty() {
				rep.add(KindRecordSlotMask, c, r, -1, "record mask %v names components %v outside the slot mask %v", mask, out, slotMask)
			}
			// Invariant: a component present in an alive record was added,
			// which stamped its column version (>= 1); for a component of
			// the slot mask that column was published, so its version in
			// the slot is >= 1. (Columns outside the mask of a filtered
			// snapshot are not synced: nothing is claimed about them.)
			for id := range mask.And(slotMask).And(schema).AndNot(colReported).IDs() {
				if k := int(id); cvers[k] == 0 {
					colReported = colReported.With(id)
					rep.add(KindColumnVersion, c, r, k, "alive record has component %d of the slot mask, whose column was never published (version 0)", k)
				}
			}
		}
		checkArenas(v, c, slotMask, &rep)
		// Invariant: a chunk's alive count = its records with the alive flag.
		if count != alive {
			rep.add(KindChunkAlive, c, -1, -1, "chunk says %d alive, its records hold %d", alive, count)
		}
	}
	if n == int(info.Chunks) {
		// Invariant: the chunks' rows add up to the entity high-water mark.
		if sumRows != uint64(info.Entities) {
			rep.add(KindRowsSum, -1, -1, -1, "chunks hold %d rows, the header says %d entities", sumRows, info.Entities)
		}
		// Invariant: the chunks' alive counts add up to the header's alive.
		if sumAlive != uint64(info.Alive) {
			rep.add(KindAliveSum, -1, -1, -1, "chunks hold %d alive, the header says %d", sumAlive, info.Alive)
		}
	}
	return rep
}
