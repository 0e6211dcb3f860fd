package world

import (
	"errors"
	"fmt"
	"math/bits"
	"reflect"

	"github.com/fdp-engine/fdp/layout"
)

// Errors returned by the world. They are sentinel values so that callers
// (command playback) can count rejections by reason with errors.Is.
var (
	// ErrStale: the entity handle is null, was never issued, or its
	// generation is not the current one (the entity was destroyed).
	ErrStale = errors.New("fdp/world: stale or invalid entity")
	// ErrWorldFull: every entity index of Config.MaxChunks chunks is in use.
	ErrWorldFull = errors.New("fdp/world: world is full")
	// ErrUnknownComponent: the component id is not registered.
	ErrUnknownComponent = errors.New("fdp/world: unknown component id")
	// ErrSize: raw component data does not have the component's size.
	ErrSize = errors.New("fdp/world: data size does not match the component size")
	// ErrExists: Add of a component the entity already has.
	ErrExists = errors.New("fdp/world: entity already has the component")
	// ErrAbsent: Remove of a component the entity does not have.
	ErrAbsent = errors.New("fdp/world: entity does not have the component")
	// ErrTypeMismatch: the Go type's size does not match the registered
	// component size (or the type is not pointer-free).
	ErrTypeMismatch = errors.New("fdp/world: Go type does not match the component")
	// ErrConfig: invalid Config.
	ErrConfig = errors.New("fdp/world: invalid config")
)

// Config sizes a world.
type Config struct {
	// ChunkCapacity is the number of entities per chunk: a power of two in
	// [layout.MinChunkCapacity, layout.MaxChunkCapacity]; default 1024.
	ChunkCapacity int
	// MaxChunks bounds the number of chunks (MaxEntities =
	// MaxChunks*ChunkCapacity); default 256.
	MaxChunks int
}

// ChunkLimit bounds Config.MaxChunks.
const ChunkLimit = 1 << 20

// Default configuration values.
const (
	DefaultChunkCapacity = 1024
	DefaultMaxChunks     = 256
)

// chunk is the storage of ChunkCapacity consecutive entity indices.
type chunk struct {
	recs      []uint64 // ChunkCapacity records of 1+W words, in wire form, then recPad zero words (records.go)
	structVer uint64   // stamped on create/destroy/add/remove
	vers      []uint64 // per component: change version
	cols      [][]byte // per component: nil, or ChunkCapacity*(Size+PerEntity) bytes backed by []uint64
	alive     int
	counts    []uint32 // per component: alive entities having it
	index     int32    // the chunk's index in World.chunks
	touched   uint64   // last epoch that listed it (dirty.go, D2)

	arenas []arenaState // per component: its arena, for variable-size ones (varsize.go); nil without any
}

// compInfo is the per-component data the hot paths need.
type compInfo struct {
	size int
	typ  reflect.Type
	// A variable-size component (varsize.go): its kind, MaxLen and the
	// bytes of a chunk's arena; maxLen is 0 for a fixed-size one.
	kind          ComponentKind
	maxLen, arena int
}

// altKey caches a non-registered Go type accepted for a component.
type altKey struct {
	id  ComponentID
	typ reflect.Type
}

// World is the live ECS. It is not safe for concurrent use.
type World struct {
	reg       *Registry
	comps     []compInfo
	alt       map[altKey]bool
	capacity  int
	shift     uint
	words     int // W: mask words of a record (layout.MaskWords)
	stride    int // words of a record: 1+W
	maxChunks int
	chunks    []*chunk
	highWater int
	count     int
	version   uint64
	free      indexQueue
	events    eventBuffer
	owner     []uint16 // creator per entity index (owner.go); grown on demand
	owned     []int    // live entities per owner
	dirty     dirtyLog // dirty.go

	lc Lifecycle // what is recorded as lifecycle events (lifecycle.go)

	singles []singleton // singletons.go
	hasVar  bool        // a variable-size component is registered (varsize.go)
}

// New creates a world for the components of r and freezes r.
func New(r *Registry, cfg Config) (*World, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil registry", ErrConfig)
	}
	if cfg.ChunkCapacity == 0 {
		cfg.ChunkCapacity = DefaultChunkCapacity
	}
	if cfg.MaxChunks == 0 {
		cfg.MaxChunks = DefaultMaxChunks
	}
	c := cfg.ChunkCapacity
	if c < layout.MinChunkCapacity || c > layout.MaxChunkCapacity || c&(c-1) != 0 {
		return nil, fmt.Errorf("%w: chunk capacity %d must be a power of two in [%d,%d]",
			ErrConfig, c, layout.MinChunkCapacity, layout.MaxChunkCapacity)
	}
	if cfg.MaxChunks < 1 || cfg.MaxChunks > ChunkLimit || uint64(cfg.MaxChunks)*uint64(c) > 1<<32 {
		return nil, fmt.Errorf("%w: max chunks %d must be in [1,%d] with at most 2^32 entities",
			ErrConfig, cfg.MaxChunks, ChunkLimit)
	}
	r.frozen = true
	w := &World{
		reg:       r,
		alt:       map[altKey]bool{},
		capacity:  c,
		shift:     uint(bits.TrailingZeros(uint(c))),
		maxChunks: cfg.MaxChunks,
		version:   1,
		dirty:     newDirtyLog(cfg.MaxChunks),
	}
	for _, in := range r.infos {
		w.comps = append(w.comps, compInfo{size: in.Size, typ: in.Type, kind: in.Kind, maxLen: in.MaxLen, arena: c * in.PerEntity})
		if in.PerEntity != 0 {
			if c*in.PerEntity > layout.MaxArenaBytes {
				return nil, fmt.Errorf("%w: component %q: an arena of %d bytes per chunk (at most %d)", ErrConfig, in.Name, c*in.PerEntity, layout.MaxArenaBytes)
			}
			w.hasVar = true
		}
	}
	w.words = layout.MaskWords(len(w.comps))
	w.stride = 1 + w.words
	w.initSingletons()
	return w, nil
}

// Registry returns the world's (frozen) registry.
func (w *World) Registry() *Registry { return w.reg }

// Version returns the version that writes stamp now (starts at 1).
func (w *World) Version() uint64 { return w.version }

// Advance increments the version and returns it. The engine calls it once
// per frame before simulating; exactness of copies does not depend on it
// (see Seal).
func (w *World) Advance() uint64 {
	w.version++
	return w.version
}

// Seal closes the current version for a copy of the world: it returns v, the
// version that a copy taken now (before the next write) is complete at, and
// moves the world to v+1.
//
// Invariant (a copy is exact by construction, whatever the order of writers
// and copies): after v := w.Seal(), every chunk's structural and component
// versions are <= v, and every later write, from any source (simulation,
// command playback, restore), stamps >= v+1. A copy that holds a chunk
// column at version >= the world's version of it therefore holds its
// current bytes; any change after the copy makes the world's version newer.
// The publisher seals at the start of every publish and snapshot.
//
// Seal also closes the open dirty epoch (dirty.go): the chunks touched since
// the previous seal become the list of epoch Epoch()-1.
func (w *World) Seal() uint64 {
	v := w.version
	w.version++
	w.dirty.seal()
	return v
}

// RaiseVersion makes every later write stamp at least v (no-op when the
// world is already there). A publisher adopting slots written by a previous
// engine raises the world above every version those slots hold, so that
// Seal's invariant also holds against them.
func (w *World) RaiseVersion(v uint64) {
	if v > w.version {
		w.version = v
	}
}

// Count returns the number of alive entities.
func (w *World) Count() int { return w.count }

// HighWater returns the entity index high-water mark: every index ever
// issued is below it.
func (w *World) HighWater() int { return w.highWater }

// NumChunks returns the number of chunks in use: ceil(HighWater/ChunkCapacity).
func (w *World) NumChunks() int { return (w.highWater + w.capacity - 1) >> w.shift }

// ChunkCapacity returns the number of entities per chunk.
func (w *World) ChunkCapacity() int { return w.capacity }

// MaxChunks returns the maximum number of chunks.
func (w *World) MaxChunks() int { return w.maxChunks }

// MaxEntities returns MaxChunks*ChunkCapacity.
func (w *World) MaxEntities() int { return w.maxChunks * w.capacity }

// ensureChunks allocates chunks up to and including chunk c and lists chunk
// c and every new chunk as touched (dirty.go, D1): its callers (Create of a
// new index, the restore functions) are about to write chunk c.
func (w *World) ensureChunks(c int) {
	for len(w.chunks) <= c {
		ch := &chunk{
			recs:   make([]uint64, w.capacity*w.stride+recPad),
			vers:   make([]uint64, len(w.comps)),
			cols:   make([][]byte, len(w.comps)),
			counts: make([]uint32, len(w.comps)),
			index:  int32(len(w.chunks)),
		}
		if w.hasVar {
			ch.arenas = make([]arenaState, len(w.comps))
		}
		w.chunks = append(w.chunks, ch)
		w.touch(ch)
	}
	w.touch(w.chunks[c])
}

// column returns component id's column of ch, allocating it (zeroed) on
// first use. It is backed by []uint64 so that it is 8-byte aligned.
func (w *World) column(ch *chunk, id ComponentID) []byte {
	if col := ch.cols[id]; col != nil {
		return col
	}
	n := w.capacity*w.comps[id].size + w.comps[id].arena // a variable-size component's arena follows its handles
	col := castSlice[uint64, byte](make([]uint64, (n+7)/8))[:n]
	ch.cols[id] = col
	return col
}

// Create creates an entity with no components.
func (w *World) Create() (Entity, error) {
	var idx int
	if i, ok := w.free.pop(); ok {
		idx = int(i)
	} else {
		if w.highWater >= w.MaxEntities() {
			return 0, fmt.Errorf("%w: %d entities (%d chunks of %d)", ErrWorldFull, w.MaxEntities(), w.maxChunks, w.capacity)
		}
		idx = w.highWater
		w.highWater++
		w.ensureChunks(idx >> w.shift)
	}
	ch := w.chunks[idx>>w.shift]
	r := w.rec(ch, idx&(w.capacity-1))
	gen := max(recGen(r), 1)
	setGenFlags(r, gen, layout.FlagAlive)
	clear(r[1:])
	ch.alive++
	w.touch(ch)
	ch.structVer = w.version
	w.count++
	e := MakeEntity(uint32(idx), gen)
	if w.lc.Created {
		w.recordLifecycle(layout.LifecycleCreated, e, 0)
	}
	return e, nil
}

// lookup returns the chunk and record of a live entity.
func (w *World) lookup(e Entity) (*chunk, []uint64, int, bool) {
	idx := int(e.Index())
	if e == 0 || idx >= w.highWater {
		return nil, nil, 0, false
	}
	ch := w.chunks[idx>>w.shift]
	row := idx & (w.capacity - 1)
	r := w.rec(ch, row)
	if !recAlive(r) || recGen(r) != e.Gen() {
		return nil, nil, 0, false
	}
	return ch, r, row, true
}

// IsAlive reports whether e is a live entity of the current generation.
func (w *World) IsAlive(e Entity) bool {
	_, _, _, ok := w.lookup(e)
	return ok
}

// Destroy destroys e: its components are removed (their change versions
// stamped, their rows zeroed: Z1, deadrows.go), its generation is bumped and
// its index queued for reuse.
// Generations wrap from 2^32-1 to 1.
func (w *World) Destroy(e Entity) error {
	ch, r, row, ok := w.lookup(e)
	if !ok {
		return ErrStale
	}
	w.touch(ch)
	if !w.lc.Removed.Empty() {
		w.recordRemovals(e, r[1:])
	}
	for j, m := range r[1:] {
		for ; m != 0; m &= m - 1 {
			k := 64*j + bits.TrailingZeros64(m)
			ch.counts[k]--
			ch.vers[k] = w.version
			w.varRemoved(ch, row, ComponentID(k))
			w.zeroRow(ch, row, ComponentID(k)) // Z1 (deadrows.go)
		}
	}
	clear(r[1:])
	gen := recGen(r) + 1
	if gen == 0 {
		gen = 1
	}
	setGenFlags(r, gen, 0)
	ch.alive--
	ch.structVer = w.version
	w.count--
	w.disown(e.Index())
	w.free.push(e.Index())
	if w.lc.Destroyed {
		w.recordLifecycle(layout.LifecycleDestroyed, e, 0)
	}
	return nil
}

// Mask returns the component mask of e (empty if e is not alive).
func (w *World) Mask(e Entity) Mask {
	_, r, _, ok := w.lookup(e)
	if !ok {
		return Mask{}
	}
	return recMask(r)
}

// Has reports whether the live entity e has component id.
func (w *World) Has(e Entity, id ComponentID) bool {
	_, r, _, ok := w.lookup(e)
	return ok && recHas(r, id)
}

// target validates (e, id) for a component access.
func (w *World) target(e Entity, id ComponentID) (*chunk, []uint64, int, error) {
	if int(id) >= len(w.comps) {
		return nil, nil, 0, ErrUnknownComponent
	}
	ch, r, row, ok := w.lookup(e)
	if !ok {
		return nil, nil, 0, ErrStale
	}
	return ch, r, row, nil
}

// addBit marks component id present on record r of ch (structural change).
func (w *World) addBit(ch *chunk, r []uint64, id ComponentID) {
	r[1+id>>6] |= 1 << (id & 63)
	ch.counts[id]++
	w.touch(ch)
	ch.structVer = w.version
}

// row returns the bytes of component id of row in ch for writing: the
// column is allocated, the component added (with a zeroed row) if absent,
// and the change version stamped.
func (w *World) row(ch *chunk, r []uint64, row int, id ComponentID) []byte {
	col := w.column(ch, id)
	size := w.comps[id].size
	b := col[row*size : (row+1)*size : (row+1)*size]
	if !recHas(r, id) {
		clear(b)
		w.addBit(ch, r, id)
		if w.lc.Added.Has(id) {
			w.recordLifecycle(layout.LifecycleAdded, w.entityAt(ch, r, row), id)
		}
	}
	w.touch(ch)
	ch.vers[id] = w.version
	return b
}

// Add adds component id to e with its zero value (ErrExists if present).
func (w *World) Add(e Entity, id ComponentID) error {
	ch, r, row, err := w.target(e, id)
	if err != nil {
		return err
	}
	if recHas(r, id) {
		return ErrExists
	}
	w.row(ch, r, row, id)
	return nil
}

// Remove removes component id from e (ErrAbsent if not present). The column
// bytes of the row are zeroed (Z1, deadrows.go).
func (w *World) Remove(e Entity, id ComponentID) error {
	ch, r, row, err := w.target(e, id)
	if err != nil {
		return err
	}
	if !recHas(r, id) {
		return ErrAbsent
	}
	w.varRemoved(ch, row, id)
	w.zeroRow(ch, row, id)
	r[1+id>>6] &^= 1 << (id & 63)
	ch.counts[id]--
	w.touch(ch)
	ch.vers[id] = w.version
	ch.structVer = w.version
	if w.lc.Removed.Has(id) {
		w.recordLifecycle(layout.LifecycleRemoved, e, id)
	}
	return nil
}

// SetRaw sets component id of e from its raw bytes (adding it if absent).
// len(data) must equal the component size (ErrSize).
func (w *World) SetRaw(e Entity, id ComponentID, data []byte) error {
	ch, r, row, err := w.target(e, id)
	if err != nil {
		return err
	}
	if w.comps[id].maxLen != 0 {
		return ErrNotBytes // SetBytes: data is a value, not a handle
	}
	if len(data) != w.comps[id].size {
		return ErrSize
	}
	copy(w.row(ch, r, row, id), data)
	return nil
}

// GetRaw returns the bytes of component id of e, read-only and without
// stamping a version. The slice aliases the column: it is valid until the
// component is next written. ok is false if e is not alive or lacks id.
func (w *World) GetRaw(e Entity, id ComponentID) ([]byte, bool) {
	ch, r, row, err := w.target(e, id)
	if err != nil || !recHas(r, id) {
		return nil, false
	}
	size := w.comps[id].size
	return ch.cols[id][row*size : (row+1)*size : (row+1)*size], true
}

// typeOK reports whether T may view component id: T is the registered type,
// or (checked once, then cached) a pointer-free type of the same size and
// an alignment of at most 8. The fast path does not allocate.
func typeOK[T any](w *World, id ComponentID) bool {
	if int(id) >= len(w.comps) {
		return false
	}
	c := &w.comps[id]
	if c.maxLen != 0 {
		return false // a variable-size component's column holds handles (varsize.go)
	}
	t := reflect.TypeFor[T]()
	if t == c.typ {
		return true
	}
	if sizeOf[T]() != uintptr(c.size) {
		return false
	}
	k := altKey{id, t}
	ok, seen := w.alt[k]
	if !seen {
		ok = checkKind(t, "") == nil && t.Align() <= 8
		w.alt[k] = ok
	}
	return ok
}

// Set sets component id of e to v, adding the component if absent.
func Set[T any](w *World, e Entity, id ComponentID, v T) error {
	ch, r, row, err := w.target(e, id)
	if err != nil {
		return err
	}
	if !typeOK[T](w, id) {
		return ErrTypeMismatch
	}
	castSlice[byte, T](w.row(ch, r, row, id))[0] = v
	return nil
}

// Get returns a copy of component id of e; ok is false if e is not alive,
// lacks the component, or T does not match it.
func Get[T any](w *World, e Entity, id ComponentID) (T, bool) {
	var zero T
	ch, r, row, err := w.target(e, id)
	if err != nil || !recHas(r, id) || !typeOK[T](w, id) {
		return zero, false
	}
	size := w.comps[id].size
	return castSlice[byte, T](ch.cols[id][row*size : (row+1)*size])[0], true
}

// Ptr returns a pointer to component id of e for in-place modification and
// stamps the component's change version. It returns nil if e is not alive,
// lacks the component, or T does not match it. The pointer is valid until
// the world is next modified structurally; do not keep it across frames.
func Ptr[T any](w *World, e Entity, id ComponentID) *T {
	ch, r, row, err := w.target(e, id)
	if err != nil || !recHas(r, id) || !typeOK[T](w, id) {
		return nil
	}
	size := w.comps[id].size
	w.touch(ch)
	ch.vers[id] = w.version
	return &castSlice[byte, T](ch.cols[id][row*size : (row+1)*size])[0]
}

// chunkAt returns chunk c if it is in use.
func (w *World) chunkAt(c int) *chunk {
	if c < 0 || c >= len(w.chunks) {
		return nil
	}
	return w.chunks[c]
}

// ChunkStructVersion returns the structural version of chunk c (0 if c is
// not allocated).
func (w *World) ChunkStructVersion(c int) uint64 {
	if ch := w.chunkAt(c); ch != nil {
		return ch.structVer
	}
	return 0
}

// ChunkComponentVersion returns the change version of component id in
// chunk c (0 if unknown).
func (w *World) ChunkComponentVersion(c int, id ComponentID) uint64 {
	if ch := w.chunkAt(c); ch != nil && int(id) < len(w.comps) {
		return ch.vers[id]
	}
	return 0
}

// ChunkColumn returns the raw column of component id in chunk c
// (ChunkCapacity*Size bytes), or nil if it was never allocated. Read only.
//
// A variable-size component's column is its handles followed by the
// prefix of the chunk's arena that was ever used (varsize.go, peak: zeros
// past the used bytes): what a copy needs, in the slot's layout.
func (w *World) ChunkColumn(c int, id ComponentID) []byte {
	if ch := w.chunkAt(c); ch != nil && int(id) < len(w.comps) {
		if col := ch.cols[id]; col != nil && w.comps[id].maxLen != 0 {
			return col[:w.capacity*w.comps[id].size+ch.arenas[id].peak] // zeros past used (Z1)
		}
		return ch.cols[id]
	}
	return nil
}

// ChunkRows returns the rows of chunk c below the high-water mark:
// min(ChunkCapacity, HighWater - c*ChunkCapacity), 0 if negative.
func (w *World) ChunkRows(c int) int {
	n := w.highWater - c*w.capacity
	switch {
	case c < 0 || n <= 0:
		return 0
	case n > w.capacity:
		return w.capacity
	}
	return n
}

// ChunkAlive returns the number of alive entities in chunk c.
func (w *World) ChunkAlive(c int) int {
	if ch := w.chunkAt(c); ch != nil {
		return ch.alive
	}
	return 0
}

// indexQueue is a growable FIFO ring of free entity indices.
type indexQueue struct {
	buf  []uint32
	head int
	n    int
}

func (q *indexQueue) push(i uint32) {
	if q.n == len(q.buf) {
		nb := make([]uint32, max(64, 2*len(q.buf)))
		for k := 0; k < q.n; k++ {
			nb[k] = q.buf[(q.head+k)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = i
	q.n++
}

func (q *indexQueue) pop() (uint32, bool) {
	if q.n == 0 {
		return 0, false
	}
	i := q.buf[q.head]
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return i, true
}

func (q *indexQueue) reset() { q.head, q.n = 0, 0 }
