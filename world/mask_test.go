package world

import (
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
