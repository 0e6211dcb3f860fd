package layout

// Backing: which pages of a world segment hold memory.
//
// A world segment reserves every slot at the size of the whole world
// (MaxChunks chunks of every component), but only the pages a slot's fills
// wrote are allocated: the file is sparse. The head of every slot (SlotHead:
// its first page, with its header, its singleton area and the start of chunk
// 0; more pages when the singletons need them) and everything before the
// first slot are allocated when the segment is created; the rest of slot s is allocated,
// before the engine writes it, for the chunks and components the slot header
// words SlotBackChunks and SlotBackMask name, and given back (a hole) when
// the engine trims the slot.
//
// Invariant (B1): the engine writes a slot's chunk area only inside the
// spans of (SlotBackMask, SlotBackChunks) (SlotSpans), and those words name
// a superset of the slot's allocated pages at every instant: they are raised
// before the engine allocates and lowered only after it punched the pages
// out. A new engine that adopts a segment (recovery) therefore reads only
// allocated pages when it scans the versions a dead engine left.
//
// Invariant (B2): a complete slot's SlotChunks <= SlotBackChunks and its
// SlotMask is a subset of SlotBackMask, so a reader that reads only chunks
// < SlotChunks and columns of SlotMask (the reader rules of LAYOUT.md) reads
// only allocated pages. Reading anything else of a slot is not only
// meaningless but costly: on tmpfs a read fault on a hole allocates a page,
// and faults with SIGBUS when the file system is full.

// Slot header words of the backing (offsets from the start of the slot),
// after the slot mask's words 1..3 (SlotMaskHi).
const (
	SlotBackMask   = 96  // MaxMaskWords × u64 (96, 104, 112, 120): components whose columns are allocated
	SlotBackChunks = 128 // u32 chunks whose header, records and SlotBackMask columns are allocated
)

// SlotBackMaskOff returns the offset, in a slot header, of word j of the
// back mask: 96 + 8j.
func SlotBackMaskOff(j int) int { return wordOff(SlotBackMask, j) }

// SlotSpans calls emit with the page-aligned byte ranges [lo, hi) of slot s
// that a fill of the components of mask writes in chunks [c0, c1): each
// chunk's header and entity records and its columns of mask, rounded out to
// whole pages, merged where they touch, in increasing order, and never
// including the slot's head (SlotHead: its first page, or more with
// singletons; always allocated). mask bits beyond the
// schema are ignored.
func (g *WorldGeometry) SlotSpans(s int, mask [MaxMaskWords]uint64, c0, c1 int, emit func(lo, hi int)) {
	floor := g.SlotOff(s) + g.SlotHead
	plo, phi := -1, -1
	add := func(lo, hi int) {
		lo = max(lo&^(PageSize-1), floor)
		hi = (hi + PageSize - 1) &^ (PageSize - 1)
		if lo >= hi {
			return
		}
		if plo >= 0 && lo <= phi {
			phi = max(phi, hi)
			return
		}
		if plo >= 0 {
			emit(plo, phi)
		}
		plo, phi = lo, hi
	}
	for c := max(c0, 0); c < min(c1, g.MaxChunks); c++ {
		co := g.ChunkOff(s, c)
		add(co, co+g.EntityOff+g.ChunkCapacity*g.RecordSize)
		for k := range g.Components {
			if mask[k/64]&(1<<uint(k%64)) != 0 {
				lo, hi := g.ColumnSpan(s, c, k) // with its arena (varsize.go)
				add(lo, hi)
			}
		}
	}
	if plo >= 0 {
		emit(plo, phi)
	}
}

// SlotSpanBytes returns the bytes of SlotSpans(s, mask, 0, chunks): what a
// slot backed for mask and chunks allocates beyond its head.
func (g *WorldGeometry) SlotSpanBytes(s int, mask [MaxMaskWords]uint64, chunks int) int {
	n := 0
	g.SlotSpans(s, mask, 0, chunks, func(lo, hi int) { n += hi - lo })
	return n
}

// FixedBytes returns the bytes of a world segment that are allocated at
// creation: everything before the first slot and the head of every slot
// (its first page, and the pages of its singleton area beyond it).
func (g *WorldGeometry) FixedBytes() int { return g.SlotsOff + g.Slots*g.SlotHead }
