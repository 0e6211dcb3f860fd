package host

import (
	"math/rand"
	"testing"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// TestRecoverWideWorld: a world of 200 components (40-byte records, 4-word
// masks) is recovered from its latest published frame with every record
// (all mask words) and every component value of the engine's world.
func TestRecoverWideWorld(t *testing.T) {
	const n = 200
	newWorld := func() *world.World {
		w, err := world.New(testutil.WideRegistry(n), world.Config{ChunkCapacity: 16, MaxChunks: 8})
		require.NoError(t, err)
		return w
	}
	w := newWorld()
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 100; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		for j := 0; j < 6; j++ {
			k := world.ComponentID(rng.Intn(n))
			b := make([]byte, testutil.WideType(int(k)).Size())
			rng.Read(b)
			require.NoError(t, w.SetRaw(e, k, b))
		}
		if i%7 == 3 {
			require.NoError(t, w.Destroy(e))
		}
	}
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog()}, w, nil)
	require.NoError(t, err)
	defer e.Close()
	e.Step()
	got := newWorld()
	frame, err := RecoverFromSegment(append([]byte(nil), e.segs.World.Data...), got)
	require.NoError(t, err)
	require.Equal(t, e.Frame(), frame)
	requireSameWorld(t, w, got)
	require.Equal(t, w.Mask(world.MakeEntity(0, 1)), got.Mask(world.MakeEntity(0, 1)))
}
