package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// readmeTables returns the tables of the README section titled heading:
// each a list of rows (the header and separator rows left out), each row a
// list of cells, trimmed.
func readmeTables(t *testing.T, heading string) [][][]string {
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	require.GreaterOrEqual(t, i, 0, "README.md has no section %q", heading)
	s = s[i+len(heading)+2:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	var tables [][][]string
	var cur [][]string
	header := false
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "|") {
			if cur != nil {
				tables = append(tables, cur)
			}
			cur, header = nil, false
			continue
		}
		if cur == nil && !header {
			header = true // the header row
			cur = [][]string{}
			continue
		}
		if strings.HasPrefix(l, "|---") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(l, "|"), " | ") {
			cells = append(cells, strings.TrimSpace(c))
		}
		cur = append(cur, cells)
	}
	if cur != nil {
		tables = append(tables, cur)
	}
	return tables
}

// thousands formats n with commas, as the README writes numbers.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// binarySize formats a power-of-two byte count as the README does: "64 KiB",
// "1 MiB", "1 GiB".
func binarySize(t *testing.T, n int) string {
	for _, u := range []struct {
		unit  string
		bytes int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.bytes {
			require.Zero(t, n%u.bytes, "%d is not a whole number of %s", n, u.unit)
			return fmt.Sprintf("%d %s", n/u.bytes, u.unit)
		}
	}
	return fmt.Sprintf("%d B", n)
}

// TestReadmeLimits compares the "value" column of the README's limits
// table with the constants (and defaults) each row names, and checks the
// bounds the rows state against the code that enforces them: a registry
// takes 256 components and refuses the next, names of 31 bytes pass and
// of 32 do not, a world of 2^20 chunks is accepted and one chunk more, or
// more than 2^32 entities, is not.
func TestReadmeLimits(t *testing.T) {
	def := host.DefaultConfig()
	want := map[string]string{
		"entities per world":                   "1,048,576 chunks and 2^32 entities at most",
		"components per world":                 strconv.Itoa(layout.MaxComponents),
		"component size":                       thousands(layout.MaxComponentSize) + " B",
		"component name":                       fmt.Sprintf("1..%d bytes of UTF-8", layout.ComponentNameLen-1),
		"instance name":                        fmt.Sprintf("1..%d bytes of [A-Za-z0-9_-]", layout.InstanceNameLen-1),
		"module and group name":                fmt.Sprintf("1..%d bytes of [A-Za-z0-9_.-]", layout.ModuleNameLen-1),
		"modules attached at once":             strconv.Itoa(layout.MaxModules),
		"external readers (tools)":             fmt.Sprintf("%d (%d..%d)", layout.DefaultReaders, layout.MinReaders, layout.MaxReaders),
		"frame slots":                          fmt.Sprintf("%d (2..%d)", def.Slots, layout.MaxSlots),
		"frame rate":                           fmt.Sprintf("1..%s fps", thousands(host.MaxFrameRate)),
		"module period (`Every`)":              fmt.Sprintf("1..%s frames (0: only when woken, with a `WakeOn`)", thousands(ipc.MaxEvery)),
		"event log":                            binarySize(t, def.EventLogBytes),
		"event payload of a module":            thousands(layout.MaxModuleEventPayload) + " B",
		"event bytes per module and frame":     fmt.Sprintf("%s B (`EventLogBytes`/64), saved for up to %d frames", thousands(def.MaxEventBytesPerModule), host.EventBurstFrames),
		"command ring per module":              fmt.Sprintf("%s (%s..%s, a power of two)", binarySize(t, def.RingBytes), binarySize(t, layout.MinRingCapacity), binarySize(t, layout.MaxRingCapacity)),
		"entities one module may have created": "a quarter of the world's free capacity at start",
		"wake-on event types per module":       strconv.Itoa(layout.MaxWakeEvents),
		"control message (hello, welcome)":     binarySize(t, ipc.ControlMaxMessage),
	}
	require.Equal(t, def.EventLogBytes/64, def.MaxEventBytesPerModule, "the row says EventLogBytes/64")
	tables := readmeTables(t, "## Limits and sizing")
	require.NotEmpty(t, tables)
	seen := map[string]bool{}
	for _, row := range tables[0] {
		require.GreaterOrEqual(t, len(row), 4, "row %q", row)
		w, ok := want[row[0]]
		require.True(t, ok, "README limits row %q: no check for it in this test", row[0])
		require.Equal(t, w, row[1], "README limits row %q", row[0])
		seen[row[0]] = true
	}
	for k := range want {
		require.True(t, seen[k], "README limits table lacks the row %q", k)
	}

	// The bounds as the code enforces them.
	reg := testutil.WideRegistry(layout.MaxComponents)
	_, err := world.Register[limitsExtra](reg, "one-more")
	require.ErrorContains(t, err, fmt.Sprintf("too many components: %d are registered, the cap is %d", layout.MaxComponents, layout.MaxComponents))
	_, err = world.Register[[4]byte](world.NewRegistry(), strings.Repeat("n", layout.ComponentNameLen))
	require.ErrorContains(t, err, fmt.Sprintf("name must be 1..%d bytes of UTF-8 without NUL", layout.ComponentNameLen-1))
	_, err = world.Register[[layout.MaxComponentSize + 1]byte](world.NewRegistry(), "big")
	require.Error(t, err)
	_, err = world.Register[[layout.MaxComponentSize]byte](world.NewRegistry(), "big")
	require.NoError(t, err)
	require.True(t, layout.ValidInstanceName(strings.Repeat("i", layout.InstanceNameLen-1)))
	require.False(t, layout.ValidInstanceName(strings.Repeat("i", layout.InstanceNameLen)))
	require.False(t, layout.ValidInstanceName("a.b"))
	require.True(t, layout.ValidModuleName(strings.Repeat("m", layout.ModuleNameLen-1)))
	require.False(t, layout.ValidModuleName(strings.Repeat("m", layout.ModuleNameLen)))
	small := world.NewRegistry()
	_, err = world.Register[[4]byte](small, "c")
	require.NoError(t, err)
	_, err = world.New(small, world.Config{ChunkCapacity: 16, MaxChunks: 1 << 20})
	require.NoError(t, err)
	_, err = world.New(small, world.Config{ChunkCapacity: 16, MaxChunks: 1<<20 + 1})
	require.ErrorContains(t, err, "max chunks 1048577 must be in [1,1048576] with at most 2^32 entities")
	_, err = world.New(small, world.Config{ChunkCapacity: 1 << 13, MaxChunks: 1<<19 + 1}) // 2^32 + 2^13 entities
	require.ErrorIs(t, err, world.ErrConfig)
}

// limitsExtra is a component type no wide registry has.
type limitsExtra struct{ V [3]uint16 }

// memRow is a row of the README's shared memory table.
type memRow struct {
	entities         int
	worldMiB, allMiB float64
	perEntity        int
	reservedMiB      float64
}

func readmeMemory(t *testing.T) []memRow {
	tables := readmeTables(t, "## Limits and sizing")
	require.GreaterOrEqual(t, len(tables), 2, "the section has no shared memory table")
	mib := regexp.MustCompile(`^([0-9.]+) MiB$`)
	num := func(cell string) float64 {
		m := mib.FindStringSubmatch(cell)
		require.NotNil(t, m, "cell %q: want N MiB", cell)
		v, err := strconv.ParseFloat(m[1], 64)
		require.NoError(t, err)
		return v
	}
	var rows []memRow
	for _, r := range tables[1] {
		require.Len(t, r, 5)
		n := map[string]int{"100K": 100_000, "1M": 1_000_000}[r[0]]
		require.NotZero(t, n, "entities %q", r[0])
		per, err := strconv.Atoi(strings.TrimSuffix(r[2], " B"))
		require.NoError(t, err)
		rows = append(rows, memRow{entities: n, worldMiB: num(r[1]), perEntity: per, allMiB: num(r[3]), reservedMiB: num(r[4])})
	}
	require.Len(t, rows, 2)
	return rows
}

// TestReadmeMemoryReserved: the reserved size of the demo's world segment
// is what the layout computes for the demo schema at that size (exactly,
// to the README's 0.1 MiB), and the per-entity column is the held column
// divided by the entities.
func TestReadmeMemoryReserved(t *testing.T) {
	s, err := demo.NewSchema()
	require.NoError(t, err)
	for _, r := range readmeMemory(t) {
		w, err := demo.NewWorld(s, demo.Config{Entities: r.entities})
		require.NoError(t, err)
		g, err := layout.ComputeWorldGeometry(layout.WorldParams{Instance: "x", Slots: def().Slots,
			ChunkCapacity: w.ChunkCapacity(), MaxChunks: w.MaxChunks(), Components: s.Reg.Components()})
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("%.1f", r.reservedMiB), fmt.Sprintf("%.1f", float64(g.TotalSize)/(1<<20)), "%d entities: reserved", r.entities)
		require.InDelta(t, float64(r.perEntity), r.worldMiB*(1<<20)/float64(r.entities), 1, "%d entities: per entity", r.entities)
		// Every segment: the world's and the fixed ones (event log, leases,
		// five module segments with their default rings).
		fixed := float64(def().EventLogBytes+4096) + float64(16384) + 5*float64(def().RingBytes+8192)
		require.InDelta(t, r.allMiB, r.worldMiB+fixed/(1<<20), 0.11, "%d entities: every segment", r.entities)
	}
}

func def() host.Config { return host.DefaultConfig() }

// TestReadmeMemoryHeld measures what the README's table says: the demo
// under `engine up` (the binaries, the embedded config, 100K entities; 1M
// too with FDP_LIMITS_1M=1, which takes a quarter of a GiB of /dev/shm),
// once every module has ticked for a few seconds, holds the world
// segment's memory the table shows: at least 80% of it, at most 150% (a
// loaded machine holds more; snapshots come and go: the median of a
// second's samples).
func TestReadmeMemoryHeld(t *testing.T) {
	bin := shippedBinaries(t)
	for _, r := range readmeMemory(t) {
		if r.entities > 100_000 && os.Getenv("FDP_LIMITS_1M") == "" {
			t.Logf("%d entities: not measured (FDP_LIMITS_1M=1 measures it)", r.entities)
			continue
		}
		shmDir := t.TempDir()
		cfg := filepath.Join(t.TempDir(), "up.yaml")
		b, err := os.ReadFile("../supervisor/default.yaml")
		require.NoError(t, err)
		y := strings.Replace(string(b), "command: [engine, run]", fmt.Sprintf("command: [engine, run, --entities, %q]", strconv.Itoa(r.entities)), 1)
		require.NotEqual(t, string(b), y, "supervisor/default.yaml: no engine command to size")
		require.NoError(t, os.WriteFile(cfg, []byte(y), 0o600))
		up := exec.Command(filepath.Join(bin, "engine"), "up", "--config", cfg)
		up.Env = append(os.Environ(), "FDP_SHM_DIR="+shmDir)
		var log syncBuf
		up.Stdout, up.Stderr = &log, &log
		require.NoError(t, up.Start())
		stopped := false
		stop := func() {
			if !stopped {
				stopped = true
				_ = up.Process.Signal(os.Interrupt)
				_ = up.Wait()
			}
		}
		t.Cleanup(stop)
		tool := func(args ...string) []byte {
			c := exec.Command(filepath.Join(bin, "engine"), args...)
			c.Env = up.Env
			out, _ := c.Output()
			return out
		}
		// Steady state: every module (six) has ticked at least 20 times.
		deadline := time.Now().Add(60 * time.Second)
		for {
			var st struct {
				Modules []struct {
					Stats *struct {
						Runs uint64 `json:"runs"`
					} `json:"stats"`
				} `json:"modules"`
			}
			ok := false
			if json.Unmarshal(tool("stat", "demo", "--json", "--count", "1"), &st) == nil && len(st.Modules) == 6 {
				ok = true
				for _, m := range st.Modules {
					ok = ok && m.Stats != nil && m.Stats.Runs >= 20
				}
			}
			if ok {
				break
			}
			require.True(t, time.Now().Before(deadline), "the demo's modules did not all tick 20 times in 60 s:\n%s", log.String())
			time.Sleep(100 * time.Millisecond)
		}
		// The median of 11 samples over about a second: a snapshot that a
		// slow tick holds a little longer (load) must not decide it.
		var samples []float64
		for range 11 {
			var segs []struct {
				Kind      string `json:"kind"`
				Allocated int64  `json:"allocated"`
			}
			require.NoError(t, json.Unmarshal(tool("ls", "--json"), &segs))
			for _, s := range segs {
				if s.Kind == "world" {
					samples = append(samples, float64(s.Allocated)/(1<<20))
				}
			}
			time.Sleep(100 * time.Millisecond) // sampling, not synchronisation
		}
		require.Len(t, samples, 11, "the world segment is missing from engine ls")
		sort.Float64s(samples)
		held := samples[len(samples)/2]
		stop()
		t.Logf("%d entities: world segment holds %.1f MiB (README: %.1f MiB)", r.entities, held, r.worldMiB)
		// A loaded machine holds more (slow ticks keep their snapshots
		// longer: the README says up to a quarter); never less than the
		// latest frame, its spare and the snapshots of one round.
		require.Greater(t, held, 0.8*r.worldMiB, "%d entities: held %.1f MiB, README %.1f MiB", r.entities, held, r.worldMiB)
		require.Less(t, held, 1.5*r.worldMiB, "%d entities: held %.1f MiB, README %.1f MiB", r.entities, held, r.worldMiB)
	}
}
