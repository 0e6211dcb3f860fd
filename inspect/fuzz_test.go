package inspect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fdp-engine/fdp/inspect/fixture"
	"github.com/stretchr/testify/require"
)

// fuzzSegments are the valid segments that FuzzInspect mutates, by index.
var fuzzSegments = func() [][]byte {
	all := fixture.All(fixture.Default)
	return [][]byte{all["world"], all["leases"], all["events"], all["module"]}
}()

// checkInspect runs Inspect on b and checks the invariants that hold for any
// input: no panic, an error or a report (never both), a report that marshals
// to JSON and renders as text, and an input left unchanged.
func checkInspect(t *testing.T, b []byte) {
	before := append([]byte(nil), b...)
	for _, chunks := range []bool{false, true} {
		r, err := InspectWith(b, Options{Chunks: chunks, Alive: fixedAlive})
		if err != nil {
			if r != nil {
				t.Fatalf("report and error %v", err)
			}
			continue
		}
		if _, err := json.Marshal(r); err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var buf bytes.Buffer
		if err := Text(&buf, r); err != nil {
			t.Fatalf("text: %v", err)
		}
	}
	if !bytes.Equal(before, b) {
		t.Fatal("Inspect wrote to its input")
	}
}

// FuzzInspect feeds arbitrary bytes, and single-byte mutations of a valid
// segment of each kind (selected by seg, at offset off, xor val), to Inspect.
// The data seeds are header pages only: whole segments make the fuzzer's
// minimisation of large inputs dominate the run.
func FuzzInspect(f *testing.F) {
	f.Add([]byte("FDPSEGMT"), uint8(0), uint32(0), uint8(0))
	for i, s := range fuzzSegments {
		f.Add([]byte{}, uint8(i), uint32(12), uint8(1))   // kind
		f.Add([]byte{}, uint8(i), uint32(60), uint8(1))   // ready word
		f.Add([]byte{}, uint8(i), uint32(1030), uint8(8)) // kind header
		f.Add([]byte{}, uint8(i), uint32(2048), uint8(3)) // live words
		f.Add(s[:4096], uint8(i), uint32(0), uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, seg uint8, off uint32, val uint8) {
		checkInspect(t, data)
		b := append([]byte(nil), fuzzSegments[int(seg)%len(fuzzSegments)]...)
		b[int(off)%len(b)] ^= val
		checkInspect(t, b)
	})
}

// TestWriteFuzzCorpus (with -update) writes the committed seed corpus of
// FuzzInspect: the header page of every valid segment, each segment
// unmutated, and with a checksum and a kind header mutation.
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzInspect")
	kinds := []string{"world", "leases", "events", "module"}
	type seed struct {
		name string
		data []byte
		seg  uint8
		off  uint32
		val  uint8
	}
	var seeds []seed
	for i, k := range kinds {
		seeds = append(seeds,
			seed{name: "valid_" + k, data: fuzzSegments[i][:4096], seg: uint8(i)},
			seed{name: "checksum_" + k, seg: uint8(i), off: 96, val: 0xff},
			seed{name: "kindheader_" + k, seg: uint8(i), off: 1024, val: 0x01},
		)
	}
	if *update {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for _, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nuint8(%d)\nuint32(%d)\nuint8(%d)\n", s.data, s.seg, s.off, s.val)
			require.NoError(t, os.WriteFile(filepath.Join(dir, s.name), []byte(body), 0o644))
		}
	}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(ents), len(seeds), "seed corpus missing: run go test ./inspect -run TestWriteFuzzCorpus -update")
	// The valid seeds still decode without error.
	for i := range kinds {
		_, err := InspectWith(fuzzSegments[i], Options{Alive: fixedAlive})
		require.NoError(t, err)
	}
}
