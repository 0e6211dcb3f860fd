package layout

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWorldStatWords: the world header's statistics words (the snapshots
// refused word among them) are distinct, 8-byte aligned words after the
// latest word and before the component table, zero in a new segment, and
// outside what the header checksum covers: the engine's stores to them
// leave the segment decodable.
func TestWorldStatWords(t *testing.T) {
	words := []int{OffWStatPublishes, OffWStatSkipped, OffWStatLastNanos, OffWStatBytes, OffWStatChunks,
		OffWStatHeartbeat, OffWStatAborted, OffWStatFrameNanos, OffWStatSnapRefused}
	b, g := encodeTestWorld(t)
	seen := map[int]bool{}
	for i, off := range words {
		require.Zero(t, off%8, "word %d at %d", i, off)
		require.GreaterOrEqual(t, off, OffWLatest+8, "word %d at %d", i, off)
		require.LessOrEqual(t, off+8, g.ComponentsOff, "word %d at %d", i, off)
		require.False(t, seen[off], "word %d at %d used twice", i, off)
		seen[off] = true
		require.Zero(t, Load64(b, off), "word %d at %d in a new segment", i, off)
	}
	require.Equal(t, 2240, OffWStatSnapRefused, "docs/LAYOUT.md names this offset")
	for i, off := range words {
		Add64(b, off, uint64(i+1))
	}
	w, err := DecodeWorld(b)
	require.NoError(t, err, "stat stores keep the segment valid")
	for i, off := range words {
		require.Equal(t, uint64(i+1), Load64(w.B, off), "word %d at %d", i, off)
	}
}
