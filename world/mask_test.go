package world

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// TestMaskOps: the operations of the 4-word mask across word boundaries,
// and none of them allocates.
func TestMaskOps(t *testing.T) {
	a := MaskOf(0, 63, 64, 127, 128, 255)
	b := MaskOf(63, 64, 200)
	require.Equal(t, MaskOf(63, 64), a.And(b))
	require.Equal(t, MaskOf(0, 63, 64, 127, 128, 200, 255), a.Or(b))
	require.Equal(t, MaskOf(0, 127, 128, 255), a.AndNot(b))
	require.Equal(t, MaskOf(0, 63, 127, 128, 255), a.Without(64))
	require.True(t, a.Contains(MaskOf(255, 0)))
	require.False(t, a.Contains(b))
	require.True(t, Mask{}.Empty())
	require.False(t, MaskOf(255).Empty())
	require.True(t, a.Equal(a.With(0)))
	require.Equal(t, 6, a.Count())
	require.Equal(t, []ComponentID{0, 63, 64, 127, 128, 255}, slices.Collect(a.IDs()))
	require.Equal(t, "0x8"+strings.Repeat("0", 44)+"1"+strings.Repeat("f", 18), MaskAll().And(maskUpTo(73)).Or(MaskOf(255)).String())
	require.Equal(t, "0x3", MaskOf(0, 1).String())
	require.Equal(t, Mask(layout.SchemaMask(256)), MaskAll())
	require.Equal(t, MaskWord(0xff), maskUpTo(8))
	var sink Mask
	require.Zero(t, testing.AllocsPerRun(100, func() {
		m := a.And(b).Or(MaskOf(3)).AndNot(MaskOf(64)).With(200)
		for id := range m.IDs() {
			sink = sink.With(id)
		}
		if m.Contains(sink) && m.Count() > 0 {
			sink = m
		}
	}))
}

// TestQueryMatchEveryWidth: queries match exactly the alive entities whose
// masks contain the query's, in worlds of 1 to 4 mask words, including the
// last row of a chunk (whose Match reads the chunk's padding, R2).
func TestQueryMatchEveryWidth(t *testing.T) {
	for _, n := range []int{10, 70, 140, 256} {
		r := NewRegistry()
		for i := 0; i < n; i++ {
			_, err := r.register(reflect.ArrayOf(i+1, reflect.TypeFor[byte]()), fmt.Sprintf("C%d", i))
			require.NoError(t, err)
		}
		w, err := New(r, Config{ChunkCapacity: 16, MaxChunks: 2})
		require.NoError(t, err)
		last := ComponentID(n - 1)
		var ents []Entity
		for i := 0; i < 32; i++ {
			e, err := w.Create()
			require.NoError(t, err)
			ents = append(ents, e)
			for _, k := range []ComponentID{ComponentID(i % n), ComponentID(i * 7 % n)} {
				if !w.Has(e, k) {
					require.NoError(t, w.Add(e, k))
				}
			}
			if i%2 == 1 && !w.Has(e, last) {
				require.NoError(t, w.Add(e, last))
			}
		}
		require.NoError(t, w.Destroy(ents[5]))
		for _, m := range []Mask{{}, MaskOf(last), MaskOf(0, last), MaskOf(3), MaskOf(15, last), MaskOf(ComponentID(31 % n))} {
			want := 0
			for _, e := range ents {
				if w.IsAlive(e) && w.Mask(e).Contains(m) {
					want++
				}
			}
			require.Equal(t, want, countMatching(w, m), "%d components, mask %v", n, m)
		}
	}
}
