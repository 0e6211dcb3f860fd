package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/world"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

// counter is the test world's one component.
type counter struct{ N uint64 }

// counterSim adds one to every entity's counter each frame.
type counterSim struct {
	w     *world.World
	id    world.ComponentID
	steps int
}

func (s *counterSim) Step(float32) {
	s.steps++
	q := s.w.Query(world.MaskOf(s.id))
	for q.Next() {
		col := world.ColumnMut[counter](&q, s.id)
		for i := range col {
			if q.Match(i) {
				col[i].N++
			}
		}
	}
}

// testWorld is a small world for the tests of package cli: entities with a
// counter the simulation increments, a flag of its own (--start, the
// counters' first value, refused when negative) and status and summary
// hooks that say how many steps ran.
func testWorld() World {
	reg := world.NewRegistry()
	id, err := world.Register[counter](reg, "Counter")
	if err != nil {
		panic(err) // a fixed, valid registration
	}
	start := 0
	return World{
		Name:     "testengine",
		Instance: "testworld",
		Schema:   reg,
		Entities: 10,
		Flags:    func(fs *pflag.FlagSet) { fs.IntVar(&start, "start", 0, "the counters' first value") },
		Check: func(Params) error {
			if start < 0 {
				return fmt.Errorf("--start %d: must be 0 or more", start)
			}
			return nil
		},
		Simulation: func(w *world.World, recovered bool, p Params) (host.Simulation, error) {
			s := &counterSim{w: w, id: id}
			if p.Log != nil {
				p.Log.Info("test world: simulation built") // the tests see when it ran
			}
			for i := 0; !recovered && i < p.Entities; i++ {
				e, err := w.Create()
				if err != nil {
					return nil, err
				}
				if err := world.Set(w, e, id, counter{N: uint64(start)}); err != nil {
					return nil, err
				}
			}
			return s, nil
		},
		Status: func(sim host.Simulation) string { return fmt.Sprintf("steps %d", sim.(*counterSim).steps) },
		Summary: func(out io.Writer, sim host.Simulation) {
			fmt.Fprintf(out, "test world: %d steps\n", sim.(*counterSim).steps)
		},
	}
}

// TestUpConfig: up runs the file of --config, else World.Config, else the
// engine alone; in each, an engine without a command is this program's run
// and an absent instance is World.Instance, while what a config writes out
// wins.
func TestUpConfig(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	self := []string{exe, "run"}
	w := testWorld().withDefaults()

	cfg, err := w.upConfig("", "")
	require.NoError(t, err)
	require.Equal(t, "testworld", cfg.Instance)
	require.Equal(t, self, cfg.Engine.Command)
	require.Empty(t, cfg.Modules, "the engine alone")

	w.Config = []byte("modules: [{name: m, command: [sh]}]\n") // commands are resolved: one in PATH
	cfg, err = w.upConfig("", "")
	require.NoError(t, err)
	require.Equal(t, "testworld", cfg.Instance)
	require.Equal(t, self, cfg.Engine.Command)
	require.Len(t, cfg.Modules, 1)

	path := filepath.Join(t.TempDir(), "up.yaml")
	require.NoError(t, os.WriteFile(path, []byte("instance: other\nengine: {command: [sh, run, --rate, \"30\"]}\n"), 0o600))
	cfg, err = w.upConfig(path, "")
	require.NoError(t, err)
	require.Equal(t, "other", cfg.Instance)
	require.Equal(t, []string{"sh", "run", "--rate", "30"}, cfg.Engine.Command)
	require.Empty(t, cfg.Modules, "the file, not World.Config")

	require.NoError(t, os.WriteFile(path, []byte("engine: {command: []}\n"), 0o600))
	_, err = w.upConfig(path, "")
	require.ErrorContains(t, err, "engine.command: empty command")

	require.NoError(t, os.WriteFile(path, []byte("instance: x\nmodules: [{name: a, command: [sh]}, {name: b, command: [modrunnr-xyz]}]\n"), 0o600))
	_, err = w.upConfig(path, "")
	require.EqualError(t, err, `fdp/supervisor: config: modules[1].command: "modrunnr-xyz" not found next to `+filepath.Dir(exe)+" nor in PATH (in "+path+")")
}

// TestDefaultMaxEntities: the bound --entities is refused beyond is the
// last count whose chunks the world admits, against world.New itself.
func TestDefaultMaxEntities(t *testing.T) {
	chunks := func(e int) int { return (e*5/4)/defaultChunk + 2 }
	require.LessOrEqual(t, chunks(defaultMaxEntities), world.ChunkLimit)
	require.Greater(t, chunks(defaultMaxEntities+1), world.ChunkLimit)
	w := testWorld().withDefaults()
	_, err := w.New(Params{Entities: defaultMaxEntities + 1})
	require.EqualError(t, err, fmt.Sprintf("--entities %d: at most %d", defaultMaxEntities+1, defaultMaxEntities))
}
