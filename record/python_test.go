package record_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fdp-engine/fdp/record"
	"github.com/stretchr/testify/require"
)

// TestPythonDecoder: testdata/decode_recording.py, a decoder written from
// docs/LAYOUT.md "Frame-delta stream" with Python's standard library
// (CRC-32C included), reads an uncompressed recording of a live world with
// variable-size columns, singletons, events and command batches, and finds
// what the Go decoder finds: the header, every frame's fields and entries
// (the columns by length and CRC-32C), the index and the trailer.
func TestPythonDecoder(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	l := newLive(t, 32, 16, 150, 21)
	hdr, err := record.NewHeader(l.lw, 5, 16666666, 6)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "py.fdpr")
	wr, err := record.Create(path, hdr, record.WriterOptions{Uncompressed: true})
	require.NoError(t, err)
	cp := record.NewCapturer(l.lw, 6)
	for i := 0; i < 20; i++ {
		l.step(0.2)
		raw, info, err := cp.Capture(nil, l.publish(),
			[]record.Event{{Type: 9, Frame: l.frame, Payload: []byte{1, 2, 3, byte(i)}}},
			[]record.Batch{{Module: "mover", Slot: 3, PID: 99, Incarnation: 2, Seq: uint64(i), Applied: 4, Rejected: 1, Commands: []byte{8, 0, 0, 0, 1, 0, 0, 0}}})
		require.NoError(t, err)
		require.True(t, wr.TryEnqueue(info.Kind, info.Frame, raw))
	}
	require.NoError(t, wr.Close())

	out, err := exec.Command(py, "testdata/decode_recording.py", path).Output()
	require.NoError(t, err, "%s", out)
	var got struct {
		Header struct {
			Instance    string
			SchemaHash  uint64 `json:"schema_hash"`
			FramePeriod uint64 `json:"frame_period"`
			K, M, R     int
			Components  []struct {
				Name                       string
				Size, Align, MaxLen, PerEn uint32
			}
			Singletons []struct{ Name string }
		}
		Frames      []map[string]any
		Index       [][]uint64
		IndexOffset int64 `json:"index_offset"`
		Trailer     struct {
			IndexOffset int64 `json:"index_offset"`
			Magic       string
		}
	}
	require.NoError(t, json.Unmarshal(out, &got))
	g := hdr.Geometry
	require.Equal(t, hdr.Instance, got.Header.Instance)
	require.Equal(t, hdr.SchemaHash(), got.Header.SchemaHash)
	require.Equal(t, uint64(16666666), got.Header.FramePeriod)
	require.Equal(t, []int{g.ChunkCapacity, g.MaxChunks, g.RecordSize}, []int{got.Header.K, got.Header.M, got.Header.R})
	require.Len(t, got.Header.Components, len(g.Components))
	for i, c := range g.Components {
		require.Equal(t, c.Name, got.Header.Components[i].Name)
		require.Equal(t, c.Size, got.Header.Components[i].Size)
	}
	require.Len(t, got.Header.Singletons, len(g.Singletons))

	rd, err := record.Open(path)
	require.NoError(t, err)
	defer rd.Close()
	require.Len(t, got.Frames, len(rd.Index()))
	crcTab := crc32.MakeTable(crc32.Castagnoli)
	num := func(v uint64) any { return float64(v) } // JSON numbers (all below 2^53 here)
	for i, e := range rd.Index() {
		f, err := rd.Frame(i)
		require.NoError(t, err)
		want := map[string]any{"frame": num(f.Frame), "version": num(f.Version), "base": num(f.Base), "chunks": num(uint64(f.Chunks)),
			"entities": num(uint64(f.Entities)), "alive": num(uint64(f.Alive)), "kind": num(uint64(f.Kind)), "offset": num(uint64(e.Offset))}
		mask := []any{}
		for _, m := range f.Mask {
			mask = append(mask, num(m))
		}
		want["mask"] = mask
		ch := []any{}
		for _, c := range f.ChunkRecs {
			ch = append(ch, []any{num(uint64(c.Chunk)), num(uint64(c.Rows)), num(uint64(c.Alive)), num(c.StructVersion), num(uint64(c.Alive))})
		}
		want["chunk_entries"] = ch
		cols := []any{}
		for _, c := range f.Columns {
			cols = append(cols, []any{num(uint64(c.Chunk)), num(uint64(c.Component)), num(c.Version), num(uint64(len(c.Data))), num(uint64(crc32.Checksum(c.Data, crcTab)))})
		}
		want["columns"] = cols
		sg := []any{}
		for _, s := range f.Singletons {
			sg = append(sg, []any{num(uint64(s.ID)), num(s.Version), hex.EncodeToString(s.Value)})
		}
		want["singletons"] = sg
		evs := []any{}
		for _, ev := range f.Events {
			evs = append(evs, []any{num(uint64(ev.Type)), num(ev.Frame), hex.EncodeToString(ev.Payload)})
		}
		want["events"] = evs
		bs := []any{}
		for _, b := range f.Batches {
			bs = append(bs, []any{b.Module, num(uint64(b.Slot)), num(uint64(b.PID)), num(b.Incarnation), num(b.Seq), num(uint64(b.Applied)), num(uint64(b.Rejected)), hex.EncodeToString(b.Commands)})
		}
		want["batches"] = bs
		require.Equal(t, want, got.Frames[i], "frame record %d", i)
	}
	require.Len(t, got.Index, len(rd.Index()))
	for i, e := range rd.Index() {
		require.Equal(t, []uint64{e.Frame, uint64(e.Offset), uint64(e.Stored), uint64(e.Raw), uint64(e.Kind)}, got.Index[i])
	}
	require.Equal(t, "FDPRTAIL", got.Trailer.Magic)
	require.Equal(t, got.IndexOffset, got.Trailer.IndexOffset)
}

// TestLayoutCRC32C: the Python CRC-32C of docs/LAYOUT.md "Frame-delta
// stream" (the block that defines crc32c) computes Go's Castagnoli
// checksum of random data and the check value of "123456789".
func TestLayoutCRC32C(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	doc, err := os.ReadFile("../docs/LAYOUT.md")
	require.NoError(t, err)
	blocks := regexp.MustCompile("(?s)```python\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	var code string
	for _, b := range blocks {
		if strings.Contains(b[1], "def crc32c(") {
			code = b[1]
		}
	}
	require.NotEmpty(t, code, "docs/LAYOUT.md has no python block defining crc32c")
	data := make([]byte, 1000)
	rand.New(rand.NewSource(7)).Read(data)
	tab := crc32.MakeTable(crc32.Castagnoli)
	script := code + "\nimport sys\nprint(hex(crc32c(b'123456789')), hex(crc32c(bytes.fromhex(sys.argv[1]))))\n"
	out, err := exec.Command(py, "-c", script, hex.EncodeToString(data)).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, fmt.Sprintf("%#x %#x\n", crc32.Checksum([]byte("123456789"), tab), crc32.Checksum(data, tab)), string(out))
	require.Equal(t, uint32(0xE3069283), crc32.Checksum([]byte("123456789"), tab))
}
