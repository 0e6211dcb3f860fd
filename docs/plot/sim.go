package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/fdp-engine/fdp/demo"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// runSim measures what the demo simulation (demo.Sim.Step, as `engine run`
// runs it, without modules) changes per frame and what a frame costs: the
// step and the publish of the whole schema.
func runSim(args []string) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	n := fs.Int("entities", 1_000_000, "entities of the demo world")
	frames := fs.Int("frames", 120, "frames measured")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := demo.NewSchema()
	if err != nil {
		return err
	}
	cfg := demo.DefaultConfig()
	cfg.Entities = *n
	sim, err := demo.NewSim(s, cfg)
	if err != nil {
		return err
	}
	w := sim.W
	tw := &testWorld{w: w}
	segs, err := tw.createSegments()
	if err != nil {
		return err
	}
	defer dropSegments(segs)
	pub, err := fsync.NewPublisher(w, segs)
	if err != nil {
		return err
	}
	all := world.MaskAll()
	var steps, pubs []time.Duration
	var changed []int32
	chunks, bytes := 0, 0
	for f := 1; f <= *frames+10; f++ {
		since := w.Epoch() - 1 // the publish sealed: its copy is complete at since
		w.Advance()
		t0 := time.Now()
		sim.Step(1.0 / 60)
		step := time.Since(t0)
		var ok bool
		changed, ok = w.ChangedChunks(since, 2*w.NumChunks(), changed[:0])
		t0 = time.Now()
		st, err := pub.Publish(uint64(f), all)
		if err != nil {
			return err
		}
		if f > 10 { // after the slots hold the world
			steps = append(steps, step)
			pubs = append(pubs, time.Since(t0))
			bytes += st.BytesCopied
			if ok {
				chunks += len(changed)
			} else {
				chunks += w.NumChunks()
			}
		}
	}
	k := float64(len(steps))
	fmt.Printf("demo world of %d entities (%d chunks), %d frames, no modules:\n", w.Count(), w.NumChunks(), len(steps))
	fmt.Printf("  chunks changed per frame: %.1f of %d (%.0f%%); every chunk's Position column (12 of the 36 component bytes per entity) moves\n",
		float64(chunks)/k, w.NumChunks(), 100*float64(chunks)/k/float64(w.NumChunks()))
	fmt.Printf("  simulation step: p50 %v max %v\n", round(median(steps)), round(maxDur(steps)))
	fmt.Printf("  publish: p50 %v max %v, %.1f MiB copied per publish (two frames of changes: the slots alternate)\n",
		round(median(pubs)), round(maxDur(pubs)), float64(bytes)/k/(1<<20))
	return nil
}

func maxDur(d []time.Duration) time.Duration {
	m := time.Duration(0)
	for _, x := range d {
		m = max(m, x)
	}
	return m
}
