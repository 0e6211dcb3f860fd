package inspect

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/inspect/fixture"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// fixedAlive makes liveness deterministic: the creator and the "ai" reader
// are alive, everybody else is dead.
func fixedAlive(pid uint32, start uint64) bool {
	return pid == fixture.Default.PID && start == fixture.Default.Start ||
		pid == fixture.ReaderAIPID && start == fixture.ReaderStart
}

var goldenOpts = Options{Chunks: true, Alive: fixedAlive}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "missing golden file; run go test ./inspect -run %s -update", t.Name())
	require.Equal(t, string(want), string(got), "output differs from %s (run with -update to accept)", path)
}

func TestGoldenDump(t *testing.T) {
	for kind, seg := range fixture.All(fixture.Default) {
		t.Run(kind, func(t *testing.T) {
			r, err := InspectWith(seg, goldenOpts)
			require.NoError(t, err)
			require.Empty(t, r.Problems)
			var txt bytes.Buffer
			require.NoError(t, Text(&txt, r))
			golden(t, kind+".txt", txt.Bytes())
			require.Empty(t, testutil.OverPreciseDurations(txt.String()), "durations for people: three significant digits")
			js, err := json.MarshalIndent(r, "", "  ")
			require.NoError(t, err)
			golden(t, kind+".json", append(js, '\n'))
		})
	}
}

func TestWorldValues(t *testing.T) {
	r, err := InspectWith(fixture.World(fixture.Default), goldenOpts)
	require.NoError(t, err)
	require.Equal(t, "world", r.Header.Kind)
	require.Equal(t, "demo", r.Header.Instance)
	require.Equal(t, "2026-01-02T03:04:05.123456789Z", r.Header.Created)
	require.Equal(t, hex64(layout.SchemaHashOf(fixture.Components, fixture.Singletons)), r.Header.SchemaHash)
	w := r.World
	// The singletons, with the latest frame's values (docs/LAYOUT.md,
	// "Singletons"): the time singleton set, the other never set.
	require.Len(t, w.Singletons, 2)
	require.Equal(t, SingletonReport{ID: 0, Name: "Time", Size: 24, Align: 8, Fingerprint: hex64(fixture.Singletons[0].Fingerprint), ValueOffset: 272,
		EngineOwned: true, Version: 10, Value: "0a0000000000000000688909000000000024f40000000000",
		Fields: []FieldReport{{"Frame", "u64", 0, 1}, {"Nanos", "i64", 8, 1}, {"Dt", "i64", 16, 1}}}, w.Singletons[0])
	require.Equal(t, uint64(0), w.Singletons[1].Version)
	require.Empty(t, w.Singletons[1].Value)
	require.Equal(t, LatestReport{Published: true, Frame: 10, Slot: 0}, w.Latest)
	require.Equal(t, uint64(10), w.Stats.Publishes)
	require.Equal(t, uint64(3), w.Stats.SnapshotsRefused, "the engine's refused snapshots word")
	require.Len(t, w.Components, 4)
	require.Equal(t, "0xd3a504e0f05602b2", w.Components[0].Fingerprint)
	require.Equal(t, "fixed", w.Components[0].Kind)
	require.Nil(t, w.Components[0].Arena)
	// The variable-size Name: its arena's use in the latest frame (the
	// fixture's values, their bytes, two chunks of 16 × 8 arena bytes).
	nb := 0
	for _, v := range fixture.NameValues {
		nb += len(v)
	}
	require.Equal(t, "string", w.Components[3].Kind)
	require.Equal(t, uint32(16), w.Components[3].MaxLen)
	require.Equal(t, 128, w.Components[3].ArenaPerChunk)
	require.Equal(t, &ArenaReport{Values: len(fixture.NameValues), Bytes: nb, Capacity: 256}, w.Components[3].Arena)
	require.True(t, w.Slots[0].Latest)
	require.False(t, w.Slots[0].Writing)
	require.True(t, w.Slots[1].Writing)
	require.Equal(t, "0xf", w.Slots[0].Mask)
	require.Len(t, w.Slots[0].ChunkDetail, 2)
	require.Equal(t, uint32(4), w.Slots[0].ChunkDetail[1].Rows)
	require.Equal(t, []uint64{10, 9, 8, 7}, w.Slots[0].ChunkDetail[0].Versions)
	require.Equal(t, []uint64{9, 8, 0, 0}, w.Slots[2].ChunkDetail[0].Versions)

	// Memory: the statistics words, and each slot's backing words with the
	// bytes they name.
	require.Equal(t, uint64(fixture.ShmHeld), w.Stats.ShmHeld)
	require.Equal(t, uint64(fixture.ShmLimit), w.Stats.ShmLimit)
	require.Equal(t, uint64(fixture.SlotsTrimmed), w.Stats.Trimmed)
	require.Equal(t, uint64(fixture.SnapshotsNoSpace), w.Stats.SnapshotsNoSpace)
	require.Equal(t, uint64(fixture.SkippedNoSpace), w.Stats.SkippedNoSpace)
	require.Equal(t, "0x7", w.Slots[2].BackMask)
	require.Equal(t, uint32(12), w.Slots[2].BackChunks)
	g := fixture.WorldGeometry("demo")
	require.Equal(t, g.SlotsOff+fixture.WorldSlots*layout.PageSize, w.FixedBytes)
	sum := 0
	for s, sl := range w.Slots {
		want := backedPages(g, s, sl.BackMask, int(sl.BackChunks))
		require.Equal(t, want, sl.BackedBytes, "slot %d", s)
		require.Positive(t, sl.BackedBytes, "slot %d: the fixture's backing spans pages beyond the first", s)
		sum += want
	}
	require.Equal(t, sum, w.SlotsBackedBytes)
	require.Equal(t, w.Stats.ShmHeld, uint64(w.FixedBytes+sum), "the fixture's held word is its slots' backing")
	var txt bytes.Buffer
	require.NoError(t, Text(&txt, r))
	require.Contains(t, txt.String(), "memory     held 49152 (48.0KiB)   limit 1048576 (1.0MiB)   fixed 24576   slots 24576   trimmed 6   snapshots refused for memory 2   publishes skipped for memory 1")

	// Without the option there is no chunk detail.
	r, err = InspectWith(fixture.World(fixture.Default), Options{Alive: fixedAlive})
	require.NoError(t, err)
	for _, s := range r.World.Slots {
		require.Nil(t, s.ChunkDetail)
	}
}

// backedPages computes, independently of layout.SlotSpans, the bytes a
// slot backed for mask (as dumped) and chunks holds beyond its first page:
// the pages touched by each chunk's header and entity records and by each
// column of mask.
func backedPages(g *layout.WorldGeometry, s int, maskText string, chunks int) int {
	var m uint64
	if _, err := fmt.Sscanf(maskText, "0x%x", &m); err != nil {
		panic(err)
	}
	first := g.SlotOff(s) / layout.PageSize
	pages := map[int]bool{}
	touch := func(lo, hi int) {
		for p := lo / layout.PageSize; p <= (hi-1)/layout.PageSize; p++ {
			if p != first {
				pages[p] = true
			}
		}
	}
	for c := 0; c < chunks; c++ {
		_, hi := g.EntityRange(s, c) // the header, then the records
		touch(g.ChunkOff(s, c), hi)
		for k := range g.Components {
			if m&(1<<uint(k)) != 0 {
				touch(g.ColumnRange(s, c, k))
			}
		}
	}
	return len(pages) * layout.PageSize
}

// TestSlotBeyondBacking: a complete slot whose chunks or components are
// not all within its backing words (invariant B2 broken: readers would
// read holes) is a problem, and its chunks are not read.
func TestSlotBeyondBacking(t *testing.T) {
	g := fixture.WorldGeometry("demo")
	for name, set := range map[string]func(b []byte){
		"chunks": func(b []byte) { layout.Store32(b, g.SlotOff(2)+layout.SlotBackChunks, 1) },
		"mask":   func(b []byte) { layout.Store64(b, g.SlotOff(2)+layout.SlotBackMask, 0x1) },
	} {
		t.Run(name, func(t *testing.T) {
			b := fixture.World(fixture.Default)
			set(b)
			r, err := InspectWith(b, goldenOpts)
			require.NoError(t, err)
			require.Len(t, r.Problems, 1)
			require.Contains(t, r.Problems[0], "slot 2: slot holds 2 chunks of mask 0x3 beyond its backing")
			require.Nil(t, r.World.Slots[2].ChunkDetail)
		})
	}
}

func TestLeasesValues(t *testing.T) {
	r, err := InspectWith(fixture.Leases(fixture.Default), goldenOpts)
	require.NoError(t, err)
	l := r.Leases
	require.Len(t, l.Readers, 2)
	require.Equal(t, ReaderReport{Index: 0, PID: fixture.ReaderAIPID, StartTime: fixture.ReaderStart, Alive: true, Name: "ai",
		Pinned: true, PinSlot: 0, PinSeq: 4, Pins: 100, Retries: 2, HeartbeatNano: fixture.HeartbeatNano}, l.Readers[0])
	require.Equal(t, 3, l.Readers[1].Index)
	require.False(t, l.Readers[1].Alive)
	require.False(t, l.Readers[1].Pinned)
	require.Equal(t, []int{3}, l.SlotLeases[2].Holders)
	require.Equal(t, uint32(1), l.SlotLeases[1].EngineRefs)
	require.Equal(t, []int{}, l.SlotLeases[0].Holders)
}

func TestEventsAndModuleValues(t *testing.T) {
	r, err := InspectWith(fixture.Events(fixture.Default), goldenOpts)
	require.NoError(t, err)
	e := r.Events
	require.Equal(t, uint64(13), e.NextSeq)
	require.Equal(t, uint64(1536), e.EndPos)
	require.Equal(t, uint64(8), e.Retained)
	require.Equal(t, uint64(1024), e.RetainedBytes)

	r, err = InspectWith(fixture.Module(fixture.Default), goldenOpts)
	require.NoError(t, err)
	m := r.Module
	require.Equal(t, "ai", m.Name)
	require.Equal(t, uint32(10), m.Tick.Word)
	require.Equal(t, uint64(96), m.Ring.CommittedBytes)
	require.Equal(t, uint64(4096-96), m.Ring.FreeBytes)
	require.True(t, m.Alive)
}

// jsonKeys lists every JSON key path a type can produce ("a.b[].c").
func jsonKeys(t reflect.Type, prefix string, out map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice:
		jsonKeys(t.Elem(), prefix+"[]", out)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			p := name
			if prefix != "" {
				p = prefix + "." + name
			}
			out[p] = true
			jsonKeys(f.Type, p, out)
		}
	}
}

// valueKeys lists the key paths of a decoded JSON value.
func valueKeys(v any, prefix string, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out[p] = true
			valueKeys(e, p, out)
		}
	case []any:
		for _, e := range x {
			valueKeys(e, prefix+"[]", out)
		}
	}
}

func sortedKeys(m map[string]bool) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, "\n") + "\n"
}

// TestJSONSchemaStable: the set of JSON keys of Report and StatLine equals
// the committed list; changing a field name breaks consumers and this test.
func TestJSONSchemaStable(t *testing.T) {
	keys := map[string]bool{}
	jsonKeys(reflect.TypeOf(Report{}), "", keys)
	golden(t, "report_keys", []byte(sortedKeys(keys)))
	stat := map[string]bool{}
	jsonKeys(reflect.TypeOf(StatLine{}), "", stat)
	golden(t, "stat_keys", []byte(sortedKeys(stat)))

	// Every key actually emitted for every fixture is in the list, and all
	// snake_case.
	seen := map[string]bool{}
	for _, seg := range fixture.All(fixture.Default) {
		r, err := InspectWith(seg, goldenOpts)
		require.NoError(t, err)
		r.Source = "x"
		js, err := json.Marshal(r)
		require.NoError(t, err)
		var v any
		require.NoError(t, json.Unmarshal(js, &v))
		valueKeys(v, "", seen)
	}
	for k := range seen {
		require.True(t, keys[k], "emitted key %q not in the committed list", k)
	}
	for k := range keys {
		require.Regexp(t, `^[a-z0-9_.\[\]]+$`, k)
		if !strings.Contains(k, "error") {
			require.True(t, seen[k], "key %q never emitted by the fixtures", k)
		}
	}
}

func TestCorruptInputs(t *testing.T) {
	world := fixture.World(fixture.Default)
	mod := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), world...))
	}
	rng := rand.New(rand.NewSource(1))
	random := make([]byte, len(world))
	rng.Read(random)
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, layout.ErrTooSmall},
		{"truncated header", world[:100], layout.ErrTooSmall},
		{"truncated body", world[:len(world)-4096], layout.ErrCorrupt},
		{"random bytes", random, layout.ErrBadMagic},
		{"wrong magic", mod(func(b []byte) []byte { b[0] = 'X'; return b }), layout.ErrBadMagic},
		{"bad version", mod(func(b []byte) []byte { b[layout.OffVersion] = 9; return b }), layout.ErrBadVersion},
		{"bad checksum", mod(func(b []byte) []byte { b[layout.OffCreatorPID] ^= 1; return b }), layout.ErrBadChecksum},
		{"foreign kind", reencode(t, world, func(h *layout.Header) { h.Kind = 99 }), layout.ErrBadKind},
		{"foreign kind not ready", reencodeNotReady(t, world, func(h *layout.Header) { h.Kind = 99 }), layout.ErrBadKind},
		{"kind mismatch", reencode(t, world, func(h *layout.Header) { h.Kind = layout.KindLeases }), layout.ErrCorrupt},
		{"bad geometry", mod(func(b []byte) []byte { b[layout.OffWChunkStride] ^= 0x40; return b }), layout.ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Inspect(c.b)
			require.Error(t, err)
			require.Nil(t, r)
			require.True(t, errors.Is(err, c.want), "got %v, want %v", err, c.want)
			require.True(t, errors.Is(err, ErrInspect))
			require.True(t, strings.HasPrefix(err.Error(), "fdp/inspect: "), err.Error())
			require.NotContains(t, err.Error(), "\n")
		})
	}
}

// reencode rewrites the common header of a copy of seg (fixing the checksum).
func reencode(t *testing.T, seg []byte, f func(*layout.Header)) []byte {
	b := reencodeNotReady(t, seg, f)
	layout.MarkReady(b)
	return b
}

func reencodeNotReady(t *testing.T, seg []byte, f func(*layout.Header)) []byte {
	b := append([]byte(nil), seg...)
	h, err := layout.DecodeHeader(b)
	require.NoError(t, err)
	f(h)
	clear(b[:layout.OffKindHeader])
	require.NoError(t, layout.EncodeHeader(b, h))
	return b
}

func TestSlotProblemsReported(t *testing.T) {
	b := fixture.World(fixture.Default)
	g := fixture.WorldGeometry("demo")
	layout.Store32(b, g.SlotOff(2)+layout.SlotChunks, 99) // more than max chunks, in a stable even slot
	r, err := InspectWith(b, goldenOpts)
	require.NoError(t, err)
	require.Len(t, r.Problems, 1)
	require.Contains(t, r.Problems[0], "slot 2")
	require.NotEmpty(t, r.World.Slots[2].Error)
	require.Nil(t, r.World.Slots[2].ChunkDetail, "no chunk detail read from an invalid slot")
}

func TestNotReadyIsHeaderOnly(t *testing.T) {
	b := fixture.Leases(fixture.Default)
	layout.Store32(b, layout.OffReady, 0)
	r, err := InspectWith(b, goldenOpts)
	require.NoError(t, err)
	require.False(t, r.Header.Ready)
	require.Equal(t, "leases", r.Header.Kind)
	require.Nil(t, r.Leases)
	require.Len(t, r.Notes, 1)
	require.Contains(t, r.Notes[0], "not ready")
}

func TestUnalignedInputAndNoWrites(t *testing.T) {
	for kind, seg := range fixture.All(fixture.Default) {
		want, err := InspectWith(seg, goldenOpts)
		require.NoError(t, err)
		buf := make([]byte, len(seg)+1)
		copy(buf[1:], seg)
		before := append([]byte(nil), buf...)
		got, err := InspectWith(buf[1:], goldenOpts)
		require.NoError(t, err, kind)
		require.Equal(t, want, got, kind)
		require.Equal(t, before, buf, "Inspect must not write")
	}
}

// TestConcurrentWriter inspects a world segment while a writer rewrites its
// slots under the seqlock protocol: a stable even slot is never torn. The
// segment lives in mmap'd memory as in production (outside the Go heap, so
// the race detector judges only the Go-visible synchronisation).
func TestConcurrentWriter(t *testing.T) {
	b := mmapCopy(t, fixture.World(fixture.Default))
	g := fixture.WorldGeometry("demo")
	stop := make(chan struct{})
	var wg gosync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := uint64(100); ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			s := int(n % fixture.WorldSlots)
			o := g.SlotOff(s)
			q := layout.Load64(b, o+layout.SlotSeq) | 1
			layout.Store64(b, o+layout.SlotSeq, q)
			layout.Store64(b, o+layout.SlotFrame, n)
			layout.Store64(b, o+layout.SlotVersion, n)
			layout.Store64(b, o+layout.SlotBytes, n*3)
			layout.Store64(b, o+layout.SlotSeq, q+1)
			layout.Store64(b, layout.OffWLatest, layout.PackLatest(n, s))
			layout.Add64(b, layout.OffWStatPublishes, 1)
		}
	}()
	stable := 0
	// At least 300 inspections, and more until one saw a stable slot the
	// writer wrote (the writer goroutine may start late on a loaded
	// machine), bounded.
	start := time.Now()
	for i := 0; i < 300 || stable == 0 && time.Since(start) < 10*time.Second; i++ {
		r, err := InspectWith(b, Options{Chunks: true, Alive: fixedAlive})
		require.NoError(t, err)
		for _, s := range r.World.Slots {
			if s.Stable && !s.Writing && s.Frame >= 100 {
				stable++
				require.Equal(t, s.Frame, s.Version, "torn slot %d", s.Index)
				require.Equal(t, s.Frame*3, s.BytesCopied, "torn slot %d", s.Index)
			}
		}
	}
	close(stop)
	wg.Wait()
	require.Positive(t, stable)
}

// mmapCopy returns a copy of seg in anonymous shared mmap'd memory.
func mmapCopy(t *testing.T, seg []byte) []byte {
	m, err := unix.Mmap(-1, 0, len(seg), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_SHARED)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Munmap(m) })
	copy(m, seg)
	return m
}

func TestRates(t *testing.T) {
	w := fixture.World(fixture.Default)
	l := fixture.Leases(fixture.Default)
	t0 := time.Unix(0, fixture.PublishNano)
	a, err := TakeSample(w, l, t0, Options{Alive: fixedAlive})
	require.NoError(t, err)
	// 30 more publishes, 3 MiB more, frame 40 published into slot 2, in 500ms.
	layout.Add64(w, layout.OffWStatPublishes, 30)
	layout.Add64(w, layout.OffWStatBytes, 3<<20)
	layout.Add64(w, layout.OffWStatSkipped, 2)
	layout.Store64(w, layout.OffWStatSnapRefused, 7) // 4 more snapshots refused
	layout.Store64(w, layout.OffWLatest, layout.PackLatest(40, 2))
	layout.Add64(w, layout.OffWStatSnapNoSpace, 3) // 3 of the 4 for memory
	layout.Add64(w, layout.OffWStatPubNoSpace, 1)  // 1 of the 2 skipped
	layout.Add64(w, layout.OffWStatTrimmed, 5)
	layout.Store64(w, layout.OffWStatBacked, fixture.ShmHeld-8192) // a trim gave back two pages
	b, err := TakeSample(w, l, t0.Add(500*time.Millisecond), Options{Alive: fixedAlive})
	require.NoError(t, err)
	mod := fixture.Module(fixture.Default)
	layout.Store64(mod, layout.OffMPin, layout.PackPin(0, 4))
	require.NoError(t, b.AddModule(mod, Options{Alive: fixedAlive}))
	st := Rates(a, b)
	require.InDelta(t, 60.0, st.FrameRate, 1e-9)
	require.InDelta(t, float64(6<<20), st.BytesPerSec, 1e-6)
	require.Equal(t, uint64(2), st.SkippedDelta)
	require.Equal(t, uint64(7), st.SnapshotsRefused)
	require.Equal(t, uint64(4), st.SnapshotsRefusedDelta)
	require.Equal(t, uint64(fixture.SnapshotsNoSpace+3), st.SnapshotsNoSpace)
	require.Equal(t, uint64(3), st.SnapshotsNoSpaceDelta)
	require.Equal(t, uint64(fixture.SkippedNoSpace+1), st.SkippedNoSpace)
	require.Equal(t, uint64(1), st.SkippedNoSpaceDelta)
	require.Equal(t, uint64(fixture.SlotsTrimmed+5), st.Trimmed)
	require.Equal(t, uint64(5), st.TrimmedDelta)
	require.Equal(t, uint64(fixture.ShmHeld-8192), st.ShmHeld)
	require.Equal(t, int64(-8192), st.ShmHeldDelta)
	require.Equal(t, uint64(fixture.ShmLimit), st.ShmLimit)
	require.Equal(t, uint64(40), st.Frame)
	require.Equal(t, int64(500*time.Millisecond), st.LastPublishAge)
	require.Len(t, st.Readers, 3)
	// External reader "ai" pins slot 0 at seq 4 = frame 10: lag 30 frames.
	require.Equal(t, "external", st.Readers[0].Kind)
	require.Equal(t, "pin", st.Readers[0].Via)
	require.Equal(t, int64(30), *st.Readers[0].Lag)
	// External reader "telemetry" (entry 3) holds nothing: holder bits name
	// module slots, not reader entries.
	require.Equal(t, "", st.Readers[1].Via)
	require.Nil(t, st.Readers[1].Lag)
	require.Empty(t, st.Readers[1].Leased)
	// The module in slot 2 pins through its own segment's reader line.
	m := st.Readers[2]
	require.Equal(t, "module", m.Kind)
	require.Equal(t, fixture.ModuleSlot, m.Index)
	require.Equal(t, "pin", m.Via)
	require.Equal(t, int64(30), *m.Lag)
	// A lease the engine holds for module slot 2 (slot 2 at frame 9) is
	// attributed to it, and is older than its pin.
	ll, err := layout.DecodeLeases(l)
	require.NoError(t, err)
	layout.PutModuleSet(l, ll.LeaseOff(2)+layout.LeaseHolders, layout.ModuleSetOf(fixture.ModuleSlot))
	c, err := TakeSample(w, l, t0.Add(time.Second), Options{Alive: fixedAlive})
	require.NoError(t, err)
	require.NoError(t, c.AddModule(mod, Options{Alive: fixedAlive}))
	m = Rates(b, c).Readers[2]
	require.Equal(t, "lease", m.Via)
	require.Equal(t, int64(31), *m.Lag)
	require.Equal(t, []int{2}, m.Leased)
	var txt bytes.Buffer
	require.NoError(t, StatText(&txt, st))
	require.Contains(t, txt.String(), "60.0 fps")
	require.Contains(t, txt.String(), "snapshots refused 7 (+4)")
	require.Contains(t, txt.String(), "6.0MiB/s")
	require.Contains(t, txt.String(), "shm held 40.0KiB (-8192)  limit 1048576 (1.0MiB)  trimmed 11 (+5)  snapshots refused for memory 5 (+3)  publishes skipped for memory 2 (+1)")
	require.Contains(t, txt.String(), "reader 0 ai pid 4243 alive lag 30 (pin)")
	require.Contains(t, txt.String(), "module 2 ai pid 4243 alive")

	// Corrupt input to TakeSample is an error.
	_, err = TakeSample(l, nil, t0, Options{})
	require.ErrorIs(t, err, layout.ErrBadKind)
}

// TestModuleStatsBlock: the engine's statistics block of a module segment
// in dump reports and stat lines: percentiles from its histogram, rejects
// by reason, the runs rate between two samples; a block never written is a
// note, a block of an unknown version a problem.
func TestModuleStatsBlock(t *testing.T) {
	mod := fixture.Module(fixture.Default)
	r, err := InspectWith(mod, goldenOpts)
	require.NoError(t, err)
	s := r.Module.Stats
	require.NotNil(t, s)
	require.True(t, s.Stable)
	require.Equal(t, "breaker-open", s.State)
	require.Equal(t, uint64(40), s.Runs)
	require.Equal(t, uint64(3), s.Failures)
	require.Equal(t, []RejectCount{{"bad_length", 1, 2}, {"stale_entity", 4, 3}}, s.RejectedByReason)
	// 30 ticks < 2.1 ms, 8 < 4.2 ms, 1 of 40 ms: p50 in the first bucket,
	// p99 the 40 ms one (capped at the max).
	require.Equal(t, uint64(1)<<21, s.TickP50Nano)
	require.Equal(t, uint64(40_000_000), s.TickP99Nano)
	require.Equal(t, uint64(2_000_000), s.TickMeanNano)

	w := fixture.World(fixture.Default)
	t0 := time.Unix(0, fixture.PublishNano)
	a, err := TakeSample(w, nil, t0, Options{Alive: fixedAlive})
	require.NoError(t, err)
	require.NoError(t, a.AddModule(mod, Options{Alive: fixedAlive}))
	st, _, err := layout.DecodeModStats(mod)
	require.NoError(t, err)
	st.Runs += 20
	layout.EncodeModStats(mod, &st)
	b, err := TakeSample(w, nil, t0.Add(2*time.Second), Options{Alive: fixedAlive})
	require.NoError(t, err)
	require.NoError(t, b.AddModule(mod, Options{Alive: fixedAlive}))
	line := Rates(a, b)
	require.Len(t, line.Modules, 1)
	require.InDelta(t, 10.0, line.Modules[0].RunsPerSec, 1e-9)
	require.Equal(t, uint64(60), line.Modules[0].Stats.Runs)
	var txt bytes.Buffer
	require.NoError(t, StatText(&txt, line))
	require.Contains(t, txt.String(), "stats 2 ai: breaker-open  runs 60 (10.0/s)")
	require.Contains(t, txt.String(), "tick p50 2.1ms", "a bucket bound (2.097152ms), shown to three significant digits")
	require.Empty(t, testutil.OverPreciseDurations(txt.String()), txt.String())
	require.Contains(t, txt.String(), "rejected 5 (bad_length 2, stale_entity 3)")

	// Never written: a note, no stats.
	fresh := fixture.Module(fixture.Default)
	for off := layout.OffMStats; off < layout.ModuleStatsEnd; off += 8 {
		layout.Store64(fresh, off, 0)
	}
	r, err = InspectWith(fresh, goldenOpts)
	require.NoError(t, err)
	require.Nil(t, r.Module.Stats)
	require.Empty(t, r.Problems)
	require.Contains(t, r.Notes, "statistics block not written by the engine yet")
	// A version this build does not know: a problem.
	layout.Store32(mod, layout.OffMSVersion, 7)
	r, err = InspectWith(mod, goldenOpts)
	require.NoError(t, err)
	require.Nil(t, r.Module.Stats)
	require.Len(t, r.Problems, 1)
	require.Contains(t, r.Problems[0], "statistics block version 7")
}

// TestRecorderRates: engine stat's recorder figures come from the world
// header's recorder words (layout/recorder.go): none while the engine does
// not record; then the totals, what the interval added and the file's
// growth per second, in JSON and in the text line.
func TestRecorderRates(t *testing.T) {
	w := fixture.World(fixture.Default)
	l := fixture.Leases(fixture.Default)
	t0 := time.Unix(0, fixture.PublishNano)
	a, err := TakeSample(w, l, t0, Options{Alive: fixedAlive})
	require.NoError(t, err)
	require.Nil(t, Rates(a, a).Recorder, "an engine that does not record")
	layout.PutRecorderStats(w, layout.RecorderStats{State: layout.RecorderOn, Written: 100, Dropped: 2, FileBytes: 1_000_000, RawBytes: 9_000_000, Keyframes: 4})
	a, err = TakeSample(w, l, t0, Options{Alive: fixedAlive})
	require.NoError(t, err)
	layout.PutRecorderStats(w, layout.RecorderStats{State: layout.RecorderOn, Written: 130, Dropped: 3, FileBytes: 2_500_000, RawBytes: 20_000_000, Keyframes: 5})
	b, err := TakeSample(w, l, t0.Add(500*time.Millisecond), Options{Alive: fixedAlive})
	require.NoError(t, err)
	st := Rates(a, b)
	require.NotNil(t, st.Recorder)
	r := *st.Recorder
	require.Equal(t, RecorderReport{State: "recording", Frames: 130, Keyframes: 5, Dropped: 3, FileBytes: 2_500_000, RawBytes: 20_000_000}, r.RecorderReport)
	require.Equal(t, uint64(30), r.FramesDelta)
	require.Equal(t, uint64(1), r.DroppedDelta)
	require.InDelta(t, 3_000_000.0, r.FileBytesSec, 1e-6, "1.5 MB in 0.5 s")
	var text strings.Builder
	require.NoError(t, StatText(&text, st))
	require.Contains(t, text.String(), "recorder recording  frames 130 (+30, 5 keyframes)  dropped 3 (+1)  file ")
	layout.PutRecorderStats(w, layout.RecorderStats{State: layout.RecorderFailed, Written: 130})
	c, err := TakeSample(w, l, t0.Add(time.Second), Options{Alive: fixedAlive})
	require.NoError(t, err)
	require.Equal(t, "failed", Rates(b, c).Recorder.State)
}
