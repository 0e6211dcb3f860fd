package cli

// `engine ls`: the segments of every instance.

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// lsEntry is one line of `engine ls --json`.
type lsEntry struct {
	Name        string `json:"name"`
	Path        string `json:"path"`
	Instance    string `json:"instance"`
	Kind        string `json:"kind"`         // from the file name
	SegmentKind string `json:"segment_kind"` // from the header ("" when unreadable)
	Size        int64  `json:"size"`
	// Allocated is the memory the segment's file holds (st_blocks × 512):
	// less than Size for a sparse world segment, whose slots hold memory
	// only for what they hold; -1 when the file could not be stat'ed.
	Allocated int64  `json:"allocated"`
	PID       uint32 `json:"owner_pid"`
	StartTime uint64 `json:"owner_start"`
	State     string `json:"state"`
	Error     string `json:"error,omitempty"`
	// Socket is the path of the instance's control socket (where a module
	// connects: docs/PROTOCOL.md, "Finding an engine") when that file
	// exists and is a socket; "" otherwise. Every entry of an instance has
	// the same one.
	Socket string `json:"socket,omitempty"`
}

// instanceSocket returns the control socket path of instance if it exists
// as a socket.
func instanceSocket(instance string) string {
	if instance == "" {
		return ""
	}
	p := filepath.Join(shm.Dir, shm.Prefix+instance+shm.SocketSuffix)
	var st unix.Stat_t
	if unix.Lstat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return ""
	}
	return p
}

func lsEntries() ([]lsEntry, error) {
	infos, err := shm.List()
	if err != nil {
		return nil, err
	}
	out := make([]lsEntry, 0, len(infos))
	for _, in := range infos {
		e := lsEntry{Name: in.Name, Path: in.Path, Instance: in.Instance, Kind: in.Kind, Size: in.Size, PID: in.PID, StartTime: in.StartTime, State: in.State}
		e.Allocated = allocated(in.Path)
		e.Socket = instanceSocket(in.Instance)
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

// allocated returns the bytes the file at path holds (st_blocks are 512-byte
// units whatever the file system's block size), -1 when it cannot be
// stat'ed.
func allocated(path string) int64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return -1
	}
	return st.Blocks * 512
}

func newLsCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "ls",
		Short: "List FDP instances and their shared-memory segments (name, kind, size, memory allocated, owner pid, state)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := shm.CheckDir(); err != nil {
				return err
			}
			es, err := lsEntries()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(w, es, true)
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tINSTANCE\tKIND\tSIZE\tALLOCATED\tPID\tSTATE\tERROR")
			for _, e := range es {
				k := e.SegmentKind
				if k == "" {
					k = e.Kind
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", e.Name, dash(e.Instance), dash(k), e.Size, e.Allocated, e.PID, e.State, dash(e.Error))
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
