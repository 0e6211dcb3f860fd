// Package cli is the command line of an FDP engine program, for any world.
// One call, Main, gives a program that owns a world (its components, how to
// build it, its simulation) the commands the demo's `engine` binary has:
//
//	run      the engine: the world's frame loop, modules attach through the control
//	         socket; a killed engine's world is recovered at start (host.PrepareStart);
//	         a status line every second and a summary at exit
//	up       the supervisor: runs the engine (this very program, `run`) and the
//	         modules of a YAML config, restarts them, kills hung ones
//	ctl      time control of a running engine over its control socket: pause,
//	         resume, step N frames, speed X, seek (a replay), status
//	ls, dump, stat, top, gc, verify
//	         read-only inspection of any instance's segments (live, stale, copied)
//	completion
//	         a bash, zsh or fish completion script; instance arguments and
//	         --instance flags complete to the instances in the segment
//	         directory (complete.go)
//
// and --version (the build, the layout and control protocol versions).
// What the program writes is the World: the component registry, a constructor
// of an empty world (recovery restores a dead engine's last frame into it), a
// constructor of the simulation around a fresh or a recovered world, and
// defaults. Modules are programs of their own (module.Main) that register the
// same components; `up` finds their commands next to the running executable.
// cmd/engine is the demo world's use of this package; examples/thermostat is a
// complete small world of its own.
package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/fdp-engine/fdp/internal/buildinfo"
	"github.com/spf13/cobra"
)

// Main runs the command line of w with the process's arguments and exits:
// status 0 on success, 1 after printing the error on stderr (one line).
func Main(w World) {
	if err := Command(w).Execute(); err != nil {
		os.Exit(1)
	}
	// Exit here too, as documented: a program's main may go on after Main
	// (log.Fatal, cleanup meant for another path) and must not run it.
	os.Exit(0)
}

// Command returns the root command of w's command line (run, up, ls, dump,
// stat, top, gc, verify), for a program that adds commands of its own or runs it
// with arguments of its choice (c.SetArgs). An invalid World (no Schema or
// no Simulation) is reported when a command that runs the world starts.
func Command(w World) *cobra.Command {
	w = w.withDefaults()
	c := &cobra.Command{
		Use:          w.Name,
		Short:        w.Short,
		SilenceUsage: true,
		// --version: the build (module version, VCS revision, dirty flag)
		// and the layout and control protocol versions it speaks.
		Version: buildinfo.Read().String(),
	}
	c.SetFlagErrorFunc(flagError) // inherited by the subcommands: flagerr.go
	c.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	c.Flags().BoolP("version", "v", false, "print the build (module version, VCS revision) and the layout and control protocol versions")
	c.AddCommand(newRunCommand(w), newUpCommand(w), newCtlCmd(), newReplayCommand(w), newBridgeCommand(w), newMirrorCommand(w))
	c.AddCommand(inspectCommands()...)
	refuseUnknownShell(c)
	for _, sub := range c.Commands() {
		if sub.Flags().Lookup("instance") != nil {
			registerInstanceFlag(sub) // shell completion of --instance: complete.go
		}
	}
	return c
}

// programName is the base name of the running program, the default of
// World.Name.
func programName() string {
	if len(os.Args) > 0 && os.Args[0] != "" {
		return filepath.Base(os.Args[0])
	}
	return "engine"
}

// errWorld reports an incomplete World, once, when a command needs it.
func errWorld(field string) error {
	return fmt.Errorf("cli.World: %s is required", field)
}
