package cli

// `engine top`: the live terminal view of an instance (inspect/top).

import (
	"fmt"
	"os"
	"time"

	"github.com/fdp-engine/fdp/inspect/top"
	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
)

func newTopCmd() *cobra.Command {
	var interval time.Duration
	var once bool
	c := &cobra.Command{
		Use:   "top INSTANCE",
		Short: "Live terminal view of an instance: frame rate, publish and frame times, memory, each module's state and figures",
		Long: "Every --interval, read the instance's world segment and its module segments read-only (like stat) and show\n" +
			"the frame rate, publish and frame time p50/p99, memory held, and per module its state, runs, lag, tick time,\n" +
			"failures and rejected commands; q or Ctrl-C quits. When the engine dies the view says so, and it re-attaches\n" +
			"to the next engine of the instance. With --once, or when stdin or stdout is not a terminal, it prints one\n" +
			"plain-text frame (rates over one interval) and exits. Columns: docs/ARCHITECTURE.md, \"Inspection tools\".",
		Args: cobra.ExactArgs(1),

		ValidArgsFunction: completeInstance,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := shm.CheckDir(); err != nil {
				return err
			}
			in, _ := cmd.InOrStdin().(*os.File)
			out, _ := cmd.OutOrStdout().(*os.File)
			interactive := !once && in != nil && out != nil && top.IsTerminal(in) && top.IsTerminal(out)
			if !instanceExists(args[0]) {
				if !interactive {
					// One frame of nothing: refused like stat, with the
					// instances there are.
					return fmt.Errorf("top: no engine: fdp.%s.world does not exist (%s)", args[0], instancesText())
				}
				// The live view waits for an engine that is not up yet; a
				// typo would wait forever without a word.
				fmt.Fprintf(cmd.ErrOrStderr(), "top: no instance %q in %s yet (%s); waiting for one\n", args[0], shm.Dir, instancesText())
			}
			return top.Run(cmdContext(cmd), top.Options{Instance: args[0], Interval: interval, Once: once,
				In: in, Out: cmd.OutOrStdout()})
		},
	}
	c.Flags().DurationVar(&interval, "interval", time.Second, "refresh interval")
	c.Flags().BoolVar(&once, "once", false, "print one plain-text frame and exit")
	return c
}
