package cli_test

import (
	"fmt"
	"io"
	"log"

	"github.com/fdp-engine/fdp/cli"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/world"
)

// Counter is the example world's one component.
type Counter struct{ N uint64 }

// Counting is the example world's simulation: every frame, every counter
// goes up by one.
type Counting struct {
	W      *world.World
	ID     world.ComponentID
	Frames uint64
}

// Step runs one frame.
func (s *Counting) Step(float32) {
	s.Frames++
	q := s.W.Query(world.MaskOf(s.ID))
	for q.Next() {
		n := world.ColumnMut[Counter](&q, s.ID)
		for i := range q.Rows() {
			if q.Match(i) {
				n[i].N++
			}
		}
	}
}

// Counted reports whether every counter counted every frame.
func (s *Counting) Counted() bool {
	q := s.W.Query(world.MaskOf(s.ID))
	for q.Next() {
		n := world.Column[Counter](&q, s.ID)
		for i := range q.Rows() {
			if q.Match(i) && n[i].N != s.Frames {
				return false
			}
		}
	}
	return true
}

// counters is the World of a program "counters", whose whole main is
//
//	func main() { cli.Main(counters(nil)) }
//
// It gives the program run, up (the engine alone, or the modules of --config),
// ls, dump, stat, gc and verify. sim, if not nil, is set to the simulation
// run builds.
func counters(sim **Counting) cli.World {
	reg := world.NewRegistry()
	id, err := world.Register[Counter](reg, "Counter")
	if err != nil {
		log.Fatal(err)
	}
	return cli.World{
		Name:     "counters",
		Short:    "Counters that count frames",
		Schema:   reg,
		Entities: 3,
		// New is left out: an empty world of reg sized for --entities.
		Simulation: func(w *world.World, recovered bool, p cli.Params) (host.Simulation, error) {
			s := &Counting{W: w, ID: id}
			for i := 0; !recovered && i < p.Entities; i++ {
				e, err := w.Create()
				if err != nil {
					return nil, err
				}
				if err := world.Set(w, e, id, Counter{}); err != nil {
					return nil, err
				}
			}
			if sim != nil {
				*sim = s
			}
			return s, nil
		},
		Summary: func(out io.Writer, sim host.Simulation) {
			fmt.Fprintf(out, "counters: %d frames counted\n", sim.(*Counting).Frames)
		},
	}
}

// Example runs the engine of the counters world for a moment, as
// `counters run --duration 300ms` does, through cli.Command instead of
// cli.Main so that it can look at the world afterwards.
func Example() {
	var sim *Counting
	c := cli.Command(counters(&sim))
	c.SetArgs([]string{"run", "--instance", "counters-example", "--duration", "300ms", "--status", "0"})
	c.SetOut(io.Discard) // the summary
	if err := c.Execute(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("frames run:", sim.Frames > 0)
	fmt.Println("every counter counted every frame:", sim.Counted())
	// Output:
	// frames run: true
	// every counter counted every frame: true
}
