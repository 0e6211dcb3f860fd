package ipc

import (
	"encoding/json"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// TestHelloReadMask: the read mask travels as "mask" (components 0..63) and
// "mask_ext" (words 1..3, only as long as needed, omitted when zero, so a
// hello of a world of at most 64 components is what it always was); more
// than 3 extension words make an invalid hello.
func TestHelloReadMask(t *testing.T) {
	var h Hello
	h.SetReadMask([layout.MaxMaskWords]uint64{5})
	b, err := json.Marshal(h)
	require.NoError(t, err)
	require.NotContains(t, string(b), "mask_ext")
	require.Contains(t, string(b), `"mask":5`)

	h.SetReadMask([layout.MaxMaskWords]uint64{1, 0, 1 << 3})
	require.Equal(t, []uint64{0, 1 << 3}, h.MaskExt)
	b, err = json.Marshal(h)
	require.NoError(t, err)
	require.Contains(t, string(b), `"mask_ext":[0,8]`)
	var back Hello
	require.NoError(t, json.Unmarshal(b, &back))
	m, ok := back.ReadMask()
	require.True(t, ok)
	require.Equal(t, [layout.MaxMaskWords]uint64{1, 0, 1 << 3}, m)

	h = Hello{Name: "m", Tier: TierFast, Every: 1, MaskExt: []uint64{0, 0, 0, 1}}
	_, ok = h.ReadMask()
	require.False(t, ok)
	require.ErrorIs(t, ctlValidHello(&h), ErrBadHello)
	require.ErrorContains(t, ctlValidHello(&h), "mask_ext has 4 words (max 3")
	h.MaskExt = h.MaskExt[:3]
	require.NoError(t, ctlValidHello(&h))
}
