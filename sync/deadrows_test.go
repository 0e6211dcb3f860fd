package sync

import (
	"bytes"
	"errors"
	"math/rand"
	"slices"
	"testing"
	"unsafe"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// deadModel is the plain model of TestDeadRowsNeverPublished: what every
// entity index holds (its generation, liveness and component values as
// bytes), nothing of chunks, versions or arenas.
type deadModel struct {
	gen   map[int]uint32
	alive map[int]bool
	vals  map[int]map[world.ComponentID][]byte
}

func asBytes[T any](v T) []byte {
	return bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&v)), unsafe.Sizeof(v)))
}

// TestDeadRowsNeverPublished drives random creates, sets (fixed and string
// components), removes and destroys of a world, publishes every frame and
// compares every published slot with the model byte for byte: a row of an
// entity that is alive and has the component holds the model's value, every
// other row of every column is zero, a dead entity's record holds only its
// generation, and the arena bytes that no live value takes are zero (Z1,
// world/deadrows.go). A deleted value (destroyed, removed, replaced by a
// shorter or moved string, compacted away) never reaches shared memory.
func TestDeadRowsNeverPublished(t *testing.T) {
	const capc, chunks = 16, 6
	fx := newFixture(t, capc, chunks, 0)
	r, err := Attach(fx.inst, AttachOptions{Name: "t"})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	w, x := fx.w, fx.ids
	rng := rand.New(rand.NewSource(15))
	m := deadModel{gen: map[int]uint32{}, alive: map[int]bool{}, vals: map[int]map[world.ComponentID][]byte{}}
	fixed := []world.ComponentID{x.pos, x.hp}
	handle := func(idx int) world.Entity { return world.MakeEntity(uint32(idx), m.gen[idx]) }
	randAlive := func() (int, bool) {
		var live []int
		for idx, a := range m.alive {
			if a {
				live = append(live, idx)
			}
		}
		if len(live) == 0 {
			return 0, false
		}
		slices.Sort(live)
		return live[rng.Intn(len(live))], true
	}
	op := func() {
		idx, ok := randAlive()
		switch k := rng.Intn(10); {
		case !ok || k < 2:
			e, err := w.Create()
			if errors.Is(err, world.ErrWorldFull) {
				return
			}
			require.NoError(t, err)
			i := int(e.Index())
			m.gen[i], m.alive[i], m.vals[i] = e.Gen(), true, map[world.ComponentID][]byte{}
		case k < 5:
			e := handle(idx)
			if rng.Intn(2) == 0 {
				v := Pos{X: float32(1 + rng.Intn(1e6)), Y: -1, Z: 7, W: float32(idx + 1)}
				require.NoError(t, world.Set(w, e, x.pos, v))
				m.vals[idx][x.pos] = asBytes(v)
			} else {
				v := Health{HP: int32(1 + rng.Intn(1e6)), Max: -3, Regen: 0.5, Pad: int32(idx + 1)}
				require.NoError(t, world.Set(w, e, x.hp, v))
				m.vals[idx][x.hp] = asBytes(v)
			}
		case k < 7:
			s := make([]byte, rng.Intn(labelMax+1))
			for i := range s {
				s[i] = byte('a' + rng.Intn(26))
			}
			err := w.SetString(handle(idx), x.label, string(s))
			if errors.Is(err, world.ErrArenaFull) {
				return
			}
			require.NoError(t, err)
			m.vals[idx][x.label] = s
		case k < 8:
			ids := append(fixed, x.label)
			id := ids[rng.Intn(len(ids))]
			if _, has := m.vals[idx][id]; has {
				require.NoError(t, w.Remove(handle(idx), id))
				delete(m.vals[idx], id)
			}
		default:
			require.NoError(t, w.Destroy(handle(idx)))
			m.alive[idx], m.vals[idx] = false, nil
			m.gen[idx]++
			if m.gen[idx] == 0 {
				m.gen[idx] = 1
			}
		}
	}
	all := world.MaskAll()
	lw := r.Layout()
	data := r.world.Data
	for frame := uint64(1); frame <= 300; frame++ {
		for i := rng.Intn(12); i > 0; i-- {
			op()
		}
		w.Advance()
		_, err := fx.pub.Publish(frame, all)
		require.NoError(t, err)
		f, err := r.Pin()
		require.NoError(t, err)
		require.Equal(t, frame, f.Number())
		for c := 0; c < f.Chunks(); c++ {
			for row := 0; row < capc; row++ {
				idx := c*capc + row
				rec := f.Record(c, row)
				if !m.alive[idx] {
					require.Equal(t, layout.EntityRecord{Gen: m.gen[idx]}, rec, "frame %d: dead entity %d's record", frame, idx)
				} else {
					require.Equal(t, m.gen[idx], rec.Gen, "frame %d: entity %d", frame, idx)
				}
				for _, id := range fixed {
					o, _ := lw.ColumnRange(f.Slot(), c, int(id))
					size := int(lw.Components[id].Size)
					got := data[o+row*size : o+(row+1)*size]
					want, has := m.vals[idx][id]
					if !has {
						want = make([]byte, size)
					}
					require.Equal(t, want, got, "frame %d: entity %d component %d (alive %v)", frame, idx, id, m.alive[idx])
				}
			}
			// The string column: handles of rows without a value are
			// zero; arena bytes outside the live values are zero.
			o, _ := lw.ColumnRange(f.Slot(), c, int(x.label))
			ao, ae := lw.ArenaRange(f.Slot(), c, int(x.label))
			used := make([]bool, ae-ao)
			for row := 0; row < capc; row++ {
				idx := c*capc + row
				h := data[o+row*layout.BytesHandleSize : o+(row+1)*layout.BytesHandleSize]
				want, has := m.vals[idx][x.label]
				if !has {
					require.Equal(t, make([]byte, layout.BytesHandleSize), h, "frame %d: handle of entity %d without a label", frame, idx)
					continue
				}
				hd := layout.DecodeHandle(h)
				require.Equal(t, string(want), string(data[ao+int(hd.Off):ao+int(hd.Off+hd.Len)]), "frame %d: label of %d", frame, idx)
				for i := int(hd.Off); i < int(hd.Off+hd.Len); i++ {
					used[i] = true
				}
			}
			for i, u := range used {
				if !u && data[ao+i] != 0 {
					t.Fatalf("frame %d chunk %d: arena byte %d is %q, outside every live label", frame, c, i, data[ao+i])
				}
			}
		}
		require.NoError(t, f.Release())
	}
}
