package world_test

import (
	"encoding/binary"
	"errors"
	"math/rand"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

type dPos struct{ X, Y float32 }
type dHP struct{ V int32 }
type dWeather struct{ Wind float32 }

// digest is what any write would change: a seal before each dry run makes
// every later stamp a new version.
func digest(w *world.World) []uint64 {
	d := []uint64{uint64(w.Count()), uint64(w.HighWater()), w.Epoch()}
	for c := 0; c < w.NumChunks(); c++ {
		d = append(d, w.ChunkStructVersion(c))
		for k := 0; k < w.Registry().Len(); k++ {
			d = append(d, w.ChunkComponentVersion(c, world.ComponentID(k)))
		}
	}
	for i := 0; i < w.NumSingletons(); i++ {
		d = append(d, w.SingletonVersion(world.SingletonID(i)))
	}
	return append(d, uint64(len(w.FrameEvents())))
}

// TestDryRunDifferential: a dry-run playback gives every record the verdict
// (applied, or the reject reason) that a real playback of it gives on the
// same world, and changes nothing.
func TestDryRunDifferential(t *testing.T) {
	reg := world.NewRegistry()
	pos, _ := world.Register[dPos](reg, "Pos")
	hp, _ := world.Register[dHP](reg, "HP")
	name, _ := world.RegisterBytes(reg, "Name", world.BytesSpec{MaxLen: 12, PerEntity: 8, UTF8: true})
	_, _ = world.RegisterTime(reg)
	_, _ = world.RegisterSingleton[dWeather](reg, "Weather")
	w, err := world.New(reg, world.Config{ChunkCapacity: 64, MaxChunks: 2})
	require.NoError(t, err)
	var ents []world.Entity
	rng := rand.New(rand.NewSource(1))
	dry, real := world.NewPlayback(w), world.NewPlayback(w)
	dry.DryRun = true
	dry.MaxEntities, real.MaxEntities = 100, 100
	dry.MaxEventBytes, real.MaxEventBytes = 4096, 4096
	ref := func() uint64 {
		switch {
		case len(ents) > 0 && rng.Intn(4) != 0:
			return uint64(ents[rng.Intn(len(ents))])
		case rng.Intn(2) == 0:
			return world.TempFlag | uint64(rng.Intn(3))
		}
		return uint64(world.MakeEntity(uint32(rng.Intn(200)), uint32(rng.Intn(3))))
	}
	comp := func(b []byte, typ uint16) []byte {
		b = binary.LittleEndian.AppendUint64(b, ref())
		k := []world.ComponentID{pos, hp, name, 9}[rng.Intn(4)]
		b = binary.LittleEndian.AppendUint16(b, uint16(k))
		b = append(b, 0, 0, 0, 0, 0, 0)
		if rng.Intn(20) == 0 {
			b[len(b)-1] = 1 // reserved
		}
		if typ == world.CmdSet {
			b = append(b, make([]byte, []int{0, 4, 8, 13}[rng.Intn(4)])...)
			if rng.Intn(4) == 0 {
				b = append(b, 0xff) // not UTF-8 for Name
			}
		}
		return b
	}
	gen := func() (uint16, []byte) {
		typ := uint16(1 + rng.Intn(8))
		var p []byte
		switch typ {
		case world.CmdCreate:
			p = binary.LittleEndian.AppendUint32(nil, uint32(rng.Intn(3)))
			p = append(p, 0, 0, 0, 0)
		case world.CmdDestroy:
			p = binary.LittleEndian.AppendUint64(nil, ref())
		case world.CmdAdd, world.CmdRemove, world.CmdSet:
			p = comp(nil, typ)
		case world.CmdEvent:
			p = binary.LittleEndian.AppendUint16(nil, []uint16{5, layout.SystemEventFirst}[rng.Intn(2)])
			p = append(p, 0, 0, 0, 0, 0, 0)
			p = append(p, make([]byte, rng.Intn(600))...)
		case world.CmdSetSingleton:
			p = binary.LittleEndian.AppendUint16(nil, uint16(rng.Intn(3)))
			p = append(p, 0, 0, 0, 0, 0, 0)
			p = append(p, make([]byte, []int{4, 8, 40}[rng.Intn(3)])...)
		default:
			p = []byte{1, 2, 3}
		}
		if rng.Intn(30) == 0 && len(p) > 0 {
			p = p[:rng.Intn(len(p))] // bad length
		}
		return typ, p
	}
	verdict := func(err error) string {
		var re *world.RejectError
		if errors.As(err, &re) {
			return re.Reason.String()
		}
		if err != nil {
			return err.Error()
		}
		return "applied"
	}
	verdicts := map[string]int{}
	for b := 0; b < 3000; b++ {
		// One batch: every record dry-run (the world must not change),
		// then every record played back for real; the verdicts must be
		// the same, record by record.
		n := 1 + rng.Intn(12)
		typs, payloads := make([]uint16, n), make([][]byte, n)
		for i := range typs {
			typs[i], payloads[i] = gen()
		}
		w.Seal()
		before := digest(w)
		dry.Begin()
		var dv, rv []string
		for i := range typs {
			dv = append(dv, verdict(dry.Apply(typs[i], payloads[i])))
		}
		require.Equal(t, before, digest(w), "batch %d: the dry run changed the world", b)
		real.Begin()
		for i := range typs {
			err := real.Apply(typs[i], payloads[i])
			rv = append(rv, verdict(err))
			verdicts[rv[i]]++
			if err == nil && typs[i] == world.CmdCreate {
				ents = append(ents, real.Created()[len(real.Created())-1].Entity)
			}
		}
		require.Equal(t, rv, dv, "batch %d %v: verdicts real vs dry", b, typs)
		w.ClearEvents()
	}
	require.Equal(t, real.Stats, dry.Stats, "the same counts")
	t.Log(verdicts)
	require.GreaterOrEqual(t, len(verdicts), 8, "verdicts exercised: %v", verdicts)
}
