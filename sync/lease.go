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
	ErrNotHolder    = errors.New("fdp/sync: slot is not leased to this reader (extra release?)")
	ErrLeaseInvalid = errors.New("fdp/sync: leased slot is not a complete snapshot")
)

// SnapshotStats describe one SoD/convoy snapshot.
type SnapshotStats struct {
	PublishStats
	Holders uint64
}

// Snapshot syncs the components of mask into a free slot (never the latest,
// never pinned or leased) and leases it to the reader entries in holders
// (bit r = reader entry r). The slot stays out of the publish rotation until
// every holder has released it; it is then back in the pool. This is the
// SoD (one holder) and convoy (several holders, union mask) provider.
func (p *Publisher) Snapshot(frame uint64, mask world.Mask, holders uint64) (int, SnapshotStats, error) {
	start := time.Now()
	st := SnapshotStats{Holders: holders}
	if holders == 0 {
		return -1, st, fmt.Errorf("fdp/sync: snapshot without holders")
	}
	ver := p.w.Seal() // see Publish
	tried := uint64(0)
	for {
		best := p.pickSlot(tried)
		if best < 0 {
			p.Skipped++
			return -1, st, ErrNoFreeSlot
		}
		tried |= 1 << uint(best)
		odd, ok := p.claim(best)
		if !ok {
			st.Aborted++
			continue
		}
		if p.slotVersion(best) != 0 {
			p.SnapshotsReused++ // the slot held a frame: only the changes are copied
		}
		p.fill(best, mask, &st.PublishStats)
		p.finish(best, odd, frame, ver, mask, &st.PublishStats)
		lo := p.ll.LeaseOff(best)
		layout.Store64(p.lseg, lo+layout.LeaseFrame, frame)
		layout.Store64(p.lseg, lo+layout.LeaseMask, p.lwGet64(p.lw.SlotOff(best)+layout.SlotMask))
		layout.Store64(p.lseg, lo+layout.LeaseHolders, holders)
		st.Slot, st.Frame = best, frame
		st.Duration = time.Since(start)
		p.Snapshots++
		return best, st, nil
	}
}

// Holders returns the holder mask of slot s.
func (p *Publisher) Holders(s int) uint64 {
	return layout.Load64(p.lseg, p.ll.LeaseOff(s)+layout.LeaseHolders)
}

// ReleaseHolder clears reader entry r's lease bit on slot s. It fails with
// ErrNotHolder if the bit is not set (an extra release). Used by readers
// (through Frame.Release) and by the engine when it reclaims a dead reader.
func ReleaseHolder(b []byte, ll *layout.Leases, s, r int) error {
	if s < 0 || s >= ll.Slots || r < 0 || r >= ll.Readers {
		return fmt.Errorf("fdp/sync: release of slot %d by reader %d out of range", s, r)
	}
	lo := ll.LeaseOff(s) + layout.LeaseHolders
	bit := uint64(1) << uint(r)
	for {
		h := layout.Load64(b, lo)
		if h&bit == 0 {
			return ErrNotHolder
		}
		if layout.CAS64(b, lo, h, h&^bit) {
			return nil
		}
	}
}

// OpenLeased opens slot s, leased to this reader by the engine (SoD or
// convoy), as a Frame. The slot stays valid across engine frames until
// Release, which drops this reader's lease; the last holder's release
// returns the slot to the pool.
func (r *Reader) OpenLeased(s int) (*Frame, error) {
	if s < 0 || s >= r.lw.Slots {
		return nil, fmt.Errorf("%w: slot %d of %d", ErrLeaseInvalid, s, r.lw.Slots)
	}
	lb := r.leases.Data
	if layout.Load64(lb, r.ll.LeaseOff(s)+layout.LeaseHolders)&(1<<uint(r.entry)) == 0 {
		return nil, ErrNotHolder
	}
	q := layout.Load64(r.world.Data, r.lw.SlotOff(s)+layout.SlotSeq)
	if q&1 != 0 {
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
// memory held by SoD/convoy readers).
func (p *Publisher) LeasedSlots() int {
	n := 0
	for s := 0; s < p.lw.Slots; s++ {
		if p.Holders(s) != 0 {
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
// it found one. The engine warms one slot per frame in the frame's idle time
// instead of all of them before its first frame, which after an engine
// restart would delay the first frame by a full copy per slot.
func (p *Publisher) WarmOne(frame uint64, mask world.Mask) bool {
	for s := 0; s < p.lw.Slots; s++ {
		if s == p.latest || p.slotVersion(s) != 0 || p.slotLeased(s) {
			continue
		}
		odd, ok := p.claim(s)
		if !ok {
			continue
		}
		ver := p.w.Seal() // see Publish
		var st PublishStats
		p.fill(s, mask, &st)
		p.finish(s, odd, frame, ver, mask, &st)
		p.Warmed++
		return true
	}
	return false
}
