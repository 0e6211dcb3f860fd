package main

// Inspection commands: ls, dump, gc, stat. They only read segments (mapped
// read-only) except gc, which unlinks stale ones through shm.GC.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
)

// inspectCommands returns fresh instances of the inspection commands (tests
// mount them on their own root command).
func inspectCommands() []*cobra.Command {
	return []*cobra.Command{newLsCmd(), newDumpCmd(), newGCCmd(), newStatCmd(), newVerifyCmd()}
}

func writeJSON(w io.Writer, v any, indent bool) error {
	enc := json.NewEncoder(w)
	if indent {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(v)
}

// lsEntry is one line of `engine ls --json`.
type lsEntry struct {
	Name        string `json:"name"`
	Path        string `json:"path"`
	Instance    string `json:"instance"`
	Kind        string `json:"kind"`         // from the file name
	SegmentKind string `json:"segment_kind"` // from the header ("" when unreadable)
	Size        int64  `json:"size"`
	PID         uint32 `json:"owner_pid"`
	StartTime   uint64 `json:"owner_start"`
	State       string `json:"state"`
	Error       string `json:"error,omitempty"`
}

func lsEntries() ([]lsEntry, error) {
	infos, err := shm.List()
	if err != nil {
		return nil, err
	}
	out := make([]lsEntry, 0, len(infos))
	for _, in := range infos {
		e := lsEntry{Name: in.Name, Path: in.Path, Instance: in.Instance, Kind: in.Kind, Size: in.Size, PID: in.PID, StartTime: in.StartTime, State: in.State}
		if in.Header != nil {
			e.SegmentKind = layout.KindName(in.Header.Kind)
		}
		if in.Err != nil {
			e.Error = in.Err.Error()
		}
		out = append(out, e)
	}
	return out, nil
}

func newLsCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "ls",
		Short: "List FDP instances and their shared-memory segments (name, kind, size, owner pid, state)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			es, err := lsEntries()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(w, es, true)
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tINSTANCE\tKIND\tSIZE\tPID\tSTATE\tERROR")
			for _, e := range es {
				k := e.SegmentKind
				if k == "" {
					k = e.Kind
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", e.Name, dash(e.Instance), dash(k), e.Size, e.PID, e.State, dash(e.Error))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(es) == 0 {
				fmt.Fprintf(w, "no segments in %s\n", shm.Dir)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

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
		Short: "Decode a segment read-only (common header, world slots, leases, event log, module ring)",
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

// gcResult is the output of `engine gc --json`.
type gcResult struct {
	DryRun  bool     `json:"dry_run"`
	Removed []string `json:"removed"` // with --dry-run: what would be removed
}

// gcCandidates mirrors shm.GC's rule without removing anything: stale
// segments, corrupt ones whose creator cannot be alive, and the control
// sockets of dead engines (shm.DeadSockets).
func gcCandidates(instance string) ([]string, error) {
	infos, err := shm.List()
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, in := range infos {
		if instance != "" && in.Instance != instance {
			continue
		}
		if shm.Removable(in) {
			out = append(out, in.Name)
		}
	}
	return append(out, shm.DeadSockets(instance)...), nil
}

func newGCCmd() *cobra.Command {
	var asJSON, dryRun bool
	var instance string
	c := &cobra.Command{
		Use:   "gc",
		Short: "Remove stale segments (creator dead), unreadable ones and dead engines' control sockets; never touches a live segment",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res := gcResult{DryRun: dryRun}
			var err error
			if dryRun {
				res.Removed, err = gcCandidates(instance)
			} else {
				res.Removed, err = shm.GC(instance)
			}
			if res.Removed == nil {
				res.Removed = []string{}
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if e := writeJSON(w, res, false); e != nil && err == nil {
					err = e
				}
				return err
			}
			verb := "removed"
			if dryRun {
				verb = "would remove"
			}
			for _, n := range res.Removed {
				fmt.Fprintf(w, "%s %s\n", verb, n)
			}
			if len(res.Removed) == 0 {
				fmt.Fprintln(w, "nothing to remove")
			}
			return err
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "only print what would be removed")
	c.Flags().StringVar(&instance, "instance", "", "only this instance (default: every instance)")
	return c
}

func newStatCmd() *cobra.Command {
	var asJSON bool
	var interval time.Duration
	var count int
	c := &cobra.Command{
		Use:   "stat INSTANCE",
		Short: "Live view of an instance: frame rate, last publish, skipped, bytes/s, per-reader lag",
		Long: "Every --interval, read the world segment's statistics line (and the leases segment) read-only and print\n" +
			"the rates over the interval. With --json, one JSON object per line. --count bounds the lines (0 = until SIGINT).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 {
				return errors.New("stat: --interval must be positive")
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

func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

func runStat(ctx context.Context, w io.Writer, instance string, interval time.Duration, count int, asJSON bool) error {
	ws, err := shm.Open(shm.SegmentName(instance, "world"), false)
	if err != nil {
		return err
	}
	defer ws.Close()
	var leases []byte
	if ls, err := shm.Open(shm.SegmentName(instance, "leases"), false); err == nil {
		defer ls.Close()
		leases = ls.Data
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
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
