package world

import (
	"math/rand"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

type rcA struct{ V uint32 }
type rcB struct{ V [3]float32 }

// TestRestoreChunksDifferential: a world restored frame after frame with
// RestoreChunks (only the chunks whose records changed) has the derived
// state of a world restored whole with RestoreFinish: count, high-water
// mark, alive and per-component counts of every chunk.
func TestRestoreChunksDifferential(t *testing.T) {
	reg := NewRegistry()
	a, _ := Register[rcA](reg, "A")
	b, _ := Register[rcB](reg, "B")
	cfg := Config{ChunkCapacity: 64, MaxChunks: 8}
	inc, err := New(reg, cfg)
	require.NoError(t, err)
	rng := rand.New(rand.NewSource(3))
	recs := make([][]layout.EntityRecord, cfg.MaxChunks)
	for c := range recs {
		recs[c] = make([]layout.EntityRecord, cfg.ChunkCapacity)
	}
	hw := 0 // rows ever issued: the high-water mark only grows
	for frame := 0; frame < 300; frame++ {
		// Change the records of a few chunks (issue new rows sometimes).
		if rng.Intn(3) == 0 && hw < cfg.MaxChunks*cfg.ChunkCapacity {
			hw = min(hw+rng.Intn(100)+1, cfg.MaxChunks*cfg.ChunkCapacity)
		}
		var changed []int
		for c := 0; c*cfg.ChunkCapacity < hw; c++ {
			if frame > 0 && rng.Intn(3) != 0 {
				continue
			}
			for i := range recs[c] {
				idx := c*cfg.ChunkCapacity + i
				r := &recs[c][i]
				if idx >= hw {
					*r = layout.EntityRecord{}
					continue
				}
				if r.Gen == 0 || rng.Intn(4) == 0 {
					r.Gen++
					r.Flags, r.Mask = 0, [layout.MaxMaskWords]uint64{}
					if rng.Intn(3) != 0 {
						r.Flags = layout.FlagAlive
						r.Mask[0] = uint64(rng.Intn(4)) & (1<<a | 1<<b)
					}
				}
			}
			require.NoError(t, inc.SetChunkData(c, recs[c], inc.Version()))
			changed = append(changed, c)
		}
		if frame == 0 {
			inc.RestoreFinish(inc.Version())
		} else {
			inc.RestoreChunks(changed, inc.Version())
		}
		whole, err := New(reg, cfg)
		require.NoError(t, err)
		for c := 0; c*cfg.ChunkCapacity < hw; c++ {
			require.NoError(t, whole.SetChunkData(c, recs[c], 1))
		}
		whole.RestoreFinish(1)
		require.Equal(t, whole.Count(), inc.Count(), "frame %d count", frame)
		require.Equal(t, whole.HighWater(), inc.HighWater(), "frame %d high-water", frame)
		for c := 0; c < whole.NumChunks(); c++ {
			require.Equal(t, whole.chunks[c].alive, inc.chunks[c].alive, "frame %d chunk %d alive", frame, c)
			require.Equal(t, whole.chunks[c].counts, inc.chunks[c].counts, "frame %d chunk %d counts", frame, c)
		}
	}
}
