package sync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/fdp-engine/fdp/internal/ntcopy"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
)

// ErrNoFreeSlot is returned when every slot is latest, pinned or leased.
var ErrNoFreeSlot = errors.New("no free frame slot (all pinned or leased)")

// NTCopyMin is the size from which fills copy with non-temporal stores
// (internal/ntcopy: AVX2 streaming stores on amd64, copy() elsewhere): a
// fill streams when the previous fill of its kind (the previous publish for
// a publish or a warm-up, the previous snapshot for a snapshot or SyncInto)
// copied at least NTCopyMin bytes. A frame that large does not stay in cache
// anyway (8 MiB: about the L3 a core can count on), and streaming stores
// skip reading every destination line first; a smaller frame is copied with
// ordinary stores, so that modules that read it at once find it in cache.
// Measured in docs/plot/ntcopy.md. 0 makes every fill stream (tests); a
// value above any frame, none. Set it before publishing, not during.
var NTCopyMin = 8 << 20

// PublishStats describes one publish.
type PublishStats struct {
	Slot          int
	Frame         uint64
	ChunksCopied  int // chunk columns copied (entity records count as one column)
	BytesCopied   int
	ChunksSkipped int // chunk columns already up to date in the slot
	Singletons    int // singletons copied (their bytes count in BytesCopied)
	Aborted       int // slot claims abandoned because a reader pinned the slot
	Duration      time.Duration
}

// Publisher copies the live world into the frame slots of a world segment.
// It is used by the engine only (single writer); it is not safe for
// concurrent use.
//
// The publisher reads no module-writable shared state except pin words:
// lease holders live in its own memory (mirrored into the leases segment
// for inspection only), and the pins it honours are the pin words the host
// registers with WatchPin (a module's, in the module's own segment, while
// the module is in a tick) plus the external reader table of the leases
// segment (readers of the engine's own uid, e.g. tools and tests).
type Publisher struct {
	w      *world.World
	lw     *layout.World
	ll     *layout.Leases
	ws     *shm.Segment // the world segment: Back and Unback (backing.go)
	seg    []byte
	lseg   []byte
	ncomp  int
	frame  uint64
	latest int // slot index of the latest publish, -1 if none

	// pinWords[i] is the pin word watched under id i (a module slot);
	// pinSet says which are watched.
	pinWords [MaxWatchedPins]*uint64
	pinSet   layout.ModuleSet
	// holders[s]: member i = holder id i (a module slot) leases slot s.
	// Engine memory only: nothing another process writes can hold a slot.
	holders [layout.MaxSlots]layout.ModuleSet
	// recHeld: bit s = the flight recorder (RecorderHolder) leases slot s.
	// Engine memory only, not mirrored (lease.go, LeaseLatest).
	recHeld uint64

	// Counters (also mirrored into the segment's stats line).
	Publishes uint64
	Skipped   uint64
	Bytes     uint64
	Columns   uint64
	Aborts    uint64
	Snapshots uint64
	// SnapshotsNoSlot counts the tries of snapshots refused because no slot
	// was free beyond the PublishSlots a snapshot leaves to the publish.
	SnapshotsNoSlot uint64
	// SnapshotsReused counts snapshots into a slot already holding a frame
	// (copying only changes).
	SnapshotsReused uint64
	// BadPins counts scans that found a watched pin word naming a slot
	// beyond the segment's slot count (ignored).
	BadPins uint64

	// complete[s]: what the last fill of slot s, by this publisher, left it
	// complete at (see fill). Engine memory only; the zero value (epoch 0)
	// says nothing is known and makes the next fill scan every chunk.
	complete [layout.MaxSlots]slotComplete
	// changed is fill's buffer for World.ChangedChunks (capacity MaxChunks:
	// the list has no duplicates, so it never grows).
	changed []int32
	// fillsChanged and fillsScanned count the fills that visited only the
	// changed chunks and those that scanned every chunk (tests); fillsNT
	// those that copied with non-temporal stores.
	fillsChanged, fillsScanned, fillsNT uint64
	// lastPubBytes and lastSnapBytes are the bytes the last publish and the
	// last snapshot copied: what the next fill of the kind expects to copy
	// (NTCopyMin).
	lastPubBytes, lastSnapBytes int

	// Backing (backing.go): what each slot holds memory for, the total, the
	// limit, and the trims of unused slots.
	back      [layout.MaxSlots]slotBacking
	backed    int64
	limit     int64
	fullBytes int        // SlotSpanBytes of every component and MaxChunks
	pubMask   world.Mask // the mask of the last Publish (schema until then)
	lastUse   [layout.MaxSlots]uint64
	trimAfter uint64
	trimming  [layout.MaxSlots]*trimJob
	trims     gosync.WaitGroup
	spanBuf   []span
	// PubNoSpace and SnapNoSpace count publishes and snapshots refused
	// because no slot could be given memory (ErrNoSlotMemory); Trimmed the
	// slots that gave their memory back, TrimErrors the punches that failed.
	PubNoSpace, SnapNoSpace, Trimmed, TrimErrors uint64
	// BackedMax is the most the segment held (Backed) at any time.
	BackedMax int64
}

// slotComplete records that a slot's chunks < the world's chunk count hold
// exactly the world as of the seal that closed dirty epoch epoch, for the
// components of mask (records filtered with mask).
type slotComplete struct {
	epoch uint64
	mask  world.Mask
}

// MaxWatchedPins bounds the ids of WatchPin and of lease holders: one per
// module slot.
const MaxWatchedPins = layout.MaxModules

// NewPublisher validates the segments against the world (geometry and
// schema) and returns a publisher. A segment left by a previous engine is
// accepted: publishing resumes after its latest frame.
func NewPublisher(w *world.World, segs *WorldSegments) (*Publisher, error) {
	lw, err := layout.DecodeWorld(segs.World.Data)
	if err != nil {
		return nil, err
	}
	if err := checkSchema(lw, w.Registry()); err != nil {
		return nil, err
	}
	if lw.ChunkCapacity != w.ChunkCapacity() || lw.MaxChunks < w.MaxChunks() {
		return nil, fmt.Errorf("%w: segment has %d chunks of %d, world needs %d chunks of %d",
			layout.ErrSchema, lw.MaxChunks, lw.ChunkCapacity, w.MaxChunks(), w.ChunkCapacity())
	}
	ll, err := layout.DecodeLeases(segs.Leases.Data)
	if err != nil {
		return nil, err
	}
	if ll.Slots != lw.Slots {
		return nil, fmt.Errorf("%w: leases segment has %d slots, world segment %d", layout.ErrCorrupt, ll.Slots, lw.Slots)
	}
	p := &Publisher{w: w, lw: lw, ll: ll, ws: segs.World, seg: segs.World.Data, lseg: segs.Leases.Data, ncomp: len(lw.Components), latest: -1,
		changed: make([]int32, 0, w.MaxChunks())}
	p.pubMask = p.schemaMask()
	p.fullBytes = lw.SlotSpanBytes(0, p.pubMask, lw.MaxChunks)
	p.adoptBacking()
	if f, s, ok := layout.UnpackLatest(layout.Load64(p.seg, layout.OffWLatest)); ok && s < lw.Slots {
		p.frame, p.latest = f, s
	}
	// Slots of a previous engine (also one it left odd, part-filled, when
	// it died) may hold versions above the world's: fill would take such a
	// chunk for up to date. Raise the world above all of them (World.Seal's
	// invariant). A slot whose seq is 0 was never claimed (a claim makes it
	// odd before fill writes any version), so a fresh segment is not read
	// at all: the scan would touch a page of every chunk of every slot.
	if p.everClaimed() {
		w.RaiseVersion(p.maxSlotVersion() + 1)
	}
	return p, nil
}

// everClaimed reports whether any slot's seq moved from 0.
func (p *Publisher) everClaimed() bool {
	for s := 0; s < p.lw.Slots; s++ {
		if p.lwGet64(p.lw.SlotOff(s)+layout.SlotSeq) != 0 {
			return true
		}
	}
	return false
}

// maxSlotVersion returns the largest version word in any slot: headers,
// singletons, structural and component versions of every chunk that holds memory (B1:
// the others were never written, or punched, and read as zero; reading
// them would allocate them).
func (p *Publisher) maxSlotVersion() uint64 {
	var v uint64
	for s := 0; s < p.lw.Slots; s++ {
		v = max(v, p.lwGet64(p.lw.SlotOff(s)+layout.SlotVersion))
		for i := range p.lw.Singletons { // in the slot's head: always allocated
			v = max(v, p.lwGet64(p.lw.SingletonVersionOff(s, i)))
		}
		for c := 0; c < p.back[s].chunks; c++ {
			co := p.lw.ChunkOff(s, c)
			v = max(v, layout.Load64(p.seg, co+layout.ChunkStructVersion))
			for k := 0; k < p.ncomp; k++ {
				v = max(v, layout.Load64(p.seg, co+layout.ChunkVersions+8*k))
			}
		}
	}
	return v
}

// Layout returns the validated world segment view.
func (p *Publisher) Layout() *layout.World { return p.lw }

// LeasesLayout returns the validated leases segment view.
func (p *Publisher) LeasesLayout() *layout.Leases { return p.ll }

// Frame returns the last published frame number.
func (p *Publisher) Frame() uint64 { return p.frame }

// Latest returns the slot of the last publish (-1 if none).
func (p *Publisher) Latest() int { return p.latest }

// slotLeased reports whether slot s is leased to a holder (engine memory).
func (p *Publisher) slotLeased(s int) bool {
	return !p.holders[s].Empty() || p.recHeld&(1<<uint(s)) != 0
}

// WatchPin makes the publisher honour the pin word at b[off:] (a module's
// reader line, layout.OffMPin) under id (the module slot), replacing what
// was watched under id. The host watches a module's pin from just before
// it rings the module's tick until it has seen the tick done, so a pin
// written outside a tick (or by a module that is not in one) holds nothing.
// b must stay mapped until UnwatchPin.
func (p *Publisher) WatchPin(id int, b []byte, off int) error {
	if id < 0 || id >= MaxWatchedPins {
		return fmt.Errorf("pin id %d not in [0,%d)", id, MaxWatchedPins)
	}
	p.pinWords[id] = layout.Word64Ptr(b, off)
	p.pinSet.Set(id)
	return nil
}

// UnwatchPin stops honouring the pin watched under id (the module's tick
// is done, or the module died). It is a no-op for an id not watched.
func (p *Publisher) UnwatchPin(id int) {
	if id < 0 || id >= MaxWatchedPins {
		return
	}
	p.pinSet.Clear(id)
	p.pinWords[id] = nil
}

// WatchedPins returns the set of watched pin ids.
func (p *Publisher) WatchedPins() layout.ModuleSet { return p.pinSet }

// pinned reports whether any watched pin or external reader pins slot s.
func (p *Publisher) pinned(s int) bool {
	for w, word := range p.pinSet {
		for m := word; m != 0; m &= m - 1 {
			// ORDER(pin-scan): seq-cst load; pairs with the reader's store of
			// its pin (Reader.Pin). Called after the claim's store of the odd
			// seq.
			pin := atomic.LoadUint64(p.pinWords[w<<6|bits.TrailingZeros64(m)])
			if ps, _, ok := layout.UnpackPin(pin); ok {
				if ps == s {
					return true
				}
				if ps >= p.lw.Slots {
					p.BadPins++
				}
			}
		}
	}
	for r := 0; r < p.ll.Readers; r++ {
		// ORDER(pin-scan): seq-cst load of an external reader's pin; pairs
		// with its store in Reader.Pin.
		if pin := layout.Load64(p.lseg, p.ll.ReaderOff(r)+layout.ReaderPin); pin != 0 {
			if ps, _, ok := layout.UnpackPin(pin); ok && ps == s {
				return true
			}
		}
	}
	return false
}

// claim makes slot s odd (being written) unless a reader pins it. It
// returns the seq it found and the odd seq on success; unclaim(s, q) undoes
// it.
func (p *Publisher) claim(s int) (q, odd uint64, ok bool) {
	// Cheap pre-check: a slot already pinned is skipped without touching its
	// seq, so a pinned reader's seq almost never moves transiently (see
	// Frame.Valid for the rare case the Dekker step below still causes).
	if p.pinned(s) {
		p.Aborts++
		layout.Add64(p.seg, layout.OffWStatAborted, 1)
		return 0, 0, false
	}
	off := p.lw.SlotOff(s) + layout.SlotSeq
	q = layout.Load64(p.seg, off)
	odd = q | 1 // a slot left odd by a crashed engine stays odd until rewritten
	// ORDER(claim): seq-cst store of the odd seq, then the pin scan below
	// (seq-cst loads). Pairs with the reader's pin store and seq re-load:
	// either the reader re-reads the odd seq or this scan sees its pin.
	layout.Store64(p.seg, off, odd)
	if p.pinned(s) || p.slotLeased(s) {
		// ORDER(claim-abort): restore the even seq; a pinned reader may have
		// seen odd for this instant (Frame.Valid waits it out).
		layout.Store64(p.seg, off, q)
		p.Aborts++
		layout.Add64(p.seg, layout.OffWStatAborted, 1)
		return 0, 0, false
	}
	return q, odd, true
}

// unclaim ends a claim that wrote nothing: the seq it found is restored (an
// emptied slot's header says version 0, which no reader takes).
func (p *Publisher) unclaim(s int, q uint64) {
	// ORDER(claim-abort): as in claim.
	layout.Store64(p.seg, p.lw.SlotOff(s)+layout.SlotSeq, q)
}

// backFor gives slot s, claimed, memory for a fill of mask (ensureBacked).
// The caller counts a refusal once, when no slot could be given memory.
func (p *Publisher) backFor(s int, mask world.Mask, snapshot bool) error {
	return p.ensureBacked(s, mask.And(p.schemaMask()), p.w.NumChunks(), snapshot)
}

// slotVersionSum is a cheap preference: the slot that holds the newest data
// needs the fewest copies.
func (p *Publisher) slotVersion(s int) uint64 {
	return p.lwGet64(p.lw.SlotOff(s) + layout.SlotVersion)
}

func (p *Publisher) lwGet64(off int) uint64 { return layout.Load64(p.seg, off) }

// Publish copies the components of mask into a free slot and makes it the
// latest frame. frame must increase from call to call.
//
// The copy is exact whatever changed the world since the last publish and in
// whatever order (simulation, command playback, restore): Publish seals the
// world's version first (World.Seal), so every change made after this
// publish stamps a version newer than anything the slot now holds, and the
// next fill of any slot copies it.
func (p *Publisher) Publish(frame uint64, mask world.Mask) (PublishStats, error) {
	start := time.Now()
	st := PublishStats{Frame: frame}
	ver := p.w.Seal()
	tried := uint64(0)
	var memErr error
	for {
		best := p.pickSlot(tried, mask)
		if best < 0 {
			p.Skipped++
			layout.Add64(p.seg, layout.OffWStatSkipped, 1)
			if memErr != nil {
				p.PubNoSpace++
				layout.Add64(p.seg, layout.OffWStatPubNoSpace, 1)
				return st, memErr
			}
			return st, ErrNoFreeSlot
		}
		tried |= 1 << uint(best)
		q, odd, ok := p.claim(best)
		if !ok {
			st.Aborted++
			continue
		}
		if err := p.backFor(best, mask, false); err != nil {
			p.unclaim(best, q)
			memErr = err
			continue
		}
		p.pubMask = mask.And(p.schemaMask())
		p.fill(best, mask, &st, p.lastPubBytes >= NTCopyMin)
		p.lastPubBytes = st.BytesCopied
		p.finish(best, odd, frame, ver, mask, &st)
		p.latest = best
		p.frame = frame
		layout.Store64(p.seg, layout.OffWLatest, layout.PackLatest(frame, best))
		st.Slot = best
		st.Duration = time.Since(start)
		p.Publishes++
		layout.Add64(p.seg, layout.OffWStatPublishes, 1)
		layout.Store64(p.seg, layout.OffWStatLastNanos, uint64(st.Duration))
		layout.AddDurHist(p.seg, layout.OffWPubHist, uint64(st.Duration))
		layout.Store64(p.seg, layout.OffWStatHeartbeat, uint64(start.UnixNano()))
		return st, nil
	}
}

// SyncInto copies the components of mask into slot s, which the caller has
// leased (engine reference) so that no GDB publish picks it; it does not
// change the latest word. It is the SoD/convoy snapshot path.
func (p *Publisher) SyncInto(s int, frame uint64, mask world.Mask) (PublishStats, error) {
	start := time.Now()
	st := PublishStats{Frame: frame, Slot: s}
	if s < 0 || s >= p.lw.Slots || s == p.latest {
		return st, fmt.Errorf("cannot sync into slot %d", s)
	}
	if p.trimming[s] != nil {
		return st, ErrNoFreeSlot // P3: its memory is being given back
	}
	ver := p.w.Seal() // see Publish
	q, odd, ok := p.claim(s)
	if !ok {
		// claim also refuses leased slots; the caller's own engine reference
		// is expected, so re-check the pins alone.
		return st, ErrNoFreeSlot
	}
	if err := p.backFor(s, mask, true); err != nil {
		p.unclaim(s, q)
		return st, err
	}
	p.fill(s, mask, &st, p.lastSnapBytes >= NTCopyMin)
	p.lastSnapBytes = st.BytesCopied
	p.finish(s, odd, frame, ver, mask, &st)
	st.Duration = time.Since(start)
	return st, nil
}

// fill copies every out-of-date chunk column of mask into slot s, and the
// entity records of every chunk whose records are out of date or were
// filtered with another mask. It is called right after the world is sealed
// (World.Seal) and the slot claimed.
//
// Invariant (record mask): every entity record in the slot carries its
// entity's mask & the slot mask (the mask of this fill, finish's SlotMask),
// never a bit of a column this fill did not sync, and the chunk's
// ChunkRecordMask says which mask that is. Records are recopied when the
// world's structural version is newer than the chunk's (as before) or when
// ChunkRecordMask differs from this fill's mask, even at the same
// structural version: a slot that held a filtered snapshot (or a full frame)
// and is reused with another mask gets records that name exactly the columns
// it holds now. A full-mask fill (every publish of the latest frame) copies
// the records with one memcpy, since the world's records name only
// registered components; only a filtered one masks record by record.
//
// Invariant (changed chunks only): fill visits every chunk c < NumChunks
// (the scan) unless p.complete[s] = {e, mask} says this publisher's last
// fill of s completed after the seal that closed epoch e, with the same
// mask; then it visits only World.ChangedChunks(e), the chunks touched
// since that seal. The others need nothing: their versions are unchanged
// since the fill at e (every stamp touches its chunk, world/dirty.go D1),
// which left every column's slot version >= the world's and every record
// mask equal to mask; so the scan would copy nothing either. (A chunk beyond
// the chunk count of then was created since, hence touched.) The record is
// set only when a fill runs to its end, and cleared at its start: a slot a
// fill left half-written (a panic), a slot of a previous engine, a slot
// never filled, or one last filled with another mask (whose records must
// all be refiltered) is scanned in full, and so is a slot older than the
// world's dirty log (dirtyEpochs seals) or one with more changes than
// chunks. The slot header's SlotVersion is not used: shared memory a dead
// engine left says nothing about this world's log.
//
// With nt, the chunk columns (and unfiltered records) are copied with
// non-temporal stores (NTCopyMin). ORDER(nt-copy): each such copy ends
// with SFENCE (ntcopy.Copy), so every byte it wrote is visible before the
// stores that follow it: the column's version word, and finish's seq-cst
// store of the even seq that publishes the slot (ORDER(publish)). Without
// the fence a reader could see the even seq and then stale column bytes
// that the fence-less streaming stores had not yet made visible.
func (p *Publisher) fill(s int, mask world.Mask, st *PublishStats, nt bool) {
	w := p.w
	nch := w.NumChunks()
	schema := p.schemaMask()
	cmask := mask.And(schema)
	sealed := w.Epoch() - 1 // the seal just made by the caller
	last := p.complete[s]
	p.complete[s] = slotComplete{}
	changed, ok := p.changed[:0], false
	if last.epoch != 0 && last.mask == cmask {
		changed, ok = w.ChangedChunks(last.epoch, nch, changed)
	}
	if ok {
		p.changed = changed[:0]
		visited := 0
		for _, c := range changed {
			if int(c) < nch { // a chunk restored beyond the high-water mark
				p.fillChunk(s, int(c), cmask, schema, nt, st)
				visited++
			}
		}
		// The chunks not visited are up to date: counted as the scan would.
		st.ChunksSkipped += (nch - visited) * (1 + cmask.Count())
		p.fillsChanged++
	} else {
		p.fillsScanned++
		for c := 0; c < nch; c++ {
			p.fillChunk(s, c, cmask, schema, nt, st)
		}
	}
	p.fillSingletons(s, st)
	if nt {
		p.fillsNT++
	}
	p.complete[s] = slotComplete{epoch: sealed, mask: cmask}
}

// fillChunk brings chunk c of slot s up to date for the columns of cmask
// (fill's record mask invariant), with non-temporal stores if nt (fill).
func (p *Publisher) fillChunk(s, c int, cmask, schema world.Mask, nt bool, st *PublishStats) {
	w, g, b := p.w, p.lw, p.seg
	cp := copyBytes
	if nt {
		cp = ntcopy.Copy
	}
	co := g.ChunkOff(s, c)
	// Entity records, the structural version and the record mask.
	sv := w.ChunkStructVersion(c)
	if sv > layout.Load64(b, co+layout.ChunkStructVersion) || !p.recordMaskIs(co, &cmask) {
		recs := w.ChunkRecordWords(c)
		eo, ee := g.EntityRange(s, c)
		var n int
		if cmask == schema {
			n = cp(b[eo:ee], recordBytes(recs))
		} else {
			// One memcpy, then the masks filtered in place: a tight
			// loop over the records of a chunk that is in cache
			// (ordinary stores even with nt: streaming stores would
			// have sent the records out of cache before the loop).
			n = copy(b[eo:ee], recordBytes(recs))
			filterRecords(slotRecords(b[eo:eo+n]), g.MaskWords, &cmask)
		}
		for j := 0; j < g.MaskWords; j++ {
			putU64(b, co+layout.ChunkRecordMaskOff(j), cmask[j])
		}
		putU32(b, co+layout.ChunkRows, uint32(w.ChunkRows(c)))
		putU32(b, co+layout.ChunkAlive, uint32(w.ChunkAlive(c)))
		layout.Store64(b, co+layout.ChunkStructVersion, sv)
		st.ChunksCopied++
		st.BytesCopied += n
	} else {
		st.ChunksSkipped++
	}
	// The components of cmask, word by word: m is what is left of word j.
	for j, m := 0, cmask[0]; ; m &= m - 1 {
		for m == 0 && j+1 < g.MaskWords {
			j++
			m = cmask[j]
		}
		if m == 0 {
			break
		}
		k := 64*j + bits.TrailingZeros64(m)
		id := world.ComponentID(k)
		vo := co + layout.ChunkVersions + 8*k
		wv := w.ChunkComponentVersion(c, id)
		if wv <= layout.Load64(b, vo) {
			st.ChunksSkipped++
			continue
		}
		if col := w.ChunkColumn(c, id); col != nil {
			o := co + g.ColumnOff[k]
			st.BytesCopied += cp(b[o:o+len(col)], col)
		}
		layout.Store64(b, vo, wv)
		st.ChunksCopied++
	}
}

// copyBytes is copy() as a function value (fillChunk's ordinary copy).
func copyBytes(dst, src []byte) int { return copy(dst, src) }

// schemaMask is the mask of every component of the segment's schema.
func (p *Publisher) schemaMask() world.Mask { return layout.SchemaMask(p.ncomp) }

// slotMask reads the mask of slot s (the mask its last fill used).
func (p *Publisher) slotMask(s int) world.Mask {
	return layout.GetSplitMask(p.seg, p.lw.SlotOff(s), layout.SlotMaskOff)
}

// recordMaskIs reports whether the record mask of the chunk block at co is
// m (its W words; words beyond W are never written and stay zero).
func (p *Publisher) recordMaskIs(co int, m *world.Mask) bool {
	for j := 0; j < p.lw.MaskWords; j++ {
		if binary.LittleEndian.Uint64(p.seg[co+layout.ChunkRecordMaskOff(j):]) != m[j] {
			return false
		}
	}
	return true
}

// filterRecords ands the mask words of every record in recs (1+words words
// each) with m. A world of at most 64 components (one word) takes the loop
// the 16-byte records always had.
func filterRecords(recs []uint64, words int, m *world.Mask) {
	if words == 1 {
		m0 := m[0]
		for i := 1; i < len(recs); i += 2 {
			recs[i] &= m0
		}
		return
	}
	stride := 1 + words
	for i := 0; i+stride <= len(recs); i += stride {
		r := recs[i+1 : i+stride]
		for j := range r {
			r[j] &= m[j]
		}
	}
}

// finish writes the slot header and completes the seqlock write. ver is the
// version the fill was sealed at: every chunk version in the slot is <= ver.
func (p *Publisher) finish(s int, odd, frame, ver uint64, mask world.Mask, st *PublishStats) {
	b := p.seg
	o := p.lw.SlotOff(s)
	w := p.w
	putU64(b, o+layout.SlotFrame, frame)
	layout.Store64(b, o+layout.SlotVersion, ver)
	p.lastUse[s] = frame
	// The mask fill filtered the records with (see fill's invariant).
	layout.PutSplitMask(b, o, layout.SlotMaskOff, mask.And(p.schemaMask()))
	putU32(b, o+layout.SlotChunks, uint32(w.NumChunks()))
	putU32(b, o+layout.SlotEntities, uint32(w.HighWater()))
	putU32(b, o+layout.SlotAlive, uint32(w.Count()))
	putU64(b, o+layout.SlotPubNanos, uint64(time.Now().UnixNano()))
	putU64(b, o+layout.SlotBytes, uint64(st.BytesCopied))
	putU32(b, o+layout.SlotChunksCopy, uint32(st.ChunksCopied))
	p.Bytes += uint64(st.BytesCopied)
	p.Columns += uint64(st.ChunksCopied)
	layout.Add64(b, layout.OffWStatBytes, uint64(st.BytesCopied))
	layout.Add64(b, layout.OffWStatChunks, uint64(st.ChunksCopied))
	// ORDER(publish): seq-cst store of the even seq after every byte of the
	// slot; pairs with the reader's seq loads (Pin, Frame.Valid).
	layout.Store64(b, o+layout.SlotSeq, odd+1)
}

// pickSlot returns the free slot (not latest, not tried, not leased) that
// serves a fill of mask best, or -1. In order of preference:
//   - a slot last filled with the same mask: its records need no refiltering
//     (fill recopies every chunk's records when their mask differs) and only
//     the changes are copied;
//   - a slot never written: filled once, it becomes that mask's, instead of
//     taking the slot another mask keeps coming back to (a publish and a
//     convoy's snapshot would otherwise trade one slot and refilter every
//     record at each exchange);
//   - else the slot holding the newest data.
//
// Among equals, the newest data wins.
func (p *Publisher) pickSlot(tried uint64, mask world.Mask) int {
	want := mask.And(p.schemaMask())
	best, bestRank := -1, -1
	var bestVer uint64
	for s := 0; s < p.lw.Slots; s++ {
		if s == p.latest || tried&(1<<uint(s)) != 0 || p.slotLeased(s) || p.trimming[s] != nil {
			continue
		}
		v := p.slotVersion(s)
		rank := 0
		switch {
		case v != 0 && p.slotMask(s) == want:
			rank = 2
		case v == 0:
			rank = 1
		}
		if rank > bestRank || (rank == bestRank && v > bestVer) {
			best, bestRank, bestVer = s, rank, v
		}
	}
	return best
}
