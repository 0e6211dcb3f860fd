package sync

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// benchArenaPublish publishes the variable-size Label of 100K entities
// (values of 4..16 bytes, a chunk's arena 16 KiB) after rewriting one value
// (another length: it moves in the arena) in tenths/10 of the chunks, and
// reports the publish against a copy of the same bytes in pieces of one
// chunk's column (its handles and its arena's used prefix, as the publish
// copies them), measured in the same run: "arena publish against memcpy of
// the arena bytes".
func benchArenaPublish(b *testing.B, tenths int) {
	fx := newFixture(b, 1024, 128, 100_000)
	w, label := fx.w, fx.ids.label
	rng := rand.New(rand.NewSource(1))
	val := func() string { return strings.Repeat("v", 4+rng.Intn(13)) }
	for i := 0; i < w.HighWater(); i++ {
		require.NoError(b, w.SetString(world.MakeEntity(uint32(i), 1), label, val()))
	}
	mask := world.MaskOf(label)
	// Warm up every slot so each publish copies exactly the dirty chunks.
	for f := uint64(1); f <= 2*DefaultSlots; f++ {
		w.Advance()
		_, err := fx.pub.Publish(f, mask)
		require.NoError(b, err)
	}
	used := 0
	for c := 0; c < w.NumChunks(); c++ {
		used += len(w.ChunkColumn(c, label))
	}
	dirty := func() {
		w.Advance()
		for c := 0; c < w.NumChunks(); c++ {
			if c%10 < tenths {
				e := world.MakeEntity(uint32(c*w.ChunkCapacity()+rng.Intn(w.ChunkRows(c))), 1)
				if err := w.SetString(e, label, val()); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	publishVsPieces(b, fx, mask, used/w.NumChunks(), dirty)
}

func BenchmarkArenaPublish30pct(b *testing.B)  { benchArenaPublish(b, 3) }
func BenchmarkArenaPublish100pct(b *testing.B) { benchArenaPublish(b, 10) }
