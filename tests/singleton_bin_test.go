package tests

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/internal/logs"
	"github.com/fdp-engine/fdp/shm"
	"github.com/stretchr/testify/require"
)

// TestTimeSingletonBinaries uses only the shipped binaries and documented
// behaviour: `engine run` publishes the time singleton (README, docs/LAYOUT.md
// "Singletons"): `engine dump --json` shows it, engine-owned, in the latest
// frame, with that frame's number and a simulation time of one 1/60 s step
// per frame; the demo's telemetry module (`modrunner telemetry`) reads it
// and logs the simulation time of the frame it reports; and the demo's AI
// module names its reinforcements, a variable-size value whose arena use
// `engine dump` shows.
func TestTimeSingletonBinaries(t *testing.T) {
	bin := shippedBinaries(t)
	inst := fmt.Sprintf("tb%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	t.Cleanup(func() { _, _ = shm.RemoveInstance(inst) })
	eng := startMemEngine(t, bin, inst, nil, "--entities", "2000")
	const dt = int64(time.Second / 60)

	dump := func() inspect.Report {
		cmd := exec.Command(filepath.Join(bin, "engine"), "dump", "--json", inst, "world")
		out, err := cmd.Output()
		require.NoError(t, err, "engine dump: %s", out)
		var r inspect.Report
		require.NoError(t, json.Unmarshal(out, &r), "%s", out)
		require.NotNil(t, r.World)
		return r
	}
	// engine dump: the time singleton of the latest frame.
	for i := 0; i < 3; i++ {
		r := dump()
		require.Len(t, r.World.Singletons, 1, "the demo registers the time singleton")
		s := r.World.Singletons[0]
		require.Equal(t, "Time", s.Name)
		require.True(t, s.EngineOwned)
		require.Equal(t, uint32(40), s.Size)
		v, err := hex.DecodeString(s.Value)
		require.NoError(t, err)
		require.Len(t, v, 40)
		frame := binary.LittleEndian.Uint64(v)
		require.Equal(t, r.World.Latest.Frame, frame, "the time singleton's frame is the frame it is published in")
		require.Equal(t, int64(frame)*dt, int64(binary.LittleEndian.Uint64(v[8:])), "simulation time: one step per frame")
		require.Equal(t, dt, int64(binary.LittleEndian.Uint64(v[16:])), "step")
		require.Equal(t, 1.0, math.Float64frombits(binary.LittleEndian.Uint64(v[24:])), "scale: speed 1")
		require.Equal(t, uint64(0), binary.LittleEndian.Uint64(v[32:]), "paused 0, reserved 0")
		time.Sleep(50 * time.Millisecond) // let the engine publish other frames between the dumps
	}

	// The demo's telemetry module logs the time it read (every 120 ticks).
	mod := exec.Command(filepath.Join(bin, "modrunner"), "telemetry")
	mod.Env = append(os.Environ(), "FDP_INSTANCE="+inst)
	out := &syncBuf{}
	mod.Stdout, mod.Stderr = out, out
	require.NoError(t, mod.Start())
	t.Cleanup(func() { _ = mod.Process.Kill(); _ = mod.Wait() })
	line := regexp.MustCompile(`msg=telemetry frame=(\d+) sim_time=(\S+) `)
	var m []string
	waitFor(t, "a telemetry line", 20*time.Second, func() bool {
		m = line.FindStringSubmatch(out.String())
		return m != nil
	})
	frame, err := strconv.ParseInt(m[1], 10, 64)
	require.NoError(t, err)
	require.Equal(t, logs.Round3(time.Duration(frame*dt)).String(), m[2], "telemetry's sim_time is its frame's (three significant digits): %s", m[0])

	// The demo's AI names its reinforcements (a variable-size string
	// component): engine dump shows the Name arena's use in the latest
	// frame growing with its ticks.
	ai := exec.Command(filepath.Join(bin, "modrunner"), "ai")
	ai.Env = append(os.Environ(), "FDP_INSTANCE="+inst, "FDP_MODULE=ai-1")
	ai.Stdout, ai.Stderr = out, out
	require.NoError(t, ai.Start())
	t.Cleanup(func() { _ = ai.Process.Kill(); _ = ai.Wait() })
	var name inspect.ComponentReport
	waitFor(t, "named reinforcements in the latest frame", 20*time.Second, func() bool {
		r := dump()
		for _, c := range r.World.Components {
			if c.Name == "Name" {
				name = c
			}
		}
		return name.Arena != nil && name.Arena.Values >= 3
	})
	require.Equal(t, "string", name.Kind)
	require.Equal(t, uint32(24), name.MaxLen)
	require.Equal(t, 1024*8, name.ArenaPerChunk)
	require.GreaterOrEqual(t, name.Arena.Bytes, 3*len("ai-1 #1"), "the values' bytes")
	require.Positive(t, name.Arena.Capacity)
	eng.stop(t)
}
