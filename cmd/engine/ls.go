package main

// `engine ls`: the segments of every instance.

import (
	"fmt"
	"text/tabwriter"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
)

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
