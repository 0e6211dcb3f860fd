package layout

import (
	"bytes"
	"fmt"
	"hash"
	"hash/fnv"
	"unicode/utf8"
)

const (
	// MaxComponents is the number of component ids a world can register:
	// masks have up to MaxMaskWords 64-bit words (mask.go), and a component
	// id is a byte (world.ComponentID).
	MaxComponents = 256
	// MaxSlots bounds the number of frame slots in a world segment.
	MaxSlots = 64
	// ComponentEntrySize is the size of one component table entry.
	ComponentEntrySize = 64
	// ComponentNameLen is the NUL-padded name field of a component entry.
	ComponentNameLen = 32
	// SlotHeaderSize is the size of a frame slot header.
	SlotHeaderSize = 256
	// PageSize is the alignment of slots and sections.
	PageSize = 4096
	// MinChunkCapacity and MaxChunkCapacity bound entities per chunk.
	MinChunkCapacity = 16
	MaxChunkCapacity = 65536
	// MaxColumnBytes bounds a component's size.
	MaxComponentSize = 4096
)

// Entity record flags.
const (
	FlagAlive uint32 = 1
)

// ComponentDesc describes one registered component type.
type ComponentDesc struct {
	Name        string
	Size        uint32
	Align       uint32
	Fingerprint uint64
	// MaxLen and PerEntity are those of a variable-size component
	// (varsize.go): the longest value and the arena bytes per entity; 0 for
	// a fixed-size component.
	MaxLen, PerEntity uint32
	// Fields describe the value's bytes (fields.go); Fingerprint is
	// FieldsFingerprint of Size, Align and them.
	Fields []FieldDesc
}

// Equal reports whether c and d describe the same component.
func (c ComponentDesc) Equal(d ComponentDesc) bool {
	return c.Name == d.Name && c.Size == d.Size && c.Align == d.Align && c.Fingerprint == d.Fingerprint &&
		c.MaxLen == d.MaxLen && c.PerEntity == d.PerEntity && equalFields(c.Fields, d.Fields)
}

func equalFields(a, b []FieldDesc) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// SchemaHash hashes an ordered component table. Two processes agree on the
// schema exactly when their hashes agree.
func SchemaHash(comps []ComponentDesc) uint64 { return schemaHasher(comps).Sum64() }

// schemaHasher returns the FNV-1a 64 state after the components of a
// schema (SchemaHash; SchemaHashOf continues it with the singletons).
func schemaHasher(comps []ComponentDesc) hash.Hash64 {
	h := fnv.New64a()
	var buf [20]byte
	for _, c := range comps {
		h.Write([]byte(c.Name))
		le.PutUint32(buf[0:], c.Size)
		le.PutUint32(buf[4:], c.Align)
		le.PutUint64(buf[8:], c.Fingerprint)
		le.PutUint32(buf[16:], uint32(len(c.Name)))
		h.Write(buf[:])
		if c.VarSize() {
			le.PutUint32(buf[0:], c.MaxLen)
			le.PutUint32(buf[4:], c.PerEntity)
			h.Write(buf[:8])
		}
	}
	return h
}

// World kind header fields (offsets from the start of the segment).
const (
	OffWSlots       = OffKindHeader + 0  // u32
	OffWComponents  = OffKindHeader + 4  // u32
	OffWChunkCap    = OffKindHeader + 8  // u32
	OffWMaxChunks   = OffKindHeader + 12 // u32
	OffWChunkStride = OffKindHeader + 16 // u64
	OffWSlotStride  = OffKindHeader + 24 // u64
	OffWChunkHeader = OffKindHeader + 32 // u64 chunk header size
	OffWEntityOff   = OffKindHeader + 40 // u64 offset of entity records in a chunk block
	// OffWMaskWords is W, the 64-bit words of every per-entity and per-chunk
	// mask (MaskWords of the component count; records are RecordSize(W)
	// bytes). 0 in a segment written before the field existed, where W is 1.
	OffWMaskWords = OffKindHeader + 48 // u32
	// OffWSingletons is NS, the world's singleton count (0..MaxSingletons).
	OffWSingletons = OffKindHeader + 52 // u32
	// OffWChunksOff is the offset of chunk 0 inside a slot: the end of the
	// slot header and its singleton area (singletons.go); 256 when NS = 0.
	OffWChunksOff      = OffKindHeader + 56 // u64
	OffWLatest         = 2048               // u64 latest word: frame<<8 | (slot+1); 0 = nothing published
	OffWStatPublishes  = 2176               // u64
	OffWStatSkipped    = 2184               // u64 publishes skipped: no free slot
	OffWStatLastNanos  = 2192               // u64 duration of the last publish
	OffWStatBytes      = 2200               // u64 bytes copied, total
	OffWStatChunks     = 2208               // u64 chunk columns copied, total
	OffWStatHeartbeat  = 2216               // u64 Unix nanos of the last publish
	OffWStatAborted    = 2224               // u64 slot claims aborted because a reader pinned the slot
	OffWStatFrameNanos = 2232               // u64 duration of the last engine frame
	// OffWStatSnapRefused counts the snapshots the engine refused a due
	// convoy group (no free slot: a snapshot never takes the slot the next
	// publish needs); the engine's Engine.Bounds().SnapshotsRefused.
	OffWStatSnapRefused = 2240 // u64
	// OffWStatSnapNoSpace counts the refused snapshots (part of
	// OffWStatSnapRefused) whose slot could not be given memory: the
	// configured shared-memory limit or a full file system.
	OffWStatSnapNoSpace = 2248 // u64
	// OffWStatPubNoSpace counts the publishes skipped (part of
	// OffWStatSkipped) because no slot could be given memory.
	OffWStatPubNoSpace = 2256 // u64
	// OffWStatBacked is the bytes of the segment the engine has allocated
	// (FixedBytes plus every slot's SlotSpanBytes); the file's allocated
	// blocks equal it unless a reader faulted holes in (see backing.go).
	OffWStatBacked = 2264 // u64
	// OffWStatShmLimit is the configured limit on OffWStatBacked (0: none
	// but the file system's room).
	OffWStatShmLimit = 2272 // u64
	// OffWStatTrimmed counts the slots given back to the file system after
	// they stayed unused (not latest, not leased) for the trim delay.
	OffWStatTrimmed = 2280 // u64
)

// Slot header fields (offsets from the start of the slot).
const (
	SlotSeq        = 0  // u64 seqlock: odd while the slot is being written
	SlotFrame      = 8  // u64 frame number published in the slot
	SlotVersion    = 16 // u64 world version at publish
	SlotMask       = 24 // u64 components synced by the last publish: word 0 (SlotMaskOff)
	SlotChunks     = 32 // u32 chunks in use
	SlotEntities   = 36 // u32 entity index high-water mark
	SlotAlive      = 40 // u32 alive entities
	SlotPubNanos   = 48 // u64 Unix nanos of the publish
	SlotBytes      = 56 // u64 bytes copied by the last publish
	SlotChunksCopy = 64 // u32 chunk columns copied by the last publish
	SlotMaskHi     = 72 // 3 x u64: words 1..3 of the slot mask (components 64..255)
)

// Chunk block header fields (offsets from the start of the chunk block).
const (
	ChunkStructVersion = 0  // u64
	ChunkRows          = 8  // u32 rows in use (entity index high-water within the chunk)
	ChunkAlive         = 12 // u32 alive entities in the chunk
	// ChunkRecordMask is the component mask the chunk's entity records were
	// filtered with (W u64 words, up to MaxMaskWords: ChunkRecordMaskOff):
	// every record's mask is its entity's mask & this one. In every chunk in
	// use of a complete slot it equals the slot's mask (a full publish:
	// every component of the schema).
	ChunkRecordMask = 16
	ChunkVersions   = 64 // [components]u64 per-component change versions
)

// WorldParams are the creation parameters of a world segment.
type WorldParams struct {
	Instance      string
	Slots         int
	ChunkCapacity int
	MaxChunks     int
	Components    []ComponentDesc
	Singletons    []SingletonDesc
}

// WorldGeometry is the derived, fully determined placement of everything in
// a world segment.
type WorldGeometry struct {
	Slots           int
	ChunkCapacity   int
	MaxChunks       int
	Components      []ComponentDesc
	Singletons      []SingletonDesc
	SingletonOff    []int // offset of each singleton's value inside a slot (singletons.go)
	ChunksOff       int   // offset of chunk 0 inside a slot: after the header and the singleton area
	SlotHead        int   // bytes at the start of every slot that always hold memory: ChunksOff rounded up to a page
	MaskWords       int   // W: words of every entity and chunk record mask (MaskWords)
	RecordSize      int   // bytes of one entity record: RecordSize(W)
	ChunkHeaderSize int
	EntityOff       int   // offset of the entity records inside a chunk block
	ColumnOff       []int // offset of each component column inside a chunk block
	ChunkStride     int
	SlotStride      int
	ComponentsOff   int // section offset of the component table
	SingletonsOff   int // section offset of the singleton table (after the component table)
	FieldsOff       int // section offset of the field table (after the singleton table; fields.go)
	SlotsOff        int // section offset of the first slot
	TotalSize       int
}

func validComponent(c ComponentDesc) error {
	if c.Name == "" || len(c.Name) >= ComponentNameLen || !utf8.ValidString(c.Name) || bytes.IndexByte([]byte(c.Name), 0) >= 0 {
		return fmt.Errorf("component name %q: must be 1..%d bytes of UTF-8 without NUL", c.Name, ComponentNameLen-1)
	}
	if c.Align != 1 && c.Align != 2 && c.Align != 4 && c.Align != 8 {
		return fmt.Errorf("component %q: alignment %d not in {1,2,4,8}", c.Name, c.Align)
	}
	if c.Size == 0 || c.Size > MaxComponentSize || c.Size%c.Align != 0 {
		return fmt.Errorf("component %q: size %d must be 1..%d and a multiple of its alignment %d", c.Name, c.Size, MaxComponentSize, c.Align)
	}
	if c.VarSize() {
		if err := validVarSize(c); err != nil {
			return err
		}
	} else if c.PerEntity != 0 {
		return fmt.Errorf("component %q: arena bytes per entity %d, but no max length", c.Name, c.PerEntity)
	}
	return validFields(fmt.Sprintf("component %q", c.Name), c.Size, c.Align, c.Fingerprint, c.VarSize(), c.Fields)
}

// ComputeWorldGeometry validates p and derives the geometry of its segment.
func ComputeWorldGeometry(p WorldParams) (*WorldGeometry, error) {
	bad := func(format string, a ...any) (*WorldGeometry, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidParam, fmt.Sprintf(format, a...))
	}
	if p.Slots < 2 || p.Slots > MaxSlots {
		return bad("slots %d not in [2,%d]", p.Slots, MaxSlots)
	}
	if p.ChunkCapacity < MinChunkCapacity || p.ChunkCapacity > MaxChunkCapacity || p.ChunkCapacity&(p.ChunkCapacity-1) != 0 {
		return bad("chunk capacity %d must be a power of two in [%d,%d]", p.ChunkCapacity, MinChunkCapacity, MaxChunkCapacity)
	}
	if p.MaxChunks < 1 || p.MaxChunks > 1<<20 {
		return bad("max chunks %d not in [1,%d]", p.MaxChunks, 1<<20)
	}
	if len(p.Components) > MaxComponents {
		return bad("%d components (max %d)", len(p.Components), MaxComponents)
	}
	for i, c := range p.Components {
		if err := validComponent(c); err != nil {
			return bad("%v", err)
		}
		for j := 0; j < i; j++ {
			if p.Components[j].Name == c.Name {
				return bad("component %q registered twice", c.Name)
			}
		}
	}
	if len(p.Singletons) > MaxSingletons {
		return bad("%d singletons (max %d)", len(p.Singletons), MaxSingletons)
	}
	for i, s := range p.Singletons {
		if err := validSingleton(s); err != nil {
			return bad("%v", err)
		}
		for j := 0; j < i; j++ {
			if p.Singletons[j].Name == s.Name {
				return bad("singleton %q registered twice", s.Name)
			}
		}
	}
	g := &WorldGeometry{Slots: p.Slots, ChunkCapacity: p.ChunkCapacity, MaxChunks: p.MaxChunks, Components: p.Components,
		Singletons: p.Singletons}
	g.placeSingletons()
	nc := len(p.Components)
	g.MaskWords = MaskWords(nc)
	g.RecordSize = RecordSize(g.MaskWords)
	g.ChunkHeaderSize = ChunkVersions + align(nc*8, 64)
	g.EntityOff = g.ChunkHeaderSize
	off := align(g.EntityOff+p.ChunkCapacity*g.RecordSize, 64)
	g.ColumnOff = make([]int, nc)
	for i, c := range p.Components {
		if arena := p.ChunkCapacity * int(c.PerEntity); arena > MaxArenaBytes {
			return bad("component %q: an arena of %d bytes per chunk (at most %d)", c.Name, arena, MaxArenaBytes)
		}
		g.ColumnOff[i] = off
		off = align(off+p.ChunkCapacity*(int(c.Size)+int(c.PerEntity)), 64) // the handles and the arena (varsize.go)
	}
	g.ChunkStride = off
	slot := g.ChunksOff + p.MaxChunks*g.ChunkStride
	if slot/p.MaxChunks < g.ChunkStride || slot > 1<<40 {
		return bad("slot size overflows")
	}
	g.SlotStride = align(slot, PageSize)
	g.ComponentsOff = HeaderSize
	g.SingletonsOff = g.ComponentsOff + g.ComponentTableSize()
	g.FieldsOff = g.SingletonsOff + g.SingletonTableSize()
	g.SlotsOff = align(g.FieldsOff+g.FieldTableSize(), PageSize)
	g.TotalSize = g.SlotsOff + p.Slots*g.SlotStride
	if g.TotalSize > 1<<44 {
		return bad("segment of %d bytes is too large", g.TotalSize)
	}
	return g, nil
}

// ComponentTableSize is the size of the component table section: 64
// entries per mask word (4096 bytes for a world of at most 64 components,
// as before masks grew).
func (g *WorldGeometry) ComponentTableSize() int { return 64 * g.MaskWords * ComponentEntrySize }

// EncodeWorld initialises a zeroed world segment of g.TotalSize bytes. The
// ready word is left at zero: the caller marks it ready with MarkReady.
func EncodeWorld(b []byte, g *WorldGeometry, h Header) error {
	if len(b) != g.TotalSize {
		return fmt.Errorf("%w: buffer of %d bytes, geometry needs %d", ErrInvalidParam, len(b), g.TotalSize)
	}
	h.Kind = KindWorld
	h.TotalSize = uint64(g.TotalSize)
	h.SchemaHash = g.SchemaHash()
	h.Sections = []Section{
		{ID: SecComponents, Count: uint32(len(g.Components)), Offset: uint64(g.ComponentsOff), Size: uint64(g.ComponentTableSize())},
		{ID: SecSlots, Count: uint32(g.Slots), Offset: uint64(g.SlotsOff), Size: uint64(g.Slots * g.SlotStride)},
	}
	if ns := len(g.Singletons); ns > 0 {
		h.Sections = append(h.Sections, Section{ID: SecSingletons, Count: uint32(ns), Offset: uint64(g.SingletonsOff), Size: uint64(g.SingletonTableSize())})
	}
	h.Sections = append(h.Sections, Section{ID: SecFields, Count: uint32(g.FieldCount()), Offset: uint64(g.FieldsOff), Size: uint64(g.FieldTableSize())})
	g.encodeFields(b)
	put32(b, OffWSlots, uint32(g.Slots))
	put32(b, OffWComponents, uint32(len(g.Components)))
	put32(b, OffWChunkCap, uint32(g.ChunkCapacity))
	put32(b, OffWMaxChunks, uint32(g.MaxChunks))
	put64(b, OffWChunkStride, uint64(g.ChunkStride))
	put64(b, OffWSlotStride, uint64(g.SlotStride))
	put64(b, OffWChunkHeader, uint64(g.ChunkHeaderSize))
	put64(b, OffWEntityOff, uint64(g.EntityOff))
	put32(b, OffWMaskWords, uint32(g.MaskWords))
	put32(b, OffWSingletons, uint32(len(g.Singletons)))
	put64(b, OffWChunksOff, uint64(g.ChunksOff))
	g.encodeSingletons(b)
	for i, c := range g.Components {
		o := g.ComponentsOff + i*ComponentEntrySize
		copy(b[o:o+ComponentNameLen], c.Name)
		put32(b, o+32, c.Size)
		put32(b, o+36, c.Align)
		put64(b, o+40, c.Fingerprint)
		put64(b, o+48, uint64(g.ColumnOff[i]))
		put32(b, o+ComponentMaxLen, c.MaxLen)
		put32(b, o+ComponentPerEntity, c.PerEntity)
	}
	return EncodeHeader(b, &h)
}

// World is a validated view of a world segment.
type World struct {
	B      []byte
	Header *Header
	*WorldGeometry
}

// DecodeWorld validates a world segment: the common header, the world kind
// header, the component table, and that every stored offset and stride equals
// the one recomputed from the parameters. It never panics.
func DecodeWorld(b []byte) (*World, error) {
	h, err := DecodeHeader(b)
	if err != nil {
		return nil, err
	}
	if h.Kind != KindWorld {
		return nil, fmt.Errorf("%w: %s, want world", ErrBadKind, KindName(h.Kind))
	}
	nc := int(get32(b, OffWComponents))
	if nc > MaxComponents {
		return nil, corrupt("%d components (max %d)", nc, MaxComponents)
	}
	comps := make([]ComponentDesc, nc)
	cs, ok := h.Section(SecComponents)
	if !ok || cs.Size < uint64(64*MaskWords(nc)*ComponentEntrySize) || int(cs.Count) != nc {
		return nil, corrupt("component table section missing or wrong size")
	}
	colOff := make([]uint64, nc)
	for i := range comps {
		o := int(cs.Offset) + i*ComponentEntrySize
		name, err := entryName(b[o : o+ComponentNameLen])
		if err != nil {
			return nil, corrupt("component %d: %v", i, err)
		}
		comps[i] = ComponentDesc{Name: name, Size: get32(b, o+32), Align: get32(b, o+36), Fingerprint: get64(b, o+40),
			MaxLen: get32(b, o+ComponentMaxLen), PerEntity: get32(b, o+ComponentPerEntity)}
		colOff[i] = get64(b, o+48)
	}
	singles, singleOff, err := decodeSingletons(b, h, int(get32(b, OffWSingletons)))
	if err != nil {
		return nil, err
	}
	if err := decodeFields(b, h, comps, singles); err != nil {
		return nil, err
	}
	p := WorldParams{
		Instance:      h.Instance,
		Slots:         int(get32(b, OffWSlots)),
		ChunkCapacity: int(get32(b, OffWChunkCap)),
		MaxChunks:     int(get32(b, OffWMaxChunks)),
		Components:    comps,
		Singletons:    singles,
	}
	g, err := ComputeWorldGeometry(p)
	if err != nil {
		return nil, corrupt("world parameters: %v", err)
	}
	if g.SchemaHash() != h.SchemaHash {
		return nil, corrupt("schema hash does not match the component and singleton tables")
	}
	for i := range singles {
		if singleOff[i] != uint32(g.SingletonOff[i]) {
			return nil, corrupt("singleton %q: value offset %d, want %d", singles[i].Name, singleOff[i], g.SingletonOff[i])
		}
	}
	for i := range comps {
		if colOff[i] != uint64(g.ColumnOff[i]) {
			return nil, corrupt("component %q: column offset %d, want %d", comps[i].Name, colOff[i], g.ColumnOff[i])
		}
	}
	checks := []struct {
		name      string
		got, want uint64
	}{
		{"chunk stride", get64(b, OffWChunkStride), uint64(g.ChunkStride)},
		{"slot stride", get64(b, OffWSlotStride), uint64(g.SlotStride)},
		{"chunk header size", get64(b, OffWChunkHeader), uint64(g.ChunkHeaderSize)},
		{"entity offset", get64(b, OffWEntityOff), uint64(g.EntityOff)},
		{"mask words", uint64(storedMaskWords(b)), uint64(g.MaskWords)},
		{"chunks offset", get64(b, OffWChunksOff), uint64(g.ChunksOff)},
		{"component table size", cs.Size, uint64(g.ComponentTableSize())},
		{"total size", h.TotalSize, uint64(g.TotalSize)},
		{"component table offset", cs.Offset, uint64(g.ComponentsOff)},
	}
	if ss, ok := h.Section(SecSlots); ok {
		checks = append(checks,
			struct {
				name      string
				got, want uint64
			}{"slots offset", ss.Offset, uint64(g.SlotsOff)},
			struct {
				name      string
				got, want uint64
			}{"slots size", ss.Size, uint64(g.Slots * g.SlotStride)})
		if len(singles) > 0 {
			sec, _ := h.Section(SecSingletons)
			checks = append(checks, struct {
				name      string
				got, want uint64
			}{"singleton table offset", sec.Offset, uint64(g.SingletonsOff)})
		}
	} else {
		return nil, corrupt("slot section missing")
	}
	fs, _ := h.Section(SecFields) // decodeFields found it
	checks = append(checks, struct {
		name      string
		got, want uint64
	}{"field table offset", fs.Offset, uint64(g.FieldsOff)}, struct {
		name      string
		got, want uint64
	}{"field table size", fs.Size, uint64(g.FieldTableSize())})
	for _, c := range checks {
		if c.got != c.want {
			return nil, corrupt("%s is %d, want %d", c.name, c.got, c.want)
		}
	}
	return &World{B: b, Header: h, WorldGeometry: g}, nil
}

// storedMaskWords reads the world's W; 0, from a segment written before the
// field existed (at most 64 components), reads as 1.
func storedMaskWords(b []byte) uint32 {
	if w := get32(b, OffWMaskWords); w != 0 {
		return w
	}
	return 1
}

// SchemaHash returns the schema hash of the world.
func (g *WorldGeometry) SchemaHash() uint64 { return SchemaHashOf(g.Components, g.Singletons) }

// SlotOff returns the offset of slot s.
func (g *WorldGeometry) SlotOff(s int) int { return g.SlotsOff + s*g.SlotStride }

// ChunkOff returns the offset of chunk block c of slot s.
func (g *WorldGeometry) ChunkOff(s, c int) int {
	return g.SlotOff(s) + g.ChunksOff + c*g.ChunkStride
}

// ColumnRange returns [off, end) of component k's column in chunk c of slot s.
func (g *WorldGeometry) ColumnRange(s, c, k int) (int, int) {
	o := g.ChunkOff(s, c) + g.ColumnOff[k]
	return o, o + g.ChunkCapacity*int(g.Components[k].Size)
}

// EntityRange returns [off, end) of the entity records of chunk c of slot s.
func (g *WorldGeometry) EntityRange(s, c int) (int, int) {
	o := g.ChunkOff(s, c) + g.EntityOff
	return o, o + g.ChunkCapacity*g.RecordSize
}

// ChunkVersionOff returns the offset of the change version of component k
// in chunk c of slot s.
func (g *WorldGeometry) ChunkVersionOff(s, c, k int) int {
	return g.ChunkOff(s, c) + ChunkVersions + 8*k
}

// PackLatest packs a frame number and slot index into the latest word.
func PackLatest(frame uint64, slot int) uint64 { return frame<<8 | uint64(slot+1) }

// UnpackLatest splits a latest word; ok is false when nothing is published.
func UnpackLatest(w uint64) (frame uint64, slot int, ok bool) {
	if w&0xff == 0 {
		return 0, 0, false
	}
	return w >> 8, int(w&0xff) - 1, true
}

// SlotInfo is a plain decoded copy of a slot header.
type SlotInfo struct {
	Seq, Frame, Version     uint64
	Mask                    [MaxMaskWords]uint64 // the slot mask (SlotMaskOff)
	Chunks, Entities, Alive uint32
	PubNanos, Bytes         uint64
	ChunksCopied            uint32
}

// ReadSlotInfo decodes the header of slot s. Every field is read with a
// word load (atomic where the mapping is aligned, as it always is), so a
// concurrent publisher can never tear a field; the whole header is only
// meaningful if the seq is even and unchanged afterwards.
func (w *World) ReadSlotInfo(s int) SlotInfo {
	o := w.SlotOff(s)
	b := w.B
	var mask [MaxMaskWords]uint64
	for j := range mask {
		mask[j] = loadMaybeUnaligned64(b, o+SlotMaskOff(j))
	}
	return SlotInfo{
		Seq:          loadMaybeUnaligned64(b, o+SlotSeq),
		Frame:        loadMaybeUnaligned64(b, o+SlotFrame),
		Version:      loadMaybeUnaligned64(b, o+SlotVersion),
		Mask:         mask,
		Chunks:       loadMaybeUnaligned32(b, o+SlotChunks),
		Entities:     loadMaybeUnaligned32(b, o+SlotEntities),
		Alive:        loadMaybeUnaligned32(b, o+SlotAlive),
		PubNanos:     loadMaybeUnaligned64(b, o+SlotPubNanos),
		Bytes:        loadMaybeUnaligned64(b, o+SlotBytes),
		ChunksCopied: loadMaybeUnaligned32(b, o+SlotChunksCopy),
	}
}

// Validate checks the slot header fields against the geometry.
func (g *WorldGeometry) ValidateSlotInfo(si SlotInfo) error {
	if int(si.Chunks) > g.MaxChunks {
		return corrupt("slot uses %d chunks, max %d", si.Chunks, g.MaxChunks)
	}
	if uint64(si.Entities) > uint64(si.Chunks)*uint64(g.ChunkCapacity) {
		return corrupt("slot entity high-water %d beyond %d chunks", si.Entities, si.Chunks)
	}
	if si.Alive > si.Entities {
		return corrupt("slot has %d alive of %d entities", si.Alive, si.Entities)
	}
	if MaskBeyond(si.Mask, len(g.Components)) != ([MaxMaskWords]uint64{}) {
		return corrupt("slot mask %s names unregistered components", FormatMask(si.Mask))
	}
	return nil
}

// Locate names what lies at byte offset off of a world segment of
// geometry g: `component "pos" (column of chunk 3, slot 2)`, "entity
// records of chunk 3, slot 2", "slot header of slot 2", "chunk header of
// chunk 3, slot 2", "the component table", "the segment header" or
// "beyond the segment". A module that faults writing into its read-only
// view is told which component it wrote into.
func (g *WorldGeometry) Locate(off int) string {
	switch {
	case off < 0 || off >= g.TotalSize:
		return "beyond the segment"
	case off < g.ComponentsOff:
		return "the segment header"
	case off < g.SlotsOff:
		return "the component table"
	}
	s := (off - g.SlotsOff) / g.SlotStride
	in := off - g.SlotOff(s)
	if in < SlotHeaderSize {
		return fmt.Sprintf("slot header of slot %d", s)
	}
	c := (in - SlotHeaderSize) / g.ChunkStride
	if c >= g.MaxChunks {
		return fmt.Sprintf("padding of slot %d", s)
	}
	for k := range g.Components {
		if o, e := g.ColumnRange(s, c, k); off >= o && off < e {
			return fmt.Sprintf("component %q (column of chunk %d, slot %d)", g.Components[k].Name, c, s)
		}
	}
	if o, e := g.EntityRange(s, c); off >= o && off < e {
		return fmt.Sprintf("entity records of chunk %d, slot %d", c, s)
	}
	return fmt.Sprintf("chunk header of chunk %d, slot %d", c, s)
}
