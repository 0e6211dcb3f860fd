package tests

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// layoutPythonBlocks returns the ```python blocks of docs/LAYOUT.md.
func layoutPythonBlocks(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../docs/LAYOUT.md")
	require.NoError(t, err)
	var out []string
	rest := string(b)
	for {
		_, r, ok := strings.Cut(rest, "```python\n")
		if !ok {
			return out
		}
		code, r2, ok := strings.Cut(r, "```")
		require.True(t, ok)
		out = append(out, code)
		rest = r2
	}
}

// snippetSim writes the Position of the first posWrites entities each
// frame and nothing else: the model of what changed between two frames.
type snippetSim struct {
	w         *world.World
	s         *demo.Schema
	ents      []world.Entity
	posWrites int
	step      int
}

func (m *snippetSim) Step(float32) {
	m.step++
	for _, e := range m.ents[:m.posWrites] {
		_ = world.Set(m.w, e, m.s.Pos, demo.Position{X: float32(m.step)})
	}
}

// TestLayoutPythonSnippets runs every Python block of docs/LAYOUT.md that
// reads a frame (masks, the time singleton, variable-size values, the slot
// mask, change detection) together, as one program written from the doc, on
// the latest slot of a world with singletons (chunk 0 at D = 320, not 256)
// and checks what they read against the model of what the test wrote: the
// slot mask, the record masks, the names, the time singleton's frame, and
// which (chunk, component) columns changed since the previous frame.
func TestLayoutPythonSnippets(t *testing.T) {
	py := python3(t)
	s, err := demo.NewSchema()
	require.NoError(t, err)
	const K, n, posWrites = 64, 200, 10 // 4 chunks; Position written in chunk 0 only
	w, err := world.New(s.Reg, world.Config{ChunkCapacity: K, MaxChunks: 8})
	require.NoError(t, err)
	sim := &snippetSim{w: w, s: s, posWrites: posWrites}
	names := map[uint32]string{}
	for i := range n {
		e, err := w.Create()
		require.NoError(t, err)
		sim.ents = append(sim.ents, e)
		require.NoError(t, world.Set(w, e, s.Pos, demo.Position{}))
		if i%2 == 0 {
			require.NoError(t, world.Set(w, e, s.Tm, demo.Team{ID: 1}))
		}
		if i%7 == 0 {
			names[e.Index()] = fmt.Sprintf("n-%d", i)
			require.NoError(t, w.SetString(e, s.Name, names[e.Index()]))
		}
	}
	inst := uniqueInstance(t, "lsn")
	eng, err := host.New(host.Config{Instance: inst,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}, w, sim)
	require.NoError(t, err)
	defer eng.Close()

	seg, err := shm.Open(shm.SegmentName(inst, fsync.WorldSegment), false)
	require.NoError(t, err)
	defer seg.Close()
	lw, err := layout.DecodeWorld(seg.Data)
	require.NoError(t, err)
	require.NotEqual(t, 256, lw.ChunksOff, "the world has singletons: chunk 0 is not at 256")
	latestSlot := func() (uint64, int) {
		f, sl, ok := layout.UnpackLatest(layout.Load64(seg.Data, layout.OffWLatest))
		require.True(t, ok)
		return f, sl
	}
	eng.Step()
	_, s1 := latestSlot()
	v1 := layout.Load64(seg.Data, lw.SlotOff(s1)+layout.SlotVersion)
	eng.Step()
	frame, s2 := latestSlot()
	require.NotEqual(t, s1, s2)

	blocks := layoutPythonBlocks(t)
	var prog strings.Builder
	prog.WriteString("import json, mmap, struct, sys\n" +
		"f = open(sys.argv[1], 'rb'); mem = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n" +
		"def u32(o): return struct.unpack_from('<I', mem, o)[0]\n" +
		"def u64(o): return struct.unpack_from('<Q', mem, o)[0]\n" +
		"slot, V, chunk_stride, nchunks, K, C = [int(a) for a in sys.argv[2:8]]\n" +
		"table, rec0, recsize, namek, namecol, nameper, namemax = [int(a) for a in sys.argv[8:15]]\n")
	used := 0
	for _, b := range blocks {
		if strings.Contains(b, "def fingerprint") || strings.Contains(b, "def crc32c") {
			continue // not frame readers (TestLayoutFingerprintSnippet, record's TestLayoutCRC32C)
		}
		prog.WriteString(b)
		used++
	}
	require.Equal(t, 5, used, "the frame readers of docs/LAYOUT.md")
	prog.WriteString(`
tid = [i for i in range(NS) if bytes(mem[table + 64 * i: table + 64 * i + 32]).rstrip(b'\0') == b'Time'][0]
recs = [rec0 + c * chunk_stride + r * recsize for c in range(nchunks) for r in range(K)]
names = {}
for i in range(nchunks * K):
    v = value(slot, i, namek, K, namecol, nameper, namemax) if has(recs[i], namek) else None
    if v: names[str(i)] = bytes(v).decode()
print(json.dumps({
    "D": D, "slot_mask": slot_mask, "mask": mask,
    "rec_masks": [rec_mask(r) for r in recs],
    "has": [[k for k in range(C) if has(r, k)] for r in recs],
    "time_frame": time_of(slot, tid, u32(table + 64 * tid + 48))[0],
    "changed": [[changed(slot, c, k, V) for k in range(C)] for c in range(nchunks)],
    "names": names,
}))
`)
	nk := int(s.Name)
	nchunks := int(layout.Load32(seg.Data, lw.SlotOff(s2)+layout.SlotChunks))
	require.Equal(t, n/K+1, nchunks)
	args := []string{"-c", prog.String(), seg.Path}
	for _, v := range []int{lw.SlotOff(s2), int(v1), lw.ChunkStride, nchunks, K, len(lw.Components),
		lw.SingletonsOff, lw.SlotOff(s2) + lw.ChunksOff + lw.EntityOff, lw.RecordSize, nk, lw.ColumnOff[nk],
		int(lw.Components[nk].PerEntity), int(lw.Components[nk].MaxLen)} {
		args = append(args, fmt.Sprint(v))
	}
	out, err := exec.Command(py, args...).CombinedOutput()
	require.NoError(t, err, "%s\n%s", out, prog.String())
	var got struct {
		D, Mask   int
		SlotMask  int      `json:"slot_mask"`
		RecMasks  []uint64 `json:"rec_masks"`
		Has       [][]int
		TimeFrame uint64 `json:"time_frame"`
		Changed   [][]bool
		Names     map[string]string
	}
	require.NoError(t, json.Unmarshal(out, &got), "%s", out)

	all := 1<<len(lw.Components) - 1
	require.Equal(t, lw.ChunksOff, got.D)
	require.Equal(t, all, got.SlotMask)
	require.Equal(t, all, got.Mask)
	require.Equal(t, frame, got.TimeFrame, "the time singleton's frame")
	for i := range nchunks * K {
		want := []int{}
		var m uint64
		if i < n {
			want = append(want, int(s.Pos))
			m |= 1 << s.Pos
			if i%2 == 0 {
				want = append(want, int(s.Tm))
				m |= 1 << s.Tm
			}
			if i%7 == 0 {
				want = append(want, nk)
				m |= 1 << nk
			}
		}
		require.ElementsMatch(t, want, got.Has[i], "entity %d", i)
		require.Equal(t, m, got.RecMasks[i], "entity %d", i)
	}
	wantNames := map[string]string{}
	for i, nm := range names {
		wantNames[fmt.Sprint(i)] = nm
	}
	require.Equal(t, wantNames, got.Names)
	for c := range nchunks {
		for k := range lw.Components {
			require.Equal(t, c == 0 && k == int(s.Pos), got.Changed[c][k], "changed(chunk %d, component %d) since version %d", c, k, v1)
		}
	}
}
