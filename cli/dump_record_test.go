package cli

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/record"
	"github.com/stretchr/testify/require"
)

// writeTestRecording writes a recording of frames frames of a world of one
// 8-byte component in one chunk of 16 (3 entities): a keyframe every 5th
// frame, deltas of the component between, and returns its path.
func writeTestRecording(t *testing.T, frames int) string {
	g, err := layout.ComputeWorldGeometry(layout.WorldParams{Instance: "x", Slots: 2, ChunkCapacity: 16, MaxChunks: 4,
		Components: []layout.ComponentDesc{layout.Opaque(layout.ComponentDesc{Name: "Pos", Size: 8, Align: 8})}})
	require.NoError(t, err)
	h := &record.Header{Created: 1, FramePeriod: 16666666, KeyframeEvery: 5, Instance: "rec", Geometry: g}
	path := filepath.Join(t.TempDir(), "demo.fdpr")
	w, err := record.Create(path, h, record.WriterOptions{})
	require.NoError(t, err)
	recs := make([]byte, 3*g.RecordSize)
	for i := 0; i < 3; i++ {
		layout.EncodeRecord(recs[i*g.RecordSize:], g.MaskWords, layout.EntityRecord{Gen: 1, Flags: layout.FlagAlive, Mask: [4]uint64{1}})
	}
	col := make([]byte, 16*8)
	for i := 1; i <= frames; i++ {
		binary.LittleEndian.PutUint64(col, uint64(i))
		v := uint64(i + 1)
		f := &record.Frame{Kind: record.KindDelta, Frame: uint64(i), Version: v, Base: v - 1, Chunks: 1, Entities: 3, Alive: 3, Mask: [4]uint64{1},
			Columns: []record.Column{{Chunk: 0, Component: 0, Version: v, Data: col}},
			Events:  []record.Event{{Type: 5, Frame: uint64(i), Payload: []byte("boom")}}}
		if i%5 == 1 {
			f.Kind, f.Base = record.KindKeyframe, 0
			f.ChunkRecs = []record.ChunkRec{{Chunk: 0, Rows: 3, Alive: 3, StructVersion: v, Records: recs}}
		}
		require.True(t, w.TryEnqueue(f.Kind, f.Frame, record.AppendFrame(nil, f)))
	}
	require.NoError(t, w.Close())
	return path
}

// TestDumpRecording: `engine dump FILE` of a recording shows its header,
// frame count, keyframe index (frames and offsets of the file's index),
// compression ratio and per-frame sizes, as text and as --json; a
// recording cut inside a frame is reported to its last complete frame,
// with its index rebuilt, and dump exits non-zero naming the damage.
func TestDumpRecording(t *testing.T) {
	path := writeTestRecording(t, 12)
	rd, err := record.Open(path)
	require.NoError(t, err)
	ix := rd.Index()
	require.NoError(t, rd.Close())

	out, _, err := engineCmd(t, "dump", "--json", path)
	require.NoError(t, err)
	var rep record.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.Equal(t, "rec", rep.Instance)
	require.Equal(t, 12, rep.Frames)
	require.Equal(t, uint64(1), rep.FirstFrame)
	require.Equal(t, uint64(12), rep.LastFrame)
	require.Equal(t, []record.ReportKeyframe{{Frame: 1, Offset: ix[0].Offset}, {Frame: 6, Offset: ix[5].Offset}, {Frame: 11, Offset: ix[10].Offset}}, rep.Keyframes)
	var raw, stored uint64
	for i, e := range ix {
		require.Equal(t, record.ReportFrame{Frame: e.Frame, Kind: e.Kind.String(), Stored: e.Stored, Raw: e.Raw}, rep.PerFrame[i])
		raw += uint64(e.Raw)
		stored += uint64(e.Stored)
	}
	require.Equal(t, float64(raw)/float64(stored), rep.Ratio)
	require.Greater(t, rep.Ratio, 1.0, "zstd shrinks the frames")
	require.Equal(t, 12, rep.Events)
	require.False(t, rep.IndexRebuilt)
	require.Empty(t, rep.Damage)
	require.Equal(t, []record.ReportColumn{{Name: "Pos", Size: 8}}, rep.Components)

	text, _, err := engineCmd(t, "dump", path)
	require.NoError(t, err)
	require.Contains(t, text, "frames 12 (1 .. 12), keyframes 3, events 12")
	require.Contains(t, text, "keyframe index (frame @ offset):\n  1 @ ")
	require.Contains(t, text, "compression ratio")
	require.Len(t, regexp.MustCompile(`(?m)^  \d+ (delta|keyframe) \d+ \d+$`).FindAllString(text, -1), 12, text)

	// Cut inside frame 9: frames 1..8 remain; dump prints, then fails.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	cut := filepath.Join(t.TempDir(), "cut.fdpr")
	require.NoError(t, os.WriteFile(cut, data[:ix[8].Offset+10], 0o600))
	out, _, err = engineCmd(t, "dump", "--json", cut)
	require.ErrorContains(t, err, "readable to frame 8 of the recording, then: truncated recording")
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.Equal(t, 8, rep.Frames)
	require.True(t, rep.IndexRebuilt)

	// The exit rule: 0 only for an intact recording. Every frame whole but
	// the trailer cut (no valid index record): 1. The header alone (no
	// frames): 1. An empty or short foreign file: one line, neither a
	// segment nor a recording.
	require.Contains(t, text, "a keyframe every 5 frames at most, or earlier once the deltas")
	noTrailer := filepath.Join(t.TempDir(), "notrailer.fdpr")
	require.NoError(t, os.WriteFile(noTrailer, data[:len(data)-record.TrailerSize], 0o600))
	out, _, err = engineCmd(t, "dump", "--json", noTrailer)
	require.Error(t, err)
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.Equal(t, 12, rep.Frames)
	require.True(t, rep.IndexRebuilt)
	headerOnly := filepath.Join(t.TempDir(), "header.fdpr")
	require.NoError(t, os.WriteFile(headerOnly, data[:ix[0].Offset], 0o600))
	_, _, err = engineCmd(t, "dump", headerOnly)
	require.ErrorContains(t, err, "no frames recorded")
	empty := filepath.Join(t.TempDir(), "empty.fdpr")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	_, _, err = engineCmd(t, "dump", empty)
	require.ErrorContains(t, err, "an empty file (0 bytes): neither an FDP segment nor a recording")
	junk := filepath.Join(t.TempDir(), "junk.txt")
	require.NoError(t, os.WriteFile(junk, []byte("hello"), 0o600))
	_, _, err = engineCmd(t, "dump", junk)
	require.ErrorContains(t, err, "neither an FDP segment")
	require.NotContains(t, err.Error(), "\n")
}

// TestAfterDamage: a replay stopped by damage suggests --from the first
// keyframe after the damaged frame (the first frame after the last one
// published), or says the index knows none.
func TestAfterDamage(t *testing.T) {
	path := writeTestRecording(t, 12) // keyframes 1, 6, 11
	r, err := record.Open(path)
	require.NoError(t, err)
	defer r.Close()
	require.Equal(t, "the frames from the next keyframe on may still replay: --from 6", afterDamage(r, path, 3))
	require.Equal(t, "the frames from the next keyframe on may still replay: --from 11", afterDamage(r, path, 5), "keyframe 6 is the damaged frame")
	require.Contains(t, afterDamage(r, path, 10), "the index knows no keyframe after frame 11 (engine dump "+path)
}
