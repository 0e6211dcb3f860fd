package remote

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/record"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// TestUnitParts: a unit split into parts comes back whole from its parts
// in order; a part missing or out of order drops the unit (never a half).
func TestUnitParts(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	unit := make([]byte, 10_000)
	rng.Read(unit)
	msgs := splitUnit("s", 42, true, unit, 2048+partHeadroom)
	require.Len(t, msgs, 5)
	var a assembler
	for i, m := range msgs {
		got, frame, key, err := a.add(m.Header, m.Data)
		require.NoError(t, err)
		require.Equal(t, uint64(42), frame)
		require.True(t, key)
		if i < len(msgs)-1 {
			require.Nil(t, got)
		} else {
			require.Equal(t, unit, got)
		}
	}
	// Part 3 lost: the unit is dropped, the next unit is taken.
	for i, m := range msgs {
		if i == 2 {
			continue
		}
		got, _, _, err := a.add(m.Header, m.Data)
		if i > 2 {
			require.ErrorIs(t, err, errPart)
		}
		require.Nil(t, got)
	}
	one := splitUnit("s", 43, false, []byte("abc"), 1<<20)
	got, frame, key, err := a.add(one[0].Header, one[0].Data)
	require.NoError(t, err)
	require.Equal(t, []byte("abc"), got)
	require.Equal(t, uint64(43), frame)
	require.False(t, key)
	// A header that is not ours: one clear error.
	one[0].Header.Set(hdrPart, "x")
	_, _, _, err = a.add(one[0].Header, one[0].Data)
	require.ErrorContains(t, err, "bad part")
}

// TestDecodeUnitDamage: every bit flip in a unit (the CRC-32C of each
// record head and payload) gives an error, never a frame or a panic.
func TestDecodeUnitDamage(t *testing.T) {
	h, raw := fixtureKeyframe(t)
	cd := newCodec()
	hp := h.Encode()
	unit := record.AppendRecord(nil, record.KindHeader, record.CodecNone, 0, hp, len(hp))
	unit = cd.appendRecord(unit, record.KindKeyframe, 1, raw)
	gh, f, err := cd.decodeUnit(unit, nil)
	require.NoError(t, err)
	require.Equal(t, h.SchemaHash(), gh.SchemaHash())
	require.Equal(t, uint64(1), f.Frame)
	for i := 0; i < len(unit)*8; i += 7 {
		bad := bytes.Clone(unit)
		bad[i/8] ^= 1 << (i % 8)
		_, _, err := cd.decodeUnit(bad, nil)
		require.Error(t, err, "bit %d flipped", i)
	}
	for n := 0; n < len(unit); n += 13 {
		_, _, err := cd.decodeUnit(unit[:n], nil)
		require.Error(t, err, "cut at %d", n)
	}
	// A delta without a header before it: refused.
	d := cd.appendRecord(nil, record.KindDelta, 8, raw)
	_, _, err = cd.decodeUnit(d, nil)
	require.ErrorContains(t, err, "before any header")
	// A head that names another frame than its payload: refused.
	_, _, err = cd.decodeUnit(record.AppendRecord(nil, record.KindHeader, record.CodecNone, 0, hp, len(hp)), nil)
	require.Error(t, err)
	bad := record.AppendRecord(nil, record.KindHeader, record.CodecNone, 0, hp, len(hp))
	bad = cd.appendRecord(bad, record.KindKeyframe, 9, raw)
	_, _, err = cd.decodeUnit(bad, nil)
	require.True(t, errors.Is(err, record.ErrCorrupt), "%v", err)
}

type pos struct{ X, Y float32 }

// fixtureKeyframe captures a keyframe of a small engine's first frame.
func fixtureKeyframe(t *testing.T) (*record.Header, []byte) {
	t.Helper()
	reg := world.NewRegistry()
	p, err := world.Register[pos](reg, "Pos")
	require.NoError(t, err)
	w, err := world.New(reg, world.Config{ChunkCapacity: 64, MaxChunks: 8})
	require.NoError(t, err)
	for i := 0; i < 100; i++ {
		e, err := w.Create()
		require.NoError(t, err)
		require.NoError(t, world.Set(w, e, p, pos{X: float32(i)}))
	}
	inst := fmt.Sprintf("remw%d", os.Getpid())
	e, err := host.New(host.Config{Instance: inst, FrameRate: 60, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, w, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	e.Step()
	r, err := fsync.Attach(inst, fsync.AttachOptions{Name: "t"})
	require.NoError(t, err)
	defer r.Close()
	f, err := r.Pin()
	require.NoError(t, err)
	defer func() { _ = f.Release() }()
	h, err := record.NewHeader(r.Layout(), 1, uint64(time.Second/60), 0)
	require.NoError(t, err)
	raw, info, err := record.NewCapturer(r.Layout(), 0).Capture(nil, f.Slot(), nil, nil)
	require.NoError(t, err)
	require.Equal(t, record.KindKeyframe, info.Kind)
	return h, raw
}
