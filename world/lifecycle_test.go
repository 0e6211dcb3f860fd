package world

import (
	"math/rand"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// lcWant is a lifecycle event as the model expects it.
type lcWant struct {
	kind layout.LifecycleKind
	e    Entity
	id   ComponentID
}

// lcGot decodes the lifecycle events of the frame's event buffer, and
// returns how many other events it holds.
func lcGot(t *testing.T, w *World) (got []lcWant, other int) {
	t.Helper()
	for _, ev := range w.FrameEvents() {
		if !layout.IsLifecycleEvent(uint16(ev.Type)) {
			other++
			continue
		}
		k, e, id, err := layout.DecodeLifecycle(uint16(ev.Type), ev.Payload)
		require.NoError(t, err)
		got = append(got, lcWant{k, Entity(e), ComponentID(id)})
	}
	return got, other
}

// TestLifecycleMatchesModel: random creates, destroys, sets, adds and
// removes, directly and through command playback, with a subscription that
// changes every few frames, record exactly the lifecycle events a model of
// the entities' masks expects, in order, interleaved with the frame's other
// events where they were emitted; nothing at all with no subscription.
func TestLifecycleMatchesModel(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		f := newFixture(t, 16, 8)
		w := f.w
		ids := []ComponentID{f.pos, f.vel, f.hp}
		rng := rand.New(rand.NewSource(seed))
		masks := map[Entity]Mask{} // the model: live entities and their components
		var live []Entity
		var sub Lifecycle
		var want []lcWant
		p := NewPlayback(w)
		note := func(k layout.LifecycleKind, e Entity, id ComponentID) {
			if sub.Has(k, id) {
				want = append(want, lcWant{k, e, id})
			}
		}
		randSub := func() Lifecycle {
			var l Lifecycle
			l.Created, l.Destroyed = rng.Intn(2) == 0, rng.Intn(2) == 0
			for _, id := range ids {
				if rng.Intn(2) == 0 {
					l.Added = l.Added.With(id)
				}
				if rng.Intn(2) == 0 {
					l.Removed = l.Removed.With(id)
				}
			}
			if rng.Intn(5) == 0 {
				return Lifecycle{}
			}
			return l
		}
		var counted [layout.NumLifecycleKinds]int
		for frame := 0; frame < 300; frame++ {
			if frame%7 == 0 {
				sub = randSub()
				w.SetLifecycle(sub)
			}
			for op := 0; op < 20; op++ {
				switch r := rng.Intn(10); {
				case r < 3 || len(live) == 0:
					var e Entity
					var err error
					if rng.Intn(2) == 0 {
						e, err = w.Create()
					} else {
						// Through a command batch: the same world calls.
						p.Begin()
						var b [CmdCreateSize]byte
						EncodeCreate(b[:], 7)
						err = p.Apply(CmdCreate, b[:])
						if err == nil {
							e = p.Created()[0].Entity
						}
					}
					if err != nil {
						continue // full
					}
					masks[e] = Mask{}
					live = append(live, e)
					note(layout.LifecycleCreated, e, 0)
				case r < 5:
					i := rng.Intn(len(live))
					e := live[i]
					if rng.Intn(2) == 0 {
						require.NoError(t, w.Destroy(e))
					} else {
						p.Begin()
						var b [CmdRefSize]byte
						EncodeRef(b[:], e)
						require.NoError(t, p.Apply(CmdDestroy, b[:]))
					}
					for id := range masks[e].IDs() {
						note(layout.LifecycleRemoved, e, id)
					}
					note(layout.LifecycleDestroyed, e, 0)
					delete(masks, e)
					live[i] = live[len(live)-1]
					live = live[:len(live)-1]
				case r < 8:
					e, id := live[rng.Intn(len(live))], ids[rng.Intn(len(ids))]
					had := masks[e].Has(id)
					var err error
					switch rng.Intn(3) {
					case 0:
						err = Set(w, e, id, [3]float32{1, 2, 3})
						if id == f.hp {
							err = Set(w, e, id, Health{HP: 1})
						}
					case 1:
						err = w.Add(e, id)
						if had {
							require.ErrorIs(t, err, ErrExists)
							continue
						}
					default:
						p.Begin()
						var b [CmdCompHdr]byte
						EncodeComp(b[:], e, id)
						err = p.Apply(CmdAdd, b[:])
						if had {
							require.Error(t, err)
							continue
						}
					}
					require.NoError(t, err)
					if !had {
						masks[e] = masks[e].With(id)
						note(layout.LifecycleAdded, e, id)
					}
				default:
					e, id := live[rng.Intn(len(live))], ids[rng.Intn(len(ids))]
					err := w.Remove(e, id)
					if !masks[e].Has(id) {
						require.ErrorIs(t, err, ErrAbsent)
						continue
					}
					require.NoError(t, err)
					masks[e] = masks[e].Without(id)
					note(layout.LifecycleRemoved, e, id)
				}
				if rng.Intn(8) == 0 {
					w.Emit(5, []byte{1, 2, 3}) // another event between lifecycle ones
				}
			}
			got, _ := lcGot(t, w)
			if want == nil {
				require.Empty(t, got, "frame %d: recorded with subscription %+v", frame, sub)
			} else {
				require.Equal(t, want, got, "frame %d, seed %d, subscription %+v", frame, seed, sub)
			}
			for _, g := range got {
				counted[g.kind]++
			}
			w.ClearEvents()
			want = nil
		}
		for k, n := range counted {
			require.Positive(t, n, "seed %d: no %s event was recorded", seed, layout.LifecycleKind(k))
		}
	}
}

// TestLifecycleOrderWithEvents: lifecycle events take their place among
// the frame's other events in the order things happened.
func TestLifecycleOrderWithEvents(t *testing.T) {
	f := newFixture(t, 16, 4)
	w := f.w
	w.SetLifecycle(Lifecycle{Created: true, Destroyed: true, Added: MaskOf(f.hp), Removed: MaskOf(f.hp)})
	e, err := w.Create()
	require.NoError(t, err)
	w.Emit(1, []byte("a"))
	require.NoError(t, Set(w, e, f.pos, Position{})) // not subscribed
	require.NoError(t, Set(w, e, f.hp, Health{HP: 3}))
	require.NoError(t, Set(w, e, f.hp, Health{HP: 4})) // present already: no event
	w.Emit(2, []byte("b"))
	require.NoError(t, w.Destroy(e))
	var types []EventType
	for _, ev := range w.FrameEvents() {
		types = append(types, ev.Type)
	}
	require.Equal(t, []EventType{EventCreated, 1, EventAdded, 2, EventRemoved, EventDestroyed}, types)
	require.Equal(t, "created", EventCreated.String())
	require.Equal(t, "event(0x0002)", EventType(2).String())
}

// TestLifecycleZeroAllocs: recording lifecycle events allocates nothing
// once the frame's event buffer has grown (the buffer is reused across
// ClearEvents), and nothing at all without a subscription.
func TestLifecycleZeroAllocs(t *testing.T) {
	f := newFixture(t, 64, 64)
	w := f.w
	churn := func() {
		e, _ := w.Create()
		_ = Set(w, e, f.pos, Position{})
		_ = Set(w, e, f.hp, Health{})
		_ = w.Remove(e, f.hp)
		_ = w.Destroy(e)
		w.ClearEvents()
	}
	require.Zero(t, testing.AllocsPerRun(100, churn), "no subscription")
	w.SetLifecycle(Lifecycle{Created: true, Destroyed: true, Added: MaskAll(), Removed: MaskAll()})
	churn()
	require.Zero(t, testing.AllocsPerRun(100, churn), "every lifecycle event")
	e, _ := w.Create()
	require.NoError(t, Set(w, e, f.pos, Position{}))
	got, _ := lcGot(t, w)
	require.Equal(t, []lcWant{{layout.LifecycleCreated, e, 0}, {layout.LifecycleAdded, e, f.pos}}, got)
}

// TestComponentsChangedMatchesScan: ComponentsChanged reports exactly the
// components with a chunk version at or after v, as a scan of every chunk
// finds them, through the dirty log and through its fallback.
func TestComponentsChangedMatchesScan(t *testing.T) {
	f := newFixture(t, 16, 16)
	w := f.w
	ids := []ComponentID{f.pos, f.vel, f.hp}
	rng := rand.New(rand.NewSource(9))
	var live []Entity
	for range 100 {
		e, err := w.Create()
		require.NoError(t, err)
		live = append(live, e)
	}
	all := MaskOf(ids...)
	var buf []int32
	for round := 0; round < 400; round++ {
		for range rng.Intn(3) {
			w.Seal()
		}
		epoch, v := w.Epoch(), w.Version()
		for range rng.Intn(4) {
			e, id := live[rng.Intn(len(live))], ids[rng.Intn(len(ids))]
			switch rng.Intn(3) {
			case 0:
				_ = Set(w, e, id, Health{HP: int32(round)}) // wrong type for pos/vel: no write
				if id != f.hp {
					_ = w.SetRaw(e, id, make([]byte, 12))
				}
			case 1:
				_ = w.Remove(e, id)
			default:
				w.Seal() // a write after another seal still counts
				_ = w.Add(e, id)
			}
		}
		if round%50 == 0 {
			for range 80 {
				w.Seal() // epoch has left the dirty log: the fallback scan
			}
		}
		var scan Mask
		for c := range w.NumChunks() {
			for _, id := range ids {
				if w.ChunkComponentVersion(c, id) >= v {
					scan = scan.With(id)
				}
			}
		}
		var got Mask
		got, buf = w.ComponentsChanged(all, epoch, v, buf)
		require.Equal(t, scan, got, "round %d", round)
		one, _ := w.ComponentsChanged(MaskOf(f.hp), epoch, v, nil)
		require.Equal(t, scan.And(MaskOf(f.hp)), one)
	}
}
