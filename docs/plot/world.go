package main

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/fdp-engine/fdp/layout"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

type vec4 struct{ A, B, C, D float32 }

// The four components share a layout but are distinct types, as the
// registry requires.
type (
	compA vec4
	compB vec4
	compC vec4
	compD vec4
)

// compSize is the size of each component: 4 components, 64 bytes per entity.
const compSize = 16

// chunkCap is the entities per chunk, as in the demo world.
const chunkCap = 1024

// testWorld is the measured world: entities with the four components.
type testWorld struct {
	w   *world.World
	ids [4]world.ComponentID
}

// newTestWorld builds a world of n entities, each with the four components.
func newTestWorld(n int) (*testWorld, error) {
	reg := world.NewRegistry()
	tw := &testWorld{}
	var err error
	if tw.ids[0], err = world.Register[compA](reg, "A"); err != nil {
		return nil, err
	}
	if tw.ids[1], err = world.Register[compB](reg, "B"); err != nil {
		return nil, err
	}
	if tw.ids[2], err = world.Register[compC](reg, "C"); err != nil {
		return nil, err
	}
	if tw.ids[3], err = world.Register[compD](reg, "D"); err != nil {
		return nil, err
	}
	if tw.w, err = world.New(reg, world.Config{ChunkCapacity: chunkCap, MaxChunks: n/chunkCap + 2}); err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		e, err := tw.w.Create()
		if err != nil {
			return nil, err
		}
		for _, id := range tw.ids {
			if err := world.Set(tw.w, e, id, vec4{A: float32(i)}); err != nil {
				return nil, err
			}
		}
	}
	return tw, nil
}

// dirty advances the world and changes every column of the chunks c for
// which pick(c) holds.
func (tw *testWorld) dirty(pick func(c int) bool) {
	tw.w.Advance()
	q := tw.w.Query(world.MaskOf(tw.ids[:]...))
	for q.Next() {
		if pick(q.Chunk()) {
			for _, id := range tw.ids {
				world.ColumnMut[vec4](&q, id)[0].A++
			}
		}
	}
}

// fraction is a share of dirty chunks: pct percent of them, spread evenly.
type fraction struct {
	pct  int
	pick func(c int) bool
}

var fractions = []fraction{
	{1, func(c int) bool { return c%100 == 0 }},
	{30, func(c int) bool { return c%10 < 3 }},
	{100, func(c int) bool { return true }},
}

// contentBytes is what a copy of mask holds that a reader can read: the
// entity records and the columns of mask over the chunks in use.
func (tw *testWorld) contentBytes(mask world.Mask) int64 {
	per := layout.RecordSize(1) // four components: one mask word
	for _, id := range tw.ids {
		if mask.Has(id) {
			per += compSize
		}
	}
	return int64(tw.w.NumChunks()) * chunkCap * int64(per)
}

var segCount atomic.Int64

// createSegments creates a new world segment (and leases segment) for tw
// under a plot instance name, in shm.Dir.
func (tw *testWorld) createSegments() (*fsync.WorldSegments, error) {
	name := fmt.Sprintf("plot%dx%d", os.Getpid(), segCount.Add(1))
	return fsync.CreateWorldSegments(name, tw.w, 0, 0)
}

// dropSegments unlinks and unmaps segments.
func dropSegments(segs *fsync.WorldSegments) {
	segs.Unlink()
	segs.Close()
}

// medianPublish publishes k+3 frames, each after dirtying the chunks of f,
// and returns the median time of the last k (the first three leave both
// publish slots one pattern behind, as in steady state) and the bytes the
// last one copied. *frame is the last frame number used.
func (tw *testWorld) medianPublish(pub *fsync.Publisher, f fraction, frame *uint64, k int) (time.Duration, int, error) {
	var d []time.Duration
	bytes := 0
	for i := 0; i < k+3; i++ {
		tw.dirty(f.pick)
		*frame++
		t0 := time.Now()
		st, err := pub.Publish(*frame, world.MaskAll())
		if err != nil {
			return 0, 0, err
		}
		if i >= 3 {
			d = append(d, time.Since(t0))
			bytes = st.BytesCopied
		}
	}
	return median(d), bytes, nil
}
