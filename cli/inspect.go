package cli

// Inspection commands: ls, dump, gc, stat (and verify, verify.go), one file
// each. They only read segments (mapped read-only) except gc, which unlinks
// stale ones through shm.GC.

import (
	"context"
	"encoding/json"
	"io"

	"github.com/spf13/cobra"
)

// inspectCommands returns fresh instances of the inspection commands (tests
// mount them on their own root command).
func inspectCommands() []*cobra.Command {
	return []*cobra.Command{newLsCmd(), newDumpCmd(), newGCCmd(), newStatCmd(), newVerifyCmd(), newTopCmd()}
}

func writeJSON(w io.Writer, v any, indent bool) error {
	enc := json.NewEncoder(w)
	if indent {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
