// Command engine runs, supervises and inspects FDP engine instances.
package main

import (
	"os"

	"github.com/spf13/cobra"
)

var rootCmd = &cobra.Command{
	Use:          "engine",
	Short:        "FDP: an ECS engine whose world is read zero-copy by module processes through shared memory",
	SilenceUsage: true,
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
