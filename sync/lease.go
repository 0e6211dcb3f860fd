package sync

import (
	"errors"
	"fmt"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// Lease errors.
var (
	ErrNotHolder    = errors.New("slot is not leased to this holder (extra release?)")
	ErrLeaseInvalid = errors.New("leased slot is not a complete snapshot")
)

// PublishSlots is the number of free slots a snapshot leaves to the
// publish: one for the next publish, and one for the publish after it while
// a fast module late in its tick (within its pin limit) still pins the frame
// the next publish replaces. With one, a late fast module and snapshots
// together skipped about one publish in eight.
const PublishSlots = 2

// SnapshotStats describe one SoD/convoy snapshot.
type SnapshotStats struct {
	PublishStats
	Holders layout.ModuleSet
}

// Snapshot syncs the components of mask into a free slot (never the latest,
// never pinned or leased) and leases it to the holders in holders (member
// i = holder id i, a module slot). The slot stays out of the publish rotation
// until every holder has been released (ReleaseHolder, by the engine: when
// the holder's tick is done or it died); it is then back in the pool. This
// is the SoD (one holder) and convoy (several holders, union mask)
// provider. Holders live in the publisher's memory; the leases segment gets
// a copy for inspection only.
func (p *Publisher) Snapshot(frame uint64, mask world.Mask, holders layout.ModuleSet) (int, SnapshotStats, error) {
	start := time.Now()
	st := SnapshotStats{Holders: holders}
	if holders.Empty() {
		return -1, st, errors.New("snapshot without holders")
	}
	// A snapshot never takes the last PublishSlots free slots, so that
	// leases (however many modules hold them) cannot stop publishing.
	if p.freeSlots() <= PublishSlots {
		p.SnapshotsNoSlot++
		return -1, st, ErrNoFreeSlot
	}
	ver := p.w.Seal() // see Publish
	// Never the spare (backing.go): the next publish's slot keeps its copy,
	// so that a snapshot cannot make the publish need memory the limit
	// holds for it; it is one of the free slots left to the publish.
	tried := uint64(0)
	if sp := p.spare(); sp >= 0 {
		tried |= 1 << uint(sp)
	}
	var memErr error
	for {
		best := p.pickSlot(tried, mask)
		if best < 0 {
			if memErr != nil {
				p.SnapNoSpace++
				layout.Add64(p.seg, layout.OffWStatSnapNoSpace, 1)
				return -1, st, memErr
			}
			p.SnapshotsNoSlot++
			return -1, st, ErrNoFreeSlot
		}
		tried |= 1 << uint(best)
		q, odd, ok := p.claim(best)
		if !ok {
			st.Aborted++
			continue
		}
		if err := p.backFor(best, mask, true); err != nil {
			p.unclaim(best, q)
			memErr = err
			continue
		}
		if p.slotVersion(best) != 0 {
			p.SnapshotsReused++ // the slot held a frame: only the changes are copied
		}
		p.fill(best, mask, &st.PublishStats, p.lastSnapBytes >= NTCopyMin)
		p.lastSnapBytes = st.BytesCopied
		p.finish(best, odd, frame, ver, mask, &st.PublishStats)
		p.holders[best] = holders
		lo := p.ll.LeaseOff(best)
		putU64(p.lseg, lo+layout.LeaseFrame, frame)
		layout.PutSplitMask(p.lseg, lo, layout.LeaseMaskOff, p.slotMask(best))
		p.mirrorHolders(best)
		st.Slot, st.Frame = best, frame
		st.Duration = time.Since(start)
		p.Snapshots++
		return best, st, nil
	}
}

// freeSlots counts the slots a publish could take now: not the latest, not
// leased, not pinned.
func (p *Publisher) freeSlots() int {
	n := 0
	for s := 0; s < p.lw.Slots; s++ {
		if s != p.latest && !p.slotLeased(s) && p.trimming[s] == nil && !p.pinned(s) {
			n++
		}
	}
	return n
}

// mirrorHolders copies slot s's holders into the leases segment (for
// inspection: nothing reads it back).
func (p *Publisher) mirrorHolders(s int) {
	layout.PutModuleSet(p.lseg, p.ll.LeaseOff(s)+layout.LeaseHolders, p.holders[s])
}

// Holders returns the holders of slot s.
func (p *Publisher) Holders(s int) layout.ModuleSet {
	if s < 0 || s >= p.lw.Slots {
		return layout.ModuleSet{}
	}
	return p.holders[s]
}

// RecorderHolder is the lease holder id reserved for the engine's flight
// recorder: one past the module slots (which are holder ids 0..255), so
// that no module's lease is ever confused with it. Its leases live in the
// publisher's memory like every holder's, but are not mirrored into the
// leases segment (the segment's holder set has room for module slots
// only); a slot it holds is out of the publish rotation and not trimmed.
const RecorderHolder = MaxWatchedPins

// LeaseLatest leases the latest published slot to holder id (only
// RecorderHolder) and returns it and its frame. The publisher is
// single-threaded: the engine leases on the frame thread right after a
// publish and releases (ReleaseHolder) on the frame thread too, once the
// goroutine that reads the slot has said it is done; meanwhile the slot is
// never rewritten (not picked, not claimed, not trimmed), so the reader
// needs no pin and no seqlock. It fails when nothing is published or id
// already holds that slot.
func (p *Publisher) LeaseLatest(id int) (int, uint64, error) {
	if id != RecorderHolder {
		return -1, 0, fmt.Errorf("lease of the latest slot by holder %d: only the recorder (%d) leases it", id, RecorderHolder)
	}
	s := p.latest
	if s < 0 {
		return -1, 0, errors.New("lease of the latest slot: nothing published")
	}
	if p.recHeld&(1<<uint(s)) != 0 {
		return -1, 0, fmt.Errorf("lease of the latest slot %d: already held by the recorder", s)
	}
	p.recHeld |= 1 << uint(s)
	return s, p.frame, nil
}

// RecorderHeld returns the slots the recorder holds, bit s for slot s.
func (p *Publisher) RecorderHeld() uint64 { return p.recHeld }

// ReleaseHolder drops holder id's lease on slot s. It fails with
// ErrNotHolder if id does not hold it (an extra release).
func (p *Publisher) ReleaseHolder(s, id int) error {
	if id == RecorderHolder && s >= 0 && s < p.lw.Slots {
		if p.recHeld&(1<<uint(s)) == 0 {
			return ErrNotHolder
		}
		p.recHeld &^= 1 << uint(s)
		p.released(s)
		return nil
	}
	if s < 0 || s >= p.lw.Slots || id < 0 || id >= MaxWatchedPins {
		return fmt.Errorf("release of slot %d by holder %d: out of range", s, id)
	}
	if !p.holders[s].Has(id) {
		return ErrNotHolder
	}
	p.holders[s].Clear(id)
	p.mirrorHolders(s)
	p.released(s)
	return nil
}

// released notes that slot s may have lost its last holder: its unused
// time (Trim) counts from now.
func (p *Publisher) released(s int) {
	if !p.slotLeased(s) {
		p.lastUse[s] = max(p.lastUse[s], p.frame)
	}
}

// ReleaseHolderAll drops every lease of holder id (it died) and returns how
// many slots it held.
func (p *Publisher) ReleaseHolderAll(id int) int {
	n := 0
	if id == RecorderHolder {
		for s := 0; s < p.lw.Slots; s++ {
			if p.ReleaseHolder(s, id) == nil {
				n++
			}
		}
		return n
	}
	if id < 0 || id >= MaxWatchedPins {
		return 0
	}
	for s := 0; s < p.lw.Slots; s++ {
		if p.holders[s].Has(id) {
			p.holders[s].Clear(id)
			p.mirrorHolders(s)
			p.released(s)
			n++
		}
	}
	return n
}

// RetainHolders drops, on every slot, the holders that are not in live(s)
// (the holder ids still entitled to their lease) and returns how many it
// dropped: the engine's reclaim of lease state that no live reader holds.
func (p *Publisher) RetainHolders(live func(s int) layout.ModuleSet) int {
	n := 0
	for s := 0; s < p.lw.Slots; s++ {
		if h := p.holders[s]; !h.Empty() {
			if keep := h.Intersect(live(s)); keep != h {
				n += h.Minus(keep).Count()
				p.holders[s] = keep
				p.mirrorHolders(s)
				p.released(s)
			}
		}
	}
	return n
}

// OpenLeased opens slot s, which the engine leased to this reader (SoD or
// convoy: the slot named by the module's tick), as a Frame. The slot stays
// valid across engine frames until the engine sees the reader's tick done;
// Release only checks that it was not rewritten (a lease reclaimed from a
// reader the engine took for dead) and writes nothing.
func (r *Reader) OpenLeased(s int) (*Frame, error) {
	if s < 0 || s >= r.lw.Slots {
		return nil, fmt.Errorf("%w: slot %d of %d", ErrLeaseInvalid, s, r.lw.Slots)
	}
	// ORDER(lease-open): seq-cst load; pairs with the engine's even store in
	// finish, which precedes the tick ring that named this slot.
	q := layout.Load64(r.world.Data, r.lw.SlotOff(s)+layout.SlotSeq)
	if q&1 != 0 || q == 0 {
		return nil, ErrLeaseInvalid
	}
	info := r.lw.ReadSlotInfo(s)
	if err := r.lw.ValidateSlotInfo(info); err != nil {
		return nil, err
	}
	f := &r.leased
	f.r, f.slot, f.seq, f.info, f.pinned, f.lease = r, s, q, info, true, true
	return f, nil
}

// LeasedSlots counts the slots currently leased to holders (the snapshot
// memory held by SoD/convoy readers, and the recorder's).
func (p *Publisher) LeasedSlots() int {
	n := 0
	for s := 0; s < p.lw.Slots; s++ {
		if p.slotLeased(s) {
			n++
		}
	}
	return n
}

// WarmUp fills every free slot with the components of mask once (frame
// number frame, without changing the latest word), so that the first
// snapshots and publishes copy only what changes afterwards. It returns the
// number of slots warmed.
func (p *Publisher) WarmUp(frame uint64, mask world.Mask) int {
	n := 0
	for p.WarmOne(frame, mask) {
		n++
	}
	return n
}

// WarmOne fills one free slot that was never written (slot version 0) with
// the components of mask, as WarmUp does for all of them; it reports whether
// it found one (and could give it memory). The engine does not warm slots: a
// warm slot holds a whole copy of the world in shared memory whether or not
// anything reads it (backing.go); tests use it to make every slot hold a
// frame.
func (p *Publisher) WarmOne(frame uint64, mask world.Mask) bool {
	for s := 0; s < p.lw.Slots; s++ {
		if s == p.latest || p.slotVersion(s) != 0 || p.slotLeased(s) || p.trimming[s] != nil {
			continue
		}
		q, odd, ok := p.claim(s)
		if !ok {
			continue
		}
		if p.backFor(s, mask, false) != nil {
			p.unclaim(s, q)
			return false
		}
		ver := p.w.Seal() // see Publish
		var st PublishStats
		p.fill(s, mask, &st, p.lastPubBytes >= NTCopyMin) // a spare copy for publishes
		p.finish(s, odd, frame, ver, mask, &st)
		return true
	}
	return false
}
