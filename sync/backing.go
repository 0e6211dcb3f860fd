package sync

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// Backing: the publisher gives a slot memory for what it is about to write
// and takes it back when the slot stays unused (layout/backing.go, B1-B2).
//
// The world segment is sparse: a slot reserves the whole world's address
// space but holds memory only for the chunks and components its fills wrote.
// So the shared memory in use is about what is held: the latest frame, one
// spare copy for the next publish, and each snapshot's components, not
// slots × the whole world.
//
// Invariants, beside those of layout/backing.go:
//   - (P1) p.back[s] is exactly what slot s has allocated beyond its head
//     (layout's SlotHead: its first page, more with singletons): the spans of (mask, chunks), bytes their size. p.backed is the
//     sum over slots plus the segment's fixed bytes. Only ensureBacked and
//     the end of a trim change them.
//   - (P2) a fill writes slot s only after ensureBacked(s, mask, chunks)
//     succeeded for its mask and chunk count, under the claim (seq odd).
//   - (P3) a slot being trimmed (p.trimming[s] != nil) stays claimed (odd)
//     and is skipped by every pick until the trim ends: the punch runs on
//     another goroutine, which touches the file descriptor only.
//   - (P4) a column whose pages were given back has version 0 in its
//     chunk's header (a fill copies it again before any reader is told it
//     is there): version words live in chunk headers, which can share a
//     page with a span that stays, and chunk 0's header is in the slot's
//     head, which is never given back. The singleton area is in the head
//     too: forget zeroes its version words with the rest of the head, so
//     the next fill copies every singleton again.

// ErrNoSlotMemory is returned (wrapped) when a publish or snapshot needs a
// slot to hold more memory than the configured limit allows or the file
// system has room for.
var ErrNoSlotMemory = errors.New("no memory for a frame slot")

// slotBacking is what a slot has allocated beyond its head (P1).
type slotBacking struct {
	mask   world.Mask // components whose columns are allocated
	chunks int        // chunks whose header, records and mask columns are allocated
	bytes  int        // SlotSpanBytes(mask, chunks)
	end    int        // end of the last span: growth allocates above it
}

// span is a page-aligned byte range [lo, hi) of the world segment.
type span struct{ lo, hi int }

// trimJob is a punch running on another goroutine (P3).
type trimJob struct {
	odd  uint64 // the claim's odd seq
	done atomic.Bool
	err  error // written before done is set
}

// SetShmLimit bounds the bytes of the world segment that hold memory (0: no
// bound but the file system's room). Snapshots also leave room for the two
// copies the publish needs at the world's largest (publishReserve).
func (p *Publisher) SetShmLimit(bytes int64) {
	p.limit = max(bytes, 0)
	layout.Store64(p.seg, layout.OffWStatShmLimit, uint64(p.limit))
}

// MinShmLimit is the smallest limit that lets the engine publish a world of
// every chunk: the fixed bytes and two whole copies.
func (p *Publisher) MinShmLimit() int64 {
	return int64(p.lw.FixedBytes()) + 2*int64(p.fullBytes)
}

// SetTrimAfter makes a slot that was neither written nor held for more than
// frames frames give its memory back (0: never).
func (p *Publisher) SetTrimAfter(frames uint64) { p.trimAfter = frames }

// Backed returns the bytes of the world segment that hold memory, as the
// publisher accounts them (P1).
func (p *Publisher) Backed() int64 { return p.backed }

// SlotBacked returns the bytes slot s holds beyond its head.
func (p *Publisher) SlotBacked(s int) int {
	if s < 0 || s >= p.lw.Slots {
		return 0
	}
	return p.back[s].bytes
}

// adoptBacking reads what a previous engine's slots allocated (their
// SlotBackMask and SlotBackChunks words, a superset by B1), so that the
// version scan reads only allocated pages and the accounting starts right.
func (p *Publisher) adoptBacking() {
	p.backed = int64(p.lw.FixedBytes())
	for s := 0; s < p.lw.Slots; s++ {
		o := p.lw.SlotOff(s)
		m := p.backWords(s).And(p.schemaMask())
		n := min(int(layout.Load32(p.seg, o+layout.SlotBackChunks)), p.lw.MaxChunks)
		if n == 0 {
			continue
		}
		b := slotBacking{mask: m, chunks: n}
		p.lw.SlotSpans(s, m, 0, n, func(lo, hi int) { b.bytes += hi - lo; b.end = hi })
		p.back[s] = b
		p.backed += int64(b.bytes)
	}
	p.storeBacked()
}

func (p *Publisher) storeBacked() {
	p.BackedMax = max(p.BackedMax, p.backed)
	layout.Store64(p.seg, layout.OffWStatBacked, uint64(p.backed))
}

// setBackWords stores slot s's backing words (B1: the caller keeps them a
// superset of what is allocated).
func (p *Publisher) setBackWords(s int, mask world.Mask, chunks int) {
	o := p.lw.SlotOff(s)
	for j, v := range mask {
		layout.Store64(p.seg, o+layout.SlotBackMaskOff(j), v)
	}
	layout.Store32(p.seg, o+layout.SlotBackChunks, uint32(chunks))
}

// backWords reads slot s's back mask.
func (p *Publisher) backWords(s int) (m world.Mask) {
	o := p.lw.SlotOff(s)
	for j := range m {
		m[j] = layout.Load64(p.seg, o+layout.SlotBackMaskOff(j))
	}
	return m
}

// PublishReserve is the memory the publish may still need to keep two whole
// copies at the world's largest: what a snapshot (and anything else taken
// from the same directory, such as a module's segment) must leave free.
func (p *Publisher) PublishReserve() int64 { return p.publishReserve() }

func (p *Publisher) publishReserve() int64 {
	have := 0
	if p.latest >= 0 && p.back[p.latest].mask == p.pubMask {
		have += p.back[p.latest].bytes
	}
	if sp := p.spare(); sp >= 0 {
		have += p.back[sp].bytes
	}
	return max(2*int64(p.fullBytes)-int64(have), 0)
}

// reserveFor is the room a growth must leave: the publish's reserve for a
// snapshot, nothing for the publish itself.
func (p *Publisher) reserveFor(snapshot bool) int {
	if snapshot {
		return int(p.publishReserve())
	}
	return 0
}

// mayGrow reports whether the limit allows delta more bytes.
func (p *Publisher) mayGrow(delta int, snapshot bool) bool {
	if p.limit == 0 || delta <= 0 {
		return true
	}
	need := p.backed + int64(delta)
	if snapshot {
		need += p.publishReserve()
	}
	return need <= p.limit
}

// ensureBacked makes slot s, which the caller has claimed, hold memory for a
// fill of mask over chunks chunks, and for nothing else (P2): the columns of
// another mask are given back. It fails, wrapping ErrNoSlotMemory, when the
// limit or the file system refuses; the slot is then either as it was or, if
// memory was already given back, emptied (its header says never written),
// and either way still claimed.
func (p *Publisher) ensureBacked(s int, mask world.Mask, chunks int, snapshot bool) error {
	b := p.back[s]
	if b.mask == mask && b.chunks >= chunks {
		return nil
	}
	if b.mask == mask || b.chunks == 0 {
		return p.grow(s, mask, chunks, snapshot)
	}
	return p.rebase(s, mask, chunks, snapshot)
}

// grow allocates the spans of chunks [b.chunks, chunks) of mask (the slot
// holds mask's columns of the chunks below, or nothing).
func (p *Publisher) grow(s int, mask world.Mask, chunks int, snapshot bool) error {
	b := p.back[s]
	add := p.spanBuf[:0]
	delta := 0
	p.lw.SlotSpans(s, mask, b.chunks, chunks, func(lo, hi int) {
		if lo = max(lo, b.end); lo < hi {
			add = append(add, span{lo, hi})
			delta += hi - lo
		}
	})
	p.spanBuf = add[:0]
	if !p.mayGrow(delta, snapshot) {
		return p.limitErr(delta, snapshot)
	}
	if p.ws.Sparse() && delta > 0 {
		// A full file system refuses before anything is allocated: a
		// fallocate that fails half-way allocates and frees up to the
		// full size, every frame a refused group is due (it halved the
		// frame rate when found from outside). A snapshot also leaves the
		// room the publish may still need, as under a limit.
		if err := p.ws.NeedSpace(delta + p.reserveFor(snapshot)); err != nil {
			return fmt.Errorf("%w: %w", ErrNoSlotMemory, err)
		}
	}
	p.setBackWords(s, mask, chunks) // B1: raised before the allocation
	for i, sp := range add {
		if err := p.ws.Back(sp.lo, sp.hi-sp.lo); err != nil {
			// Give back what this call allocated: the slot is as it was.
			for _, u := range add[:i] {
				_ = p.ws.Unback(u.lo, u.hi-u.lo)
			}
			p.setBackWords(s, b.mask, b.chunks)
			return fmt.Errorf("%w: %w", ErrNoSlotMemory, err)
		}
	}
	end := b.end
	if n := len(add); n > 0 {
		end = add[n-1].hi
	}
	p.back[s] = slotBacking{mask: mask, chunks: chunks, bytes: b.bytes + delta, end: end}
	p.backed += int64(delta)
	p.storeBacked()
	return nil
}

// rebase moves slot s from its mask to another: the spans only the old
// mask has are given back first, then those only the new one has are
// allocated.
func (p *Publisher) rebase(s int, mask world.Mask, chunks int, snapshot bool) error {
	b := p.back[s]
	var have, want []span
	p.lw.SlotSpans(s, b.mask, 0, b.chunks, func(lo, hi int) { have = append(have, span{lo, hi}) })
	wantBytes, end := 0, 0
	p.lw.SlotSpans(s, mask, 0, chunks, func(lo, hi int) { want = append(want, span{lo, hi}); wantBytes += hi - lo; end = hi })
	drop, add := spanMinus(have, want), spanMinus(want, have)
	delta := spanBytes(add) - spanBytes(drop)
	if !p.mayGrow(delta, snapshot) {
		return p.limitErr(delta, snapshot)
	}
	if p.ws.Sparse() && delta > 0 {
		if err := p.ws.NeedSpace(delta + p.reserveFor(snapshot)); err != nil { // see grow
			return fmt.Errorf("%w: %w", ErrNoSlotMemory, err)
		}
	}
	p.setBackWords(s, b.mask.Or(mask), max(b.chunks, chunks)) // B1: a superset of both
	// P4: what is punched is no longer up to date, whatever page its
	// version word lives on.
	for c := 0; c < b.chunks; c++ {
		if c < chunks {
			p.outdate(s, c, b.mask.AndNot(mask), false)
		} else {
			p.outdate(s, c, p.schemaMask(), true)
		}
	}
	for _, sp := range drop {
		if err := p.ws.Unback(sp.lo, sp.hi-sp.lo); err != nil {
			p.empty(s)
			return fmt.Errorf("%w: %w", ErrNoSlotMemory, err)
		}
	}
	for _, sp := range add {
		if err := p.ws.Back(sp.lo, sp.hi-sp.lo); err != nil {
			p.empty(s)
			return fmt.Errorf("%w: %w", ErrNoSlotMemory, err)
		}
	}
	p.setBackWords(s, mask, chunks)
	p.backed += int64(wantBytes - b.bytes)
	p.back[s] = slotBacking{mask: mask, chunks: chunks, bytes: wantBytes, end: end}
	p.storeBacked()
	return nil
}

func (p *Publisher) limitErr(delta int, snapshot bool) error {
	if !snapshot {
		return fmt.Errorf("%w: %d more bytes would pass the shared-memory limit of %d (%d held)",
			ErrNoSlotMemory, delta, p.limit, p.backed)
	}
	return fmt.Errorf("%w: %d more bytes would pass the shared-memory limit of %d (%d held, %d kept for the publish's two copies at the world's largest)",
		ErrNoSlotMemory, delta, p.limit, p.backed, p.publishReserve())
}

// CopyBytes returns the memory one whole copy of the world takes in a slot
// at its largest (every component, every chunk), beyond the slot's first
// page.
func (p *Publisher) CopyBytes() int { return p.fullBytes }

// empty gives back everything slot s holds beyond its head and marks
// its header never written (version 0), synchronously. The slot must be
// claimed; it stays claimed (the caller ends the claim).
func (p *Publisher) empty(s int) {
	o := p.lw.SlotOff(s)
	_ = p.ws.Unback(o+p.lw.SlotHead, p.lw.SlotStride-p.lw.SlotHead)
	p.forget(s)
}

// forget records that slot s holds nothing beyond its head (its pages were
// punched): header words, accounting, and the fill record. Chunk 0 begins
// in the head, which is never punched: the head after the slot header (the
// singleton area and chunk 0's first bytes) is zeroed (P4).
func (p *Publisher) forget(s int) {
	o := p.lw.SlotOff(s)
	clear(p.seg[o+layout.SlotHeaderSize : o+p.lw.SlotHead])
	putU64(p.seg, o+layout.SlotFrame, 0)
	layout.Store64(p.seg, o+layout.SlotVersion, 0)
	putU64(p.seg, o+layout.SlotMask, 0)
	putU32(p.seg, o+layout.SlotChunks, 0)
	putU32(p.seg, o+layout.SlotEntities, 0)
	putU32(p.seg, o+layout.SlotAlive, 0)
	p.setBackWords(s, world.Mask{}, 0) // B1: lowered after the punch
	p.backed -= int64(p.back[s].bytes)
	p.back[s] = slotBacking{}
	p.complete[s] = slotComplete{}
	p.storeBacked()
}

// outdate zeroes, in chunk c of slot s, the version words of the components
// of kmask, and with all also the structural version and the record mask
// (P4: a column given back must not look up to date; all of a chunk's
// header may live on a page another span keeps).
func (p *Publisher) outdate(s, c int, kmask world.Mask, all bool) {
	co := p.lw.ChunkOff(s, c)
	kmask = kmask.And(p.schemaMask())
	for j, m := range kmask {
		for ; m != 0; m &= m - 1 {
			layout.Store64(p.seg, co+layout.ChunkVersions+8*(64*j+bits.TrailingZeros64(m)), 0)
		}
	}
	if all {
		layout.Store64(p.seg, co+layout.ChunkStructVersion, 0)
		for j := 0; j < p.lw.MaskWords; j++ {
			layout.Store64(p.seg, co+layout.ChunkRecordMaskOff(j), 0)
		}
	}
}

// spare returns the slot the next publish will most likely take: the slot
// other than the latest, not leased, backed for the publish mask, used
// last; -1 if none. Trim keeps it.
func (p *Publisher) spare() int {
	best := -1
	for s := 0; s < p.lw.Slots; s++ {
		if s == p.latest || p.slotLeased(s) || p.trimming[s] != nil || p.back[s].chunks == 0 || p.back[s].mask != p.pubMask {
			continue
		}
		if best < 0 || p.lastUse[s] > p.lastUse[best] {
			best = s
		}
	}
	return best
}

// Trim ends the trims that finished and starts at most one: a slot that is
// not the latest, not the spare, not leased, holds memory, and was neither
// filled nor held for more than the trim delay (SetTrimAfter) gives its
// memory back. The punch runs on another goroutine (P3); the engine calls
// Trim once a frame. It returns the number of trims ended.
func (p *Publisher) Trim() int {
	ended := p.endTrims()
	if p.trimAfter == 0 || p.frame < p.trimAfter {
		return ended
	}
	keep := p.spare()
	for s := 0; s < p.lw.Slots; s++ {
		if s == p.latest || s == keep || p.slotLeased(s) || p.trimming[s] != nil || p.back[s].chunks == 0 ||
			p.lastUse[s]+p.trimAfter >= p.frame {
			continue
		}
		_, odd, ok := p.claim(s)
		if !ok {
			continue // pinned: an external reader still reads it
		}
		j := &trimJob{odd: odd}
		p.trimming[s] = j
		off, n := p.lw.SlotOff(s)+p.lw.SlotHead, p.lw.SlotStride-p.lw.SlotHead
		ws := p.ws
		p.trims.Add(1)
		go func() {
			defer p.trims.Done()
			j.err = ws.Unback(off, n)
			j.done.Store(true)
		}()
		break
	}
	return ended
}

// endTrims ends the trims whose punch finished and returns how many.
func (p *Publisher) endTrims() int {
	ended := 0
	for s := 0; s < p.lw.Slots; s++ {
		j := p.trimming[s]
		if j == nil || !j.done.Load() { // ORDER(trim): pairs with done.Store
			continue
		}
		p.trimming[s] = nil
		p.forget(s)
		// ORDER(publish): the even seq after the header, as finish does.
		layout.Store64(p.seg, p.lw.SlotOff(s)+layout.SlotSeq, j.odd+1)
		if j.err != nil {
			p.TrimErrors++
		}
		p.Trimmed++
		layout.Add64(p.seg, layout.OffWStatTrimmed, 1)
		ended++
	}
	return ended
}

// WaitTrims waits for the punches in flight (before the segment is closed)
// and ends their trims; it starts none (the engine calls it while closing,
// when the pin words of module segments may be unmapped already).
func (p *Publisher) WaitTrims() {
	p.trims.Wait()
	p.endTrims()
}

// spanMinus returns the parts of a not in b; both are sorted and disjoint.
func spanMinus(a, b []span) []span {
	var out []span
	j := 0
	for _, x := range a {
		lo := x.lo
		for j < len(b) && b[j].hi <= lo {
			j++
		}
		for k := j; k < len(b) && b[k].lo < x.hi; k++ {
			if b[k].lo > lo {
				out = append(out, span{lo, b[k].lo})
			}
			lo = max(lo, b[k].hi)
		}
		if lo < x.hi {
			out = append(out, span{lo, x.hi})
		}
	}
	return out
}

func spanBytes(a []span) int {
	n := 0
	for _, x := range a {
		n += x.hi - x.lo
	}
	return n
}
