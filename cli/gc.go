package cli

// `engine gc`: remove stale segments, dead engines' sockets and (without
// --instance) the private metrics directories of killed `engine up`s.

import (
	"fmt"

	"github.com/fdp-engine/fdp/metrics"
	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
)

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
	out = append(out, shm.DeadSockets(instance)...)
	if instance == "" {
		out = append(out, metrics.StaleDirs()...)
	}
	return out, nil
}

func newGCCmd() *cobra.Command {
	var asJSON, dryRun bool
	var instance string
	c := &cobra.Command{
		Use:   "gc",
		Short: "Remove stale segments (creator dead), unreadable ones, dead engines' control sockets and (without --instance) killed engine ups' private metrics directories; never touches a live segment",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := shm.CheckDir(); err != nil {
				return err // said first, as run and ls say it: not "nothing to remove"
			}
			res := gcResult{DryRun: dryRun}
			var err error
			if dryRun {
				res.Removed, err = gcCandidates(instance)
			} else {
				res.Removed, err = shm.GC(instance)
				if instance == "" && err == nil {
					var dirs []string
					dirs, err = metrics.RemoveStaleDirs()
					res.Removed = append(res.Removed, dirs...)
				}
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
