package main

// `engine dump`: one segment decoded read-only.

import (
	"fmt"
	"strings"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
)

// openSegment resolves a dump argument and maps the segment read-only:
//   - a path containing '/' is opened as a file (shm.OpenPath);
//   - "fdp.<instance>.<kind>" is a segment name in shm.Dir;
//   - "<instance>.<kind>" is completed with the "fdp." prefix;
//   - two arguments are an instance and a kind.
func openSegment(args []string) (*shm.Segment, error) {
	if len(args) == 2 {
		return shm.Open(shm.SegmentName(args[0], args[1]), false)
	}
	a := args[0]
	if strings.Contains(a, "/") {
		return shm.OpenPath(a)
	}
	if !strings.HasPrefix(a, shm.Prefix) {
		a = shm.Prefix + a
	}
	return shm.Open(a, false)
}

func newDumpCmd() *cobra.Command {
	var asJSON, chunks bool
	c := &cobra.Command{
		Use:   "dump SEGMENT|PATH | dump INSTANCE KIND",
		Short: "Decode a segment read-only (common header, world slots, leases, event log, module ring and statistics)",
		Long: "Decode any FDP segment read-only. SEGMENT is a name in the segment directory (fdp.demo.world or demo.world),\n" +
			"PATH a file path containing '/', or give INSTANCE and KIND (demo world, demo mod.0). It never writes or blocks.\n" +
			"Exits non-zero on a corrupt, truncated or foreign segment, and after printing when live data is inconsistent.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			seg, err := openSegment(args)
			if err != nil {
				return err
			}
			defer seg.Close()
			r, err := inspect.InspectWith(seg.Data, inspect.Options{Chunks: chunks})
			if err != nil {
				return fmt.Errorf("%s: %w", seg.Path, err)
			}
			r.Source = seg.Path
			w := cmd.OutOrStdout()
			if asJSON {
				err = writeJSON(w, r, true)
			} else {
				err = inspect.Text(w, r)
			}
			if err != nil {
				return err
			}
			if n := len(r.Problems); n > 0 {
				return fmt.Errorf("%s: %d problem(s) in live data, first: %s", seg.Path, n, r.Problems[0])
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&chunks, "chunks", false, "include the header of every chunk in use of every world slot")
	return c
}
