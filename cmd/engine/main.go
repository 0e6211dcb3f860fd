// Command engine runs, supervises and inspects FDP engine instances.
package main

import (
	"os"

	"github.com/spf13/cobra"
)

// newRootCommand builds the engine command: run, up, and the inspection
// commands (ls, dump, gc, stat, verify), one constructor each.
func newRootCommand() *cobra.Command {
	c := &cobra.Command{
		Use:          "engine",
		Short:        "FDP: an ECS engine whose world is read zero-copy by module processes through shared memory",
		SilenceUsage: true,
	}
	c.AddCommand(newRunCommand(), newUpCommand())
	c.AddCommand(inspectCommands()...)
	return c
}

func main() {
	if err := newRootCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
