// Command engine runs, supervises and inspects FDP engine instances of the
// embedded demo world (package demo): the demo's use of package cli.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/fdp-engine/fdp/cli"
	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/supervisor"
	"github.com/fdp-engine/fdp/world"
	"github.com/spf13/pflag"
)

// demoWorld is the demo world for package cli: 100K moving entities with
// churn (--churn), the modules of supervisor/default.yaml under `up`.
func demoWorld() (cli.World, error) {
	s, err := demo.NewSchema()
	if err != nil {
		return cli.World{}, err
	}
	cfg := demo.DefaultConfig()
	sized := func(p cli.Params) demo.Config { c := cfg; c.Entities = p.Entities; return c }
	return cli.World{
		Name:     "engine",
		Short:    "FDP: an ECS engine whose world is read zero-copy by module processes through shared memory",
		Instance: "demo",
		Schema:   s.Reg,
		Entities: cfg.Entities,
		Flags: func(fs *pflag.FlagSet) {
			fs.IntVar(&cfg.ChurnPerSec, "churn", cfg.ChurnPerSec, "entities spawned and killed per second")
		},
		Check: func(p cli.Params) error {
			if p.Entities > demo.MaxEntities {
				// Said with the flag, not with the chunks it would take.
				return fmt.Errorf("--entities %d: at most %d", p.Entities, demo.MaxEntities)
			}
			if cfg.ChurnPerSec < 0 {
				return fmt.Errorf("--churn %d: must be 0 or more", cfg.ChurnPerSec)
			}
			return nil
		},
		New: func(p cli.Params) (*world.World, error) { return demo.NewWorld(s, sized(p)) },
		Simulation: func(w *world.World, recovered bool, p cli.Params) (host.Simulation, error) {
			sim := demo.NewSimFromWorld(s, sized(p), w)
			if recovered {
				return sim, nil
			}
			return sim, sim.Populate()
		},
		Summary: func(out io.Writer, sim host.Simulation) {
			d := sim.(*demo.Sim)
			fmt.Fprintf(out, "simulation: %d entities spawned and %d died (churn)\n", d.Spawned, d.Died)
		},
		Config: supervisor.DefaultYAML(),
	}, nil
}

func main() {
	w, err := demoWorld()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cli.Main(w)
}
