package sync

import (
	"math"
	"testing"

	"github.com/fdp-engine/fdp/internal/ntcopy"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// copyModes runs f twice as subtests: "copy", every fill with ordinary
// stores (NTCopyMin above any frame), and "nt", every fill with
// non-temporal stores (NTCopyMin 0). NTCopyMin is a package variable: tests
// that use copyModes do not run in parallel.
func copyModes(t *testing.T, f func(t *testing.T)) {
	if !ntcopy.Available() {
		t.Log("no AVX2: the nt mode copies with copy()")
	}
	for _, m := range []struct {
		name string
		min  int
	}{{"copy", math.MaxInt}, {"nt", 0}} {
		t.Run(m.name, func(t *testing.T) {
			old := NTCopyMin
			NTCopyMin = m.min
			defer func() { NTCopyMin = old }()
			f(t)
		})
	}
}

// checkCopyMode fails unless pub's fills all took the path NTCopyMin forces
// (copyModes): a differential test in the nt mode that ran no streaming fill
// would prove nothing about it.
func checkCopyMode(t *testing.T, pub *Publisher) {
	t.Helper()
	fills := pub.fillsChanged + pub.fillsScanned
	switch NTCopyMin {
	case 0:
		require.Equal(t, fills, pub.fillsNT, "every fill streams")
		require.NotZero(t, pub.fillsNT)
	case math.MaxInt:
		require.Zero(t, pub.fillsNT, "no fill streams")
	}
}

// TestNTCopyThreshold: a publish streams when the previous publish copied at
// least NTCopyMin bytes, a snapshot when the previous snapshot did; each
// kind keeps its own count.
func TestNTCopyThreshold(t *testing.T) {
	old := NTCopyMin
	defer func() { NTCopyMin = old }()
	fx := newFixture(t, 64, 16, 64*10)
	all := world.MaskAll()
	NTCopyMin = 1 << 10
	nt := func() uint64 { return fx.pub.fillsNT }

	_, err := fx.pub.Publish(1, all) // the first: nothing expected
	require.NoError(t, err)
	require.Zero(t, nt())
	st, err := fx.pub.Publish(2, all) // the first copied the world: streams
	require.NoError(t, err)
	require.Greater(t, st.BytesCopied, NTCopyMin) // a fresh slot: the whole world again
	require.EqualValues(t, 1, nt())
	dirtyEvery(fx, 1000) // chunk 0 only: 64 entities, 5 KiB
	st, err = fx.pub.Publish(3, all)
	require.NoError(t, err)
	require.EqualValues(t, 2, nt())
	require.Less(t, st.BytesCopied, 8<<10)
	NTCopyMin = 8 << 10
	_, err = fx.pub.Publish(4, all) // the previous copied less: ordinary stores
	require.NoError(t, err)
	require.EqualValues(t, 2, nt())

	// Snapshots count their own: the first one expects nothing.
	s, _, err := fx.pub.Snapshot(4, all, holdersUpTo(1))
	require.NoError(t, err)
	require.EqualValues(t, 2, nt())
	require.NoError(t, fx.pub.ReleaseHolder(s, 0))
	NTCopyMin = 0
	s, _, err = fx.pub.Snapshot(4, all, holdersUpTo(1))
	require.NoError(t, err)
	require.EqualValues(t, 3, nt())
	require.NoError(t, fx.pub.ReleaseHolder(s, 0))
}
