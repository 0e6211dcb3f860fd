package sync

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"testing"

	"github.com/fdp-engine/fdp/audit"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// A frame or snapshot knows its mask (issue 12): a filtered snapshot syncs
// only the columns of its mask, so its records name only those components and
// the reader refuses every other one, whatever the slot held before.

// val16 is any component of the test registry read as its 16 bytes.
type val16 = [16]byte

// requireRefused checks that frame f refuses component id everywhere: the
// column, a Get of any entity, a query that needs it, and every record.
func requireRefused(t *testing.T, f *Frame, id world.ComponentID, ents []world.Entity, what string) {
	t.Helper()
	m := world.MaskOf(id)
	require.False(t, f.Covers(m), "%s: Covers(%d)", what, id)
	require.True(t, f.Mask().And(m).Empty(), "%s: mask", what)
	for c := 0; c < f.Chunks(); c++ {
		require.Nil(t, Column[val16](f, c, id), "%s: Column(chunk %d, %d)", what, c, id)
		for i, r := range f.Records(c) {
			require.False(t, world.Mask(r.Mask).Has(id), "%s: record %d of chunk %d names component %d", what, i, c, id)
		}
	}
	for _, e := range ents {
		_, ok := Get[val16](f, e, id)
		require.False(t, ok, "%s: Get(%v, %d)", what, e, id)
	}
	q := f.Query(m)
	require.False(t, q.Next(), "%s: a query of component %d matches", what, id)
	require.Zero(t, f.Count(m), "%s: Count", what)
}

// TestSlotReusedAcrossMasks: one slot written in turn with a full publish, a
// snapshot of Velocity, a snapshot of Position and a full publish again,
// without any structural change in between (the records' structural version
// never moves). Each time the slot holds exactly its mask: what it does not
// hold is refused (never the Position of an older frame), and what it holds
// equals the world's values at that frame.
func TestSlotReusedAcrossMasks(t *testing.T) {
	fx := newFixture(t, 16, 4, 40)
	r, err := Attach(fx.inst, AttachOptions{Name: "t"})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	x := fx.ids
	all := fx.w.Registry().Mask()
	var ents []world.Entity
	for i := 0; i < 40; i++ {
		ents = append(ents, world.MakeEntity(uint32(i), 1))
	}
	setPos := func(v float32) {
		for _, e := range ents {
			require.NoError(t, world.Set(fx.w, e, x.pos, Pos{X: v}))
		}
	}
	// The target slot: s; publishes alternate between the other two.
	const s = 2
	open := func() *Frame {
		f, err := r.OpenLeased(s)
		require.NoError(t, err)
		return f
	}
	requirePos := func(f *Frame, want float32, what string) {
		t.Helper()
		require.True(t, f.Covers(world.MaskOf(x.pos)), what)
		for _, e := range ents {
			p, ok := Get[Pos](f, e, x.pos)
			require.True(t, ok, "%s: %v", what, e)
			require.Equal(t, want, p.X, "%s: %v", what, e)
		}
		n := 0
		q := f.Query(world.MaskOf(x.pos))
		for q.Next() {
			col := Column[Pos](f, q.Chunk(), x.pos)
			require.NotNil(t, col, what)
			for i := 0; i < q.Rows(); i++ {
				if q.Match(i) {
					require.Equal(t, want, col[i].X, what)
					n++
				}
			}
		}
		require.Equal(t, len(ents), n, what)
	}

	// Frame 1, full, into s (two other publishes make s free again).
	setPos(1)
	_, err = fx.pub.SyncInto(s, 1, all)
	require.NoError(t, err)
	f := open()
	require.Equal(t, all, f.Mask())
	requirePos(f, 1, "full frame 1")
	require.NoError(t, f.Release())

	// Frame 2: Position changes; a Velocity snapshot into s. Position is
	// refused (the slot still holds frame 1's Position column).
	setPos(2)
	_, err = fx.pub.SyncInto(s, 2, world.MaskOf(x.vel))
	require.NoError(t, err)
	f = open()
	require.Equal(t, world.MaskOf(x.vel), f.Mask())
	requireRefused(t, f, x.pos, ents, "velocity snapshot")
	requireRefused(t, f, x.hp, ents, "velocity snapshot")
	v, ok := Get[Vel](f, ents[3], x.vel)
	require.True(t, ok)
	require.Equal(t, Vel{X: 1}, v)
	require.Equal(t, len(ents), f.Count(world.MaskOf(x.vel)))
	require.NoError(t, f.Release())

	// Frame 3: a Position snapshot into s: Position of frame 3, Velocity
	// refused.
	setPos(3)
	_, err = fx.pub.SyncInto(s, 3, world.MaskOf(x.pos))
	require.NoError(t, err)
	f = open()
	requirePos(f, 3, "position snapshot")
	requireRefused(t, f, x.vel, ents, "position snapshot")
	require.NoError(t, f.Release())

	// Frame 4: full again, same structural version: every record names
	// every component again, every column is frame 4's.
	setPos(4)
	_, err = fx.pub.SyncInto(s, 4, all)
	require.NoError(t, err)
	f = open()
	requirePos(f, 4, "full frame 4")
	for _, e := range ents {
		_, ok := Get[Vel](f, e, x.vel)
		require.True(t, ok, "full frame 4: Velocity of %v", e)
		_, ok = Get[Health](f, e, x.hp)
		require.True(t, ok, "full frame 4: Health of %v", e)
	}
	require.Equal(t, len(ents), f.Count(all.AndNot(world.MaskOf(x.label))), "every entity has the fixed-size components")
	require.NoError(t, f.Release())

	// A snapshot of nothing: records without components, every component
	// refused, entities still alive.
	_, err = fx.pub.SyncInto(s, 5, world.Mask{})
	require.NoError(t, err)
	f = open()
	require.True(t, f.Mask().Empty())
	for _, id := range []world.ComponentID{x.pos, x.vel, x.hp, x.stamp} {
		requireRefused(t, f, id, ents, "empty snapshot")
	}
	require.True(t, f.IsAlive(ents[0]))
	require.Equal(t, len(ents), f.Count(world.Mask{}))
	require.NoError(t, f.Release())
}

// TestFullPublishCopiesRecordsWhole: a publish of the whole registry mask
// copies a chunk's records as one block (they need no filtering) and a
// filtered snapshot record by record; both count the same bytes.
func TestFullPublishCopiesRecordsWhole(t *testing.T) {
	fx := newFixture(t, 16, 4, 40)
	st, err := fx.pub.SyncInto(1, 1, fx.w.Registry().Mask())
	require.NoError(t, err)
	lw := fx.pub.Layout()
	for c := 0; c < fx.w.NumChunks(); c++ {
		co := lw.ChunkOff(1, c)
		require.Equal(t, fx.w.Registry().Mask()[0], binary.LittleEndian.Uint64(fx.segs.World.Data[co+layout.ChunkRecordMask:]))
		eo, ee := lw.EntityRange(1, c)
		require.Equal(t, recordBytes(fx.w.ChunkRecordWords(c)), fx.segs.World.Data[eo:ee], "chunk %d records", c)
	}
	st2, err := fx.pub.SyncInto(1, 2, world.MaskOf(fx.ids.hp))
	require.NoError(t, err)
	// Only the records are recopied (the mask changed); Health is current.
	require.Equal(t, fx.w.NumChunks(), st2.ChunksCopied)
	require.Equal(t, fx.w.NumChunks()*16*lw.RecordSize, st2.BytesCopied)
	require.Greater(t, st.BytesCopied, st2.BytesCopied)
	for c := 0; c < fx.w.NumChunks(); c++ {
		co := lw.ChunkOff(1, c)
		require.Equal(t, uint64(1)<<fx.ids.hp, binary.LittleEndian.Uint64(fx.segs.World.Data[co+layout.ChunkRecordMask:]))
	}
}

// maskModel is the plain model of the differential test: entity index ->
// its generation, and the bytes of each component it has.
type maskModel map[uint32]*modelEnt

type modelEnt struct {
	gen   uint32
	comps map[world.ComponentID]val16
	label []byte // the Label (variable-size) value; nil: none
}

// entsOf returns the model's entities.
func entsOf(m maskModel) []world.Entity {
	out := make([]world.Entity, 0, len(m))
	for i, e := range m {
		out = append(out, world.MakeEntity(i, e.gen))
	}
	return out
}

func (m maskModel) clone() maskModel {
	c := make(maskModel, len(m))
	for i, e := range m {
		n := &modelEnt{gen: e.gen, comps: make(map[world.ComponentID]val16, len(e.comps)), label: e.label}
		for k, v := range e.comps {
			n.comps[k] = v
		}
		c[i] = n
	}
	return c
}

// slotModel is what a complete slot must hold: the model at its frame and
// the mask it was written with.
type slotModel struct {
	frame uint64
	mask  world.Mask
	ents  maskModel
	// singles is the singletons' values at the fill (nil: never set):
	// every slot holds every singleton, whatever its mask (S1).
	singles [][]byte
}

// TestMaskDifferential drives random sequences of world changes, full
// publishes, snapshots, syncs and warm-ups with random masks into a few slots
// and checks every complete slot against a plain model after each step:
// every component in the slot's mask equals the model's value at the slot's
// frame (Get, Column and queries agree), every component outside it is
// refused, the records name nothing outside the mask, and the auditor finds
// no broken invariant. It runs with ordinary and with non-temporal copies
// (copyModes).
func TestMaskDifferential(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 8
	}
	copyModes(t, func(t *testing.T) {
		for seed := int64(1); seed <= int64(seeds); seed++ {
			runMaskDifferential(t, seed, diffOptions{capc: 16, maxChunks: 4, steps: 300})
		}
	})
}

// diffOptions shape runMaskDifferential: the world's chunks, the steps, and
// whether slots are trimmed (backing.go) along the way.
type diffOptions struct {
	capc, maxChunks, steps int
	trim                   bool
}

func runMaskDifferential(t *testing.T, seed int64, o diffOptions) {
	rng := rand.New(rand.NewSource(seed))
	reg, x := testRegistry(t)
	comps := []world.ComponentID{x.pos, x.vel, x.hp, x.stamp}
	capc, maxChunks := o.capc, o.maxChunks
	w, err := world.New(reg, world.Config{ChunkCapacity: capc, MaxChunks: maxChunks})
	require.NoError(t, err)
	inst := instanceName(t)
	segs, err := CreateWorldSegments(inst, w, 4, 0)
	require.NoError(t, err)
	defer func() { segs.Unlink(); segs.Close() }()
	pub, err := NewPublisher(w, segs)
	require.NoError(t, err)
	r, err := Attach(inst, AttachOptions{Name: "diff", Registry: reg})
	require.NoError(t, err)
	defer r.Close()
	lw := pub.Layout()

	model := maskModel{}
	slots := map[int]slotModel{}
	var frame uint64
	randMask := func() world.Mask {
		if rng.Intn(4) == 0 {
			return reg.Mask()
		}
		return world.Mask{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()}.And(reg.Mask())
	}
	randVal := func() val16 {
		var v val16
		binary.LittleEndian.PutUint64(v[:], rng.Uint64())
		binary.LittleEndian.PutUint64(v[8:], rng.Uint64())
		return v
	}
	alive := func() []uint32 {
		var out []uint32
		for i := range model {
			out = append(out, i)
		}
		return out
	}
	pickAlive := func() (world.Entity, *modelEnt, bool) {
		a := alive()
		if len(a) == 0 {
			return 0, nil, false
		}
		i := a[rng.Intn(len(a))]
		return world.MakeEntity(i, model[i].gen), model[i], true
	}
	singles := make([][]byte, reg.NumSingletons()) // the model's singletons
	wrote := func(s int, mask world.Mask) {
		slots[s] = slotModel{frame: frame, mask: mask.And(reg.Mask()), ents: model.clone(), singles: append([][]byte(nil), singles...)}
	}

	if o.trim {
		pub.SetTrimAfter(2)
	}
	ops := 12
	if o.trim {
		ops = 14
	}
	for step := 0; step < o.steps; step++ {
		switch op := rng.Intn(ops); {
		case op < 2 || op == 13: // create with random components (many when trimming: the world grows chunks)
			n := 1
			if op == 13 {
				n = 1 + rng.Intn(2*capc)
			}
			for range n {
				e, err := w.Create()
				if err != nil {
					break // full
				}
				me := &modelEnt{gen: e.Gen(), comps: map[world.ComponentID]val16{}}
				for _, k := range comps {
					if rng.Intn(2) == 0 {
						v := randVal()
						require.NoError(t, w.SetRaw(e, k, v[:]))
						me.comps[k] = v
					}
				}
				model[e.Index()] = me
			}
		case op < 3: // destroy
			if e, _, ok := pickAlive(); ok {
				require.NoError(t, w.Destroy(e))
				delete(model, e.Index())
			}
		case op < 6: // set (adds if absent)
			if e, me, ok := pickAlive(); ok {
				k, v := comps[rng.Intn(len(comps))], randVal()
				require.NoError(t, w.SetRaw(e, k, v[:]))
				me.comps[k] = v
			}
		case op < 7 && rng.Intn(4) == 1: // set, grow, shrink a variable-size value (or have it refused)
			ops := &worldOps{t: t, rng: rng, w: w, ents: entsOf(model)}
			if e, v, ok := ops.value(x.label, labelMax); ok {
				model[e.Index()].label = v
			}
		case op < 7 && rng.Intn(4) == 0: // set a singleton (the engine's time too: the world API may)
			id := world.SingletonID(rng.Intn(len(singles)))
			info, _ := reg.Singleton(id)
			v := make([]byte, info.Size)
			rng.Read(v)
			require.NoError(t, w.SetSingletonRaw(id, v))
			singles[id] = v
		case op < 7 && rng.Intn(3) == 0: // remove the variable-size value
			if e, me, ok := pickAlive(); ok && me.label != nil {
				require.NoError(t, w.Remove(e, x.label))
				me.label = nil
			}
		case op < 7: // remove
			if e, me, ok := pickAlive(); ok {
				k := comps[rng.Intn(len(comps))]
				if _, has := me.comps[k]; has {
					require.NoError(t, w.Remove(e, k))
					delete(me.comps, k)
				}
			}
		case op < 9: // the engine's frame: advance, full publish
			frame++
			w.Advance()
			st, err := pub.Publish(frame, reg.Mask())
			if err == nil {
				wrote(st.Slot, reg.Mask())
			}
		case op < 10: // a snapshot leased to a random holder
			mask := randMask()
			s, _, err := pub.Snapshot(frame, mask, layout.ModuleSetOf(rng.Intn(3)))
			if err == nil {
				wrote(s, mask)
			}
		case op < 11: // release a lease, or sync into a free slot
			s := rng.Intn(lw.Slots)
			if h := pub.Holders(s); !h.Empty() {
				require.NoError(t, pub.ReleaseHolder(s, h.Next(0)))
				continue
			}
			if s == pub.Latest() {
				continue
			}
			mask := randMask()
			if _, err := pub.SyncInto(s, frame, mask); err == nil {
				wrote(s, mask)
			}
		case op == 12: // trim slots unused for two frames; sometimes wait for the punches
			pub.Trim()
			if rng.Intn(2) == 0 {
				pub.WaitTrims()
			}
		default: // warm a never-written slot
			mask := randMask()
			before := map[int]bool{}
			for s := 0; s < lw.Slots; s++ {
				before[s] = layout.Load64(segs.World.Data, lw.SlotOff(s)+layout.SlotVersion) != 0
			}
			if pub.WarmOne(frame, mask) {
				for s := 0; s < lw.Slots; s++ {
					if !before[s] && layout.Load64(segs.World.Data, lw.SlotOff(s)+layout.SlotVersion) != 0 {
						wrote(s, mask)
					}
				}
			}
		}
		if o.trim {
			checkBacking(t, pub, segs, slots, seed, step)
		}
		for s, sm := range slots {
			checkSlotAgainstModel(t, r, lw, s, sm, comps, seed, step)
		}
	}
	checkCopyMode(t, pub)
}

// checkBacking drops from the model the slots trimmed or being trimmed, and
// checks the backing against the kernel and the slots' contents: the
// segment's allocated blocks (fstat) equal the publisher's account when no
// punch is in flight, and every slot holds memory for exactly the
// components of its last fill (its SlotMask) and at least its chunks.
func checkBacking(t *testing.T, pub *Publisher, segs *WorldSegments, slots map[int]slotModel, seed int64, step int) {
	t.Helper()
	lw, b := pub.Layout(), segs.World.Data
	inFlight := false
	for s := range lw.Slots {
		if pub.trimming[s] != nil {
			inFlight = true
			delete(slots, s)
		} else if layout.Load64(b, lw.SlotOff(s)+layout.SlotVersion) == 0 {
			delete(slots, s)
		}
	}
	if !inFlight {
		got, err := segs.World.Allocated()
		require.NoError(t, err)
		require.Equal(t, pub.Backed(), got, "seed %d step %d: allocated blocks against the publisher's account", seed, step)
	}
	total := int64(lw.FixedBytes())
	for s := range lw.Slots {
		o := lw.SlotOff(s)
		bm, bc := pub.backWords(s), int(layout.Load32(b, o+layout.SlotBackChunks))
		total += int64(pub.SlotBacked(s))
		require.Equal(t, lw.SlotSpanBytes(s, bm, bc), pub.SlotBacked(s), "seed %d step %d slot %d: backing words", seed, step, s)
		if pub.trimming[s] != nil || layout.Load64(b, o+layout.SlotVersion) == 0 {
			continue
		}
		info := lw.ReadSlotInfo(s)
		require.Equal(t, world.Mask(info.Mask), bm, "seed %d step %d slot %d: memory for the components of the last fill only", seed, step, s)
		require.GreaterOrEqual(t, bc, int(info.Chunks), "seed %d step %d slot %d: memory for every chunk in use", seed, step, s)
	}
	require.Equal(t, total, pub.Backed(), "seed %d step %d: the account is the sum of the slots", seed, step)
}

func checkSlotAgainstModel(t *testing.T, r *Reader, lw *layout.World, s int, sm slotModel, comps []world.ComponentID, seed int64, step int) {
	t.Helper()
	where := func() string { return fmt.Sprintf("seed %d step %d slot %d", seed, step, s) }
	f, err := r.OpenLeased(s)
	require.NoError(t, err, where())
	defer func() { require.NoError(t, f.Release(), where()) }()
	require.Equal(t, sm.frame, f.Number(), where())
	require.Equal(t, sm.mask, f.Mask(), where())
	rep, err := audit.Slot(r.world.Data, lw, s)
	require.NoError(t, err, where())
	require.True(t, rep.OK(), "%s: %v", where(), rep.Problems)

	// Plain comparisons in the loop (testify's per-call cost made this the
	// whole test's time); the message is built only on a mismatch.
	capc := lw.ChunkCapacity
	counts := map[world.ComponentID]int{}
	for i, me := range sm.ents {
		e := world.MakeEntity(i, me.gen)
		if !f.IsAlive(e) {
			t.Fatalf("%s: %v not alive", where(), e)
		}
		c, row := int(i)/capc, int(i)%capc
		rec := world.Mask(f.Record(c, row).Mask)
		for _, k := range comps {
			want, has := me.comps[k]
			got, ok := Get[val16](f, e, k)
			col := Column[val16](f, c, k)
			recHas := rec.Has(k)
			if !f.holds(k) {
				if ok || col != nil || recHas {
					t.Fatalf("%s: %v component %d outside the mask: get %v, column %v, record bit %v", where(), e, k, ok, col != nil, recHas)
				}
				continue
			}
			if has != ok || has != recHas {
				t.Fatalf("%s: %v has component %d: model %v, get %v, record bit %v", where(), e, k, has, ok, recHas)
			}
			if has {
				if want != got || want != col[row] {
					t.Fatalf("%s: %v component %d: model %x, get %x, column %x", where(), e, k, want, got, col[row])
				}
				counts[k]++
			}
		}
	}
	for _, k := range comps {
		m := world.MaskOf(k)
		if f.holds(k) {
			require.Equal(t, counts[k], f.Count(m), "%s: count of %d", where(), k)
		} else {
			require.False(t, f.Covers(m), where())
			require.Zero(t, f.Count(m), "%s: count of %d outside the mask", where(), k)
		}
	}
	require.Equal(t, len(sm.ents), f.Count(world.Mask{}), "%s: alive", where())
	// The variable-size values: read in place only where the frame holds
	// the component, equal to the model's.
	label := world.ComponentID(len(comps)) // registered after the four fixed ones
	for i, me := range sm.ents {
		e := world.MakeEntity(i, me.gen)
		got, ok := GetBytes(f, e, label)
		s, sok := GetString(f, e, label)
		col := ColumnBytes(f, int(i)/capc, label)
		if !f.holds(label) {
			if ok || sok || col.Len() != 0 {
				t.Fatalf("%s: %v label outside the mask: get %v, column %d", where(), e, ok, col.Len())
			}
			continue
		}
		if ok != (me.label != nil) || string(got) != string(me.label) || s != string(me.label) || ok && string(col.Bytes(int(i)%capc)) != string(me.label) {
			t.Fatalf("%s: %v label: frame %q (%v), model %q", where(), e, got, ok, me.label)
		}
	}
	for i, want := range sm.singles {
		got, ok := f.SingletonBytes(world.SingletonID(i))
		require.Equal(t, want != nil, ok, "%s: singleton %d set", where(), i)
		require.Equal(t, want, []byte(got[:len(got):len(got)]), "%s: singleton %d", where(), i)
	}
}

// TestSlotsKeepTheirMask: a convoy's snapshot comes back to the slot its
// mask was last filled into, and a publish of the full frame does not take
// that slot while a full-mask one is free: records are refiltered (a copy of
// every record of the world) only when a slot changes mask, not at every
// dispatch.
// TestBackingDifferential is TestMaskDifferential with columns of 1 KiB
// (a chunk spans pages), a world that grows chunks, and slots trimmed after
// two unused frames: every slot still equals the model, and the memory the
// kernel counts for the segment equals the publisher's account of what the
// slots hold (checkBacking). It runs with ordinary and with non-temporal
// copies (copyModes).
func TestBackingDifferential(t *testing.T) {
	seeds := 6
	copyModes(t, func(t *testing.T) {
		for seed := int64(1); seed <= int64(seeds); seed++ {
			runMaskDifferential(t, seed, diffOptions{capc: 64, maxChunks: 6, steps: 400, trim: true})
		}
	})
}

func TestSlotsKeepTheirMask(t *testing.T) {
	fx := newFixture(t, 64, 16, 64*10)
	all := world.MaskAll()
	convoy := world.MaskOf(fx.ids.pos, fx.ids.vel)
	for fx.pub.WarmOne(0, all) {
	}
	frame := uint64(1)
	_, err := fx.pub.Publish(frame, all)
	require.NoError(t, err)
	first, _, err := fx.pub.Snapshot(frame, convoy, layout.ModuleSetOf(0))
	require.NoError(t, err)
	require.NoError(t, fx.pub.ReleaseHolder(first, 0))
	for range 20 {
		frame++
		pst, err := fx.pub.Publish(frame, all)
		require.NoError(t, err)
		require.NotEqual(t, first, pst.Slot, "frame %d: the publish took the convoy's slot", frame)
		s, st, err := fx.pub.Snapshot(frame, convoy, layout.ModuleSetOf(0))
		require.NoError(t, err)
		require.Equal(t, first, s, "frame %d: the convoy's snapshot moved to another slot", frame)
		require.Zero(t, st.BytesCopied, "frame %d: nothing changed, nothing to copy", frame)
		require.NoError(t, fx.pub.ReleaseHolder(s, 0))
	}
}
