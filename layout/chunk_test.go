package layout

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestChunkHeaderFields: the chunk header's fixed fields are naturally
// aligned, do not overlap, and end before the per-component versions (the
// chunk header's first 64 bytes), so that docs/LAYOUT.md's table holds.
func TestChunkHeaderFields(t *testing.T) {
	fields := []struct {
		name      string
		off, size int
	}{
		{"structural version", ChunkStructVersion, 8},
		{"rows", ChunkRows, 4},
		{"alive", ChunkAlive, 4},
		{"record mask word 0", ChunkRecordMaskOff(0), 8},
		{"record mask word 1", ChunkRecordMaskOff(1), 8},
		{"record mask word 2", ChunkRecordMaskOff(2), 8},
		{"record mask word 3", ChunkRecordMaskOff(3), 8},
	}
	end := 0
	for _, f := range fields {
		require.Zero(t, f.off%f.size, "%s at %d is not aligned", f.name, f.off)
		require.GreaterOrEqual(t, f.off, end, "%s at %d overlaps the field before it", f.name, f.off)
		end = f.off + f.size
	}
	require.LessOrEqual(t, end, ChunkVersions, "the fixed fields run into the component versions")
	require.Equal(t, 64, ChunkVersions)
}
