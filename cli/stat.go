package cli

// `engine stat`: a live view of an instance, per module too.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
)

func newStatCmd() *cobra.Command {
	var asJSON bool
	var interval time.Duration
	var count int
	c := &cobra.Command{
		Use:   "stat INSTANCE",
		Short: "Live view of an instance: frame rate, last publish, skipped, bytes/s, per-reader lag, per-module statistics",
		Long: "Every --interval, read the world segment's statistics line (and the leases segment, and the statistics block\n" +
			"the engine writes into each module segment) read-only and print the rates over the interval. With --json, one\n" +
			"JSON object per line. --count bounds the lines (0 = until SIGINT).",
		Args: cobra.ExactArgs(1),

		ValidArgsFunction: completeInstance,
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 {
				return errors.New("stat: --interval must be positive")
			}
			if err := atLeast("count", count, 0, " (0 = until interrupted)"); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmdContext(cmd), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runStat(ctx, cmd.OutOrStdout(), args[0], interval, count, asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	c.Flags().DurationVar(&interval, "interval", 500*time.Millisecond, "refresh interval")
	c.Flags().IntVar(&count, "count", 0, "stop after this many lines (0 = until interrupted)")
	return c
}

func runStat(ctx context.Context, w io.Writer, instance string, interval time.Duration, count int, asJSON bool) error {
	sg, err := openStatSegs(instance)
	if err != nil {
		return err
	}
	defer func() { sg.close() }()
	ws, leases := sg.world, sg.leasesData()
	prev, err := takeSample(instance, ws, leases)
	if err != nil {
		return err
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 0; count <= 0 || n < count; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if sg.replaced() {
			// A new engine made the instance's segments again (a replay's
			// seek back or --loop, a restart): the counters of the old
			// mapping stopped and the new ones start from 0, so a rate
			// across the two means nothing. Follow the new engine and
			// start its rates at this sample.
			if nsg, err := openStatSegs(instance); err == nil {
				sg.close()
				sg = nsg
				ws, leases = sg.world, sg.leasesData()
				if p, err := takeSample(instance, ws, leases); err == nil {
					prev = p
				}
				n--
				continue
			}
		}
		cur, err := takeSample(instance, ws, leases)
		if err != nil {
			return err
		}
		line := inspect.Rates(prev, cur)
		if asJSON {
			err = writeJSON(w, line, false)
		} else {
			err = inspect.StatText(w, line)
		}
		if err != nil {
			return err
		}
		prev = cur
	}
	return nil
}

// statSegs are the segments `engine stat` reads, with the identity of
// the world file it mapped (to see it replaced).
type statSegs struct {
	world, leases *shm.Segment
	fi            os.FileInfo
}

func openStatSegs(instance string) (*statSegs, error) {
	ws, err := shm.Open(shm.SegmentName(instance, "world"), false)
	if err != nil {
		return nil, openError(instance, shm.SegmentName(instance, "world"), err)
	}
	sg := &statSegs{world: ws}
	sg.fi, _ = os.Stat(ws.Path)
	if ls, err := shm.Open(shm.SegmentName(instance, "leases"), false); err == nil {
		sg.leases = ls
	} else if !errors.Is(err, os.ErrNotExist) {
		ws.Close()
		return nil, err
	}
	return sg, nil
}

func (sg *statSegs) leasesData() []byte {
	if sg.leases == nil {
		return nil
	}
	return sg.leases.Data
}

// replaced reports whether the world file at the path is another file
// than the one mapped (a new engine made it; not while none is there).
func (sg *statSegs) replaced() bool {
	fi, err := os.Stat(sg.world.Path)
	return err == nil && sg.fi != nil && !os.SameFile(fi, sg.fi)
}

func (sg *statSegs) close() {
	sg.world.Close()
	if sg.leases != nil {
		sg.leases.Close()
	}
}

// takeSample samples the world and leases segments and the module segments
// of the instance's engine (those whose creator is the world's: a module
// segment a dead engine left is skipped), all read-only.
func takeSample(instance string, ws *shm.Segment, leases []byte) (*inspect.Sample, error) {
	s, err := inspect.TakeSample(ws.Data, leases, time.Now(), inspect.Options{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ws.Path, err)
	}
	wh, err := layout.DecodeHeader(ws.Data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ws.Path, err)
	}
	// Remote modules (on mirrors) are known to the engine only: asked over
	// its control socket (nothing when it does not answer).
	if st, err := ipc.Ctl(instance, ipc.CtlRequest{Op: ipc.CtlStatus}, 500*time.Millisecond); err == nil {
		s.Remote = st.Remote
	}
	for slot := 0; slot < layout.MaxModules; slot++ {
		ms, err := shm.Open(layout.ModuleSegmentName(instance, slot), false)
		if err != nil {
			continue
		}
		if mh, err := layout.DecodeHeader(ms.Data); err == nil && mh.CreatorPID == wh.CreatorPID && mh.CreatorTime == wh.CreatorTime {
			if err := s.AddModule(ms.Data, inspect.Options{}); err != nil {
				ms.Close()
				return nil, fmt.Errorf("%s: %w", ms.Path, err)
			}
		}
		ms.Close()
	}
	return s, nil
}
