package testutil

import (
	"maps"
	"math/rand"
	"slices"
	"testing"

	"github.com/fdp-engine/fdp/world"
)

// WorldModel is a plain model of a world for differential tests of queries:
// the alive entities with their component masks, and, per chunk and
// component, the clock of the last write that stamps the chunk's change
// version of the component (world/doc.go, "Versions": a Set, Add or Remove
// of it, the Destroy of an entity having it, an in-place write). It knows
// nothing of the world's chunks, counts or versions: a test drives the world
// and the model with the same operations (WorldOps) and compares what
// queries return with Expect.
type WorldModel struct {
	// Capacity is the world's chunk capacity: entity index i is in chunk
	// i / Capacity.
	Capacity int
	// Now is the clock the model's writes record: whatever the test counts
	// (World.Version, the number of the frame the writes will be published
	// in).
	Now     uint64
	ents    map[uint32]modelEntity
	touched map[[2]int]uint64
}

type modelEntity struct {
	gen  uint32
	mask world.Mask
}

// NewWorldModel returns the model of an empty world of chunk capacity capc.
func NewWorldModel(capc int) *WorldModel {
	return &WorldModel{Capacity: capc, ents: map[uint32]modelEntity{}, touched: map[[2]int]uint64{}}
}

// Clone returns a copy of the model: what a test keeps of a frame to check
// later what a module read of it.
func (m *WorldModel) Clone() *WorldModel {
	c := *m
	c.ents, c.touched = maps.Clone(m.ents), maps.Clone(m.touched)
	return &c
}

func (m *WorldModel) chunk(e world.Entity) int { return int(e.Index()) / m.Capacity }

func (m *WorldModel) touch(c int, id world.ComponentID) { m.touched[[2]int{c, int(id)}] = m.Now }

// Created records the creation of e with no component.
func (m *WorldModel) Created(e world.Entity) { m.ents[e.Index()] = modelEntity{gen: e.Gen()} }

// Destroyed records the destruction of e: a write of each of its components.
func (m *WorldModel) Destroyed(e world.Entity) {
	for id := range m.ents[e.Index()].mask.IDs() {
		m.touch(m.chunk(e), id)
	}
	delete(m.ents, e.Index())
}

// Wrote records a write of component id of e (Set, SetRaw, Add, Ptr): e has
// it from now on.
func (m *WorldModel) Wrote(e world.Entity, id world.ComponentID) {
	me := m.ents[e.Index()]
	me.mask = me.mask.With(id)
	m.ents[e.Index()] = me
	m.touch(m.chunk(e), id)
}

// Removed records the removal of component id from e.
func (m *WorldModel) Removed(e world.Entity, id world.ComponentID) {
	me := m.ents[e.Index()]
	me.mask = me.mask.Without(id)
	m.ents[e.Index()] = me
	m.touch(m.chunk(e), id)
}

// WroteChunk records an in-place write of component id's column of chunk c
// (world.ColumnMut), whichever rows it changed.
func (m *WorldModel) WroteChunk(c int, id world.ComponentID) { m.touch(c, id) }

// Alive returns the number of alive entities.
func (m *WorldModel) Alive() int { return len(m.ents) }

// Has reports whether e is alive and has component id.
func (m *WorldModel) Has(e world.Entity, id world.ComponentID) bool {
	me, ok := m.ents[e.Index()]
	return ok && me.gen == e.Gen() && me.mask.Has(id)
}

// ChunkHas reports whether an alive entity of chunk c has component id.
func (m *WorldModel) ChunkHas(c int, id world.ComponentID) bool {
	for i, me := range m.ents {
		if int(i)/m.Capacity == c && me.mask.Has(id) {
			return true
		}
	}
	return false
}

// Changed reports whether chunk c had a component of changed written at a
// clock >= since. Since 0 (no previous run) and an empty changed keep every
// chunk.
func (m *WorldModel) Changed(c int, changed world.Mask, since uint64) bool {
	if since == 0 || changed.Empty() {
		return true
	}
	for id := range changed.IDs() {
		if v, ok := m.touched[[2]int{c, int(id)}]; ok && v >= since {
			return true
		}
	}
	return false
}

// Expect returns the entities a query matches, in index order: alive, with
// every component of with and none of without, in a chunk that Changed
// keeps; and the chunks that hold them, in order.
func (m *WorldModel) Expect(with, without, changed world.Mask, since uint64) (ents []world.Entity, chunks []int) {
	for i, me := range m.ents {
		c := int(i) / m.Capacity
		if me.mask.Contains(with) && me.mask.And(without).Empty() && m.Changed(c, changed, since) {
			ents = append(ents, world.MakeEntity(i, me.gen))
		}
	}
	slices.SortFunc(ents, func(a, b world.Entity) int { return int(a.Index()) - int(b.Index()) })
	for _, e := range ents {
		if c := m.chunk(e); len(chunks) == 0 || chunks[len(chunks)-1] != c {
			chunks = append(chunks, c)
		}
	}
	return ents, chunks
}

// WorldOps drives a world and its model with the same random operations:
// creates with random components, destroys, sets (adding the component when
// absent), adds and removes, and in-place writes (world.Ptr, world.ColumnMut)
// of the 8-byte components.
type WorldOps struct {
	T     testing.TB
	Rng   *rand.Rand
	W     *world.World
	M     *WorldModel
	Comps []world.ComponentID // the components the operations use
	ents  []world.Entity
}

// pick returns a random live entity it created, dropping dead ones.
func (o *WorldOps) pick() (world.Entity, bool) {
	for len(o.ents) > 0 {
		i := o.Rng.Intn(len(o.ents))
		if o.W.IsAlive(o.ents[i]) {
			return o.ents[i], true
		}
		o.ents[i] = o.ents[len(o.ents)-1]
		o.ents = o.ents[:len(o.ents)-1]
	}
	return 0, false
}

func (o *WorldOps) comp() world.ComponentID { return o.Comps[o.Rng.Intn(len(o.Comps))] }

func (o *WorldOps) fail(err error, what string) {
	if err != nil {
		o.T.Helper()
		o.T.Fatalf("%s: %v", what, err)
	}
}

// set writes random bytes into component id of e.
func (o *WorldOps) set(e world.Entity, id world.ComponentID) {
	info, _ := o.W.Registry().Info(id)
	b := make([]byte, info.Size)
	o.Rng.Read(b)
	o.fail(o.W.SetRaw(e, id, b), "set")
	o.M.Wrote(e, id)
}

// Step makes one random change.
func (o *WorldOps) Step() {
	w, m := o.W, o.M
	switch op := o.Rng.Intn(20); {
	case op < 5:
		e, err := w.Create()
		if err != nil {
			return // full
		}
		m.Created(e)
		o.ents = append(o.ents, e)
		for j := o.Rng.Intn(len(o.Comps) + 1); j > 0; j-- {
			o.set(e, o.comp())
		}
	case op < 8:
		if e, ok := o.pick(); ok {
			m.Destroyed(e) // before: the model reads its mask
			o.fail(w.Destroy(e), "destroy")
		}
	case op < 13:
		if e, ok := o.pick(); ok {
			o.set(e, o.comp())
		}
	case op < 17:
		if e, ok := o.pick(); ok {
			if id := o.comp(); w.Has(e, id) {
				o.fail(w.Remove(e, id), "remove")
				m.Removed(e, id)
			} else {
				o.fail(w.Add(e, id), "add")
				m.Wrote(e, id)
			}
		}
	case op < 19:
		if e, ok := o.pick(); ok {
			if id := o.comp(); o.size(id) == 8 && w.Has(e, id) {
				*world.Ptr[uint64](w, e, id) ^= o.Rng.Uint64()
				m.Wrote(e, id)
			}
		}
	default:
		// In place through a query, one random chunk.
		id := o.comp()
		if o.size(id) != 8 {
			return
		}
		target := o.Rng.Intn(max(1, w.NumChunks()))
		q := w.Query(world.MaskOf(id))
		for q.Next() {
			if q.Chunk() == target {
				if col := world.ColumnMut[uint64](&q, id); col != nil {
					m.WroteChunk(target, id)
				}
			}
		}
	}
}

func (o *WorldOps) size(id world.ComponentID) int {
	info, _ := o.W.Registry().Info(id)
	return info.Size
}

// Run makes n random changes.
func (o *WorldOps) Run(n int) {
	for range n {
		o.Step()
	}
}

// RandomMask returns a random subset of comps: empty a quarter of the time,
// else each component with probability 1/(k+1), at least one.
func RandomMask(rng *rand.Rand, comps []world.ComponentID, k int) world.Mask {
	var m world.Mask
	if rng.Intn(4) == 0 {
		return m
	}
	for m.Empty() {
		for _, id := range comps {
			if rng.Intn(k+1) == 0 {
				m = m.With(id)
			}
		}
	}
	return m
}
