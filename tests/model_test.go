package tests

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/audit"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// Model-based test of publishing: random sequences of every kind of world
// change (simulation writes through Set, Ptr and query columns, creates,
// destroys, adds, removes, command playback of every command kind including
// rejected records, filtered snapshots, engine recovery) are applied both to
// the world and to a plain Go model (entity -> component bytes), in the
// engine's frame order and in arbitrary orders. After every publish and
// snapshot the published slot is decoded and compared with the model, audited
// (audit.Latest / audit.Slot) and compared byte for byte with the world
// (audit.Compare). FDP_MODEL_SEED replays one seed.

// Model components: four sizes and alignments, no padding (their in-memory
// form equals their little-endian encoding).
type MPos struct{ X, Y, Z float32 } // 12 bytes
type MHP struct{ V int16 }          // 2 bytes
type MBig struct{ A [6]uint64 }     // 48 bytes
type MFlag struct{ B uint8 }        // 1 byte

const (
	modelComps     = 4
	modelChunkCap  = 16
	modelMaxChunks = 40  // 640 indices
	modelMaxAlive  = 400 // creates stop here, so the world is never full
	modelSlots     = 5
)

// modelEnt is the model of one alive entity.
type modelEnt struct {
	has [modelComps]bool
	val [modelComps][]byte
}

func (m *modelEnt) clone() *modelEnt {
	c := &modelEnt{has: m.has}
	for k := range m.val {
		c.val[k] = append([]byte(nil), m.val[k]...)
	}
	return c
}

type model map[world.Entity]*modelEnt

func (m model) clone() model {
	c := make(model, len(m))
	for e, v := range m {
		c[e] = v.clone()
	}
	return c
}

func enc[T any](v T) []byte {
	b, err := binary.Append(nil, binary.LittleEndian, v)
	if err != nil {
		panic(err)
	}
	return b
}

// compOps are the typed operations on one component.
type compOps struct {
	size int
	rnd  func(*rand.Rand) []byte                                              // a random value, encoded
	set  func(w *world.World, e world.Entity, rng *rand.Rand) ([]byte, error) // world.Set of a random value
	ptr  func(w *world.World, e world.Entity, rng *rand.Rand) ([]byte, bool)  // world.Ptr write; false when nil
	cols func(w *world.World, rng *rand.Rand, fn func(world.Entity, []byte))  // ColumnMut writes, chunk by chunk
}

func opsFor[T any](id world.ComponentID, gen func(*rand.Rand) T, mut func(*T, *rand.Rand)) compOps {
	var zero T
	return compOps{
		size: len(enc(zero)),
		rnd:  func(rng *rand.Rand) []byte { return enc(gen(rng)) },
		set: func(w *world.World, e world.Entity, rng *rand.Rand) ([]byte, error) {
			v := gen(rng)
			return enc(v), world.Set(w, e, id, v)
		},
		ptr: func(w *world.World, e world.Entity, rng *rand.Rand) ([]byte, bool) {
			p := world.Ptr[T](w, e, id)
			if p == nil {
				return nil, false
			}
			mut(p, rng)
			return enc(*p), true
		},
		cols: func(w *world.World, rng *rand.Rand, fn func(world.Entity, []byte)) {
			q := w.Query(world.MaskOf(id))
			for q.Next() {
				if rng.Intn(2) == 0 {
					continue
				}
				col := world.ColumnMut[T](&q, id)
				for i := 0; i < q.Rows(); i++ {
					if q.Match(i) && rng.Intn(3) != 0 {
						mut(&col[i], rng)
						fn(q.Entity(i), enc(col[i]))
					}
				}
			}
		},
	}
}

// modelRun is one seeded run.
type modelRun struct {
	t      *testing.T
	seed   int64
	rng    *rand.Rand
	reg    *world.Registry
	ids    [modelComps]world.ComponentID
	ops    [modelComps]compOps
	w      *world.World
	segs   *fsync.WorldSegments
	pub    *fsync.Publisher
	plays  []*world.Playback
	m      model // the world now
	pubM   model // the world at the last publish (what recovery restores)
	dead   []world.Entity
	frame  uint64
	events int // events emitted since the last capture
	log    []string
	step   int
	// counters
	publishes, snapshots, recoveries, batches, applied, rejected int
}

func (r *modelRun) logf(format string, a ...any) {
	r.log = append(r.log, fmt.Sprintf("%d: ", r.step)+fmt.Sprintf(format, a...))
	if len(r.log) > 40 {
		r.log = r.log[1:]
	}
}

func (r *modelRun) fatalf(format string, a ...any) {
	r.t.Helper()
	r.t.Fatalf("seed %d (FDP_MODEL_SEED=%d to replay), step %d, frame %d: %s\nlast operations:\n  %s",
		r.seed, r.seed, r.step, r.frame, fmt.Sprintf(format, a...), strings.Join(r.log, "\n  "))
}

func newModelRun(t *testing.T, seed int64) *modelRun {
	r := &modelRun{t: t, seed: seed, rng: rand.New(rand.NewSource(seed)), reg: world.NewRegistry(), m: model{}}
	var err error
	f32 := func(rng *rand.Rand) float32 { return float32(rng.Intn(1 << 20)) }
	if r.ids[0], err = world.Register[MPos](r.reg, "MPos"); err != nil {
		t.Fatal(err)
	}
	if r.ids[1], err = world.Register[MHP](r.reg, "MHP"); err != nil {
		t.Fatal(err)
	}
	if r.ids[2], err = world.Register[MBig](r.reg, "MBig"); err != nil {
		t.Fatal(err)
	}
	if r.ids[3], err = world.Register[MFlag](r.reg, "MFlag"); err != nil {
		t.Fatal(err)
	}
	r.ops[0] = opsFor(r.ids[0], func(g *rand.Rand) MPos { return MPos{f32(g), f32(g), f32(g)} },
		func(p *MPos, g *rand.Rand) { p.X++; p.Z = f32(g) })
	r.ops[1] = opsFor(r.ids[1], func(g *rand.Rand) MHP { return MHP{int16(g.Intn(1 << 16))} },
		func(p *MHP, g *rand.Rand) { p.V -= int16(1 + g.Intn(7)) })
	r.ops[2] = opsFor(r.ids[2], func(g *rand.Rand) MBig {
		var b MBig
		for i := range b.A {
			b.A[i] = g.Uint64()
		}
		return b
	}, func(p *MBig, g *rand.Rand) { p.A[g.Intn(len(p.A))] = g.Uint64() })
	r.ops[3] = opsFor(r.ids[3], func(g *rand.Rand) MFlag { return MFlag{uint8(g.Intn(256))} },
		func(p *MFlag, g *rand.Rand) { p.B ^= uint8(1 + g.Intn(255)) })
	r.w = r.newWorld()
	for i := 0; i < 150+r.rng.Intn(100); i++ {
		r.simCreate()
	}
	r.attach(0)
	return r
}

func (r *modelRun) newWorld() *world.World {
	w, err := world.New(r.reg, world.Config{ChunkCapacity: modelChunkCap, MaxChunks: modelMaxChunks})
	if err != nil {
		r.t.Fatal(err)
	}
	return w
}

// attach creates fresh segments for r.w and a publisher that resumes after
// frame.
func (r *modelRun) attach(frame uint64) {
	inst := uniqueInstance(r.t, "m")
	segs, err := fsync.CreateWorldSegments(inst, r.w, modelSlots, 0)
	if err != nil {
		r.fatalf("segments: %v", err)
	}
	r.t.Cleanup(func() { segs.Unlink(); segs.Close() })
	pub, err := fsync.NewPublisher(r.w, segs)
	if err != nil {
		r.fatalf("publisher: %v", err)
	}
	r.segs, r.pub, r.frame = segs, pub, frame
	r.plays = []*world.Playback{world.NewPlayback(r.w), world.NewPlayback(r.w)}
}

// randAlive returns a random alive entity of the model (0 if none).
func (r *modelRun) randAlive() world.Entity {
	if len(r.m) == 0 {
		return 0
	}
	// Map iteration order is random but not seeded: pick by sorted index.
	n := r.rng.Intn(len(r.m))
	best := world.Entity(0)
	i := 0
	for idx := 0; idx < r.w.HighWater() && best == 0; idx++ {
		c, row := idx/modelChunkCap, idx%modelChunkCap
		rec := r.w.ChunkRecord(c, row)
		if rec.Flags&layout.FlagAlive == 0 {
			continue
		}
		if i == n {
			best = world.MakeEntity(uint32(idx), rec.Gen)
		}
		i++
	}
	return best
}

// randRef returns an alive entity most of the time, else a dead handle.
func (r *modelRun) randRef() world.Entity {
	if len(r.dead) > 0 && r.rng.Intn(6) == 0 {
		return r.dead[r.rng.Intn(len(r.dead))]
	}
	return r.randAlive()
}

func (r *modelRun) must(err error, what string) {
	if err != nil {
		r.t.Helper()
		r.fatalf("%s: %v", what, err)
	}
}

// --- simulation (direct world writes) ---

func (r *modelRun) simCreate() {
	if len(r.m) >= modelMaxAlive {
		return
	}
	e, err := r.w.Create()
	r.must(err, "create")
	me := &modelEnt{}
	r.m[e] = me
	r.logf("create %v", e)
	for k := 0; k < modelComps; k++ {
		if r.rng.Intn(2) == 0 {
			v, err := r.ops[k].set(r.w, e, r.rng)
			r.must(err, "set after create")
			me.has[k], me.val[k] = true, v
		}
	}
}

func (r *modelRun) simDestroy() {
	e := r.randRef()
	if e == 0 {
		return
	}
	err := r.w.Destroy(e)
	_, alive := r.m[e]
	r.logf("destroy %v (alive %v): %v", e, alive, err)
	if alive != (err == nil) {
		r.fatalf("destroy %v: alive in the model %v, error %v", e, alive, err)
	}
	if alive {
		delete(r.m, e)
		r.dead = append(r.dead, e)
	}
}

func (r *modelRun) simSet() {
	e, k := r.randAlive(), r.rng.Intn(modelComps)
	if e == 0 {
		return
	}
	v, err := r.ops[k].set(r.w, e, r.rng)
	r.must(err, "set")
	r.m[e].has[k], r.m[e].val[k] = true, v
	r.logf("set %v.%d", e, k)
}

func (r *modelRun) simSetRaw() {
	e, k := r.randAlive(), r.rng.Intn(modelComps)
	if e == 0 {
		return
	}
	v := r.ops[k].rnd(r.rng)
	r.must(r.w.SetRaw(e, r.ids[k], v), "set raw")
	r.m[e].has[k], r.m[e].val[k] = true, v
	r.logf("setraw %v.%d", e, k)
}

func (r *modelRun) simPtr() {
	e, k := r.randAlive(), r.rng.Intn(modelComps)
	if e == 0 {
		return
	}
	v, ok := r.ops[k].ptr(r.w, e, r.rng)
	if ok != r.m[e].has[k] {
		r.fatalf("Ptr %v.%d: non-nil %v, model has %v", e, k, ok, r.m[e].has[k])
	}
	if ok {
		r.m[e].val[k] = v
	}
	r.logf("ptr %v.%d (%v)", e, k, ok)
}

func (r *modelRun) simColumns() {
	k := r.rng.Intn(modelComps)
	n := 0
	r.ops[k].cols(r.w, r.rng, func(e world.Entity, v []byte) {
		me := r.m[e]
		if me == nil || !me.has[k] {
			r.fatalf("query of component %d matched %v, which the model says lacks it", k, e)
		}
		me.val[k] = v
		n++
	})
	r.logf("columns %d: %d rows", k, n)
}

func (r *modelRun) simAddRemove() {
	e, k := r.randAlive(), r.rng.Intn(modelComps)
	if e == 0 {
		return
	}
	me := r.m[e]
	if me.has[k] {
		r.must(r.w.Remove(e, r.ids[k]), "remove")
		me.has[k], me.val[k] = false, nil
		r.logf("remove %v.%d", e, k)
		return
	}
	r.must(r.w.Add(e, r.ids[k]), "add")
	me.has[k], me.val[k] = true, make([]byte, r.ops[k].size)
	r.logf("add %v.%d", e, k)
}

func (r *modelRun) simOp() {
	if len(r.m) > modelMaxAlive-40 && r.rng.Intn(2) == 0 {
		r.simDestroy() // near the cap: churn instead of saturating
		return
	}
	switch x := r.rng.Intn(20); {
	case x < 4:
		r.simSet()
	case x < 6:
		r.simSetRaw()
	case x < 9:
		r.simPtr()
	case x < 10:
		r.simColumns()
	case x < 13:
		r.simCreate()
	case x < 16:
		r.simDestroy()
	default:
		r.simAddRemove()
	}
}

// --- command playback ---

// playCmd is one command record and what the model expects of it.
type playCmd struct {
	typ     uint16
	payload []byte
	want    world.RejectReason // -1: applied
	apply   func(p *world.Playback)
}

// playback builds a random batch of every command kind, with valid and
// invalid records, plays it back through a module's Playback as the engine
// does (Begin, Apply per record), and checks every record's outcome against
// the model.
func (r *modelRun) playback() {
	p := r.plays[r.rng.Intn(len(r.plays))]
	p.Begin()
	r.batches++
	temps := map[uint32]world.Entity{} // temp id -> entity once created (0: created then destroyed)
	var tempList []uint32              // the temp ids of temps in creation order (choices must be seeded)
	var nextTemp uint32 = uint32(r.rng.Intn(1000))
	n := 1 + r.rng.Intn(12)
	// ref picks a target: an alive entity, a dead one, or a temporary id of
	// this batch (possibly unknown).
	ref := func() (world.Entity, world.Entity) {
		if len(tempList) > 0 && r.rng.Intn(3) == 0 {
			t := tempList[r.rng.Intn(len(tempList))]
			return world.TempEntity(t), temps[t]
		}
		if r.rng.Intn(15) == 0 {
			return world.TempEntity(nextTemp + 5000), 0 // unknown temporary id
		}
		e := r.randRef()
		return e, e
	}
	for i := 0; i < n; i++ {
		var c playCmd
		c.want = -1
		switch r.rng.Intn(7) {
		case 0: // create
			t := nextTemp
			if len(tempList) > 0 && r.rng.Intn(6) == 0 {
				t = tempList[r.rng.Intn(len(tempList))] // a duplicate
				c.want = world.RejectDuplicateTemp
			} else if len(r.m) >= modelMaxAlive {
				continue
			}
			nextTemp++
			c.typ, c.payload = world.CmdCreate, make([]byte, world.CmdCreateSize)
			world.EncodeCreate(c.payload, t)
			c.apply = func(p *world.Playback) {
				cr := p.Created()
				e := cr[len(cr)-1].Entity
				temps[t] = e
				tempList = append(tempList, t)
				r.m[e] = &modelEnt{}
			}
		case 1: // destroy
			rf, e := ref()
			c.typ, c.payload = world.CmdDestroy, make([]byte, world.CmdRefSize)
			world.EncodeRef(c.payload, rf)
			c.want = r.refReason(rf, e)
			c.apply = func(*world.Playback) {
				delete(r.m, e)
				r.dead = append(r.dead, e)
				if rf.IsTemp() {
					temps[uint32(rf)] = 0
				}
			}
		case 2, 3: // set (sometimes of the wrong size)
			rf, e := ref()
			k := r.rng.Intn(modelComps)
			v := r.ops[k].rnd(r.rng)
			wrong := r.rng.Intn(10) == 0
			if wrong {
				v = append(v, 0)
			}
			c.typ, c.payload = world.CmdSet, make([]byte, world.CmdCompHdr+len(v))
			world.EncodeComp(c.payload, rf, r.ids[k])
			copy(c.payload[world.CmdCompHdr:], v)
			if c.want = r.refReason(rf, e); c.want < 0 && wrong {
				c.want = world.RejectWrongSize
			}
			c.apply = func(*world.Playback) { r.m[e].has[k], r.m[e].val[k] = true, v }
		case 4, 5: // add or remove
			rf, e := ref()
			k := r.rng.Intn(modelComps)
			c.typ, c.payload = world.CmdAdd, make([]byte, world.CmdCompHdr)
			world.EncodeComp(c.payload, rf, r.ids[k])
			add := r.rng.Intn(2) == 0
			if !add {
				c.typ = world.CmdRemove
			}
			if c.want = r.refReason(rf, e); c.want < 0 {
				switch has := r.m[e].has[k]; {
				case add && has:
					c.want = world.RejectExists
				case !add && !has:
					c.want = world.RejectAbsent
				}
			}
			c.apply = func(*world.Playback) {
				if add {
					r.m[e].has[k], r.m[e].val[k] = true, make([]byte, r.ops[k].size)
				} else {
					r.m[e].has[k], r.m[e].val[k] = false, nil
				}
			}
		case 6: // event
			c.typ, c.payload = world.CmdEvent, make([]byte, world.CmdEventHdr+r.rng.Intn(16))
			world.EncodeEventHdr(c.payload, world.EventType(r.rng.Intn(100)))
			c.apply = func(*world.Playback) { r.events++ }
		}
		err := p.Apply(c.typ, c.payload)
		var rej *world.RejectError
		switch {
		case err == nil && c.want >= 0:
			r.fatalf("playback of command %d: applied, the model expected rejection %s", c.typ, c.want)
		case err != nil && (!errors.As(err, &rej) || rej.Reason != c.want):
			r.fatalf("playback of command %d: %v, the model expected %v", c.typ, err, c.want)
		case err == nil:
			c.apply(p)
			r.applied++
		default:
			r.rejected++
		}
		r.logf("playback cmd %d: %v", c.typ, err)
	}
}

// refReason is the rejection the model expects for a command naming rf
// (resolving to e, 0 for an unknown temporary id), or -1.
func (r *modelRun) refReason(rf, e world.Entity) world.RejectReason {
	switch {
	case rf.IsTemp() && e == 0 && uint32(rf) >= 5000:
		return world.RejectUnknownTemp
	case e == 0 || r.m[e] == nil:
		return world.RejectStaleEntity
	}
	return -1
}

// --- publishing and checks ---

// capture is the engine's event capture: the frame's events leave the world.
func (r *modelRun) capture() {
	if got := len(r.w.FrameEvents()); got != r.events {
		r.fatalf("%d events in the world, the model expects %d", got, r.events)
	}
	r.w.ClearEvents()
	r.events = 0
}

func (r *modelRun) publish() {
	r.frame++
	st, err := r.pub.Publish(r.frame, r.reg.Mask())
	r.must(err, "publish")
	r.publishes++
	r.logf("publish frame %d into slot %d (%d columns copied)", r.frame, st.Slot, st.ChunksCopied)
	b, lw := r.segs.World.Data, r.pub.Layout()
	rep, err := audit.Latest(b, lw)
	r.must(err, "audit latest")
	if !rep.OK() {
		r.fatalf("audit of frame %d: %v", r.frame, rep.Problems)
	}
	r.checkSlot(st.Slot, r.reg.Mask())
	r.pubM = r.m.clone()
}

// snapshot syncs a partial mask into a slot other than the latest (the SoD
// path) and checks it.
func (r *modelRun) snapshot() {
	lw := r.pub.Layout()
	s := r.rng.Intn(lw.Slots)
	if s == r.pub.Latest() {
		s = (s + 1) % lw.Slots
	}
	mask := world.MaskWord(uint64(r.rng.Intn(1<<modelComps-1) + 1)) // a non-empty subset
	_, err := r.pub.SyncInto(s, r.frame, mask)
	r.must(err, "sync into")
	r.snapshots++
	r.logf("snapshot mask %v into slot %d", mask, s)
	rep, err := audit.Slot(r.segs.World.Data, lw, s)
	r.must(err, "audit snapshot")
	if !rep.OK() {
		r.fatalf("audit of snapshot slot %d: %v", s, rep.Problems)
	}
	r.checkSlot(s, mask)
}

// checkSlot decodes every alive entity of slot s and compares it with the
// model (components of mask by value), then compares the slot with the world
// byte for byte.
func (r *modelRun) checkSlot(s int, mask world.Mask) {
	b, lw := r.segs.World.Data, r.pub.Layout()
	info := lw.ReadSlotInfo(s)
	if world.Mask(info.Mask) != mask || info.Alive != uint32(len(r.m)) {
		r.fatalf("slot %d: mask %v alive %d; want mask %v, %d alive", s, world.Mask(info.Mask), info.Alive, mask, len(r.m))
	}
	seen := 0
	for c := 0; c < int(info.Chunks); c++ {
		eo, _ := lw.EntityRange(s, c)
		for row := 0; row < modelChunkCap; row++ {
			rec := layout.DecodeRecord(b[eo+row*lw.RecordSize:], lw.MaskWords)
			gen, flags, emask := rec.Gen, rec.Flags, world.Mask(rec.Mask)
			if flags&layout.FlagAlive == 0 {
				continue
			}
			e := world.MakeEntity(uint32(c*modelChunkCap+row), gen)
			me := r.m[e]
			if me == nil {
				r.fatalf("slot %d: entity %v is alive in the frame, not in the model (destroyed?)", s, e)
			}
			seen++
			for k := 0; k < modelComps; k++ {
				// A record carries the entity's mask & the slot mask.
				id := world.ComponentID(k)
				if has, want := emask.Has(id), me.has[k] && mask.Has(id); has != want {
					r.fatalf("slot %d: entity %v component %d present %v, the model says %v (slot mask %v)", s, e, k, has, want, mask)
				}
				if !me.has[k] || !mask.Has(id) {
					continue
				}
				co, _ := lw.ColumnRange(s, c, k)
				got := b[co+row*r.ops[k].size : co+(row+1)*r.ops[k].size]
				if !bytes.Equal(got, me.val[k]) {
					r.fatalf("slot %d: entity %v component %d is %x in the frame, %x in the model", s, e, k, got, me.val[k])
				}
			}
		}
	}
	if seen != len(r.m) {
		r.fatalf("slot %d: %d alive entities in the frame, %d in the model", s, seen, len(r.m))
	}
	diffs, err := audit.Compare(b, lw, s, r.w, 5)
	r.must(err, "compare")
	if len(diffs) > 0 {
		r.fatalf("slot %d differs from the world: %v", s, diffs)
	}
}

// recoverWorld is an engine restart: a fresh world recovered from the
// segment's latest frame (host.RecoverFromSegment), then fresh segments. What
// changed since the last publish is lost, as when an engine is killed.
func (r *modelRun) recoverWorld() {
	if r.pubM == nil {
		return
	}
	w := r.newWorld()
	frame, err := host.RecoverFromSegment(r.segs.World.Data, w)
	r.must(err, "recover")
	if frame != r.frame {
		r.fatalf("recovered frame %d, last published %d", frame, r.frame)
	}
	r.segs.Unlink()
	r.segs.Close()
	r.w, r.m, r.pubM = w, r.pubM, nil // nothing published into the new segments yet
	r.recoveries++
	r.events = 0
	r.logf("recovered frame %d: %d entities", frame, w.Count())
	for e, me := range r.m {
		if w.Mask(e) != r.maskOf(me) {
			r.fatalf("recovered entity %v: mask %v, the model %v", e, w.Mask(e), r.maskOf(me))
		}
		for k := 0; k < modelComps; k++ {
			if v, ok := w.GetRaw(e, r.ids[k]); ok && !bytes.Equal(v, me.val[k]) {
				r.fatalf("recovered entity %v component %d: %x, the model %x", e, k, v, me.val[k])
			}
		}
	}
	if w.Count() != len(r.m) {
		r.fatalf("recovered %d entities, the model has %d", w.Count(), len(r.m))
	}
	r.attach(frame)
}

func (r *modelRun) maskOf(me *modelEnt) world.Mask {
	var m world.Mask
	for k := 0; k < modelComps; k++ {
		if me.has[k] {
			m = m.With(r.ids[k])
		}
	}
	return m
}

// engineFrame is one frame in the engine's order: Advance, simulation,
// event capture, publish, (dispatch: a snapshot), playback of the modules'
// batches.
func (r *modelRun) engineFrame() {
	r.w.Advance()
	for i := r.rng.Intn(12); i > 0; i-- {
		r.simOp()
	}
	r.capture()
	r.publish()
	if r.rng.Intn(4) == 0 {
		r.snapshot()
	}
	for i := r.rng.Intn(3); i > 0; i-- {
		r.playback()
	}
	if r.rng.Intn(60) == 0 {
		r.recoverWorld()
	}
}

// arbitraryStep is one change from any source, in any order.
func (r *modelRun) arbitraryStep() {
	switch x := r.rng.Intn(100); {
	case x < 45:
		r.simOp()
	case x < 60:
		r.playback()
	case x < 65:
		r.w.Advance()
		r.logf("advance")
	case x < 82:
		r.capture()
		r.publish()
	case x < 92:
		r.snapshot()
	case x < 93:
		r.recoverWorld()
	default:
		r.capture()
	}
}

func TestModelPublish(t *testing.T) {
	old := shm.Dir
	shm.Dir = t.TempDir()
	t.Setenv("FDP_SHM_DIR", shm.Dir)
	t.Cleanup(func() { shm.Dir = old })
	seeds := []int64{1, 2, 3, 4, 5, time.Now().UnixNano()}
	budget := 700 * time.Millisecond // per seed and order: the whole test stays under ~10 s with -race
	if testing.Short() {
		budget /= 3
	}
	if v, err := strconv.ParseInt(os.Getenv("FDP_MODEL_SEED"), 10, 64); err == nil {
		seeds, budget = []int64{v}, time.Hour // a replay runs every step
	}
	for _, seed := range seeds {
		for _, order := range []string{"engine", "arbitrary"} {
			t.Run(fmt.Sprintf("%s/seed=%d", order, seed), func(t *testing.T) {
				r := newModelRun(t, seed)
				deadline := time.Now().Add(budget)
				for r.step = 0; r.step < 2500 && time.Now().Before(deadline); r.step++ {
					if order == "engine" {
						r.engineFrame()
					} else {
						r.arbitraryStep()
					}
				}
				if r.publishes < 20 {
					r.fatalf("only %d publishes in %d steps", r.publishes, r.step)
				}
				t.Logf("seed %d, %s order: %d steps, %d publishes, %d snapshots, %d recoveries, %d batches (%d applied, %d rejected), %d alive",
					seed, order, r.step, r.publishes, r.snapshots, r.recoveries, r.batches, r.applied, r.rejected, len(r.m))
			})
		}
	}
}
