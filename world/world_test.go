package world

import (
	"encoding/binary"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

type Position struct{ X, Y, Z float32 }
type Velocity struct{ X, Y, Z float32 }
type Health struct{ HP, Max int32 }

// Weather is a test singleton a simulation (or a module) sets.
type Weather struct{ Wind, Rain float32 }

type fixture struct {
	w             *World
	pos, vel, hp  ComponentID
	label         ComponentID // a string component: up to 40 bytes, 16 arena bytes per entity
	clock, wthr   SingletonID // the engine's Time, and Weather
	chunkCapacity int
}

func newFixture(t testing.TB, capacity, maxChunks int) *fixture {
	t.Helper()
	r := NewRegistry()
	f := &fixture{chunkCapacity: capacity}
	var err error
	f.pos, err = Register[Position](r, "Position")
	require.NoError(t, err)
	f.vel, err = Register[Velocity](r, "Velocity")
	require.NoError(t, err)
	f.hp, err = Register[Health](r, "Health")
	require.NoError(t, err)
	f.label, err = RegisterBytes(r, "Label", BytesSpec{MaxLen: 40, PerEntity: 16, UTF8: true})
	require.NoError(t, err)
	f.clock, err = RegisterTime(r)
	require.NoError(t, err)
	f.wthr, err = RegisterSingleton[Weather](r, "Weather")
	require.NoError(t, err)
	f.w, err = New(r, Config{ChunkCapacity: capacity, MaxChunks: maxChunks})
	require.NoError(t, err)
	return f
}

func TestConfig(t *testing.T) {
	w, err := New(NewRegistry(), Config{})
	require.NoError(t, err)
	require.Equal(t, DefaultChunkCapacity, w.ChunkCapacity())
	require.Equal(t, DefaultMaxChunks, w.MaxChunks())
	require.Equal(t, DefaultChunkCapacity*DefaultMaxChunks, w.MaxEntities())
	require.Equal(t, uint64(1), w.Version())
	require.Equal(t, uint64(2), w.Advance())
	require.Equal(t, uint64(2), w.Version())
	for _, cfg := range []Config{
		{ChunkCapacity: 100}, {ChunkCapacity: 8}, {ChunkCapacity: 1 << 17},
		{MaxChunks: -1}, {MaxChunks: 1<<20 + 1}, {ChunkCapacity: 65536, MaxChunks: 1 << 20},
	} {
		_, err := New(NewRegistry(), cfg)
		require.ErrorIs(t, err, ErrConfig, "%+v", cfg)
	}
	_, err = New(nil, Config{})
	require.ErrorIs(t, err, ErrConfig)
}

func TestEntityHandle(t *testing.T) {
	e := MakeEntity(7, 3)
	require.Equal(t, uint32(7), e.Index())
	require.Equal(t, uint32(3), e.Gen())
	require.Equal(t, Entity(3<<32|7), e)
	require.Equal(t, "e7v3", e.String())
	require.Equal(t, "e-null", Entity(0).String())
	m := MaskOf(1, 5, 63, 64)
	require.Equal(t, Mask{1<<1 | 1<<5 | 1<<63, 1}, m)
	require.True(t, m.Has(5))
	require.False(t, m.Has(2))
	require.True(t, m.Has(64))
	require.False(t, m.Has(65))
	require.True(t, m.Contains(MaskOf(1, 63)))
	require.False(t, m.Contains(MaskOf(1, 2)))
	require.Equal(t, 4, m.Count())
	require.Equal(t, MaskOf(1, 2, 5, 63, 64), m.With(2))
}

func TestCreateDestroyGenerations(t *testing.T) {
	f := newFixture(t, 16, 4)
	w := f.w
	require.False(t, w.IsAlive(0))
	var es []Entity
	for i := 0; i < 20; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.Equal(t, uint32(i), e.Index())
		require.Equal(t, uint32(1), e.Gen())
		require.True(t, w.IsAlive(e))
		es = append(es, e)
	}
	require.Equal(t, 20, w.Count())
	require.Equal(t, 20, w.HighWater())
	require.Equal(t, 2, w.NumChunks())
	require.Equal(t, 16, w.ChunkRows(0))
	require.Equal(t, 4, w.ChunkRows(1))
	require.Equal(t, 0, w.ChunkRows(2))
	require.Equal(t, 0, w.ChunkRows(-1))
	require.Equal(t, 16, w.ChunkAlive(0))
	require.Equal(t, 4, w.ChunkAlive(1))

	e := es[5]
	require.NoError(t, Set(w, e, f.pos, Position{X: 1}))
	require.NoError(t, w.Destroy(e))
	require.False(t, w.IsAlive(e))
	require.Equal(t, 19, w.Count())
	require.Equal(t, 15, w.ChunkAlive(0))
	require.ErrorIs(t, w.Destroy(e), ErrStale)
	_, ok := Get[Position](w, e, f.pos)
	require.False(t, ok)
	require.ErrorIs(t, Set(w, e, f.pos, Position{}), ErrStale)
	require.ErrorIs(t, w.SetRaw(e, f.pos, make([]byte, 12)), ErrStale)
	require.ErrorIs(t, w.Add(e, f.vel), ErrStale)
	require.ErrorIs(t, w.Remove(e, f.pos), ErrStale)
	require.Nil(t, Ptr[Position](w, e, f.pos))
	require.False(t, w.Has(e, f.pos))
	require.Equal(t, Mask{}, w.Mask(e))
	rec := w.ChunkRecord(0, 5)
	require.Equal(t, layout.EntityRecord{Gen: 2}, rec)

	// Handles never issued or of a future generation are invalid too.
	require.False(t, w.IsAlive(MakeEntity(100, 1)))
	require.False(t, w.IsAlive(MakeEntity(3, 2)))
	require.ErrorIs(t, Set(w, MakeEntity(100, 1), f.pos, Position{}), ErrStale)

	// FIFO reuse: destroy 9 then 2; the next creates reuse 5, 9, 2 in that
	// order with bumped generations, then grow the high-water mark.
	require.NoError(t, w.Destroy(es[9]))
	require.NoError(t, w.Destroy(es[2]))
	var got []Entity
	for i := 0; i < 4; i++ {
		n, err := w.Create()
		require.NoError(t, err)
		got = append(got, n)
	}
	require.Equal(t, []Entity{MakeEntity(5, 2), MakeEntity(9, 2), MakeEntity(2, 2), MakeEntity(20, 1)}, got)
	require.False(t, w.IsAlive(e), "old handle of a reused index stays stale")
	require.True(t, w.IsAlive(got[0]))
	// The reused entity starts without components.
	require.Equal(t, Mask{}, w.Mask(got[0]))
	_, ok = Get[Position](w, got[0], f.pos)
	require.False(t, ok)
	require.Equal(t, 21, w.Count())
}

func TestGenerationWraps(t *testing.T) {
	f := newFixture(t, 16, 1)
	w := f.w
	first, _ := w.Create()
	setGenFlags(w.rec(w.chunks[0], 0), ^uint32(0), layout.FlagAlive) // fast-forward (test-only poke)
	require.False(t, w.IsAlive(first))
	e := MakeEntity(0, ^uint32(0))
	require.True(t, w.IsAlive(e))
	require.NoError(t, w.Destroy(e))
	n, _ := w.Create()
	require.Equal(t, MakeEntity(0, 1), n, "generation skips 0")
}

func TestWorldFull(t *testing.T) {
	f := newFixture(t, 16, 2)
	w := f.w
	var last Entity
	for i := 0; i < 32; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		last = e
	}
	_, err := w.Create()
	require.ErrorIs(t, err, ErrWorldFull)
	require.Equal(t, 32, w.Count())
	require.NoError(t, w.Destroy(last))
	e, err := w.Create()
	require.NoError(t, err)
	require.Equal(t, MakeEntity(31, 2), e)
	_, err = w.Create()
	require.ErrorIs(t, err, ErrWorldFull)
}

func TestComponentOps(t *testing.T) {
	f := newFixture(t, 16, 4)
	w := f.w
	e, _ := w.Create()

	require.ErrorIs(t, w.Add(e, 4), ErrUnknownComponent)
	require.ErrorIs(t, Set(w, e, 9, Position{}), ErrUnknownComponent)
	require.ErrorIs(t, w.SetRaw(e, 4, nil), ErrUnknownComponent)
	require.ErrorIs(t, w.Remove(e, f.pos), ErrAbsent)
	require.ErrorIs(t, Set(w, e, f.pos, Health{}), ErrTypeMismatch)
	require.ErrorIs(t, Set(w, e, f.pos, [3]float64{}), ErrTypeMismatch)
	require.Equal(t, Mask{}, w.Mask(e), "rejected writes change nothing")

	// Set adds; Get reads; Ptr modifies in place.
	require.NoError(t, Set(w, e, f.pos, Position{1, 2, 3}))
	require.True(t, w.Has(e, f.pos))
	p, ok := Get[Position](w, e, f.pos)
	require.True(t, ok)
	require.Equal(t, Position{1, 2, 3}, p)
	Ptr[Position](w, e, f.pos).Y = 20
	p, _ = Get[Position](w, e, f.pos)
	require.Equal(t, Position{1, 20, 3}, p)
	// A different pointer-free type of the same size may view the component.
	arr, ok := Get[[3]float32](w, e, f.pos)
	require.True(t, ok)
	require.Equal(t, [3]float32{1, 20, 3}, arr)
	_, ok = Get[Health](w, e, f.pos)
	require.False(t, ok)
	_, ok = Get[[3]*int32](w, e, 0) // pointer type of another size
	require.False(t, ok)
	_, ok = Get[[12]*byte](w, e, 0) // wrong size anyway; never viewed
	require.False(t, ok)

	// Raw access.
	raw := make([]byte, 12)
	binary.LittleEndian.PutUint32(raw[4:], 0x40400000) // 3.0
	require.ErrorIs(t, w.SetRaw(e, f.pos, raw[:11]), ErrSize)
	require.NoError(t, w.SetRaw(e, f.pos, raw))
	p, _ = Get[Position](w, e, f.pos)
	require.Equal(t, Position{0, 3, 0}, p)
	b, ok := w.GetRaw(e, f.pos)
	require.True(t, ok)
	require.Equal(t, raw, b)
	_, ok = w.GetRaw(e, f.vel)
	require.False(t, ok)

	// Add gives the zero value even if the row held old bytes.
	require.NoError(t, Set(w, e, f.hp, Health{HP: 5, Max: 9}))
	require.NoError(t, w.Remove(e, f.hp))
	require.False(t, w.Has(e, f.hp))
	_, ok = Get[Health](w, e, f.hp)
	require.False(t, ok)
	require.ErrorIs(t, w.Remove(e, f.hp), ErrAbsent)
	require.NoError(t, w.Add(e, f.hp))
	require.ErrorIs(t, w.Add(e, f.hp), ErrExists)
	h, ok := Get[Health](w, e, f.hp)
	require.True(t, ok)
	require.Equal(t, Health{}, h)
	require.Equal(t, MaskOf(f.pos, f.hp), w.Mask(e))
	// Set on an entity that had a component removed re-adds it.
	require.NoError(t, w.Remove(e, f.hp))
	require.NoError(t, Set(w, e, f.hp, Health{HP: 1}))
	h, _ = Get[Health](w, e, f.hp)
	require.Equal(t, Health{HP: 1}, h)
}

func TestDirtyTracking(t *testing.T) {
	f := newFixture(t, 16, 8)
	w := f.w
	var es []Entity
	for i := 0; i < 16*5; i++ {
		e, _ := w.Create()
		require.NoError(t, Set(w, e, f.pos, Position{X: float32(i)}))
		require.NoError(t, Set(w, e, f.vel, Velocity{X: 1}))
		es = append(es, e)
	}
	require.Nil(t, w.ChunkColumn(0, f.hp), "never written: not allocated")
	require.Len(t, w.ChunkColumn(0, f.pos), 16*12)
	require.Len(t, w.ChunkRecords(0), 16)
	require.Nil(t, w.ChunkRecords(5))
	require.Nil(t, w.ChunkColumn(5, f.pos))
	require.Nil(t, w.ChunkColumn(0, 7))
	type snap struct{ sv, pos, vel, hp uint64 }
	take := func() []snap {
		s := make([]snap, 5)
		for c := range s {
			s[c] = snap{w.ChunkStructVersion(c), w.ChunkComponentVersion(c, f.pos),
				w.ChunkComponentVersion(c, f.vel), w.ChunkComponentVersion(c, f.hp)}
		}
		return s
	}
	for c, s := range take() {
		require.Equal(t, snap{1, 1, 1, 0}, s, "chunk %d", c)
	}
	v := w.Advance()
	require.Equal(t, uint64(2), v)

	// A value write in chunk 3 stamps only chunk 3's Position version.
	require.NoError(t, Set(w, es[3*16+4], f.pos, Position{X: -1}))
	want := []snap{{1, 1, 1, 0}, {1, 1, 1, 0}, {1, 1, 1, 0}, {1, 2, 1, 0}, {1, 1, 1, 0}}
	require.Equal(t, want, take())

	// Adding a component is structural.
	v = w.Advance()
	require.NoError(t, Set(w, es[1*16], f.hp, Health{HP: 3}))
	want[1] = snap{v, 1, 1, v}
	require.Equal(t, want, take())
	require.Len(t, w.ChunkColumn(1, f.hp), 16*8)
	require.Nil(t, w.ChunkColumn(0, f.hp))

	// Ptr stamps; Get and Column do not.
	v = w.Advance()
	_, _ = Get[Position](w, es[0], f.pos)
	q := w.Query(MaskOf(f.pos))
	for q.Next() {
		_ = Column[Position](&q, f.pos)
		_ = Column[Velocity](&q, f.vel)
	}
	require.Equal(t, want, take())
	Ptr[Velocity](w, es[2*16+1], f.vel).X = 5
	want[2].vel = v
	require.Equal(t, want, take())

	// ColumnMut stamps every visited chunk's component version.
	v = w.Advance()
	q = w.Query(MaskOf(f.hp))
	n := 0
	for q.Next() {
		ColumnMut[Health](&q, f.hp)[0].HP++
		n++
	}
	require.Equal(t, 1, n, "only chunk 1 has Health")
	want[1].hp = v
	require.Equal(t, want, take())

	// Remove and Destroy are structural and stamp the affected components.
	v = w.Advance()
	require.NoError(t, w.Remove(es[0], f.vel))
	want[0] = snap{v, 1, v, 0}
	require.NoError(t, w.Destroy(es[4*16+2]))
	want[4] = snap{v, v, v, 0}
	require.Equal(t, want, take())

	// Create is structural in the chunk of the new index only.
	v = w.Advance()
	e, _ := w.Create()
	require.Equal(t, uint32(4*16+2), e.Index())
	want[4].sv = v
	require.Equal(t, want, take())
	require.Equal(t, uint64(0), w.ChunkStructVersion(7))
	require.Equal(t, uint64(0), w.ChunkComponentVersion(0, 9))
}

func TestQueryBasics(t *testing.T) {
	f := newFixture(t, 16, 8)
	w := f.w
	// Chunk 0: pos only; chunk 1: pos+vel on odd rows; chunk 2: all dead.
	for i := 0; i < 48; i++ {
		e, _ := w.Create()
		require.NoError(t, Set(w, e, f.pos, Position{X: float32(i)}))
		if i >= 16 && i < 32 && i%2 == 1 {
			require.NoError(t, Set(w, e, f.vel, Velocity{Y: float32(i)}))
		}
		if i >= 32 {
			require.NoError(t, w.Destroy(e))
		}
	}
	q := w.Query(MaskOf(f.pos, f.vel))
	var chunks []int
	var got []Entity
	for q.Next() {
		chunks = append(chunks, q.Chunk())
		require.Equal(t, 16, q.Rows())
		require.Equal(t, q.Record(3), w.ChunkRecord(1, 3))
		pos := Column[Position](&q, f.pos)
		vel := Column[Velocity](&q, f.vel)
		require.Nil(t, Column[Health](&q, f.hp), "never allocated in this chunk")
		require.Nil(t, Column[Health](&q, f.pos), "type mismatch")
		require.Nil(t, Column[Health](&q, 40), "unknown component")
		for i := 0; i < q.Rows(); i++ {
			if !q.Match(i) {
				continue
			}
			e := q.Entity(i)
			require.Equal(t, float32(e.Index()), pos[i].X)
			require.Equal(t, float32(e.Index()), vel[i].Y)
			got = append(got, e)
		}
	}
	require.Equal(t, []int{1}, chunks, "chunks without Velocity or without alive entities are skipped")
	require.Len(t, got, 8)
	require.False(t, q.Next(), "stays exhausted")
	require.Nil(t, Column[Position](&q, f.pos))
	require.Equal(t, layout.EntityRecord{}, q.Record(0))

	// Mask 0 visits every chunk with alive entities.
	q = w.Query(Mask{})
	n := 0
	for q.Next() {
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) {
				n++
			}
		}
	}
	require.Equal(t, 32, n)
	// A mask with an unregistered component matches nothing.
	q = w.Query(MaskOf(f.pos, 17))
	require.False(t, q.Next())
}

func TestEvents(t *testing.T) {
	f := newFixture(t, 16, 1)
	w := f.w
	require.Empty(t, w.FrameEvents())
	payload := []byte{1, 2, 3}
	w.Emit(7, payload)
	payload[0] = 99 // Emit copied it
	w.Emit(8, nil)
	w.Emit(9, []byte("hello"))
	ev := w.FrameEvents()
	require.Equal(t, []Event{{7, []byte{1, 2, 3}}, {8, []byte{}}, {9, []byte("hello")}}, ev)
	w.ClearEvents()
	require.Empty(t, w.FrameEvents())
	w.Emit(1, []byte{4})
	require.Equal(t, []Event{{1, []byte{4}}}, w.FrameEvents())

	// Steady state: no allocations.
	w.ClearEvents()
	buf := make([]byte, 16)
	allocs := testing.AllocsPerRun(100, func() {
		for i := 0; i < 50; i++ {
			w.Emit(EventType(i), buf)
		}
		if len(w.FrameEvents()) != 50 {
			panic("wrong event count")
		}
		w.ClearEvents()
	})
	require.Zero(t, allocs)
}

func TestRestore(t *testing.T) {
	src := newFixture(t, 16, 8)
	w := src.w
	var live []Entity
	for i := 0; i < 50; i++ {
		e, _ := w.Create()
		require.NoError(t, Set(w, e, src.pos, Position{X: float32(i)}))
		if i%3 == 0 {
			require.NoError(t, Set(w, e, src.hp, Health{HP: int32(i)}))
		}
		live = append(live, e)
	}
	w.Advance()
	for _, i := range []int{4, 17, 33, 49} {
		require.NoError(t, w.Destroy(live[i]))
	}
	w.Advance()
	w.Advance()

	dst := newFixture(t, 16, 8)
	d := dst.w
	for c := 0; c < w.NumChunks(); c++ {
		require.NoError(t, d.SetChunkData(c, w.ChunkRecords(c), w.ChunkStructVersion(c)))
		for id := ComponentID(0); id < 3; id++ {
			if col := w.ChunkColumn(c, id); col != nil {
				require.NoError(t, d.RestoreColumn(c, id, col, w.ChunkComponentVersion(c, id)))
			}
		}
	}
	d.Emit(1, []byte{1})
	d.RestoreFinish(w.Version())
	require.Empty(t, d.FrameEvents())
	require.Equal(t, w.Version()+1, d.Version(), "later writes stamp newer than anything restored")
	require.Equal(t, w.Count(), d.Count())
	require.Equal(t, 50, d.HighWater(), "index 49 was destroyed but was issued")
	require.Equal(t, w.HighWater(), d.HighWater())
	require.Equal(t, w.NumChunks(), d.NumChunks())
	for c := 0; c < w.NumChunks(); c++ {
		require.Equal(t, w.ChunkAlive(c), d.ChunkAlive(c))
		require.Equal(t, w.ChunkRecords(c), d.ChunkRecords(c))
	}
	for i, e := range live {
		require.Equal(t, w.IsAlive(e), d.IsAlive(e), "entity %d", i)
		p1, ok1 := Get[Position](w, e, src.pos)
		p2, ok2 := Get[Position](d, e, dst.pos)
		require.Equal(t, ok1, ok2)
		require.Equal(t, p1, p2)
		h1, ok1 := Get[Health](w, e, src.hp)
		h2, ok2 := Get[Health](d, e, dst.hp)
		require.Equal(t, ok1, ok2)
		require.Equal(t, h1, h2)
	}
	// Queries agree (counts per component).
	for _, m := range []Mask{MaskOf(src.pos), MaskOf(src.pos, src.hp), {}} {
		require.Equal(t, countMatching(w, m), countMatching(d, m))
	}
	// The free queue holds the dead indices in index order.
	for _, want := range []uint32{4, 17, 33, 49} {
		e, err := d.Create()
		require.NoError(t, err)
		require.Equal(t, MakeEntity(want, 2), e)
	}
	// The next write stamps a newer version than any restored one.
	v := d.Advance()
	require.Greater(t, v, w.ChunkComponentVersion(0, src.pos))
	require.NoError(t, Set(d, live[0], dst.pos, Position{X: 100}))
	require.Equal(t, v, d.ChunkComponentVersion(0, dst.pos))
}

func TestRestoreRejects(t *testing.T) {
	f := newFixture(t, 16, 2)
	w := f.w
	good := make([]layout.EntityRecord, 16)
	good[0] = layout.EntityRecord{Gen: 1, Flags: layout.FlagAlive, Mask: [4]uint64{1}}
	bad := func(mut func(r []layout.EntityRecord)) []layout.EntityRecord {
		r := append([]layout.EntityRecord(nil), good...)
		mut(r)
		return r
	}
	for name, recs := range map[string][]layout.EntityRecord{
		"short":      good[:15],
		"flags":      bad(func(r []layout.EntityRecord) { r[3].Flags = 2 }),
		"gen0 alive": bad(func(r []layout.EntityRecord) { r[3] = layout.EntityRecord{Flags: layout.FlagAlive} }),
		"mask": bad(func(r []layout.EntityRecord) {
			r[3] = layout.EntityRecord{Gen: 1, Flags: layout.FlagAlive, Mask: [4]uint64{1 << 4}}
		}),
		"dead w/mask": bad(func(r []layout.EntityRecord) { r[3] = layout.EntityRecord{Gen: 2, Mask: [4]uint64{1}} }),
	} {
		require.ErrorIs(t, w.SetChunkData(0, recs, 5), ErrRestore, name)
	}
	require.ErrorIs(t, w.SetChunkData(2, good, 5), ErrRestore)
	require.ErrorIs(t, w.SetChunkData(-1, good, 5), ErrRestore)
	require.Nil(t, w.ChunkRecords(0), "rejected data was not applied")
	require.ErrorIs(t, w.RestoreColumn(0, 4, make([]byte, 16*12), 1), ErrUnknownComponent)
	require.ErrorIs(t, w.RestoreColumn(0, f.pos, make([]byte, 16*12-1), 1), ErrSize)
	require.ErrorIs(t, w.RestoreColumn(5, f.pos, make([]byte, 16*12), 1), ErrRestore)

	// A record naming a component whose column was not restored gets a
	// zeroed column, so the entity reads the zero value.
	require.NoError(t, w.SetChunkData(0, good, 5))
	w.RestoreFinish(3)
	require.Equal(t, uint64(6), w.Version(), "version is past every restored version")
	require.Equal(t, 1, w.HighWater())
	p, ok := Get[Position](w, MakeEntity(0, 1), f.pos)
	require.True(t, ok)
	require.Equal(t, Position{}, p)
}

func countMatching(w *World, m Mask) int {
	n := 0
	q := w.Query(m)
	for q.Next() {
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) {
				n++
			}
		}
	}
	return n
}

func TestZeroAllocs(t *testing.T) {
	f := newFixture(t, 64, 64)
	w := f.w
	var es []Entity
	for i := 0; i < 1000; i++ {
		e, _ := w.Create()
		require.NoError(t, Set(w, e, f.pos, Position{X: float32(i)}))
		require.NoError(t, Set(w, e, f.vel, Velocity{X: 1}))
		es = append(es, e)
	}
	// Warm the alternative-type cache.
	_, _ = Get[[3]float32](w, es[0], f.pos)
	mask := MaskOf(f.pos, f.vel)
	var sum float32
	cases := []struct {
		name string
		fn   func()
	}{
		{"query", func() {
			q := w.Query(mask)
			for q.Next() {
				pos := ColumnMut[Position](&q, f.pos)
				vel := Column[Velocity](&q, f.vel)
				for i, n := 0, q.Rows(); i < n; i++ {
					if q.Match(i) {
						pos[i].X += vel[i].X
					}
				}
			}
		}},
		{"get", func() {
			for _, e := range es[:100] {
				p, _ := Get[Position](w, e, f.pos)
				sum += p.X
				a, _ := Get[[3]float32](w, e, f.pos)
				sum += a[0]
			}
		}},
		{"set", func() {
			for _, e := range es[:100] {
				_ = Set(w, e, f.vel, Velocity{Y: 2})
				Ptr[Position](w, e, f.pos).Z++
			}
		}},
		{"raw", func() {
			var b [12]byte
			for _, e := range es[:100] {
				_ = w.SetRaw(e, f.pos, b[:])
			}
		}},
		{"create-destroy", func() {
			e, _ := w.Create()
			_ = Set(w, e, f.pos, Position{})
			_ = w.Destroy(e)
		}},
		{"mask", func() { _ = MaskOf(f.pos, f.vel, f.hp) }},
	}
	// Create/destroy grows the free queue once; warm it.
	cases[4].fn()
	for _, c := range cases {
		require.Zero(t, testing.AllocsPerRun(50, c.fn), c.name)
		if c.name == "get" {
			// AllocsPerRun runs fn 51 times (one warm-up). The 51 query
			// passes added 1 to every X, so each get pass sums
			// 2*(i+51) over the first 100 entities.
			require.Equal(t, float32(51*2*(4950+5100)), sum)
		}
	}
}
