package world

// Dirty chunk log: which chunks changed in each sealed epoch, so that a copy
// of the world (package sync's fill) visits only the chunks changed since it
// was last complete instead of checking every chunk.
//
// An epoch is the time between two seals (World.Seal); epochs are numbered
// from 1 and World.Epoch returns the number of the open one. Every write
// that stamps a chunk version (Create, Destroy, Add, Remove, Set, SetRaw,
// Ptr, ColumnMut, and the restore functions through ensureChunks) calls
// w.touch(ch), which appends the chunk's index to the log once per epoch.
// The log is a ring of chunk indices; start[e%dirtyEpochs] is the position
// of epoch e's first entry.
//
// Invariants:
//   - D1 (complete): every chunk whose structural or component version was
//     stamped during epoch e, first <= e <= epoch, has an entry in
//     positions [start(e), start(e+1)) (start(epoch+1) = head).
//   - D2 (once): a chunk has at most one entry per epoch, and ch.touched is
//     the last epoch that has one; so its entry of epoch ch.touched is its
//     last, and it has none after.
//   - D3 (retention): the entries of epochs >= first are in buf
//     (head - start(first) <= len(buf)), epoch - first < dirtyEpochs, and
//     first only grows. An entry is overwritten only once its epoch has left
//     (first has passed it): buf grows (doubling, up to maxLen) instead,
//     then first advances. maxLen holds two entries per chunk: the open
//     epoch (at most one entry per chunk, D2) always fits, and a history
//     longer than the chunk count is not worth reading (ChangedChunks'
//     limit).
//   - D4 (no allocation in steady state): buf only grows when a retained
//     entry would be overwritten, so after the log has reached the length a
//     workload needs, touching and sealing allocate nothing.
//
// Consequence: a copy of the world taken after the seal that closed epoch e
// (when Epoch() returned e+1), and kept complete by no one else, differs from
// the world only in chunks with an entry in epochs > e (D1): ChangedChunks.

// dirtyEpochs bounds the epochs the log remembers (dirtyEpochs-1 sealed ones
// and the open one). Every publish and snapshot seals, so this bounds how
// many seals old a slot may be for its next fill to visit only changed
// chunks (older slots are scanned in full).
const dirtyEpochs = 64

// dirtyLog is the world's log of touched chunks.
type dirtyLog struct {
	epoch  uint64              // the open epoch (starts at 1)
	first  uint64              // oldest retained epoch (D3)
	head   uint64              // entries ever appended
	buf    []int32             // ring of chunk indices, len a power of two
	maxLen int                 // buf never grows beyond it
	start  [dirtyEpochs]uint64 // start[e%dirtyEpochs]: first position of epoch e
}

func newDirtyLog(maxChunks int) dirtyLog {
	maxLen := 1024
	for maxLen < 2*maxChunks {
		maxLen *= 2
	}
	return dirtyLog{epoch: 1, first: 1, buf: make([]int32, min(maxLen, 1024)), maxLen: maxLen}
}

// touch gives chunk ch an entry in the open epoch unless it has one (D2). It
// must be called by every write that stamps one of ch's versions (D1).
func (w *World) touch(ch *chunk) {
	if d := &w.dirty; ch.touched != d.epoch {
		ch.touched = d.epoch
		d.push(ch.index)
	}
}

// push appends c to the open epoch, growing buf or dropping the oldest
// epochs when the entry it would overwrite is retained (D3).
func (d *dirtyLog) push(c int32) {
	n := uint64(len(d.buf))
	if d.head >= n && d.head-n >= d.start[d.first%dirtyEpochs] {
		if len(d.buf) < d.maxLen {
			d.grow()
		} else {
			// Drop every epoch whose entries reach the overwritten one. The
			// open epoch is never dropped: it has at most one entry per chunk,
			// half of maxLen (D3).
			for d.first < d.epoch && d.head-n >= d.start[d.first%dirtyEpochs] {
				d.first++
			}
		}
	}
	d.buf[d.head&uint64(len(d.buf)-1)] = c
	d.head++
}

// grow doubles buf, keeping every entry at its position.
func (d *dirtyLog) grow() {
	old := d.buf
	nb := make([]int32, 2*len(old))
	om, nm := uint64(len(old)-1), uint64(len(nb)-1)
	for p := d.head - min(d.head, uint64(len(old))); p < d.head; p++ {
		nb[p&nm] = old[p&om]
	}
	d.buf = nb
}

// seal closes the open epoch and opens the next (World.Seal).
func (d *dirtyLog) seal() {
	d.epoch++
	if d.epoch-d.first >= dirtyEpochs {
		d.first = d.epoch - dirtyEpochs + 1
	}
	d.start[d.epoch%dirtyEpochs] = d.head
}

// Epoch returns the number of the open dirty epoch: 1 for a new world, plus
// one per Seal. A copy taken right after a Seal is complete at epoch
// Epoch()-1.
func (w *World) Epoch() uint64 { return w.dirty.epoch }

// ChangedChunks appends to buf, once each, the chunks touched after the seal
// that closed epoch since (in epochs since+1 up to the open one) and returns
// it with ok = true. It returns buf unchanged and ok = false when those
// epochs are not all retained any more (D3), or when they hold more than
// limit entries, in which case a scan of every chunk costs less.
//
// A chunk is reported from its last entry only (D2: the entry of epoch
// ch.touched), so the result has no duplicates. Chunks are reported in the
// order of their last touch.
func (w *World) ChangedChunks(since uint64, limit int, buf []int32) ([]int32, bool) {
	d := &w.dirty
	if since >= d.epoch || since+1 < d.first {
		return buf, false
	}
	e := since + 1
	p := d.start[e%dirtyEpochs]
	if d.head-p > uint64(min(limit, len(d.buf))) { // (D3 keeps them in buf; checked all the same)
		return buf, false
	}
	mask := uint64(len(d.buf) - 1)
	for ; e <= d.epoch; e++ {
		end := d.head
		if e < d.epoch {
			end = d.start[(e+1)%dirtyEpochs]
		}
		for ; p < end; p++ {
			c := d.buf[p&mask]
			if w.chunks[c].touched == e {
				buf = append(buf, c)
			}
		}
	}
	return buf, true
}
