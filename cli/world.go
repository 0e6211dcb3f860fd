package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/supervisor"
	"github.com/fdp-engine/fdp/world"
	"github.com/spf13/pflag"
)

// World is what a program gives the command line: its world and how to run
// it. Schema and Simulation are required; every other field has a default.
type World struct {
	// Name is the program's name in usage lines (default: the base name of
	// os.Args[0]).
	Name string
	// Short is the one-line description in help.
	Short string
	// Instance is the default instance of run ($FDP_INSTANCE and --instance
	// replace it) and of an up config that names none (default: Name).
	Instance string

	// Schema is the world's component registry. Every module of the world
	// registers the same components in the same order: the engine refuses
	// a module whose schema hash differs.
	Schema *world.Registry
	// New returns an empty world (no entities) with the configuration the
	// engine runs with for p: engine recovery restores the last published
	// frame of a killed engine into it, so the same p must give the same
	// configuration. Default: world.New(Schema) with chunks of 1024 entities
	// for p.Entities and a quarter more.
	New func(p Params) (*world.World, error)
	// Simulation returns the simulation that runs on w every frame (its
	// Step(dt) is called on the frame thread before each publish). w is
	// either a world New returned, empty (recovered false: populate it), or
	// the world recovered from a killed engine (recovered true: its entities
	// carry on; rebuild only the simulation's own state from them).
	Simulation func(w *world.World, recovered bool, p Params) (host.Simulation, error)

	// Entities is the default of run's --entities (Params.Entities).
	Entities int
	// Rate is the default of run's --rate, frames per second (default 60).
	Rate int
	// Flags adds the world's own flags to run (the demo's --churn); New,
	// Simulation and Check read them through the variables they bind.
	Flags func(fs *pflag.FlagSet)
	// Check refuses run's flag values (the world's own included) before
	// anything is created; its error is the command's one-line error.
	Check func(p Params) error

	// Status returns fields appended to run's status line ("" for none). It
	// is called on the frame thread, once per status interval.
	Status func(sim host.Simulation) string
	// Summary writes lines of the world's own into run's summary, after its
	// world line (entities, commands) and before the modules' lines (with
	// --log-format json each line becomes the message of a record).
	Summary func(out io.Writer, sim host.Simulation)

	// Config is the supervisor configuration (YAML, see package supervisor)
	// that up runs without --config. Default: the engine alone. In every
	// config up runs, an engine without a command is this program
	// (os.Executable) with `run`, and an absent instance is Instance.
	Config []byte
}

// Params are the values run builds the world with.
type Params struct {
	// Instance is the instance the engine runs.
	Instance string
	// Entities is --entities (World.Entities by default).
	Entities int
	// Rate is --rate, frames per second: the simulation steps dt = 1/Rate.
	Rate int
	// Log is the engine's logger.
	Log *slog.Logger
}

// defaultRate is World.Rate's default, frames per second.
const defaultRate = 60

// defaultChunk is the chunk capacity of the default World.New.
const defaultChunk = 1024

// defaultMaxEntities is the largest --entities of the default World.New:
// the largest e whose chunks, (e*5/4)/defaultChunk + 2, stay within
// world.ChunkLimit, i.e. 5e < 4*(world.ChunkLimit-1)*defaultChunk.
const defaultMaxEntities = (4*((world.ChunkLimit-1)*defaultChunk) - 1) / 5

// withDefaults returns w with its defaults filled in.
func (w World) withDefaults() World {
	if w.Name == "" {
		w.Name = programName()
	}
	if w.Instance == "" {
		w.Instance = w.Name
	}
	if w.Rate == 0 {
		w.Rate = defaultRate
	}
	if w.New == nil && w.Schema != nil {
		reg := w.Schema
		w.New = func(p Params) (*world.World, error) {
			if p.Entities > defaultMaxEntities {
				// Said with the flag, not with the chunks it would take.
				return nil, fmt.Errorf("--entities %d: at most %d", p.Entities, defaultMaxEntities)
			}
			return world.New(reg, world.Config{ChunkCapacity: defaultChunk, MaxChunks: (p.Entities*5/4)/defaultChunk + 2})
		}
	}
	return w
}

// check refuses an incomplete World and run's values it cannot run with,
// before anything is created.
func (w World) check(p Params) error {
	if err := w.valid(); err != nil {
		return err
	}
	if w.Check != nil {
		return w.Check(p)
	}
	return nil
}

// valid refuses an incomplete World: every command that runs it (run, and
// up, whose engine is this program's run) checks it before starting
// anything.
func (w World) valid() error {
	switch {
	case w.Schema == nil:
		return errWorld("Schema")
	case w.Simulation == nil:
		return errWorld("Simulation")
	}
	return nil
}

// newWorld is w.New, refusing a world of another schema than w.Schema (its
// modules would be refused, and recovery would compare against the wrong
// schema).
func (w World) newWorld(p Params) (*world.World, error) {
	nw, err := w.New(p)
	if err != nil {
		return nil, err
	}
	if nw == nil {
		return nil, fmt.Errorf("cli.World: New returned no world")
	}
	if got, want := nw.Registry().SchemaHash(), w.Schema.SchemaHash(); got != want {
		return nil, fmt.Errorf("cli.World: New's world has another schema (hash %#x) than World.Schema (%#x)", got, want)
	}
	return nw, nil
}

// upConfig is the supervisor configuration of up: the file at path, or
// w.Config without one, or the engine alone without either. An engine
// without a command is this program's run; an absent instance is w's;
// instance, when set (up --instance), replaces the configuration's before
// it is validated.
func (w World) upConfig(path, instance string) (*supervisor.Config, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("up: the engine is this program, whose path is unknown: %w", err)
	}
	d := supervisor.Defaults{Instance: w.Instance, ForceInstance: instance, EngineCommand: []string{exe, "run"}}
	var cfg *supervisor.Config
	switch {
	case path != "":
		cfg, err = supervisor.LoadConfigWith(path, d)
	case w.Config != nil:
		cfg, err = supervisor.ParseConfigWith(w.Config, d)
	default:
		cfg, err = supervisor.ParseConfigWith([]byte("modules: []\n"), d)
	}
	if err != nil {
		return nil, err
	}
	// Commands are resolved here, before anything (the summary included)
	// is started, and said like the file's other mistakes.
	if err := cfg.CheckCommands(filepath.Dir(exe)); err != nil {
		if path != "" {
			return nil, fmt.Errorf("%w (in %s)", err, path)
		}
		return nil, err
	}
	return cfg, nil
}

// configName names the config up runs without --config, for help texts.
func (w World) configName() string {
	if w.Config != nil {
		return "the embedded config"
	}
	return "the engine alone"
}
