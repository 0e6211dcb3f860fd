package world

import (
	"bytes"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

func TestRegisterBytes(t *testing.T) {
	r := NewRegistry()
	s, err := RegisterBytes(r, "Name", BytesSpec{MaxLen: 30, PerEntity: 5, UTF8: true})
	require.NoError(t, err)
	b, err := RegisterBytes(r, "Blob", BytesSpec{MaxLen: 100})
	require.NoError(t, err)
	info, _ := r.Info(s)
	require.Equal(t, ComponentInfo{ID: s, Name: "Name", Size: 8, Align: 4, Fingerprint: layout.FingerprintString, Kind: KindString,
		MaxLen: 30, PerEntity: 8, Fields: []layout.FieldDesc{{Type: layout.FieldString}}}, info, "PerEntity rounded up to 8")
	info, _ = r.Info(b)
	require.Equal(t, KindBytes, info.Kind)
	require.Equal(t, 104, info.PerEntity, "PerEntity 0: MaxLen rounded up to 8")
	require.Equal(t, uint32(100), info.Desc().MaxLen)
	require.True(t, info.Desc().VarSize())
	require.False(t, info.Desc().IsString())
	require.Equal(t, "string", KindString.String())
	require.Equal(t, "kind(9)", ComponentKind(9).String())

	// The hash covers the kind, the max length and the arena.
	h := r.SchemaHash()
	for _, spec := range []BytesSpec{{MaxLen: 31, PerEntity: 8, UTF8: true}, {MaxLen: 30, PerEntity: 16, UTF8: true}, {MaxLen: 30, PerEntity: 8}} {
		r2 := NewRegistry()
		_, err := RegisterBytes(r2, "Name", spec)
		require.NoError(t, err)
		_, err = RegisterBytes(r2, "Blob", BytesSpec{MaxLen: 100})
		require.NoError(t, err)
		require.NotEqual(t, h, r2.SchemaHash(), "%+v", spec)
	}

	for _, spec := range []BytesSpec{{}, {MaxLen: -1}, {MaxLen: layout.MaxValueLen + 1}, {MaxLen: 10, PerEntity: 17}, {MaxLen: 10, PerEntity: -8}} {
		_, err := RegisterBytes(r, "Bad", spec)
		require.ErrorIs(t, err, ErrRegistry, "%+v", spec)
	}
	_, err = RegisterBytes(r, "Name", BytesSpec{MaxLen: 4})
	require.ErrorContains(t, err, "already registered")

	// A chunk's arena is bounded (u32 offsets).
	r3 := NewRegistry()
	_, err = RegisterBytes(r3, "Huge", BytesSpec{MaxLen: layout.MaxValueLen})
	require.NoError(t, err)
	_, err = New(r3, Config{ChunkCapacity: layout.MaxChunkCapacity, MaxChunks: 1})
	require.ErrorIs(t, err, ErrConfig)
}

func TestBytesOps(t *testing.T) {
	f := newFixture(t, 16, 2)
	w := f.w
	e, _ := w.Create()
	_, ok := w.GetBytes(e, f.label)
	require.False(t, ok, "no value yet")
	require.Equal(t, KindString, w.Kind(f.label))
	require.Equal(t, KindFixed, w.Kind(f.pos))

	w.Advance()
	require.NoError(t, w.SetString(e, f.label, "hello"))
	require.True(t, w.Has(e, f.label), "a set adds the component")
	require.Equal(t, w.Version(), w.ChunkComponentVersion(0, f.label))
	v, ok := w.GetBytes(e, f.label)
	require.True(t, ok)
	require.Equal(t, "hello", string(v))
	s, _ := w.GetString(e, f.label)
	require.Equal(t, "hello", s)
	require.Equal(t, 16*8+8, len(w.ChunkColumn(0, f.label)), "the handles and the arena's used prefix")

	require.NoError(t, w.SetBytes(e, f.label, []byte(strings.Repeat("é", 20)))) // 40 bytes: grows
	s, _ = w.GetString(e, f.label)
	require.Equal(t, strings.Repeat("é", 20), s)
	require.NoError(t, w.SetString(e, f.label, "ok")) // shrinks in place
	s, _ = w.GetString(e, f.label)
	require.Equal(t, "ok", s)
	require.NoError(t, w.SetString(e, f.label, ""))
	v, ok = w.GetBytes(e, f.label)
	require.True(t, ok, "an empty value is a value")
	require.Empty(t, v)
	checkArena(t, w)

	require.ErrorIs(t, w.SetString(e, f.label, strings.Repeat("x", 41)), ErrTooLarge)
	require.ErrorIs(t, w.SetBytes(e, f.label, []byte{0xff}), ErrBadUTF8)
	require.ErrorIs(t, w.SetBytes(e, f.pos, nil), ErrNotBytes)
	require.ErrorIs(t, w.SetRaw(e, f.label, make([]byte, 8)), ErrNotBytes, "a handle is not set from outside")
	require.ErrorIs(t, Set(w, e, f.label, uint64(1)), ErrTypeMismatch)
	_, ok = Get[uint64](w, e, f.label)
	require.False(t, ok)
	require.Nil(t, Ptr[uint64](w, e, f.label))
	require.ErrorIs(t, w.SetBytes(e, 9, nil), ErrUnknownComponent)
	require.ErrorIs(t, w.SetBytes(MakeEntity(e.Index(), e.Gen()+1), f.label, nil), ErrStale)
	_, ok = w.GetBytes(e, f.pos)
	require.False(t, ok)

	require.NoError(t, w.SetString(e, f.label, "abc"))
	require.NoError(t, w.Remove(e, f.label))
	_, ok = w.GetBytes(e, f.label)
	require.False(t, ok)
	require.Zero(t, w.ArenaLive(0, f.label), "a removed value takes no room")
	require.NoError(t, w.Add(e, f.label))
	v, ok = w.GetBytes(e, f.label)
	require.True(t, ok)
	require.Empty(t, v, "Add gives the empty value")
	require.NoError(t, w.SetString(e, f.label, "destroyed"))
	require.Equal(t, 16, w.ArenaLive(0, f.label))
	require.NoError(t, w.Destroy(e))
	require.Zero(t, w.ArenaLive(0, f.label), "a destroyed entity's value takes no room")
	checkArena(t, w)
}

// checkArena checks A1 and A2 (varsize.go) in every chunk of w.
func checkArena(t testing.TB, w *World) {
	t.Helper()
	for c, ch := range w.chunks {
		for k, ci := range w.comps {
			if ci.maxLen == 0 {
				continue
			}
			col := ch.cols[k]
			st := ch.arenas[k]
			live, end := 0, 0
			type span struct{ lo, hi, row int }
			var spans []span
			for row := 0; row < w.capacity; row++ {
				r := w.rec(ch, row)
				if !recAlive(r) || !recHas(r, ComponentID(k)) {
					continue
				}
				h := handleAt(col, row)
				n := align8(int(h.Len))
				if int(h.Len) > ci.maxLen || h.Off%8 != 0 || int(h.Off)+n > st.used || st.used > ci.arena {
					t.Fatalf("chunk %d component %d row %d: handle {%d,%d}, used %d of %d", c, k, row, h.Off, h.Len, st.used, ci.arena)
				}
				if ci.kind == KindString && !utf8.Valid(col[w.capacity*8+int(h.Off):][:h.Len]) {
					t.Fatalf("chunk %d component %d row %d: not UTF-8", c, k, row)
				}
				live += n
				if n > 0 {
					spans = append(spans, span{int(h.Off), int(h.Off) + n, row})
					end = max(end, int(h.Off)+n)
				}
			}
			if live != st.live {
				t.Fatalf("chunk %d component %d: live %d, the handles say %d", c, k, st.live, live)
			}
			slices.SortFunc(spans, func(a, b span) int { return a.lo - b.lo })
			for i := 1; i < len(spans); i++ {
				if spans[i].lo < spans[i-1].hi {
					t.Fatalf("chunk %d component %d: rows %d and %d overlap", c, k, spans[i-1].row, spans[i].row)
				}
			}
		}
	}
}

// TestBytesModel drives random sets (growing, shrinking, empty, too long,
// not UTF-8), removes, adds, creates and destroys on two variable-size
// components (one whose chunks' arenas are often full) against a plain
// model: after every operation every value equals the model's, the world
// refuses exactly what the model says it must (the arena full exactly when
// the chunk's other values leave no room), and A1/A2 hold. Every few steps
// the world is restored, column by column, into a new world, which must hold
// the same values.
func TestBytesModel(t *testing.T) {
	var full, compacted int
	for seed := int64(1); seed <= 8; seed++ {
		f, c := runBytesModel(t, seed)
		full += f
		compacted += c
	}
	// Both paths ran: the test would prove little otherwise.
	require.NotZero(t, full, "writes refused with a full arena")
	require.NotZero(t, compacted, "writes that compacted the arena")
	t.Logf("%d writes refused for a full arena, %d compacted it", full, compacted)
}

func runBytesModel(t *testing.T, seed int64) (full, compacted int) {
	rng := rand.New(rand.NewSource(seed))
	reg := NewRegistry()
	pos, _ := Register[Position](reg, "Position")
	name, _ := RegisterBytes(reg, "Name", BytesSpec{MaxLen: 24, PerEntity: 8, UTF8: true}) // 128 bytes per chunk: often full
	blob, _ := RegisterBytes(reg, "Blob", BytesSpec{MaxLen: 50})
	const capc = 16
	w, err := New(reg, Config{ChunkCapacity: capc, MaxChunks: 3})
	require.NoError(t, err)
	comps := []ComponentID{name, blob}
	spec := map[ComponentID]BytesSpec{name: {MaxLen: 24, PerEntity: 8, UTF8: true}, blob: {MaxLen: 50, PerEntity: 56}}
	model := map[Entity]map[ComponentID][]byte{}
	var ents []Entity
	pick := func() (Entity, bool) {
		if len(ents) == 0 {
			return 0, false
		}
		return ents[rng.Intn(len(ents))], true
	}
	randVal := func(k ComponentID) []byte {
		n := rng.Intn(spec[k].MaxLen + 6)
		if rng.Intn(5) == 0 {
			n = rng.Intn(4)
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + rng.Intn(26))
		}
		if k == name && n > 0 && rng.Intn(8) == 0 {
			b[rng.Intn(n)] = 0xff // not UTF-8
		}
		if k == name && n >= 2 && rng.Intn(4) == 0 {
			copy(b, "é") // multi-byte
		}
		return b
	}
	// othersLive is what the chunk's other values of k take (A2).
	othersLive := func(e Entity, k ComponentID) int {
		n := 0
		for o, vals := range model {
			if o != e && int(o.Index())/capc == int(e.Index())/capc {
				if v, ok := vals[k]; ok {
					n += align8(len(v))
				}
			}
		}
		return n
	}
	for step := 0; step < 1500; step++ {
		where := fmt.Sprintf("seed %d step %d", seed, step)
		w.Advance()
		op := rng.Intn(10)
		switch {
		case op < 2:
			e, err := w.Create()
			if err != nil {
				continue
			}
			ents = append(ents, e)
			model[e] = map[ComponentID][]byte{}
			require.NoError(t, Set(w, e, pos, Position{X: 1}))
		case op < 3:
			if e, ok := pick(); ok {
				require.NoError(t, w.Destroy(e), where)
				delete(model, e)
				ents = slices.DeleteFunc(ents, func(x Entity) bool { return x == e })
			}
		case op < 8:
			e, ok := pick()
			if !ok {
				continue
			}
			k := comps[rng.Intn(2)]
			v := randVal(k)
			ch := w.chunks[int(e.Index())/capc]
			usedBefore := ch.arenas[k].used
			var err error
			if rng.Intn(2) == 0 {
				err = w.SetBytes(e, k, v)
			} else {
				err = w.SetString(e, k, string(v))
			}
			switch {
			case len(v) > spec[k].MaxLen:
				require.ErrorIs(t, err, ErrTooLarge, where)
			case k == name && !utf8.Valid(v):
				require.ErrorIs(t, err, ErrBadUTF8, where)
			case othersLive(e, k)+align8(len(v)) > capc*spec[k].PerEntity:
				require.ErrorIs(t, err, ErrArenaFull, where)
				full++
			default:
				require.NoError(t, err, where)
				if ch.arenas[k].used < usedBefore {
					compacted++
				}
				model[e][k] = append([]byte(nil), v...)
			}
		case op < 9:
			if e, ok := pick(); ok {
				k := comps[rng.Intn(2)]
				if _, has := model[e][k]; has {
					require.NoError(t, w.Remove(e, k), where)
					delete(model[e], k)
				} else {
					require.NoError(t, w.Add(e, k), where)
					model[e][k] = []byte{}
				}
			}
		default:
			if step%10 == 0 {
				requireBytesRestore(t, w, model, comps, where)
			}
		}
		checkArena(t, w)
		w.z1Check(t, where)
		for e, vals := range model {
			for _, k := range comps {
				got, ok := w.GetBytes(e, k)
				want, has := vals[k]
				if ok != has || !bytes.Equal(got, want) {
					t.Fatalf("%s: %v component %d: world %q (%v), model %q (%v)", where, e, k, got, ok, want, has)
				}
			}
		}
	}
	requireBytesRestore(t, w, model, comps, fmt.Sprintf("seed %d end", seed))
	return full, compacted
}

// requireBytesRestore restores w's records and variable-size columns (as a
// published slot holds them: the handles and the used prefix, the rest of
// the arena zero) into a new world and checks the model's values there, and
// that a corrupted handle is refused.
func requireBytesRestore(t *testing.T, w *World, model map[Entity]map[ComponentID][]byte, comps []ComponentID, where string) {
	t.Helper()
	r, err := New(w.reg, Config{ChunkCapacity: w.capacity, MaxChunks: w.maxChunks})
	require.NoError(t, err)
	for c := 0; c < w.NumChunks(); c++ {
		require.NoError(t, r.SetChunkData(c, w.ChunkRecords(c), w.ChunkStructVersion(c)), where)
		for _, k := range comps {
			if col := w.ChunkColumn(c, k); col != nil {
				full := make([]byte, w.capacity*8+w.comps[k].arena)
				copy(full, col)
				require.NoError(t, r.RestoreColumn(c, k, full, w.ChunkComponentVersion(c, k)), where)
				// A handle beyond the arena is refused.
				for row := 0; row < w.capacity; row++ {
					if rec := w.ChunkRecord(c, row); rec.Flags&layout.FlagAlive != 0 && Mask(rec.Mask).Has(k) {
						bad := append([]byte(nil), full...)
						layout.EncodeHandle(bad[row*8:], layout.BytesHandle{Off: uint32(w.comps[k].arena), Len: 1})
						require.ErrorIs(t, r.RestoreColumn(c, k, bad, 1), ErrRestore, where)
						break
					}
				}
			}
		}
	}
	r.RestoreFinish(w.Version())
	checkArena(t, r)
	for e, vals := range model {
		for _, k := range comps {
			got, ok := r.GetBytes(e, k)
			want, has := vals[k]
			if ok != has || !bytes.Equal(got, want) {
				t.Fatalf("%s: restored %v component %d: %q (%v), model %q (%v)", where, e, k, got, ok, want, has)
			}
		}
	}
}

// TestBytesLifecycle: a variable-size component added by a SetBytes (not
// by a SetBytes of an entity that has it) and removed are lifecycle events
// like any component's.
func TestBytesLifecycle(t *testing.T) {
	f := newFixture(t, 16, 1)
	w := f.w
	w.SetLifecycle(Lifecycle{Added: MaskOf(f.label), Removed: MaskOf(f.label)})
	e, _ := w.Create()
	w.ClearEvents()
	require.NoError(t, w.SetString(e, f.label, "a"))
	require.NoError(t, w.SetString(e, f.label, "bb"))
	require.NoError(t, w.Remove(e, f.label))
	var kinds []layout.LifecycleKind
	for _, ev := range w.FrameEvents() {
		k, ent, id, err := layout.DecodeLifecycle(uint16(ev.Type), ev.Payload)
		require.NoError(t, err)
		require.Equal(t, uint64(e), ent)
		require.Equal(t, uint16(f.label), id)
		kinds = append(kinds, k)
	}
	require.Equal(t, []layout.LifecycleKind{layout.LifecycleAdded, layout.LifecycleRemoved}, kinds)
}
