package world

import (
	"errors"
	"math/rand"
	"sort"
	"testing"
)

// model is a brute-force reference of the world: maps, a FIFO slice of free
// indices and explicitly tracked versions.
type model struct {
	capacity, maxEnt int
	gens             map[uint32]uint32 // current generation per issued index
	alive            map[Entity]map[ComponentID][3]int32
	free             []uint32
	highWater        int
	version          uint64
	structVer        map[int]uint64
	compVer          map[[2]int]uint64
}

func (m *model) chunk(e Entity) int { return int(e.Index()) / m.capacity }

func (m *model) stampComp(e Entity, id ComponentID) {
	m.compVer[[2]int{m.chunk(e), int(id)}] = m.version
}

func (m *model) stampStruct(e Entity) { m.structVer[m.chunk(e)] = m.version }

func TestQueryMatchesModel(t *testing.T) {
	for _, seed := range []int64{1, 2, 3, 42} {
		runModel(t, seed, 6000)
	}
}

func runModel(t *testing.T, seed int64, ops int) {
	const capacity, maxChunks = 16, 16
	f := newFixture(t, capacity, maxChunks)
	w := f.w
	ids := []ComponentID{f.pos, f.vel, f.hp}
	m := &model{
		capacity: capacity, maxEnt: capacity * maxChunks,
		gens: map[uint32]uint32{}, alive: map[Entity]map[ComponentID][3]int32{},
		version: 1, structVer: map[int]uint64{}, compVer: map[[2]int]uint64{},
	}
	rng := rand.New(rand.NewSource(seed))
	var handles []Entity // alive and dead handles ever issued
	var full, stale int  // coverage of the rejection paths

	set := func(e Entity, id ComponentID, v [3]int32) error {
		switch id {
		case f.pos:
			return Set(w, e, id, Position{float32(v[0]), float32(v[1]), float32(v[2])})
		case f.vel:
			return Set(w, e, id, Velocity{float32(v[0]), float32(v[1]), float32(v[2])})
		default:
			return Set(w, e, id, Health{v[0], v[1]})
		}
	}
	get := func(e Entity, id ComponentID) ([3]int32, bool) {
		switch id {
		case f.pos:
			p, ok := Get[Position](w, e, id)
			return [3]int32{int32(p.X), int32(p.Y), int32(p.Z)}, ok
		case f.vel:
			p, ok := Get[Velocity](w, e, id)
			return [3]int32{int32(p.X), int32(p.Y), int32(p.Z)}, ok
		default:
			p, ok := Get[Health](w, e, id)
			return [3]int32{p.HP, p.Max, 0}, ok
		}
	}
	randVal := func(id ComponentID) [3]int32 {
		v := [3]int32{rng.Int31n(1000), rng.Int31n(1000), rng.Int31n(1000)}
		if id == f.hp {
			v[2] = 0
		}
		return v
	}
	pick := func() Entity {
		if len(handles) == 0 || rng.Intn(20) == 0 {
			return MakeEntity(uint32(rng.Intn(m.maxEnt+10)), uint32(rng.Intn(3)))
		}
		return handles[rng.Intn(len(handles))]
	}
	expectErr := func(op string, e Entity, id ComponentID, got, want error) {
		t.Helper()
		if !errors.Is(got, want) && !(got == nil && want == nil) {
			t.Fatalf("seed %d: %s(%v, %d): got %v, want %v", seed, op, e, id, got, want)
		}
	}

	for op := 0; op < ops; op++ {
		if rng.Intn(50) == 0 {
			w.Advance()
			m.version++
		}
		e := pick()
		comps, live := m.alive[e]
		id := ids[rng.Intn(len(ids))]
		switch r := rng.Intn(100); {
		case r < 25: // create (more creates than destroys: the world fills up)
			got, err := w.Create()
			var want Entity
			if len(m.free) > 0 {
				idx := m.free[0]
				m.free = m.free[1:]
				want = MakeEntity(idx, m.gens[idx])
			} else if m.highWater < m.maxEnt {
				idx := uint32(m.highWater)
				m.highWater++
				m.gens[idx] = 1
				want = MakeEntity(idx, 1)
			} else {
				expectErr("Create", 0, 0, err, ErrWorldFull)
				full++
				continue
			}
			expectErr("Create", want, 0, err, nil)
			if got != want {
				t.Fatalf("seed %d: Create = %v, want %v", seed, got, want)
			}
			m.alive[got] = map[ComponentID][3]int32{}
			m.stampStruct(got)
			handles = append(handles, got)
		case r < 40: // destroy
			err := w.Destroy(e)
			if !live {
				expectErr("Destroy", e, 0, err, ErrStale)
				stale++
				continue
			}
			expectErr("Destroy", e, 0, err, nil)
			for c := range comps {
				m.stampComp(e, c)
			}
			m.stampStruct(e)
			delete(m.alive, e)
			g := m.gens[e.Index()] + 1
			m.gens[e.Index()] = g
			m.free = append(m.free, e.Index())
		case r < 65: // set
			v := randVal(id)
			err := set(e, id, v)
			if !live {
				expectErr("Set", e, id, err, ErrStale)
				continue
			}
			expectErr("Set", e, id, err, nil)
			if _, had := comps[id]; !had {
				m.stampStruct(e)
			}
			comps[id] = v
			m.stampComp(e, id)
		case r < 75: // add
			err := w.Add(e, id)
			switch _, had := comps[id]; {
			case !live:
				expectErr("Add", e, id, err, ErrStale)
			case had:
				expectErr("Add", e, id, err, ErrExists)
			default:
				expectErr("Add", e, id, err, nil)
				comps[id] = [3]int32{}
				m.stampStruct(e)
				m.stampComp(e, id)
			}
		case r < 85: // remove
			err := w.Remove(e, id)
			switch _, had := comps[id]; {
			case !live:
				expectErr("Remove", e, id, err, ErrStale)
			case !had:
				expectErr("Remove", e, id, err, ErrAbsent)
			default:
				expectErr("Remove", e, id, err, nil)
				delete(comps, id)
				m.stampStruct(e)
				m.stampComp(e, id)
			}
		default: // get
			v, ok := get(e, id)
			want, has := comps[id]
			if ok != (live && has) || (ok && v != want) {
				t.Fatalf("seed %d: Get(%v, %d) = %v %v, want %v %v", seed, e, id, v, ok, want, live && has)
			}
			if w.IsAlive(e) != live {
				t.Fatalf("seed %d: IsAlive(%v) = %v, want %v", seed, e, !live, live)
			}
		}
		if op%200 == 0 || op == ops-1 {
			checkModel(t, seed, w, m, ids, get)
		}
	}
	if full == 0 || stale == 0 {
		t.Fatalf("seed %d: the run never hit a full world (%d) or a stale destroy (%d)", seed, full, stale)
	}
}

func checkModel(t *testing.T, seed int64, w *World, m *model, ids []ComponentID, get func(Entity, ComponentID) ([3]int32, bool)) {
	t.Helper()
	if w.Count() != len(m.alive) || w.HighWater() != m.highWater || w.Version() != m.version {
		t.Fatalf("seed %d: count %d hw %d version %d, want %d %d %d", seed,
			w.Count(), w.HighWater(), w.Version(), len(m.alive), m.highWater, m.version)
	}
	if want := (m.highWater + m.capacity - 1) / m.capacity; w.NumChunks() != want {
		t.Fatalf("seed %d: NumChunks %d, want %d", seed, w.NumChunks(), want)
	}
	// Every subset of components, as a query, against a brute-force scan.
	for sub := 0; sub < 1<<len(ids); sub++ {
		var mask Mask
		for k, id := range ids {
			if sub&(1<<k) != 0 {
				mask = mask.With(id)
			}
		}
		var want []Entity
		for e, comps := range m.alive {
			ok := true
			for _, id := range ids {
				if _, has := comps[id]; mask.Has(id) && !has {
					ok = false
				}
			}
			if ok {
				want = append(want, e)
			}
		}
		var got []Entity
		q := w.Query(mask)
		for q.Next() {
			pos := Column[Position](&q, ids[0])
			for i := 0; i < q.Rows(); i++ {
				if !q.Match(i) {
					continue
				}
				e := q.Entity(i)
				got = append(got, e)
				if mask.Has(ids[0]) {
					mv := m.alive[e][ids[0]]
					if p := pos[i]; int32(p.X) != mv[0] || int32(p.Y) != mv[1] || int32(p.Z) != mv[2] {
						t.Fatalf("seed %d: query column of %v = %v, want %v", seed, e, p, mv)
					}
				}
			}
		}
		sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
		sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
		if len(got) != len(want) {
			t.Fatalf("seed %d: query %v: %d entities, want %d", seed, mask, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("seed %d: query %v: entity %d is %v, want %v", seed, mask, i, got[i], want[i])
			}
		}
	}
	// Every alive entity's values and every chunk's versions.
	for e, comps := range m.alive {
		if !w.IsAlive(e) || w.Mask(e).Count() != len(comps) {
			t.Fatalf("seed %d: %v alive=%v mask %v, want %d components", seed, e, w.IsAlive(e), w.Mask(e), len(comps))
		}
		for id, want := range comps {
			if v, ok := get(e, id); !ok || v != want {
				t.Fatalf("seed %d: Get(%v,%d) = %v %v, want %v", seed, e, id, v, ok, want)
			}
		}
	}
	alive := map[int]int{}
	for e := range m.alive {
		alive[m.chunk(e)]++
	}
	for c := 0; c < w.NumChunks(); c++ {
		if w.ChunkAlive(c) != alive[c] {
			t.Fatalf("seed %d: chunk %d alive %d, want %d", seed, c, w.ChunkAlive(c), alive[c])
		}
		if w.ChunkStructVersion(c) != m.structVer[c] {
			t.Fatalf("seed %d: chunk %d struct version %d, want %d", seed, c, w.ChunkStructVersion(c), m.structVer[c])
		}
		for _, id := range ids {
			if got, want := w.ChunkComponentVersion(c, id), m.compVer[[2]int{c, int(id)}]; got != want {
				t.Fatalf("seed %d: chunk %d component %d version %d, want %d", seed, c, id, got, want)
			}
		}
	}
}
