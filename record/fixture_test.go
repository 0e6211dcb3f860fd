package record_test

import (
	"encoding/binary"
	"fmt"
	"github.com/klauspost/compress/zstd"
	"math/rand"
	"os"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/record"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

type Pos struct{ X, Y, Z, W float32 }
type Vel struct{ X, Y, Z, W float32 }
type HP struct{ HP, Max int32 }
type Wind struct{ X, Y, Gust float32 }

// live is a world published into a real world segment by a sync.Publisher:
// the recorder's input, exactly as the engine gives it.
type live struct {
	t                   testing.TB
	w                   *world.World
	segs                *fsync.WorldSegments
	pub                 *fsync.Publisher
	lw                  *layout.World
	pos, vel, hp, label world.ComponentID
	wind                world.SingletonID
	ents                []world.Entity
	frame               uint64
	rng                 *rand.Rand
}

// instances numbers the live worlds of this process (segment names).
var instances int

func newLive(t testing.TB, capc, maxChunks, entities int, seed int64) *live {
	r := world.NewRegistry()
	l := &live{t: t, rng: rand.New(rand.NewSource(seed))}
	var err error
	l.pos, err = world.Register[Pos](r, "Position")
	require.NoError(t, err)
	l.vel, err = world.Register[Vel](r, "Velocity")
	require.NoError(t, err)
	l.hp, err = world.Register[HP](r, "Health")
	require.NoError(t, err)
	l.label, err = world.RegisterBytes(r, "Label", world.BytesSpec{MaxLen: 40, PerEntity: 16, UTF8: true})
	require.NoError(t, err)
	_, err = world.RegisterTime(r)
	require.NoError(t, err)
	l.wind, err = world.RegisterSingleton[Wind](r, "Wind")
	require.NoError(t, err)
	l.w, err = world.New(r, world.Config{ChunkCapacity: capc, MaxChunks: maxChunks})
	require.NoError(t, err)
	for i := 0; i < entities; i++ {
		l.create()
	}
	instances++
	inst := fmt.Sprintf("rec%d-%d", os.Getpid(), instances)
	l.segs, err = fsync.CreateWorldSegments(inst, l.w, 0, 0)
	require.NoError(t, err)
	t.Cleanup(func() { l.segs.Unlink(); l.segs.Close() })
	l.pub, err = fsync.NewPublisher(l.w, l.segs)
	require.NoError(t, err)
	l.lw = l.pub.Layout()
	return l
}

func (l *live) create() {
	e, err := l.w.Create()
	if err != nil {
		return
	}
	require.NoError(l.t, world.Set(l.w, e, l.pos, Pos{X: l.rng.Float32()}))
	if l.rng.Intn(2) == 0 {
		require.NoError(l.t, world.Set(l.w, e, l.vel, Vel{Y: l.rng.Float32()}))
	}
	if l.rng.Intn(3) == 0 {
		require.NoError(l.t, l.w.SetString(e, l.label, fmt.Sprintf("e%d-%d", e.Index(), l.rng.Intn(1e6))))
	}
	l.ents = append(l.ents, e)
}

// step changes a random part of the world (dirty fraction of the
// entities): moves, creates, destroys, adds and removes components,
// rewrites labels and the wind.
func (l *live) step(dirty float64) {
	n := int(float64(len(l.ents)) * dirty)
	for i := 0; i < n && len(l.ents) > 0; i++ {
		j := l.rng.Intn(len(l.ents))
		e := l.ents[j]
		switch op := l.rng.Intn(100); {
		case op < 80:
			if p := world.Ptr[Pos](l.w, e, l.pos); p != nil {
				p.X += 1
				p.W = float32(l.frame)
			}
		case op < 85:
			require.NoError(l.t, l.w.Destroy(e))
			l.ents[j] = l.ents[len(l.ents)-1]
			l.ents = l.ents[:len(l.ents)-1]
		case op < 90:
			l.create()
		case op < 93:
			if l.w.Has(e, l.hp) {
				require.NoError(l.t, l.w.Remove(e, l.hp))
			} else {
				require.NoError(l.t, world.Set(l.w, e, l.hp, HP{HP: int32(l.frame), Max: 100}))
			}
		default:
			require.NoError(l.t, l.w.SetString(e, l.label, fmt.Sprintf("l%d", l.rng.Intn(1<<uint(l.rng.Intn(30))))))
		}
	}
	if l.rng.Intn(4) == 0 {
		require.NoError(l.t, world.SetSingleton(l.w, Wind{X: float32(l.frame)}))
	}
}

// publish publishes the next frame with every component; it returns the
// slot.
func (l *live) publish() int {
	l.w.Advance()
	l.frame++
	st, err := l.pub.Publish(l.frame, layout.SchemaMask(len(l.lw.Components)))
	require.NoError(l.t, err)
	return st.Slot
}

// digest hashes an image through its accessors: two images of a stream
// agree when their digests do.
func digest(im *record.Image) uint64 {
	h := uint64(14695981039346656037)
	mix := func(b []byte) {
		for _, x := range b {
			h = (h ^ uint64(x)) * 1099511628211
		}
	}
	var w [8]byte
	u := func(v uint64) {
		for i := range w {
			w[i] = byte(v >> (8 * i))
		}
		mix(w[:])
	}
	u(im.Frame)
	u(im.Version)
	u(im.PubNanos)
	u(uint64(im.Chunks)<<32 | uint64(im.Entities))
	u(uint64(im.Alive))
	for _, m := range im.Mask {
		u(m)
	}
	g := im.Header().Geometry
	for c := 0; c < int(im.Chunks); c++ {
		rows, alive, sv := im.ChunkInfo(c)
		u(uint64(rows)<<32 | uint64(alive))
		u(sv)
		mix(im.RecordBytes(c))
		for k := range g.Components {
			col, v := im.Column(c, k)
			u(v)
			mix(col)
		}
	}
	for i := range g.Singletons {
		v, ver := im.Singleton(i)
		u(ver)
		mix(v)
	}
	return h
}

func frameOf(raw []byte) uint64 { return binary.LittleEndian.Uint64(raw) }

func trailer(indexOff int) []byte {
	b := make([]byte, record.TrailerSize)
	binary.LittleEndian.PutUint64(b, uint64(indexOff))
	copy(b[8:], record.TrailerMagic)
	return b
}

func zstdCompress(raw []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		panic(err)
	}
	defer enc.Close()
	return enc.EncodeAll(raw, nil)
}
