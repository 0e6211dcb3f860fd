package world

import (
	"math/rand"
	"sort"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// TestChangedChunksModel checks World.ChangedChunks against a model of the
// chunks written in each epoch: when it answers, it reports exactly the
// chunks written after the seal asked about, once each; it answers for
// every recent seal; epochs with many writes make the log grow and drop old
// epochs (then it refuses, never answers wrong).
func TestChangedChunksModel(t *testing.T) {
	const capc, nch = 16, 600
	f := newFixture(t, capc, nch)
	w := f.w
	ents := make([]Entity, 0, capc*nch)
	for i := 0; i < capc*nch; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, Set(w, e, f.pos, Position{}))
		ents = append(ents, e)
	}
	rng := rand.New(rand.NewSource(1))
	written := map[uint64]map[int32]bool{} // epoch -> chunks written in it
	w.Seal()
	answered, refused := 0, 0
	for step := 0; step < 1500; step++ {
		e := w.Epoch()
		written[e] = map[int32]bool{}
		n := rng.Intn(8)
		if rng.Intn(20) == 0 {
			n = 2000
		}
		for i := 0; i < n; i++ {
			ent := ents[rng.Intn(len(ents))]
			switch rng.Intn(3) {
			case 0:
				require.NoError(t, Set(w, ent, f.pos, Position{X: float32(i)}))
			case 1:
				Ptr[Position](w, ent, f.pos).Y++
			default:
				q := w.Query(Mask{})
				target := int(ent.Index()) / capc
				for q.Next() {
					if q.Chunk() == target {
						ColumnMut[Position](&q, f.pos)
					}
				}
			}
			written[e][int32(ent.Index()/capc)] = true
		}
		if rng.Intn(4) == 0 {
			// A write seen in the open epoch.
			ent := ents[rng.Intn(len(ents))]
			require.NoError(t, Set(w, ent, f.vel, Velocity{}))
			written[e][int32(ent.Index()/capc)] = true
			got, ok := w.ChangedChunks(e-1, 1<<30, nil)
			require.True(t, ok)
			require.Contains(t, got, int32(ent.Index()/capc))
		}
		w.Seal()
		for k := 0; k < 4; k++ {
			since := w.Epoch() - 1 - uint64(rng.Intn(90))
			if k == 0 {
				since = w.Epoch() - 1 - uint64(rng.Intn(3))
			}
			if since < 1 {
				continue
			}
			got, ok := w.ChangedChunks(since, 1<<30, nil)
			want := map[int32]bool{}
			for x := since + 1; x < w.Epoch(); x++ {
				for c := range written[x] {
					want[c] = true
				}
			}
			if !ok {
				require.Greater(t, w.Epoch()-since, uint64(3), "step %d: recent seal %d refused (epoch %d)", step, since, w.Epoch())
				refused++
				continue
			}
			answered++
			sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
			var wantList []int32
			for c := range want {
				wantList = append(wantList, c)
			}
			sort.Slice(wantList, func(i, j int) bool { return wantList[i] < wantList[j] })
			require.Equal(t, wantList, got, "step %d: chunks changed since epoch %d (epoch %d)", step, since, w.Epoch())
			if len(want) > 1 {
				_, ok := w.ChangedChunks(since, len(want)-1, nil)
				require.False(t, ok, "limit below the entries")
			}
		}
	}
	require.NotZero(t, answered)
	require.NotZero(t, refused, "old seals must be refused once the log drops them")
}

// TestChangedChunksRestore: the restore functions list the chunks they
// write (through ensureChunks), and every chunk they allocate.
func TestChangedChunksRestore(t *testing.T) {
	f := newFixture(t, 16, 8)
	w := f.w
	sealed := w.Epoch()
	w.Seal()
	recs := make([]layout.EntityRecord, 16)
	recs[0] = layout.EntityRecord{Gen: 1, Flags: layout.FlagAlive}
	require.NoError(t, w.SetChunkData(3, recs, 7))
	require.NoError(t, w.RestoreColumn(5, f.pos, make([]byte, 16*12), 9))
	w.RestoreFinish(1)
	got, ok := w.ChangedChunks(sealed, 100, nil)
	require.True(t, ok)
	require.ElementsMatch(t, []int32{0, 1, 2, 3, 4, 5}, got)
}

// TestTouchSealAllocatesNothing: in steady state, writes and seals do not
// allocate (world/dirty.go D4).
func TestTouchSealAllocatesNothing(t *testing.T) {
	f := newFixture(t, 16, 64)
	w := f.w
	var ents []Entity
	for i := 0; i < 16*64; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, Set(w, e, f.pos, Position{}))
		ents = append(ents, e)
	}
	i := 0
	allocs := testing.AllocsPerRun(500, func() {
		for k := 0; k < 40; k++ {
			i = (i + 37) % len(ents)
			Ptr[Position](w, ents[i], f.pos).X++
		}
		w.Seal()
	})
	require.Zero(t, allocs)
}
