package layout

import (
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestModuleSetAtTheCap: every slot of [0, MaxModules) can be a member,
// the word boundaries included; a slot out of range is never a member and
// cannot be added.
func TestModuleSetAtTheCap(t *testing.T) {
	require.GreaterOrEqual(t, MaxModules, 256)
	var s ModuleSet
	require.True(t, s.Empty())
	require.Equal(t, -1, s.Next(0))
	for n := 0; n < MaxModules; n++ {
		require.False(t, s.Has(n))
		s.Set(n)
		require.True(t, s.Has(n), "slot %d", n)
		require.Equal(t, n+1, s.Count())
	}
	require.False(t, s.Has(MaxModules), "the 257th slot")
	require.False(t, s.Has(-1))
	require.Panics(t, func() { s.Set(MaxModules) }, "a slot beyond the cap is a caller's bug")
	require.Panics(t, func() { s.Set(-1) })
	for n := 0; n < MaxModules; n += 2 {
		s.Clear(n)
	}
	require.Equal(t, MaxModules/2, s.Count())
	got := []int{}
	for n := s.Next(0); n >= 0; n = s.Next(n + 1) {
		got = append(got, n)
	}
	require.Len(t, got, MaxModules/2)
	for i, n := range got {
		require.Equal(t, 2*i+1, n)
	}
	require.Equal(t, -1, s.Next(MaxModules))
	require.Equal(t, 1, s.Next(-5))
}

// TestModuleSetModel compares ModuleSet with a map under random operations.
func TestModuleSetModel(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	for round := 0; round < 200; round++ {
		var a, b ModuleSet
		ma, mb := map[int]bool{}, map[int]bool{}
		for i := 0; i < rng.Intn(3*MaxModules); i++ {
			n := rng.Intn(MaxModules)
			switch rng.Intn(4) {
			case 0, 1:
				a.Set(n)
				ma[n] = true
			case 2:
				a.Clear(n)
				delete(ma, n)
			case 3:
				b.Set(n)
				mb[n] = true
			}
		}
		u, in, mi := a.Union(b), a.Intersect(b), a.Minus(b)
		for n := 0; n < MaxModules; n++ {
			require.Equal(t, ma[n], a.Has(n))
			require.Equal(t, ma[n] || mb[n], u.Has(n))
			require.Equal(t, ma[n] && mb[n], in.Has(n))
			require.Equal(t, ma[n] && !mb[n], mi.Has(n))
		}
		require.Equal(t, len(ma), a.Count())
		require.Equal(t, len(ma) == 0, a.Empty())
		seen := 0
		for n := a.Next(0); n >= 0; n = a.Next(n + 1) {
			require.True(t, ma[n])
			seen++
		}
		require.Equal(t, len(ma), seen)
	}
}

func TestModuleSetString(t *testing.T) {
	require.Equal(t, "{}", ModuleSet{}.String())
	require.Equal(t, "{0 63 64 255}", ModuleSetOf(255, 64, 0, 63).String())
}

// TestModuleSetAllocatesNothing: the set is used on the frame path.
func TestModuleSetAllocatesNothing(t *testing.T) {
	var s, o ModuleSet
	o.Set(200)
	n := testing.AllocsPerRun(100, func() {
		s.Set(3)
		s.Set(255)
		s = s.Union(o).Minus(ModuleSet{}).Intersect(s)
		for m := s.Next(0); m >= 0; m = s.Next(m + 1) {
			s.Clear(m)
		}
		_ = s.Count() + s.Next(0)
		_ = s.Empty() && s.Has(7)
	})
	require.Zero(t, n)
}
