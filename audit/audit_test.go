package audit_test

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"testing"

	"github.com/fdp-engine/fdp/audit"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

type aPos struct{ X, Y, Z float32 } // 12 bytes
type aHP struct{ V int16 }          // 2 bytes
type aBig struct{ A [5]uint64 }     // 40 bytes

const (
	fxCap      = 16
	fxEntities = 100 // high-water 100: 7 chunks, the last with 4 rows
)

// fxDead are entity indices destroyed before the publishes.
var fxDead = []int{3, 20, 50}

type fx struct {
	w            *world.World
	pos, hp, big world.ComponentID
	name         world.ComponentID // a string component: entities i%3 == 0 have one
	gust         world.SingletonID
	segs         *fsync.WorldSegments
	pub          *fsync.Publisher
	ents         []world.Entity
}

// useTempShm points shm.Dir at a fresh temporary directory.
func useTempShm(t testing.TB, dir string) {
	old := shm.Dir
	shm.Dir = dir
	t.Cleanup(func() { shm.Dir = old })
}

// newFx builds a small world (3 components of 12, 2 and 40 bytes, 16-row
// chunks, some dead entities) and publishes it twice (frames 1 and 2, full
// mask) into fresh segments.
func newFx(t testing.TB, dir string) *fx {
	useTempShm(t, dir)
	reg := world.NewRegistry()
	f := &fx{}
	var err error
	f.pos, err = world.Register[aPos](reg, "Pos")
	require.NoError(t, err)
	f.hp, err = world.Register[aHP](reg, "HP")
	require.NoError(t, err)
	f.big, err = world.Register[aBig](reg, "Big")
	require.NoError(t, err)
	f.name, err = world.RegisterBytes(reg, "Name", world.BytesSpec{MaxLen: 20, PerEntity: 8, UTF8: true})
	require.NoError(t, err)
	f.gust, err = world.RegisterSingleton[aHP](reg, "Gust")
	require.NoError(t, err)
	f.w, err = world.New(reg, world.Config{ChunkCapacity: fxCap, MaxChunks: 16})
	require.NoError(t, err)
	for i := 0; i < fxEntities; i++ {
		e, err := f.w.Create()
		require.NoError(t, err)
		f.ents = append(f.ents, e)
		require.NoError(t, world.Set(f.w, e, f.pos, aPos{X: float32(i)}))
		if i%2 == 0 {
			require.NoError(t, world.Set(f.w, e, f.hp, aHP{V: int16(i)}))
		}
		if i%5 == 0 {
			require.NoError(t, world.Set(f.w, e, f.big, aBig{A: [5]uint64{uint64(i)}}))
		}
		if i%3 == 0 {
			require.NoError(t, f.w.SetString(e, f.name, fmt.Sprintf("é%d", i)))
		}
	}
	require.NoError(t, world.SetSingleton(f.w, aHP{V: 7}))
	for _, i := range fxDead {
		require.NoError(t, f.w.Destroy(f.ents[i]))
	}
	f.segs, err = fsync.CreateWorldSegments(fmt.Sprintf("a%d%05x", os.Getpid()%100000, rand.Intn(1<<20)), f.w, 4, 0)
	require.NoError(t, err)
	t.Cleanup(func() { f.segs.Unlink(); f.segs.Close() })
	f.pub, err = fsync.NewPublisher(f.w, f.segs)
	require.NoError(t, err)
	f.publish(t, 1)
	f.w.Advance()
	*world.Ptr[aPos](f.w, f.ents[1], f.pos) = aPos{X: -1}
	f.publish(t, 2)
	return f
}

func (f *fx) publish(t testing.TB, frame uint64) {
	_, err := f.pub.Publish(frame, f.w.Registry().Mask())
	require.NoError(t, err)
}

// copySeg returns a private copy of the world segment and its decoding.
func (f *fx) copySeg(t testing.TB) ([]byte, *layout.World) {
	b := append([]byte(nil), f.segs.World.Data...)
	lw, err := layout.DecodeWorld(b)
	require.NoError(t, err)
	return b, lw
}

func put32(b []byte, off int, v uint32) {
	b[off], b[off+1], b[off+2], b[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
func put64(b []byte, off int, v uint64) { put32(b, off, uint32(v)); put32(b, off+4, uint32(v>>32)) }
func get32(b []byte, off int) uint32 {
	return uint32(b[off]) | uint32(b[off+1])<<8 | uint32(b[off+2])<<16 | uint32(b[off+3])<<24
}
func get64(b []byte, off int) uint64 { return uint64(get32(b, off)) | uint64(get32(b, off+4))<<32 }

// handleOff returns the offset of the handle of entity index i's value of
// variable-size component k in slot s.
func handleOff(lw *layout.World, s int, k world.ComponentID, i int) int {
	o, _ := lw.ColumnRange(s, i/fxCap, int(k))
	return o + (i%fxCap)*layout.BytesHandleSize
}

// rec returns the offset of the record of entity index i in slot s.
func rec(lw *layout.World, s, i int) int {
	eo, _ := lw.EntityRange(s, i/fxCap)
	return eo + (i%fxCap)*lw.RecordSize
}

func TestHealthyFramesAudit(t *testing.T) {
	f := newFx(t, t.TempDir())
	b := f.segs.World.Data
	lw := f.pub.Layout()
	rep, err := audit.Latest(b, lw)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.Equal(t, uint64(2), rep.Info.Frame)
	require.Equal(t, uint32(fxEntities), rep.Info.Entities)
	require.Equal(t, uint32(fxEntities-len(fxDead)), rep.Info.Alive)
	diffs, err := audit.Compare(b, lw, f.pub.Latest(), f.w, 0)
	require.NoError(t, err)
	require.Empty(t, diffs)

	// A filtered snapshot (HP only) of a changed world, then a GDB frame:
	// every complete slot satisfies every invariant.
	f.w.Advance()
	e, err := f.w.Create() // reuses a dead index
	require.NoError(t, err)
	require.NoError(t, world.Set(f.w, e, f.big, aBig{A: [5]uint64{7}}))
	require.NoError(t, f.w.Remove(f.ents[0], f.hp))
	snap, _, err := f.pub.Snapshot(2, world.MaskOf(f.hp), layout.ModuleSetOf(0)) // leased: the next publish keeps off it
	require.NoError(t, err)
	f.publish(t, 3)
	complete := 0
	for s := 0; s < lw.Slots; s++ {
		rep, err := audit.Slot(b, lw, s)
		if errors.Is(err, audit.ErrEmpty) {
			continue
		}
		require.NoError(t, err)
		require.True(t, rep.OK(), "slot %d: %v", s, rep.Problems)
		complete++
	}
	require.GreaterOrEqual(t, complete, 3)
	diffs, err = audit.Compare(b, lw, f.pub.Latest(), f.w, 0)
	require.NoError(t, err)
	require.Empty(t, diffs)
	// The snapshot holds the records and HP as of now; Compare checks only
	// the columns of its mask.
	rep, err = audit.Slot(b, lw, snap)
	require.NoError(t, err)
	require.Equal(t, [4]uint64{1 << f.hp}, rep.Info.Mask)
	diffs, err = audit.Compare(b, lw, snap, f.w, 0)
	require.NoError(t, err)
	require.Empty(t, diffs)
}

// TestCorruptionsReported corrupts a published frame in each documented way
// and checks that the audit reports the right kind.
func TestCorruptionsReported(t *testing.T) {
	f := newFx(t, t.TempDir())
	s := f.pub.Latest()
	type mut func(b []byte, lw *layout.World)
	slotOff := func(lw *layout.World, field int) int { return lw.SlotOff(s) + field }
	chunkOff := func(lw *layout.World, c, field int) int { return lw.ChunkOff(s, c) + field }
	cases := []struct {
		name string
		mut  mut
		want audit.Kind
	}{
		{"chunk alive", func(b []byte, lw *layout.World) {
			o := chunkOff(lw, 1, layout.ChunkAlive)
			put32(b, o, get32(b, o)-1)
		}, audit.KindChunkAlive},
		{"header alive", func(b []byte, lw *layout.World) {
			o := slotOff(lw, layout.SlotAlive)
			put32(b, o, get32(b, o)-1)
		}, audit.KindAliveSum},
		{"rows", func(b []byte, lw *layout.World) { put32(b, chunkOff(lw, 6, layout.ChunkRows), 5) }, audit.KindRows},
		{"rows sum", func(b []byte, lw *layout.World) { put32(b, chunkOff(lw, 0, layout.ChunkRows), 15) }, audit.KindRowsSum},
		{"header entities beyond chunks", func(b []byte, lw *layout.World) { put32(b, slotOff(lw, layout.SlotEntities), 7*fxCap+1) }, audit.KindHeaderBounds},
		{"header alive above entities", func(b []byte, lw *layout.World) { put32(b, slotOff(lw, layout.SlotAlive), fxEntities+1) }, audit.KindHeaderBounds},
		{"chunk count", func(b []byte, lw *layout.World) { put32(b, slotOff(lw, layout.SlotChunks), 8) }, audit.KindChunkCount},
		{"slot version 0", func(b []byte, lw *layout.World) { put64(b, slotOff(lw, layout.SlotVersion), 0) }, audit.KindSlotVersion},
		{"struct version ahead", func(b []byte, lw *layout.World) {
			put64(b, chunkOff(lw, 2, layout.ChunkStructVersion), get64(b, slotOff(lw, layout.SlotVersion))+1)
		}, audit.KindVersionAhead},
		{"column version ahead", func(b []byte, lw *layout.World) {
			put64(b, lw.ChunkVersionOff(s, 3, int(f.big)), get64(b, slotOff(lw, layout.SlotVersion))+1)
		}, audit.KindVersionAhead},
		{"struct version 0", func(b []byte, lw *layout.World) { put64(b, chunkOff(lw, 2, layout.ChunkStructVersion), 0) }, audit.KindStructVersion},
		{"column version 0", func(b []byte, lw *layout.World) { put64(b, lw.ChunkVersionOff(s, 0, int(f.hp)), 0) }, audit.KindColumnVersion},
		{"slot mask beyond schema", func(b []byte, lw *layout.World) {
			o := slotOff(lw, layout.SlotMask)
			put64(b, o, get64(b, o)|1<<4)
		}, audit.KindSlotMask},
		{"slot mask word beyond the world's", func(b []byte, lw *layout.World) {
			put64(b, slotOff(lw, layout.SlotMaskOff(2)), 1)
		}, audit.KindSlotMask},
		{"chunk record mask word beyond the world's", func(b []byte, lw *layout.World) {
			put64(b, chunkOff(lw, 1, layout.ChunkRecordMaskOff(1)), 1)
		}, audit.KindChunkRecordMask},
		{"record mask beyond schema", func(b []byte, lw *layout.World) {
			o := rec(lw, s, 9) + 8
			put64(b, o, get64(b, o)|1<<40)
		}, audit.KindRecordMask},
		{"record outside the slot mask", func(b []byte, lw *layout.World) {
			o := slotOff(lw, layout.SlotMask)
			put64(b, o, get64(b, o)&^(1<<f.hp)) // records of entities with HP still name it
		}, audit.KindRecordSlotMask},
		{"chunk record mask", func(b []byte, lw *layout.World) {
			o := chunkOff(lw, 2, layout.ChunkRecordMask)
			put64(b, o, get64(b, o)&^(1<<f.big))
		}, audit.KindChunkRecordMask},
		{"record flags", func(b []byte, lw *layout.World) {
			o := rec(lw, s, 10) + 4
			put32(b, o, get32(b, o)|2)
		}, audit.KindRecordFlags},
		{"record generation 0", func(b []byte, lw *layout.World) { put32(b, rec(lw, s, 11), 0) }, audit.KindRecordGen},
		{"dead record generation 0", func(b []byte, lw *layout.World) { put32(b, rec(lw, s, fxDead[0]), 0) }, audit.KindRecordGen},
		{"dead record with components", func(b []byte, lw *layout.World) { put64(b, rec(lw, s, fxDead[1])+8, 1) }, audit.KindDeadRecord},
		{"destroyed entity alive again", func(b []byte, lw *layout.World) { put32(b, rec(lw, s, fxDead[2])+4, layout.FlagAlive) }, audit.KindChunkAlive},
		{"record beyond high water", func(b []byte, lw *layout.World) { put32(b, rec(lw, s, fxEntities), 1) }, audit.KindBeyondHighWater},
		// Variable-size values (entities 0, 3, 6, ... have a Name; 3 is dead).
		{"bytes handle beyond the arena", func(b []byte, lw *layout.World) {
			_, e := lw.ArenaRange(s, 0, int(f.name))
			a, _ := lw.ArenaRange(s, 0, int(f.name))
			put32(b, handleOff(lw, s, f.name, 6), uint32(e-a-2))
		}, audit.KindBytesHandle},
		{"bytes handle longer than the max", func(b []byte, lw *layout.World) { put32(b, handleOff(lw, s, f.name, 6)+4, 21) }, audit.KindBytesHandle},
		{"bytes handle misaligned", func(b []byte, lw *layout.World) {
			o := handleOff(lw, s, f.name, 6)
			put32(b, o, get32(b, o)+1)
		}, audit.KindBytesHandle},
		{"bytes values overlap", func(b []byte, lw *layout.World) {
			put64(b, handleOff(lw, s, f.name, 9), get64(b, handleOff(lw, s, f.name, 6)))
		}, audit.KindBytesOverlap},
		{"bytes not UTF-8", func(b []byte, lw *layout.World) {
			a, _ := lw.ArenaRange(s, 0, int(f.name))
			b[a+int(get32(b, handleOff(lw, s, f.name, 6)))] = 0xff
		}, audit.KindBytesUTF8},
		{"singleton version ahead", func(b []byte, lw *layout.World) {
			put64(b, lw.SingletonVersionOff(s, int(f.gust)), get64(b, slotOff(lw, layout.SlotVersion))+1)
		}, audit.KindVersionAhead},
		{"latest frame", func(b []byte, lw *layout.World) { put64(b, slotOff(lw, layout.SlotFrame), 9) }, audit.KindLatestFrame},
		{"latest word slot", func(b []byte, lw *layout.World) { put64(b, layout.OffWLatest, layout.PackLatest(2, lw.Slots)) }, audit.KindLatestWord},
		{"latest slot never published", func(b []byte, lw *layout.World) {
			e := -1
			for x := 0; x < lw.Slots; x++ {
				if get64(b, lw.SlotOff(x)) == 0 {
					e = x
				}
			}
			put64(b, layout.OffWLatest, layout.PackLatest(2, e))
		}, audit.KindLatestWord},
		{"latest slot odd", func(b []byte, lw *layout.World) {
			o := slotOff(lw, layout.SlotSeq)
			put64(b, o, get64(b, o)|1)
		}, audit.KindLatestTorn},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			b, lw := f.copySeg(t)
			rep, err := audit.Latest(b, lw)
			require.NoError(t, err)
			require.True(t, rep.OK(), "before: %v", rep.Problems)
			tc.mut(b, lw)
			rep, err = audit.Latest(b, lw)
			require.NoError(t, err)
			require.True(t, rep.Has(tc.want), "want %s, got %v", tc.want, rep.Problems)
			for _, p := range rep.Problems {
				require.NotEmpty(t, p.Detail)
				require.Contains(t, p.String(), p.Kind.String())
			}
		})
	}
}

func TestSeqlockRule(t *testing.T) {
	f := newFx(t, t.TempDir())
	s := f.pub.Latest()
	b, lw := f.copySeg(t)
	seq := lw.SlotOff(s) + layout.SlotSeq

	// Rewritten during the copy: a retry, not a problem (not the latest).
	other := -1
	for x := 0; x < lw.Slots; x++ {
		if x != s && get64(b, lw.SlotOff(x)) != 0 {
			other = x
		}
	}
	require.GreaterOrEqual(t, other, 0)
	audit.SetTestHookAfterCopy(func() { put64(b, lw.SlotOff(other), get64(b, lw.SlotOff(other))+2) })
	_, err := audit.Slot(b, lw, other)
	require.ErrorIs(t, err, audit.ErrRetry)

	// The latest slot rewritten while latest did not change: a problem.
	audit.SetTestHookAfterCopy(func() { put64(b, seq, get64(b, seq)+2) })
	rep, err := audit.Latest(b, lw)
	require.NoError(t, err)
	require.True(t, rep.Has(audit.KindLatestTorn), "%v", rep.Problems)
	// ... but when a newer frame was published meanwhile: a retry.
	audit.SetTestHookAfterCopy(func() { put64(b, layout.OffWLatest, layout.PackLatest(3, other)) })
	_, err = audit.Latest(b, lw)
	require.ErrorIs(t, err, audit.ErrRetry)
	audit.SetTestHookAfterCopy(nil)

	// Odd: being written.
	put64(b, lw.SlotOff(other), get64(b, lw.SlotOff(other))|1)
	_, err = audit.Slot(b, lw, other)
	require.ErrorIs(t, err, audit.ErrRetry)
	// Never published.
	put64(b, lw.SlotOff(other), 0)
	_, err = audit.Slot(b, lw, other)
	require.ErrorIs(t, err, audit.ErrEmpty)
	// Nothing published.
	put64(b, layout.OffWLatest, 0)
	_, err = audit.Latest(b, lw)
	require.ErrorIs(t, err, audit.ErrNothingPublished)
	// Bad arguments.
	_, err = audit.Slot(b, lw, lw.Slots)
	require.ErrorIs(t, err, audit.ErrArgs)
	_, err = audit.Slot(b[:len(b)-1], lw, 0)
	require.ErrorIs(t, err, audit.ErrArgs)
	_, err = audit.Latest(b, nil)
	require.ErrorIs(t, err, audit.ErrArgs)
	_, err = audit.Compare(b, lw, 0, nil, 0)
	require.ErrorIs(t, err, audit.ErrArgs)
}

// TestCompareFindsDifferences: Compare names the first differing place.
func TestCompareFindsDifferences(t *testing.T) {
	f := newFx(t, t.TempDir())
	s := f.pub.Latest()
	cases := []struct {
		name, field string
		mut         func(b []byte, lw *layout.World)
	}{
		{"column byte", "column", func(b []byte, lw *layout.World) {
			o, _ := lw.ColumnRange(s, 2, int(f.pos))
			b[o+5*12+1] ^= 0x40
		}},
		{"record", "records", func(b []byte, lw *layout.World) { put32(b, rec(lw, s, fxDead[0])+4, layout.FlagAlive) }},
		{"rows", "rows", func(b []byte, lw *layout.World) { put32(b, lw.ChunkOff(s, 1)+layout.ChunkRows, 3) }},
		{"alive", "alive", func(b []byte, lw *layout.World) { put32(b, lw.ChunkOff(s, 1)+layout.ChunkAlive, 3) }},
		{"header", "header", func(b []byte, lw *layout.World) { put32(b, lw.SlotOff(s)+layout.SlotAlive, 3) }},
		{"value", "value", func(b []byte, lw *layout.World) {
			a, _ := lw.ArenaRange(s, 1, int(f.name))
			b[a+int(get32(b, handleOff(lw, s, f.name, 18)))+2] ^= 1 // inside the used prefix: the column differs too
		}},
		{"singleton", "singleton", func(b []byte, lw *layout.World) {
			o, _ := lw.SingletonRange(s, int(f.gust))
			b[o] ^= 1
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, lw := f.copySeg(t)
			tc.mut(b, lw)
			diffs, err := audit.Compare(b, lw, s, f.w, 1)
			require.NoError(t, err)
			require.Len(t, diffs, 1)
			require.Equal(t, tc.field, diffs[0].Field, "%v", diffs)
			require.Contains(t, diffs[0].String(), tc.field)
		})
	}
	b, lw := f.copySeg(t)
	o, _ := lw.ColumnRange(s, 2, int(f.pos))
	b[o+5*12+1] ^= 0x40
	diffs, err := audit.Compare(b, lw, s, f.w, 0)
	require.NoError(t, err)
	require.Equal(t, 5, diffs[0].Row)
	require.Equal(t, int(f.pos), diffs[0].Component)
}

// TestFilteredSnapshotRecords: a snapshot of Health alone, into a slot that
// held full frames, carries records whose masks are the world's & Health and
// a chunk record mask of Health: the audit finds it sound and Compare equal
// to the world. A record of the snapshot that names Position (whose column
// the snapshot holds from an older frame) is a problem and a difference.
func TestFilteredSnapshotRecords(t *testing.T) {
	f := newFx(t, t.TempDir())
	b, lw := f.segs.World.Data, f.pub.Layout()
	// Fill every slot with full frames, so that the snapshot reuses one
	// (publishes alternate between two slots; the engine's idle warm-up
	// writes the others).
	for f.pub.WarmOne(0, world.MaskAll()) {
	}
	for frame := uint64(3); frame < 3+uint64(lw.Slots); frame++ {
		f.w.Advance()
		*world.Ptr[aPos](f.w, f.ents[1], f.pos) = aPos{X: float32(frame)}
		f.publish(t, frame)
	}
	snap, st, err := f.pub.Snapshot(9, world.MaskOf(f.hp), layout.ModuleSetOf(0))
	require.NoError(t, err)
	require.Equal(t, uint64(1), f.pub.SnapshotsReused, "the snapshot reused a slot of full frames")
	require.Positive(t, st.ChunksCopied)
	rep, err := audit.Slot(b, lw, snap)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	diffs, err := audit.Compare(b, lw, snap, f.w, 0)
	require.NoError(t, err)
	require.Empty(t, diffs)
	for c := 0; c < int(rep.Info.Chunks); c++ {
		require.Equal(t, uint64(1<<f.hp), get64(b, lw.ChunkOff(snap, c)+layout.ChunkRecordMask))
		for r := 0; r < fxCap && c*fxCap+r < fxEntities; r++ {
			want := f.w.Mask(f.ents[c*fxCap+r])[0] & (1 << f.hp)
			require.Equal(t, want, get64(b, rec(lw, snap, c*fxCap+r)+8), "entity index %d", c*fxCap+r)
		}
	}

	c, lw2 := f.copySeg(t)
	o := rec(lw2, snap, 2) + 8
	put64(c, o, get64(c, o)|1<<f.pos)
	rep, err = audit.Slot(c, lw2, snap)
	require.NoError(t, err)
	require.True(t, rep.Has(audit.KindRecordSlotMask), "%v", rep.Problems)
	require.Equal(t, audit.KindRecordSlotMask, rep.Problems[0].Kind)
	require.Equal(t, 2, rep.Problems[0].Row)
	diffs, err = audit.Compare(c, lw2, snap, f.w, 0)
	require.NoError(t, err)
	require.Len(t, diffs, 1)
	require.Equal(t, "records", diffs[0].Field)
	require.Equal(t, 2, diffs[0].Row)
}
