package sync

import (
	"errors"
	"math/rand"
	"testing"

	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// worldOps makes the random changes the differential tests drive: creates
// with random components, destroys, sets, and adds or removes of a random
// component, on entities picked among those it created.
type worldOps struct {
	t    testing.TB
	rng  *rand.Rand
	w    *world.World
	ents []world.Entity
	// comp returns a random component, val a random value of component k.
	comp func() world.ComponentID
	val  func(k world.ComponentID) []byte
	// perCreate sets, on a create, comp() on up to perCreate-1 components.
	perCreate int
}

// pick returns a random live entity it created, dropping dead ones.
func (o *worldOps) pick() (world.Entity, bool) {
	for len(o.ents) > 0 {
		i := o.rng.Intn(len(o.ents))
		if o.w.IsAlive(o.ents[i]) {
			return o.ents[i], true
		}
		o.ents[i] = o.ents[len(o.ents)-1]
		o.ents = o.ents[:len(o.ents)-1]
	}
	return 0, false
}

// create makes an entity with random components (nothing if the world is
// full).
func (o *worldOps) create() {
	e, err := o.w.Create()
	if err != nil {
		return // full
	}
	o.ents = append(o.ents, e)
	for j := o.rng.Intn(o.perCreate); j > 0; j-- {
		k := o.comp()
		require.NoError(o.t, o.w.SetRaw(e, k, o.val(k)))
	}
}

func (o *worldOps) destroy() {
	if e, ok := o.pick(); ok {
		require.NoError(o.t, o.w.Destroy(e))
	}
}

// set writes a random value into a random component of a random entity
// (adding the component if it lacks it).
func (o *worldOps) set() {
	if e, ok := o.pick(); ok {
		k := o.comp()
		require.NoError(o.t, o.w.SetRaw(e, k, o.val(k)))
	}
}

// toggle adds a random component to a random entity, or removes it if the
// entity has it.
func (o *worldOps) toggle() {
	if e, ok := o.pick(); ok {
		k := o.comp()
		if o.w.Has(e, k) {
			require.NoError(o.t, o.w.Remove(e, k))
		} else {
			require.NoError(o.t, o.w.Add(e, k))
		}
	}
}

// value sets, on a random entity, a random value of 0..max+4 bytes of
// letters into variable-size component k: too long (the world refuses it)
// or, when its chunk's arena is full, refused too; it returns the entity,
// the value and whether the world took it.
func (o *worldOps) value(k world.ComponentID, maxLen int) (world.Entity, []byte, bool) {
	e, ok := o.pick()
	if !ok {
		return 0, nil, false
	}
	v := make([]byte, o.rng.Intn(maxLen+5))
	for i := range v {
		v[i] = byte('a' + o.rng.Intn(26))
	}
	err := o.w.SetBytes(e, k, v)
	if errors.Is(err, world.ErrTooLarge) || errors.Is(err, world.ErrArenaFull) {
		return e, v, false
	}
	require.NoError(o.t, err)
	return e, v, true
}

// single sets a random singleton of the world (every one of them, the
// engine's Time included: the world API sets any) to random bytes.
func (o *worldOps) single() {
	if n := o.w.NumSingletons(); n > 0 {
		id := world.SingletonID(o.rng.Intn(n))
		info, _ := o.w.Registry().Singleton(id)
		b := make([]byte, info.Size)
		o.rng.Read(b)
		require.NoError(o.t, o.w.SetSingletonRaw(id, b))
	}
}

// frameWrites is how many changes a frame of the differential tests makes:
// mostly a few (up to few), often some tens, sometimes burst (every chunk
// touched, the dirty log dropping its oldest epochs).
func frameWrites(rng *rand.Rand, few, burst int) int {
	switch r := rng.Intn(10); {
	case r < 6:
		return rng.Intn(few)
	case r < 9:
		return 20 + rng.Intn(60)
	default:
		return burst
	}
}
