package world

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/fdp-engine/fdp/layout"
)

// ErrRestore is wrapped by every error of the restore functions.
var ErrRestore = errors.New("fdp/world: invalid restore data")

// Restoring a world from a published frame (engine recovery): on a world
// fresh from New with the same registry and configuration, call
// SetChunkData and RestoreColumn for every chunk of the frame and
// RestoreSingleton for every singleton, then RestoreFinish once. Each call validates its input completely before
// changing anything.

// SetChunkData replaces the entity records and the structural version of
// chunk c. records must hold ChunkCapacity valid records: alive ones have a
// non-zero generation and name only registered components, dead ones have
// no components; no flag other than layout.FlagAlive is set.
func (w *World) SetChunkData(c int, records []layout.EntityRecord, structVersion uint64) error {
	if c < 0 || c >= w.maxChunks {
		return fmt.Errorf("%w: chunk %d out of range [0,%d)", ErrRestore, c, w.maxChunks)
	}
	if len(records) != w.capacity {
		return fmt.Errorf("%w: chunk %d: %d records, want %d", ErrRestore, c, len(records), w.capacity)
	}
	valid := w.reg.Mask()
	for i, r := range records {
		m := Mask(r.Mask)
		switch {
		case r.Flags&^layout.FlagAlive != 0:
			return fmt.Errorf("%w: chunk %d row %d: unknown flags %#x", ErrRestore, c, i, r.Flags)
		case r.Flags&layout.FlagAlive != 0 && r.Gen == 0:
			return fmt.Errorf("%w: chunk %d row %d: alive with generation 0", ErrRestore, c, i)
		case !m.AndNot(valid).Empty():
			return fmt.Errorf("%w: chunk %d row %d: mask %v names unregistered components", ErrRestore, c, i, m)
		case r.Flags&layout.FlagAlive == 0 && !m.Empty():
			return fmt.Errorf("%w: chunk %d row %d: dead entity with components %v", ErrRestore, c, i, m)
		}
	}
	w.ensureChunks(c)
	ch := w.chunks[c]
	for i, r := range records {
		encodeRec(w.rec(ch, i), r)
	}
	ch.structVer = structVersion
	return nil
}

// RestoreColumn replaces the column of component id in chunk c
// (ChunkCapacity*Size bytes; for a variable-size component the handles
// and the arena, ChunkCapacity*(8+PerEntity) bytes, whose handles are
// checked against the chunk's records: call it after SetChunkData) and sets
// its change version.
func (w *World) RestoreColumn(c int, id ComponentID, data []byte, version uint64) error {
	if c < 0 || c >= w.maxChunks {
		return fmt.Errorf("%w: chunk %d out of range [0,%d)", ErrRestore, c, w.maxChunks)
	}
	if int(id) >= len(w.comps) {
		return fmt.Errorf("%w: %w: %d", ErrRestore, ErrUnknownComponent, id)
	}
	if want := w.capacity*w.comps[id].size + w.comps[id].arena; len(data) != want {
		return fmt.Errorf("%w: %w: column of %d bytes, want %d", ErrRestore, ErrSize, len(data), want)
	}
	w.ensureChunks(c)
	ch := w.chunks[c]
	var st arenaState
	if w.comps[id].maxLen != 0 {
		var err error
		if st, err = w.restoreArena(ch, id, data); err != nil {
			return fmt.Errorf("%w: chunk %d component %d: %w", ErrRestore, c, id, err)
		}
	}
	copy(w.column(ch, id), data)
	if w.comps[id].maxLen != 0 {
		ch.arenas[id] = st
	}
	w.zeroDeadRows(ch, id) // Z1 (deadrows.go), whatever the restored frame held
	ch.vers[id] = version
	return nil
}

// RestoreFinish rebuilds the derived state from the chunks' records: the
// high-water mark (one past the highest index ever issued, i.e. with a
// non-zero generation), alive counts, per-component counts and the free
// queue (dead indices below the high-water mark, in index order). Columns
// of components that alive entities have but that were not restored are
// allocated zeroed. The version becomes one past the largest of version and
// every restored chunk version, so that later writes stamp strictly newer
// versions than anything restored (World.Seal's invariant).
// Events of the current frame are cleared.
func (w *World) RestoreFinish(version uint64) {
	hw := 0
	for c, ch := range w.chunks {
		for i := w.capacity - 1; i >= 0; i-- {
			if recGen(w.rec(ch, i)) != 0 {
				hw = max(hw, c*w.capacity+i+1)
				break
			}
		}
	}
	v := max(version, 1)
	for _, s := range w.singles {
		v = max(v, s.ver)
	}
	w.highWater, w.count = hw, 0
	w.free.reset()
	w.resetOwners()
	for c, ch := range w.chunks {
		ch.alive = 0
		clear(ch.counts)
		v = max(v, ch.structVer)
		for k := range w.comps {
			v = max(v, ch.vers[k])
		}
		for i := 0; i < w.capacity; i++ {
			r := w.rec(ch, i)
			idx := c*w.capacity + i
			if !recAlive(r) {
				if idx < hw {
					w.free.push(uint32(idx))
				}
				continue
			}
			w.tally(ch, r)
		}
		w.count += ch.alive
	}
	w.version = v + 1
	w.ClearEvents()
}

// tally counts live record r into its chunk ch: the alive count and one per
// component it carries, making sure each such column exists. Restore and
// replay rebuild a chunk's counts from its records this way after the
// records were written behind the world's back.
func (w *World) tally(ch *chunk, r []uint64) {
	ch.alive++
	for j, m := range r[1:] {
		for ; m != 0; m &= m - 1 {
			k := 64*j + bits.TrailingZeros64(m)
			ch.counts[k]++
			w.column(ch, ComponentID(k))
		}
	}
}
