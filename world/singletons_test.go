package world

import (
	"encoding/binary"
	"math"
	"reflect"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

func weatherBytes(v Weather) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, math.Float32bits(v.Wind))
	binary.LittleEndian.PutUint32(b[4:], math.Float32bits(v.Rain))
	return b
}

func TestRegisterSingleton(t *testing.T) {
	r := NewRegistry()
	_, err := Register[Position](r, "Position")
	require.NoError(t, err)
	plain := r.SchemaHash()
	require.Equal(t, layout.SchemaHash(r.Components()), plain, "a registry without singletons keeps its hash")

	tid, err := RegisterTime(r)
	require.NoError(t, err)
	require.Equal(t, SingletonID(0), tid)
	wid, err := RegisterSingleton[Weather](r, "Weather")
	require.NoError(t, err)
	require.Equal(t, SingletonID(1), wid)
	// A singleton type may also be a component (separate id spaces).
	_, err = RegisterSingleton[Position](r, "Origin")
	require.NoError(t, err)

	info, ok := r.Singleton(tid)
	require.True(t, ok)
	require.Equal(t, TimeName, info.Name)
	require.True(t, info.EngineOwned)
	require.Equal(t, 40, info.Size) // docs/LAYOUT.md, "Singletons"
	require.Equal(t, layout.SingletonEngineOwned, info.Desc().Flags)
	info, _ = r.Singleton(wid)
	require.False(t, info.EngineOwned)
	require.Equal(t, reflect.TypeFor[Weather](), info.Type)
	id, ok := SingletonOf[Weather](r)
	require.True(t, ok)
	require.Equal(t, wid, id)
	id, ok = r.LookupSingleton("Weather")
	require.True(t, ok)
	require.Equal(t, wid, id)
	_, ok = SingletonOf[Health](r)
	require.False(t, ok)
	require.Equal(t, 3, r.NumSingletons())
	require.Equal(t, 1, r.Len(), "singletons are not components")

	require.NotEqual(t, plain, r.SchemaHash())
	require.Equal(t, layout.SchemaHashOf(r.Components(), r.Singletons()), r.SchemaHash())

	for name, reg := range map[string]func() error{
		"duplicate name": func() error { _, err := RegisterSingleton[Health](r, "Weather"); return err },
		"duplicate type": func() error { _, err := RegisterSingleton[Weather](r, "W2"); return err },
		"time twice":     func() error { _, err := RegisterTime(r); return err },
		"pointer":        func() error { _, err := RegisterSingleton[*int](r, "P"); return err },
		"string":         func() error { _, err := RegisterSingleton[struct{ S string }](r, "S"); return err },
		"empty":          func() error { _, err := RegisterSingleton[struct{}](r, "E"); return err },
		"too large":      func() error { _, err := RegisterSingleton[[4097]byte](r, "L"); return err },
		"bad name":       func() error { _, err := RegisterSingleton[uint8](r, ""); return err },
	} {
		err := reg()
		require.ErrorIs(t, err, ErrRegistry, name)
		require.Contains(t, err.Error(), "singleton", name)
	}

	// The cap, then the freeze.
	r2 := NewRegistry()
	for i := 0; i < layout.MaxSingletons; i++ {
		_, err := r2.registerSingleton(reflect.ArrayOf(i+1, reflect.TypeFor[byte]()), "s"+string(rune('A'+i)), false)
		require.NoError(t, err)
	}
	_, err = RegisterSingleton[Weather](r2, "one too many")
	require.ErrorIs(t, err, ErrRegistry)
	require.Contains(t, err.Error(), "layout.MaxSingletons")
	_, err = New(r, Config{})
	require.NoError(t, err)
	_, err = RegisterSingleton[Health](r, "late")
	require.ErrorIs(t, err, ErrRegistry)
	require.Contains(t, err.Error(), "frozen")
}

func TestSingletonSetGet(t *testing.T) {
	f := newFixture(t, 16, 2)
	w := f.w
	_, ok := GetSingleton[Weather](w)
	require.False(t, ok, "never set")
	_, ok = w.SingletonRaw(f.wthr)
	require.False(t, ok)
	require.Zero(t, w.SingletonVersion(f.wthr))

	w.Advance()
	require.NoError(t, SetSingleton(w, Weather{Wind: 3, Rain: 0.5}))
	v, ok := GetSingleton[Weather](w)
	require.True(t, ok)
	require.Equal(t, Weather{3, 0.5}, v)
	require.Equal(t, w.Version(), w.SingletonVersion(f.wthr), "a write stamps the current version")
	raw, ok := w.SingletonRaw(f.wthr)
	require.True(t, ok)
	require.Equal(t, weatherBytes(Weather{3, 0.5}), raw)

	// Seal's invariant holds for singletons: a write after a seal stamps
	// a version above it.
	sealed := w.Seal()
	require.NoError(t, w.SetSingletonRaw(f.wthr, weatherBytes(Weather{Wind: 7})))
	require.Greater(t, w.SingletonVersion(f.wthr), sealed)
	v, _ = GetSingleton[Weather](w)
	require.Equal(t, Weather{Wind: 7}, v)

	require.ErrorIs(t, w.SetSingletonRaw(f.wthr, make([]byte, 7)), ErrSize)
	require.ErrorIs(t, w.SetSingletonRaw(9, make([]byte, 8)), ErrUnknownSingleton)
	require.ErrorIs(t, SetSingleton(w, Health{}), ErrUnknownSingleton)
	_, ok = GetSingleton[Health](w)
	require.False(t, ok)
	v, _ = GetSingleton[Weather](w)
	require.Equal(t, Weather{Wind: 7}, v, "failed writes changed nothing")

	// The engine's time: the world API sets it (commands cannot).
	require.NoError(t, SetSingleton(w, Time{Frame: 4, Nanos: 40, Dt: 10, Scale: 0.5, Paused: 1}))
	tm, ok := GetSingleton[Time](w)
	require.True(t, ok)
	require.Equal(t, Time{Frame: 4, Nanos: 40, Dt: 10, Scale: 0.5, Paused: 1}, tm)
}

// TestPlaybackSetSingleton: a module's SetSingleton sets the value and
// stamps the version; the rejections are in TestPlaybackRejects.
func TestPlaybackSetSingleton(t *testing.T) {
	f := newFixture(t, 16, 1)
	p := NewPlayback(f.w)
	p.Begin()
	f.w.Advance()
	require.NoError(t, p.Apply(CmdSetSingleton, cmdSingleton(uint16(f.wthr), weatherBytes(Weather{Wind: 2, Rain: 9}))))
	v, ok := GetSingleton[Weather](f.w)
	require.True(t, ok)
	require.Equal(t, Weather{2, 9}, v)
	require.Equal(t, f.w.Version(), f.w.SingletonVersion(f.wthr))
	require.Equal(t, uint64(1), p.Stats.Applied)
	err := p.Apply(CmdSetSingleton, cmdSingleton(uint16(f.clock), make([]byte, 40)))
	require.ErrorIs(t, err, ErrRejected)
	require.Contains(t, err.Error(), "engine_owned")
	_, ok = GetSingleton[Time](f.w)
	require.False(t, ok)
}

func TestRestoreSingleton(t *testing.T) {
	f := newFixture(t, 16, 1)
	w := f.w
	require.NoError(t, w.RestoreSingleton(f.wthr, weatherBytes(Weather{Rain: 4}), 50))
	require.NoError(t, w.RestoreSingleton(f.clock, make([]byte, 40), 0))
	require.ErrorIs(t, w.RestoreSingleton(f.wthr, make([]byte, 4), 1), ErrRestore)
	require.ErrorIs(t, w.RestoreSingleton(7, make([]byte, 8), 1), ErrRestore)
	w.RestoreFinish(10)
	v, ok := GetSingleton[Weather](w)
	require.True(t, ok)
	require.Equal(t, Weather{Rain: 4}, v)
	_, ok = GetSingleton[Time](w)
	require.False(t, ok, "restored at version 0: never set")
	require.Greater(t, w.Version(), uint64(50), "the world resumes above every restored singleton version")
}
